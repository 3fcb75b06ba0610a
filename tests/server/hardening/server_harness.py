"""Harness for attack tests on `orchard serve` (Python 3 standard library only).

Usage, from a test script run as `python3 TEST.py ORCHARD_BINARY SHARED_DIR`:

    from server_harness import Server, Checks, http_request, read_response, raw_connect

    checks = Checks()                       # collects results; prints each check
    with Server.from_argv() as srv:         # `orchard serve` on the tiny chat model, free port
        status, headers, body = srv.request("GET", "/health")
        sock = srv.connect()                # a raw TCP socket to the server
        srv.assert_health(within=2.0)       # raises AssertionError if /health is slow or wrong
        with checks.check("what this verifies"):
            ...                             # assert; an exception marks the check failed
    # Server.__exit__ stops the server (SIGTERM) and kills it if it does not exit.
    sys.exit(checks.summary())              # 0 when every check passed, 1 otherwise

Server(orchard, shared, vmem_kib=None, args=(), env=None):
    vmem_kib: run the server under `ulimit -v` (RLIMIT_AS, KiB) so that a test that would
              exhaust memory fails cleanly instead of starving the machine.
    args:     extra `orchard serve` flags (the defaults are those of integration_test.sh:
              --parallel 4 --ctx-size 4096).
  .port, .base ("http://127.0.0.1:PORT"), .proc (the Popen), .stderr_text() (its log so far)
  .request(method, path, body=None, headers=None, timeout=30) -> (status, headers, body bytes)
        one request on a fresh connection (body: bytes, str or a JSON-able object).
  .chat(content="Hi", max_tokens=4, stream=False, **fields) -> (status, headers, body)
  .connect(timeout=10) -> socket
  .health_time() -> seconds /health took (raises if it did not answer 200)
  .assert_health(within=2.0)
  .stop(sig=signal.SIGTERM, within=10.0) -> exit status (raises AssertionError when it does not
        exit within `within` seconds; the server is then killed)
  .alive() -> bool
  .metrics() -> text of /metrics

Module functions:
  raw_connect(port, timeout=10) -> socket
  http_request(port, method, path, body=None, headers=None, timeout=30, sock=None)
        -> (status, headers dict with lower-case names, body bytes); sends
        `Connection: close` unless `headers` says otherwise, reads until the framing says the
        body is complete (Content-Length or chunked) or the connection ends.
  read_response(sock, timeout=30) -> (status, headers, body); raises ConnectionError when the
        connection ends before a status line ("empty reply").
  json_error(body) -> the "error" object of an OpenAI error body (AssertionError if none).
  free_port() -> a TCP port that was free a moment ago.
"""
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

