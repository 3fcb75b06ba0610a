#!/usr/bin/env python3
"""Load test for `orchard serve`: one client alone, then N concurrent clients, each sending
streamed chat requests back to back for a fixed time. Reports failed requests, aggregate
generated tokens/s (and the ratio to one client), and the server's resident memory over time.

    bench/load_test.py --orchard build/bin/orchard --model ../shared/models/tiny-chat/tiny-qwen2-chat-q8_0.gguf \
        --clients 16 --seconds 60

Standard library only.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

from orchard_server import start_server


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one_request(port, max_tokens, seed, endpoint):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    if endpoint == "chat":
        body = {"messages": [{"role": "user", "content": f"Tell me something, number {seed}."}],
                "max_tokens": max_tokens, "stream": True, "seed": seed, "stream_options": {"include_usage": True}}
        path = "/v1/chat/completions"
    else:
        body = {"prompt": f"Once upon a time, number {seed}", "max_tokens": max_tokens, "stream": True, "seed": seed,
                "stream_options": {"include_usage": True}}
        path = "/v1/completions"
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        resp.read()
        return False, 0
    tokens, done = 0, False
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    conn.close()
    return done, tokens


def run_clients(port, n_clients, seconds, max_tokens, endpoint):
    stop_at = time.time() + seconds
    results = {"ok": 0, "failed": 0, "tokens": 0, "errors": []}
    lock = threading.Lock()

    def client(i):
        seed = i * 100000
        while time.time() < stop_at:
            seed += 1
            try:
                ok, tokens = one_request(port, max_tokens, seed, endpoint)
                error = None if ok else "stream ended without [DONE] or non-200 status"
            except Exception as e:
                ok, tokens, error = False, 0, repr(e)
            if error:
                with lock:
                    results["errors"].append(error)
            with lock:
                results["ok" if ok else "failed"] += 1
                results["tokens"] += tokens

    started = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results["elapsed"] = time.time() - started
    results["tps"] = results["tokens"] / results["elapsed"]
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orchard", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--ctx-size", type=int, default=1024)
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--tokenizer", help="override, e.g. ../shared/tokenizers/qwen3 for the bench models (no chat template)")
    args = ap.parse_args()

    extra = ["--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size)]
    if args.tokenizer:
        extra += ["--tokenizer", args.tokenizer]
    server, port = start_server(args.orchard, args.model, *extra)

    samples = []
    sampling = True

    def sample_rss():
        while sampling:
            samples.append(rss_mib(server.pid))
            time.sleep(1)

    try:
        one_request(port, 8, 1, args.endpoint)  # warm up
        single = run_clients(port, 1, min(args.seconds, 20), args.max_tokens, args.endpoint)
        print(f"1 client : {single['ok']} ok, {single['failed']} failed, {single['tps']:.1f} tokens/s")
        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        many = run_clients(port, args.clients, args.seconds, args.max_tokens, args.endpoint)
        sampling = False
        sampler.join()
        print(f"{args.clients} clients: {many['ok']} ok, {many['failed']} failed, {many['tps']:.1f} tokens/s "
              f"({many['tps'] / single['tps']:.2f}x one client)")
        for error in sorted(set(single["errors"] + many["errors"])):
            print(f"  failure: {error}")
        first, last = samples[: max(1, len(samples) // 4)], samples[-max(1, len(samples) // 4):]
        print(f"server RSS MiB: min {min(samples):.0f}, max {max(samples):.0f}, "
              f"first quarter mean {sum(first) / len(first):.0f}, last quarter mean {sum(last) / len(last):.0f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
