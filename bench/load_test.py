#!/usr/bin/env python3
"""Load test for `orchard serve`: one client alone, then N concurrent clients, each sending
streamed chat requests back to back for a fixed time. Reports failed requests, aggregate
generated tokens/s (and the ratio to one client), the server's resident memory over time, and
the CPU time the server and this client each spent.

    bench/load_test.py --clients 16 --seconds 60      # the tiny chat model
    bench/load_test.py --model /tmp/models/qwen2.5-0.5b-q4_0.gguf --tokenizer ../shared/tokenizers/qwen3 \
        --max-tokens 32

The client is one asyncio event loop speaking HTTP/1.1 from protocol callbacks: on a small machine the
client shares the cores with the server, and a thread per client parsing SSE through
http.client would spend (under the GIL) a good part of the CPU the server needs. It still reads
every event of every response, parses each as JSON, checks it for errors, counts the content
chunks, and takes the token count from the final usage chunk.

Standard library only.
"""
import argparse
import asyncio
import json
import os
import threading
import time

from orchard_server import start_server

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ORCHARD = os.path.join(HERE, "..", "build", "bin", "orchard")
DEFAULT_MODEL = os.path.join(HERE, "..", "..", "shared", "models", "tiny-chat", "tiny-qwen2-chat-q8_0.gguf")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class StreamCheck:
    """Reads one response's server-sent events: every event must be JSON without an error
    object, the stream must end in [DONE] after a finish_reason and a usage chunk."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.pending = b""
        self.chunks = 0        # content pieces received
        self.tokens = None     # usage.completion_tokens
        self.finished = False  # a choice carried finish_reason
        self.done = False
        self.error = None

    def feed(self, data):
        self.pending += data
        while self.error is None and not self.done:
            end = self.pending.find(b"\n\n")
            if end < 0:
                return
            event, self.pending = self.pending[:end], self.pending[end + 2:]
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    self.on_data(line[6:])

    def on_data(self, data):
        if data == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError as e:
            self.error = f"an event is not JSON: {e}"
            return
        if "error" in chunk:
            self.error = f"error event: {chunk['error'].get('message')}"
            return
        for choice in chunk.get("choices", ()):
            text = choice["delta"].get("content") if self.endpoint == "chat" else choice.get("text")
            if text:
                self.chunks += 1
            if choice.get("finish_reason"):
                self.finished = True
        usage = chunk.get("usage")
        if usage:
            self.tokens = usage["completion_tokens"]

    def verdict(self):
        """(ok, tokens, error)"""
        if self.error:
            return False, 0, self.error
        if not self.done:
            return False, 0, "stream ended without [DONE]"
        if not self.finished or self.tokens is None:
            return False, 0, "stream without finish_reason or usage"
        if self.chunks > self.tokens:
            return False, 0, f"{self.chunks} content chunks for {self.tokens} tokens"
        return True, self.tokens, None


def request_bytes(port, endpoint, max_tokens, seed, keep_alive):
    if endpoint == "chat":
        body = {"messages": [{"role": "user", "content": f"Tell me something, number {seed}."}],
                "max_tokens": max_tokens, "stream": True, "seed": seed, "stream_options": {"include_usage": True}}
        path = "/v1/chat/completions"
    else:
        body = {"prompt": f"Once upon a time, number {seed}", "max_tokens": max_tokens, "stream": True, "seed": seed,
                "stream_options": {"include_usage": True}}
        path = "/v1/completions"
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + payload


class Connection(asyncio.Protocol):
    """One client's HTTP/1.1 connection, one request at a time, each response read as it
    arrives: the status line and headers, then the chunked transfer coding (size line, data,
    CRLF; a zero size ends it), each chunk's data fed to a StreamCheck. Callbacks rather than a
    coroutine per read: this runs once per write of the server. With keep-alive (what the
    OpenAI SDKs do) the next request goes on the same connection unless the server closed it."""

    def __init__(self):
        self.transport = None
        self.open = False
        self.result = None

    def connection_made(self, transport):
        self.transport = transport
        self.open = True

    def send(self, request, endpoint, result):
        self.check = StreamCheck(endpoint)
        self.result = result  # future: (ok, tokens, error)
        self.buffer = b""
        self.state = "head"
        self.closing = False
        self.transport.write(request)

    def data_received(self, data):
        self.buffer += data
        while self.result is not None and not self.result.done():
            if self.state == "head":
                self.buffer = self.buffer.lstrip(b"\r\n")  # the end of the last response
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buffer = self.buffer[:end + 2].lower(), self.buffer[end + 4:]
                status = int(head.split(b" ", 2)[1])
                if status != 200:
                    return self.finish((False, 0, f"HTTP status {status}"), close=True)
                if b"transfer-encoding: chunked" not in head:
                    return self.finish((False, 0, "the response is not chunked"), close=True)
                self.closing = b"connection: close" in head
                self.state = "size"
            elif self.state == "size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return
                self.need = int(self.buffer[:end].split(b";")[0], 16)
                self.buffer = self.buffer[end + 2:]
                if self.need == 0:
                    # The last chunk's CRLF (no trailers) may still be on its way.
                    return self.finish(self.check.verdict(), close=self.closing)
                self.state = "data"
            else:
                if len(self.buffer) < self.need + 2:
                    return
                self.check.feed(self.buffer[:self.need])
                self.buffer = self.buffer[self.need + 2:]
                self.state = "size"

    def connection_lost(self, exc):
        self.open = False
        if self.result is not None and not self.result.done():
            self.result.set_result((False, 0, f"connection closed before the end of the response ({exc!r})"))

    def finish(self, verdict, close):
        if not self.result.done():
            self.result.set_result(verdict)
        if close:
            self.open = False
            self.transport.close()


async def connect(port):
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, "127.0.0.1", port)
    return connection


async def one_request(port, endpoint, max_tokens, seed, connection=None):
    """One streamed request, on `connection` if it is open, else on a new one that is closed
    after it: (ok, tokens, error)."""
    keep_alive = connection is not None
    if connection is None or not connection.open:
        connection = await connect(port)
    result = asyncio.get_running_loop().create_future()
    connection.send(request_bytes(port, endpoint, max_tokens, seed, keep_alive), endpoint, result)
    verdict = await result
    if not keep_alive:
        connection.transport.close()
    return verdict, connection


async def run_clients_async(port, n_clients, seconds, max_tokens, endpoint, keep_alive):
    stop_at = time.monotonic() + seconds
    results = {"ok": 0, "failed": 0, "tokens": 0, "errors": []}

    async def client(i):
        seed = i * 100000
        connection = await connect(port) if keep_alive else None
        while time.monotonic() < stop_at:
            seed += 1
            try:
                (ok, tokens, error), used = await one_request(port, endpoint, max_tokens, seed, connection)
                if keep_alive:
                    connection = used
            except Exception as e:
                ok, tokens, error = False, 0, repr(e)
            if error:
                results["errors"].append(error)
            results["ok" if ok else "failed"] += 1
            results["tokens"] += tokens
        if connection is not None and connection.open:
            connection.transport.close()

    await asyncio.gather(*(client(i) for i in range(n_clients)))
    return results


def run_clients(server, port, n_clients, seconds, max_tokens, endpoint, keep_alive):
    server_cpu, client_cpu, started = cpu_seconds(server.pid), time.process_time(), time.monotonic()
    results = asyncio.run(run_clients_async(port, n_clients, seconds, max_tokens, endpoint, keep_alive))
    results["elapsed"] = time.monotonic() - started
    results["tps"] = results["tokens"] / results["elapsed"]
    results["server_cpu"] = cpu_seconds(server.pid) - server_cpu
    results["client_cpu"] = time.process_time() - client_cpu
    return results


def describe(label, r):
    return (f"{label}: {r['ok']} ok, {r['failed']} failed, {r['tps']:.1f} tokens/s; CPU s per s: "
            f"server {r['server_cpu'] / r['elapsed']:.2f}, client {r['client_cpu'] / r['elapsed']:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orchard", default=DEFAULT_ORCHARD)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--single-seconds", type=float, default=20, help="how long one client runs alone first")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--ctx-size", type=int, default=1024)
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--threads", type=int, help="the server's forward-pass threads (default: its own choice)")
    ap.add_argument("--new-connections", action="store_true",
                    help="a new connection per request (default: each client keeps its connection alive)")
    ap.add_argument("--tokenizer", help="override, e.g. ../shared/tokenizers/qwen3 for the bench models (no chat template)")
    args = ap.parse_args()
    endpoint = args.endpoint

    extra = ["--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size)]
    if args.tokenizer:
        extra += ["--tokenizer", args.tokenizer]
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    server, port = start_server(args.orchard, args.model, *extra)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    samples = []
    sampling = True

    def sample_rss():
        while sampling:
            samples.append(rss_mib(server.pid))
            time.sleep(1)

    try:
        keep_alive = not args.new_connections
        asyncio.run(one_request(port, endpoint, 8, 1))  # warm up
        single = run_clients(server, port, 1, min(args.seconds, args.single_seconds), args.max_tokens, endpoint,
                             keep_alive)
        print(describe("1 client ", single))
        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        many = run_clients(server, port, args.clients, args.seconds, args.max_tokens, endpoint, keep_alive)
        sampling = False
        sampler.join()
        print(describe(f"{args.clients} clients", many) + f"  ({many['tps'] / single['tps']:.2f}x one client)")
        for error in sorted(set(single["errors"] + many["errors"])):
            print(f"  failure: {error}")
        first, last = samples[: max(1, len(samples) // 4)], samples[-max(1, len(samples) // 4):]
        print(f"server RSS MiB: min {min(samples):.0f}, max {max(samples):.0f}, "
              f"first quarter mean {sum(first) / len(first):.0f}, last quarter mean {sum(last) / len(last):.0f}")
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
