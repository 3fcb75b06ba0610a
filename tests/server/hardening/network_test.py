#!/usr/bin/env python3
"""Network-level attacks on `orchard serve` (issue 13, group 3 and parts of 4 and 5):
bodies over the limit however framed, slow and idle connections, SIGTERM with clients holding
on, metric label injection, a second server on the same port, Range on the API, and a client
that half-closes. Every check also asks /health to answer within 2 s.

    network_test.py ORCHARD_BINARY SHARED_DIR
"""
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Checks, Server, http_request, json_error, read_response  # noqa: E402

MIB = 1 << 20
checks = Checks()


def send_chunked(sock, total, piece=MIB, chunk_payload=b" "):
    """Sends `total` bytes of body as HTTP chunks of `piece` bytes; stops quietly when the
    server closes the connection (it may refuse the body part way)."""
    data = chunk_payload * piece
    frame = f"{len(data):x}\r\n".encode() + data + b"\r\n"
    sent = 0
    try:
        while sent < total:
            sock.sendall(frame)
            sent += len(data)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    return sent


def post_head(port, path, extra):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n").encode()


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\d+)", text, re.M)
    assert m, f"no {name} in /metrics"
    return int(m.group(1))


def settled(srv):
    """Waits until no generation runs; returns the total of generated tokens then."""
    for _ in range(50):
        if metric(srv.metrics(), "orchard_requests_active") == 0:
            break
        time.sleep(0.1)
    text = srv.metrics()
    assert metric(text, "orchard_requests_active") == 0, "a generation still runs after its client left"
    return metric(text, "orchard_generated_tokens_total")


def check_bodies(srv):
    port = srv.port
    with checks.check("a chunked body of 64 MiB is refused with 413 and an error object"):
        sock = srv.connect()
        sock.sendall(post_head(port, "/v1/chat/completions", {"Transfer-Encoding": "chunked"}))
        sender = threading.Thread(target=send_chunked, args=(sock, 64 * MIB))
        sender.start()
        try:
            status, _, body = read_response(sock, timeout=30)
        finally:
            sender.join()
            sock.close()
        assert status == 413, f"status {status}: {body[:200]!r}"
        assert json_error(body)["type"] == "invalid_request_error"
        srv.assert_health()
    with checks.check("a small chunked body is still served"):
        sock = srv.connect()
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).encode()
        sock.sendall(post_head(port, "/v1/chat/completions", {"Transfer-Encoding": "chunked", "Connection": "close"})
                     + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        status, _, reply = read_response(sock)
        sock.close()
        assert status == 200 and json.loads(reply)["object"] == "chat.completion", f"{status}: {reply[:200]!r}"
    with checks.check("a gzip body that inflates past the limit is refused with 413"):
        bomb = gzip.compress(b" " * (64 * MIB), 9)
        status, _, body = srv.request("POST", "/v1/chat/completions", bomb,
                                      headers={"Content-Encoding": "gzip"})
        assert status == 413, f"status {status}: {body[:200]!r}"
        json_error(body)
        srv.assert_health()
    with checks.check("a Content-Length over the limit is refused at once (413), without reading the body"):
        sock = srv.connect()
        sock.sendall(post_head(port, "/v1/chat/completions", {"Content-Length": str(1 << 40)}))
        start = time.monotonic()
        status, _, body = read_response(sock, timeout=10)
        sock.close()
        assert status == 413, f"status {status}"
        json_error(body)
        assert time.monotonic() - start < 2, "the refusal waited for the body"


def check_metrics(srv):
    with checks.check("/metrics: unknown paths share one label and labels cannot inject lines"):
        evil = "/x%22%7D%201%0Aorchard_requests_active%20999%0A%23"
        for path in [evil, "/a\\b"] + [f"/junk{i}" for i in range(40)]:
            srv.request("GET", path.replace("\\", "%5C"))
        text = srv.metrics()
        sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
                            r'[-+0-9.eEInfa]+$')
        for line in text.splitlines():
            assert line.startswith("#") or sample.match(line), f"not a Prometheus sample: {line!r}"
        assert "orchard_requests_active 999" not in text, "a request path injected a metric line"
        endpoints = set(re.findall(r'orchard_requests_total\{endpoint="([^"]*)"', text))
        allowed = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "other"}
        assert endpoints <= allowed, f"endpoint labels outside the fixed set: {sorted(endpoints - allowed)[:5]}"
        assert 'endpoint="other",status="404"' in text, "unknown paths are not counted under 'other'"