MODEL_REL = os.path.join("models", "tiny-chat", "tiny-qwen2-chat-q8_0.gguf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_asan(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def raw_connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _recv_until(sock, buf, marker, deadline):
    while marker not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return buf, False
        buf += chunk
    return buf, True


def read_response(sock, timeout=30):
    """Reads one HTTP/1.1 response from `sock`."""
    deadline = time.monotonic() + timeout
    buf, ok = _recv_until(sock, b"", b"\r\n\r\n", deadline)
    if not ok:
        if not buf:
            raise ConnectionError("empty reply: the connection ended before a status line")
        raise ConnectionError(f"the connection ended inside the response header: {buf[:200]!r}")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status in (100, 101) or 100 <= status < 200:  # an interim response: read the next one
        return read_response_after(sock, rest, deadline)
    return status, headers, _read_body(sock, headers, rest, deadline)


def read_response_after(sock, rest, deadline):
    class Prefixed:
        def __init__(self):
            self.pending = rest

        def recv(self, n):
            if self.pending:
                out, self.pending = self.pending, b""
                return out
            return sock.recv(n)

        def settimeout(self, t):
            sock.settimeout(t)

    return read_response(Prefixed(), max(0.01, deadline - time.monotonic()))


def _read_body(sock, headers, body, deadline):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            body, ok = _recv_until(sock, body, b"\r\n", deadline)
            if not ok:
                raise ConnectionError("the connection ended inside a chunked body")
            size_line, body = body.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(body) < size + 2:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the connection ended inside a chunk")
                body += chunk
            out += body[:size]
            body = body[size + 2:]
            if size == 0:
                return out
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the connection ended inside the body")
            body += chunk
        return body[:n]
    while True:  # until the connection ends
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return body
        body += chunk


def _encode_body(body):
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def http_request(port, method, path, body=None, headers=None, timeout=30, sock=None):
    data = _encode_body(body)
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        hdrs["Content-Length"] = str(len(data))
    for k, v in (headers or {}).items():
        for existing in [h for h in hdrs if h.lower() == k.lower()]:
            del hdrs[existing]
        if v is not None:
            hdrs[k] = v
    text = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    own = sock is None
    if own:
        sock = raw_connect(port, timeout)
    try:
        sock.sendall(text.encode("latin-1") + data)
        return read_response(sock, timeout)
    finally:
        if own:
            sock.close()


def json_error(body):
    obj = json.loads(body)
    assert isinstance(obj, dict) and isinstance(obj.get("error"), dict), f"no OpenAI error object: {body[:200]!r}"
    assert isinstance(obj["error"].get("message"), str), f"error without a message: {body[:200]!r}"
    return obj["error"]


class Server:
    def __init__(self, orchard, shared, vmem_kib=None, args=(), env=None):
        self.orchard, self.shared = orchard, shared
        self.model = os.path.join(shared, MODEL_REL)
        self.port = None
        self._log = tempfile.NamedTemporaryFile(prefix="orchard-serve-", suffix=".log", delete=False)
        cmd = [orchard, "serve", "--model", self.model, "--port", "0", "--parallel", "4", "--ctx-size", "4096", *args]

        # AddressSanitizer reserves terabytes of address space for its shadow memory, so an
        # address-space limit stops it from starting: under ASan the same bound is its allocator's
        # RSS limit instead.
        if vmem_kib and _is_asan(orchard):
            env = dict(os.environ if env is None else env)
            env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""),
                                                         f"hard_rss_limit_mb={vmem_kib // 1024}"]))
            vmem_kib = None

        def limit():
            if vmem_kib:
                resource.setrlimit(resource.RLIMIT_AS, (vmem_kib * 1024, vmem_kib * 1024))

        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=limit,
                                     env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.stderr_text()
            if "serving" in text and "http://" in text:
                self.port = int(text.split("http://", 1)[1].split(":", 1)[1].split()[0].split("/")[0])
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"orchard serve exited ({self.proc.returncode}) before serving:\n{text}")
            time.sleep(0.05)
        else:
            self.proc.kill()
            raise RuntimeError("orchard serve did not start within 60 s:\n" + self.stderr_text())
        self.base = f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_argv(cls, **kw):
        if len(sys.argv) < 3:
            sys.exit(f"usage: {sys.argv[0]} ORCHARD_BINARY SHARED_DIR")
        return cls(sys.argv[1], sys.argv[2], **kw)

    def stderr_text(self):
        with open(self._log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def connect(self, timeout=10):
        return raw_connect(self.port, timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        return http_request(self.port, method, path, body, headers, timeout)

    def chat(self, content="Hi", max_tokens=4, stream=False, timeout=60, **fields):
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": stream,
                **fields}
        return self.request("POST", "/v1/chat/completions", body, timeout=timeout)

    def metrics(self):
        status, _, body = self.request("GET", "/metrics", timeout=10)
        assert status == 200, f"/metrics answered {status}"
        return body.decode()

    def health_time(self, timeout=10):
        start = time.monotonic()
        status, _, body = self.request("GET", "/health", timeout=timeout)
        took = time.monotonic() - start
        assert status == 200 and b'"ok"' in body, f"/health answered {status}: {body[:200]!r}"
        return took

    def assert_health(self, within=2.0):
        assert self.alive(), f"the server exited ({self.proc.returncode}):\n{self.stderr_text()[-2000:]}"
        start = time.monotonic()
        try:
            took = self.health_time(timeout=within)
        except (socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            raise AssertionError(f"/health did not answer within {within} s "
                                 f"({time.monotonic() - start:.2f} s: {e!r})") from None
        assert took <= within, f"/health took {took:.2f} s (limit {within} s)"
        return took

    def stop(self, sig=signal.SIGTERM, within=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the server did not exit within {within} s of signal {sig}") from None
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        return False


class Checks:
    """Runs named checks, prints PASS/FAIL for each, and sums them up."""

    def __init__(self):
        self.failed, self.passed = [], 0

    @contextlib.contextmanager
    def check(self, name):
        start = time.monotonic()
        try:
            yield
        except Exception as e:  # noqa: BLE001 - a failed check is reported, the others still run
            self.failed.append(name)
            detail = str(e) if isinstance(e, AssertionError) and str(e) else traceback.format_exc()
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s): {detail}", flush=True)
        else:
            self.passed += 1
            print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)

    def summary(self):
        print(f"{self.passed} passed, {len(self.failed)} failed" +
              (": " + "; ".join(self.failed) if self.failed else ""), flush=True)
        return 1 if self.failed else 0
