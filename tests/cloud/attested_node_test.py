#!/usr/bin/env python3
"""The client's refusals against real attested nodes (issue 16).

    attested_node_test.py ORCHARD SHARED_DIR

A transparency log (`orchard log serve`) with a witness (`orchard log witness`), a release key,
attested nodes (`orchard serve --private --release ...`) with the software attester and one with
the TPM attester on swtpm, and a relay written here (Python) that lists the nodes' bundles and
forwards the client's encrypted requests. The relay is the party the client does not trust: some
cases have it alter what the nodes sent. For each case the client (`orchard cloud ask` in attested
mode) must refuse the node with the reason named, send it nothing (the node's own /metrics count
of POST /gateway does not move), be served by a good node if the list has one, and otherwise exit
non-zero naming the reason:

- release not signed by a trusted release key (the client trusts another key)
- release statement not in the log (a node started with a signed release that was never logged)
- an inclusion proof that does not verify (the relay flips a byte of one)
- witness signature missing (the relay strips the witness's cosignature)
- a forked log (a second log under the same key; the client saw the first)
- attestation expired (the relay replays a bundle past its validity; software and TPM)
- a TPM quote over the wrong PCR value (the PCR extended behind the running node's back)
- a node started with another model file, or another binary, than its release
Python 3 standard library; swtpm and tpm2-tools from Debian (scripts/packages.txt).
"""
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ORCHARD, SHARED = os.path.abspath(sys.argv[1]), sys.argv[2]
MODEL = os.path.join(SHARED, "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf")
processes = []
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_support import check, failures, free_port  # noqa: E402


def free_port_pair():
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free adjacent ports")


def run(*args, **kw):
    return subprocess.run([ORCHARD, *args], capture_output=True, text=True, timeout=120, **kw)