def check_range(srv):
    with checks.check("Range is ignored on the API (full 200 answers)"):
        status, headers, body = srv.request(
            "POST", "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, headers={"Range": "bytes=0-5"})
        assert status == 200, f"status {status}"
        assert json.loads(body)["object"] == "chat.completion", f"not the whole body: {body[:100]!r}"
        status, _, body = srv.request("GET", "/health", headers={"Range": "bytes=0-2"})
        assert status == 200 and json.loads(body) == {"status": "ok"}, f"{status}: {body!r}"
        status, _, body = srv.request("GET", "/v1/models", headers={"Range": "bytes=x"})
        assert status == 200 and json.loads(body)["object"] == "list", f"{status}: {body[:100]!r}"


def check_half_close(srv):
    port = srv.port
    for stream in (False, True):
        with checks.check(f"a client that half-closes after its request gets its answer (stream={stream})"):
            body = json.dumps({"messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 300,
                               "stream": stream, "seed": 3}).encode()
            sock = srv.connect()
            sock.sendall(post_head(port, "/v1/chat/completions", {"Content-Length": len(body)}) + body)
            sock.shutdown(socket.SHUT_WR)
            status, _, reply = read_response(sock, timeout=30)
            sock.close()
            assert status == 200, f"status {status}"
            if stream:
                assert reply.rstrip().endswith(b"data: [DONE]"), f"the stream did not end: {reply[-100:]!r}"
            else:
                answer = json.loads(reply)
                assert answer["usage"]["completion_tokens"] > 0, answer
    with checks.check("a client that closes during an answer that is not streamed still cancels it"):
        before = settled(srv)
        aborted = metric(srv.metrics(), "orchard_abandoned_requests_total")
        body = json.dumps({"messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 100000,
                           "seed": 11}).encode()
        sock = srv.connect()
        sock.sendall(post_head(port, "/v1/chat/completions", {"Content-Length": len(body)}) + body)
        for _ in range(2000):
            if metric(srv.metrics(), "orchard_requests_active") > 0:
                break
            time.sleep(0.001)
        sock.close()
        generated = settled(srv) - before
        assert generated < 2000, f"{generated} tokens generated for a client that left"
        assert metric(srv.metrics(), "orchard_abandoned_requests_total") > aborted


class Crowd:
    """Connections that hold on: `slow` ones send a request header a byte at a time (one byte
    per connection every 0.5 s), `idle` ones made a keep-alive request and stay open."""

    def __init__(self, port, slow, idle):
        self.port, self.stop = port, threading.Event()
        self.idle, self.idle_failed = [], None
        for _ in range(idle):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.idle.append(s)
            try:  # a server that gives each connection a thread stops answering here
                http_request(port, "GET", "/health", headers={"Connection": "keep-alive"}, sock=s, timeout=2)
            except OSError as e:
                self.idle_failed = f"keep-alive connection {len(self.idle)} got no answer within 2 s ({e!r})"
                break
        self.slow = []
        for _ in range(slow):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            self.slow.append(s)
        self.trickler = threading.Thread(target=self._trickle, daemon=True)
        self.trickler.start()

    def _trickle(self):
        while not self.stop.wait(0.5):
            for s in self.slow:
                try:
                    s.send(b"X")
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.trickler.join()
        for s in self.slow + self.idle:
            s.close()


def check_crowd_and_sigterm(srv):
    crowd = None
    with checks.check("/health answers within 2 s while 300 slow-header and 300 idle keep-alive connections are open"):
        crowd = Crowd(srv.port, slow=300, idle=300)
        assert not crowd.idle_failed, crowd.idle_failed
        worst = max(srv.assert_health(2.0) for _ in range(5))
        time.sleep(1.0)  # the slow clients keep sending
        worst = max(worst, srv.assert_health(2.0))
        status, _, body = srv.chat(max_tokens=4, timeout=5)
        assert status == 200, f"a chat request answered {status}"
        print(f"  slowest /health: {worst * 1000:.0f} ms", flush=True)
    with checks.check("SIGTERM: the server exits cleanly within 5 s while clients hold on"):
        # One more client: a long stream whose reader reads nothing.
        body = json.dumps({"messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 100000,
                           "stream": True}).encode()
        lazy = srv.connect()
        lazy.sendall(post_head(srv.port, "/v1/chat/completions", {"Content-Length": len(body)}) + body)
        time.sleep(0.2)
        start = time.monotonic()
        code = srv.stop(signal.SIGTERM, within=5.0)
        print(f"  exited {code} after {time.monotonic() - start:.2f} s", flush=True)
        assert code == 0, f"exit status {code}"
        lazy.close()
    if crowd:
        crowd.close()


def check_pipelining_without_reading(srv):
    with checks.check("/health answers within 2 s while 80 clients pipeline requests and read no answer"):
        socks = []
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
        for _ in range(80):
            s = srv.connect()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            try:
                s.send(request)
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(0.5)
        try:
            worst = max(srv.assert_health(2.0) for _ in range(3))
            print(f"  slowest /health: {worst * 1000:.0f} ms", flush=True)
        finally:
            for s in socks:
                s.close()


def check_port_taken(srv):
    with checks.check("a second server on the same port fails, naming host:port"):
        try:
            proc = subprocess.run([srv.orchard, "serve", "--model", srv.model, "--port", str(srv.port)],
                                  capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the second server runs (still serving after 20 s)") from None
        assert proc.returncode != 0, "the second server ran"
        assert f"127.0.0.1:{srv.port}" in proc.stderr, f"the error names no host:port: {proc.stderr!r}"
        print(f"  exit {proc.returncode}: {proc.stderr.strip()}", flush=True)
        srv.assert_health()


def main():
    start = time.monotonic()
    with Server.from_argv() as srv:
        check_metrics(srv)
        check_range(srv)
        check_half_close(srv)
        check_bodies(srv)
        check_port_taken(srv)
        check_pipelining_without_reading(srv)
        check_crowd_and_sigterm(srv)
    print(f"network_test: {time.monotonic() - start:.1f} s", flush=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
