#!/usr/bin/env python3
"""The private cloud node end to end, through nginx (deploy/local_cluster.sh) to 2 nodes.

    private_node_test.py ORCHARD SHARED_DIR

- 100 requests from 127.0.0.2 through the relay (TLS, test CA), plain and chunked OHTTP, streamed
  and not, each with its own canary string in the user prompt and in a tool result message.
- Afterwards no canary occurs in: the nodes' and nginx's logs, any file under the nodes' working,
  temporary and cache directories or nginx's, the nodes' admin /metrics. A control string written
  into a node's folder is found, so the scan can fail.
- What one node receives, recorded by a TCP proxy between nginx and it: no canary, not the
  client's address, and no header field but Host, Content-Type, Content-Length,
  Transfer-Encoding and Connection.
- Core dumps are off in the nodes and their keys are in locked memory (/proc).
- One node killed (SIGKILL): every request still gets an answer, from the other node.
Python 3 standard library only.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

ORCHARD, SHARED = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(SHARED, "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_support import check, failures, start_cluster, stop_cluster  # noqa: E402


class RecordingProxy:
    """Forwards 127.0.0.1:port to the node (set later) and keeps every byte sent to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.target = None
        self.received = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, False), daemon=True).start()

    def pipe(self, src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    with self.lock:
                        self.received += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def request_body(canary, stream):
    return {
        "messages": [
            {"role": "user", "content": f"What is the weather in Paris? {canary}"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"Sunny, 21 degrees. {canary}"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}],
        "max_tokens": 12, "stream": stream,
    }


def main():
    work = tempfile.mkdtemp(prefix="orchard-private-")
    cluster = os.path.join(work, "cluster")
    proxy = RecordingProxy()
    conf = start_cluster(ORCHARD, cluster, MODEL, 2, ["--parallel", "2", "--ctx-size", "1024"],
                         {"NODE_PORT_OVERRIDE_0": str(proxy.port)})
    node_pids = conf["NODE_PIDS"].split()
    proxy.target = int(conf["NODE_PORTS"].split()[0])
    try:
        canaries = [f"CANARY-{uuid.uuid4().hex}" for _ in range(100)]

        def ask(i):
            path = os.path.join(work, f"request-{i}.json")
            with open(path, "w") as f:
                json.dump(request_body(canaries[i], i % 2 == 0), f)
            args = [ORCHARD, "cloud", "ask", "--relay", conf["RELAY"], "--ca-file", conf["CA"],
                    "--source-address", "127.0.0.2", "--request-file", path]
            if i % 4 >= 2:
                args.append("--plain-ohttp")
            r = subprocess.run(args, capture_output=True, text=True, timeout=120)
            os.remove(path)  # the client's own copy: not part of what is scanned
            return r

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(ask, range(100)))
        ok = [r for r in results if r.returncode == 0]
        check(len(ok) == 100, f"100 encrypted requests through the relay answered ({len(ok)} did)")
        for r in results:
            if r.returncode != 0:
                print(r.stderr[-500:])
                break
        nodes_used = {line.split("node ")[1].split()[0] for r in ok for line in r.stderr.splitlines() if "answered by node" in line}
        check(nodes_used == {"node0", "node1"}, f"both nodes answered ({sorted(nodes_used)})")

        # The relay's certificate is verified: without the test CA the client refuses it.
        r = subprocess.run([ORCHARD, "cloud", "ask", "--relay", conf["RELAY"], "--prompt", "hi"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and "certificate" in r.stderr,
              "without the test CA, the relay's certificate is refused (" + r.stderr.strip()[-120:] + ")")

        # Where a canary could have been written.
        metrics = ""
        for port in conf["ADMIN_PORTS"].split():
            metrics += urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        check("orchard_requests_total" in metrics or "orchard_generated_tokens_total" in metrics,
              "the admin port serves /metrics")
        control = "CONTROL-" + uuid.uuid4().hex
        with open(os.path.join(cluster, "nodes/0/tmp/control"), "w") as f:
            f.write(control)
        found = {}
        scanned = 0
        for folder, _, files in os.walk(cluster):
            for name in files:
                data = open(os.path.join(folder, name), "rb").read()
                scanned += 1
                for c in canaries + [control]:
                    if c.encode() in data:
                        found.setdefault(c, []).append(os.path.join(folder, name))
        check(found.pop(control, None) is not None, f"the scan finds a control string ({scanned} files scanned)")
        check(not found, "no canary in any file of the nodes' or nginx's folders (logs, working, temporary, cache)"
              + (f": {found}" if found else ""))
        check(not any(c in metrics for c in canaries), "no canary in the admin /metrics")

        seen = bytes(proxy.received)
        check(seen.count(b"POST /gateway") > 10, f"the recorded node received requests ({seen.count(b'POST /gateway')})")
        check(not any(c.encode() in seen for c in canaries), "no canary in what the node received")
        check(b"127.0.0.2" not in seen, "the client's address does not reach the node")
        names = set()
        for head in seen.split(b"\r\n\r\n"):
            lines = head.split(b"\r\n")
            if lines and (lines[0].startswith(b"POST ") or lines[0].startswith(b"GET ")):
                names |= {l.split(b":")[0].strip().lower().decode() for l in lines[1:] if b":" in l}
        allowed = {"host", "content-type", "content-length", "transfer-encoding", "connection"}
        check(bool(names) and names <= allowed, f"the node receives only {sorted(allowed)} (got {sorted(names)})")

        for pid in node_pids:
            limits = open(f"/proc/{pid}/limits").read()
            core = [l for l in limits.splitlines() if l.startswith("Max core file size")][0].split()
            check(core[4] == "0" and core[5] == "0", f"node {pid}: core dumps off (RLIMIT_CORE {core[4]} {core[5]})")
            locked = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmLck")][0].split()[1]
            check(int(locked) > 0, f"node {pid}: its keys are in locked memory (VmLck {locked} kB)")

        # One node killed: the client skips it and every request is answered by the other.
        os.kill(int(node_pids[1]), 9)
        results = []
        for i in range(6):
            canaries.append(f"CANARY-{uuid.uuid4().hex}")
            results.append(ask(len(canaries) - 1))
        check(all(r.returncode == 0 and "answered by node node0" in r.stderr for r in results),
              "with node1 killed, every request is answered by node0")
        for r in results:
            if r.returncode != 0 or "answered by node node0" not in r.stderr:
                print(r.stderr[-800:])
                break
    finally:
        stop_cluster(cluster)
    subprocess.run(["rm", "-rf", work])
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("private node: all checks passed")


main()