def start(args, name, tmp, pattern):
    """Starts `orchard ARGS`, waits for PATTERN in its stdout or stderr; returns (process, text)."""
    out = open(os.path.join(tmp, name + ".log"), "w+")
    p = subprocess.Popen([ORCHARD, *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    processes.append(p)
    for _ in range(600):
        out.seek(0)
        text = out.read()
        if pattern in text:
            return p, text
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited: {text}")
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start: {text}")


def url_in(text):
    return text.split("listening on ", 1)[1].split()[0]


class Node:
    def __init__(self, name, tmp, release, model=MODEL, binary=None, attester=None, extra=()):
        self.name = name
        exe = binary or ORCHARD
        args = ["serve", "--private", "--model", model, "--port", "0", "--admin-port", "0", "--node-name", name,
                "--release", release, "--log-url", tmp.log_url, "--log-token-file", tmp.token, *extra]
        args += attester or ["--attester", "software", "--attester-key", tmp.attester_key]
        out = open(os.path.join(tmp.dir, name + ".log"), "w+")
        self.process = subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL)
        processes.append(self.process)
        for _ in range(600):
            out.seek(0)
            text = out.read()
            if "gateway on http://" in text:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"node {name} exited: {text}")
            time.sleep(0.05)
        self.port = int(text.split("gateway on http://127.0.0.1:", 1)[1].split(",")[0])
        self.admin = int(text.split("(/metrics) on http://127.0.0.1:", 1)[1].split()[0])
        self.stderr = text

    def get(self, path):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30).read()

    def bundle(self):
        return json.loads(self.get("/attestation"))

    def gateway_posts(self):
        """POST /gateway requests this node answered, by its own count (admin /metrics)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).read().decode()
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith('orchard_requests_total{endpoint="/gateway"'))


class Relay:
    """Lists `nodes` (bundles passed through `alter`, if set) and forwards to them and to the log."""

    def __init__(self, log_url):
        self.log_url = log_url
        self.nodes = []
        self.alter = {}  # node name -> function(bundle dict) -> bundle dict
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/nodes":
                    listed = []
                    for n in relay.nodes:
                        bundle = n.bundle()
                        if n.name in relay.alter:
                            bundle = relay.alter[n.name](bundle)
                        listed.append({"name": n.name, "keys": n.get("/ohttp-keys?format=hex").decode(),
                                       "attestation": bundle})
                    return self.reply(200, json.dumps({"nodes": listed}).encode())
                if self.path.startswith("/log/"):
                    try:
                        with urllib.request.urlopen(relay.log_url + self.path[4:], timeout=30) as r:
                            return self.reply(r.status, r.read(), r.headers.get("Content-Type", ""))
                    except urllib.error.HTTPError as e:
                        return self.reply(e.code, e.read())
                self.reply(404, b"{}")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                name = self.path.split("/")[2] if self.path.startswith("/nodes/") else ""
                node = next((n for n in relay.nodes if n.name == name), None)
                if node is None or not self.path.endswith("/gateway"):
                    return self.reply(404, b"{}")
                upstream = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
                upstream.request("POST", "/gateway", body, {"Content-Type": self.headers.get("Content-Type", "")})
                r = upstream.getresponse()
                self.send_response(r.status)
                self.send_header("Content-Type", r.headers.get("Content-Type", ""))
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    data = r.read1(65536)
                    if not data:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                upstream.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class World:
    pass


def main():
    tmp = World()
    tmp.dir = tempfile.mkdtemp(prefix="orchard-attested-")
    d = tmp.dir
    key = lambda name, k: run("key", "generate", "--name", name, "--out", os.path.join(d, k)).stdout.strip()
    release_vkey = key("release.example", "release.key")
    other_release_vkey = key("release.example", "other-release.key")
    log_vkey = key("log.example", "log.key")
    witness_vkey = key("witness.example", "witness.key")
    key("attester.example", "attester.key")
    tmp.attester_key = os.path.join(d, "attester.key")
    tmp.token = os.path.join(d, "token")
    with open(tmp.token, "w") as f:
        f.write("append-" + os.urandom(8).hex())
    os.chmod(tmp.token, 0o600)

    _, text = start(["log", "witness", "--key", os.path.join(d, "witness.key"), "--log-vkey", log_vkey, "--state",
                     os.path.join(d, "witness.state"), "--port", "0"], "witness", d, "listening on ")
    witness_url = url_in(text)
    _, text = start(["log", "serve", "--dir", os.path.join(d, "log"), "--key", os.path.join(d, "log.key"), "--port", "0",
                     "--append-token-file", tmp.token, "--witness", witness_url, "--witness-vkey", witness_vkey],
                    "log", d, "listening on ")
    tmp.log_url = url_in(text)
    # A second log under the same key (a fork), with no witness.
    _, text = start(["log", "serve", "--dir", os.path.join(d, "fork"), "--key", os.path.join(d, "log.key"), "--port",
                     "0", "--append-token-file", tmp.token], "fork", d, "listening on ")
    fork_url = url_in(text)

    def release(name, logged=True, log_url=None, extra=()):
        statement = run("release", "measure", "--name", name, "--model", MODEL, "--private", *extra)
        assert statement.returncode == 0, statement.stderr
        path = os.path.join(d, name + ".txt")
        open(path, "w").write(statement.stdout)
        note = os.path.join(d, name + ".note")
        signed = run("release", "sign", "--key", os.path.join(d, "release.key"), "--statement", path, "--out", note)
        assert signed.returncode == 0, signed.stderr
        if logged:
            added = run("log", "append", "--url", log_url or tmp.log_url, "--token-file", tmp.token, "--entry", note)
            assert added.returncode == 0, added.stderr
        return note

    r1 = release("r1")
    r_unlogged = release("r-unlogged", logged=False)
    r_short = release("r-short", extra=["--attestation-validity-s", "4"])
    r_fork = release("r-fork", log_url=fork_url)
    for i in range(3):  # the fork grows past the real log
        entry = os.path.join(d, f"fork-entry-{i}")
        open(entry, "w").write(f"another entry {i}\n")
        run("log", "append", "--url", fork_url, "--token-file", tmp.token, "--entry", entry)

    other_model = os.path.join(d, "other-model.gguf")
    shutil.copy(MODEL, other_model)
    with open(other_model, "ab") as f:
        f.write(b"another model file")
    other_binary = os.path.join(d, "orchard-other")
    shutil.copy(ORCHARD, other_binary)
    with open(other_binary, "ab") as f:
        f.write(b"another binary")
    os.chmod(other_binary, 0o755)

    good = Node("good", tmp, r1)
    other = Node("othermodel", tmp, r1, model=other_model)
    binary = Node("otherbinary", tmp, r1, binary=other_binary)
    unlogged = Node("unlogged", tmp, r_unlogged)
    short = Node("short", tmp, r_short, extra=["--attestation-validity-s", "4"])
    fork_tmp = World()
    fork_tmp.__dict__.update(tmp.__dict__)
    fork_tmp.log_url = fork_url
    forked = Node("forked", fork_tmp, r_fork)
    check("NOT what its release states" in other.stderr, "a node with another model warns that clients will refuse it")

    relay = Relay(tmp.log_url)
    state = os.path.join(d, "client.state")

    def ask(nodes, release_vkey=release_vkey, witnesses=True, state_file=state, alter=None):
        relay.nodes = nodes
        relay.alter = alter or {}
        args = ["cloud", "ask", "--relay", relay.url, "--prompt", "Hello", "--max-tokens", "6", "--stream",
                "--log-key", log_vkey, "--release-key", release_vkey, "--state", state_file]
        if witnesses:
            args += ["--witness-key", witness_vkey]
        return run(*args)

    def refused(case, bad, reason, **kw):
        """`bad` alone: exit non-zero naming the reason; `bad` and `good`: answered by good."""
        before = bad.gateway_posts()
        alone = ask([bad], **kw)
        check(alone.returncode != 0 and reason in alone.stderr,
              f"{case}: refused alone, naming '{reason}' (rc {alone.returncode}: {alone.stderr.strip()[-300:]})")
        both = ask([bad, good], **kw) if bad is not good else None
        if both is not None:
            check(both.returncode == 0 and "answered by node good" in both.stderr and
                  f"refused node {bad.name}: " in both.stderr and reason in both.stderr,
                  f"{case}: the good node answers instead ({both.stderr.strip()[-300:]})")
        check(bad.gateway_posts() == before, f"{case}: node {bad.name} received nothing (its /metrics)")

    # The good path first: it also records the log's checkpoint in the client's state.
    ok = ask([good])
    check(ok.returncode == 0 and ok.stdout.strip() != "" and "answered by node good" in ok.stderr,
          f"a verified node answers, streamed ({ok.stderr.strip()[-200:]})")
    check(os.path.exists(state) and open(state).read().startswith("log.example\n"), "the client kept the checkpoint")

    refused("untrusted release key", good, "release not signed by a trusted release key", release_vkey=other_release_vkey)
    refused("measurement not in the log", unlogged, "release statement not in the log")
    refused("another model file", other, "measurement differs from the release's")
    refused("another binary", binary, "measurement differs from the release's")

    def flip_proof(b):
        h = bytearray(__import__("base64").b64decode(b["document_proof"]["hashes"][0]))
        h[0] ^= 1
        b["document_proof"]["hashes"][0] = __import__("base64").b64encode(bytes(h)).decode()
        return b

    refused("wrong inclusion proof", good, "inclusion proof does not verify", alter={"good": flip_proof})

    def strip_witness(b):
        b["checkpoint"] = "\n".join(l for l in b["checkpoint"].split("\n") if not l.startswith("— witness.example"))
        return b

    refused("witness signature missing", good, "witness signature missing", alter={"good": strip_witness})

    # A forked log: the client (requiring no witness here, so that only the fork is in question)
    # has seen the real log; the forked node shows a checkpoint of the other tree under the same key.
    fork_state = os.path.join(d, "fork.state")
    seeded = ask([good], witnesses=False, state_file=fork_state)
    check(seeded.returncode == 0, "the fork client first sees the real log")
    refused("forked log", forked, "forked log", witnesses=False, state_file=fork_state)

    # An old bundle replayed by the relay after its validity (4 s).
    stale = short.bundle()
    ok = ask([short])
    check(ok.returncode == 0, f"the short-lived node verifies while fresh ({ok.stderr.strip()[-200:]})")
    time.sleep(5)
    refused("attestation expired", short, "attestation expired", alter={"short": lambda b: stale})

    tpm_cases(tmp, relay, ask, refused, good)

    return 0


def tpm_cases(tmp, relay, ask, refused, good):
    swtpm = shutil.which("swtpm")
    pcrextend = shutil.which("tpm2_pcrextend")
    check(swtpm is not None and pcrextend is not None, "swtpm and tpm2-tools are installed (scripts/packages.txt)")
    if not swtpm or not pcrextend:
        return
    state_dir = os.path.join(tmp.dir, "tpm")
    os.makedirs(state_dir)
    port = free_port_pair()  # the swtpm TCTI finds the control port at port + 1
    ctrl = port + 1
    p = subprocess.Popen([swtpm, "socket", "--tpm2", "--tpmstate", f"dir={state_dir}", "--server",
                          f"type=tcp,port={port}", "--ctrl", f"type=tcp,port={ctrl}", "--flags", "not-need-init"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(p)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    tcti = f"swtpm:host=127.0.0.1,port={port}"
    note = os.path.join(tmp.dir, "r-short.note")  # validity 4 s, as this node's options
    node = Node("tpm", tmp, note, attester=["--attester", "tpm:" + tcti], extra=["--attestation-validity-s", "4"])
    ok = ask([node])
    check(ok.returncode == 0 and "answered by node tpm" in ok.stderr,
          f"a node attested by the TPM verifies and answers ({ok.stderr.strip()[-300:]})")
    stale = node.bundle()
    time.sleep(5)
    refused("TPM attestation older than its validity", node, "attestation expired", alter={"tpm": lambda b: stale})
    # Someone extends the PCR after the node measured itself: its next quote no longer holds the
    # released measurement.
    env = dict(os.environ, TPM2TOOLS_TCTI=tcti)
    extended = subprocess.run([pcrextend, "23:sha256=" + "ab" * 32], env=env, capture_output=True, text=True, timeout=60)
    check(extended.returncode == 0, f"tpm2_pcrextend behind the node ({extended.stderr.strip()})")
    time.sleep(2.5)  # past half the validity: the node quotes again
    refused("TPM quote over the wrong PCR value", node, "PCR digest does not match")


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except Exception as e:  # a setup failure is a test failure, with its cause
        import traceback
        traceback.print_exc()
        failures.append(f"setup: {e}")
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"{len(failures)} failure(s)" if failures else "all passed")
    sys.exit(1 if failures else code)
