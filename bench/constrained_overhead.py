#!/usr/bin/env python3
"""Cost of JSON-schema constrained decoding in the server: per-token decode time of streamed
chat requests with a nested json_schema response_format against the same requests without one
(one request at a time, same model, same prompt).

    python3 bench/make_models.py --shape qwen2.5-1.5b --type q4_0 --out /tmp/models/qwen2.5-1.5b-q4_0.gguf
    bench/constrained_overhead.py --orchard build/bin/orchard --model /tmp/models/qwen2.5-1.5b-q4_0.gguf \
        --tokenizer ../shared/tokenizers/qwen3

Per-token time is measured between the first and the last streamed token, so prefill is not in it.
Standard library only.
"""
import argparse
import http.client
import json
import statistics
import sys
import time

from orchard_server import start_server

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "maxLength": 32},
                "city": {"type": "string", "maxLength": 24},
                "zip": {"type": "string", "maxLength": 10},
            },
            "required": ["street", "city", "zip"],
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
        "scores": {"type": "array", "items": {"type": "number"}, "maxItems": 4},
        "active": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "address", "tags", "scores", "active", "role"],
    "additionalProperties": False,
}


def stream(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"HTTP {resp.status}: {resp.read()[:300]}")
    times, text = [], ""
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for c in chunk.get("choices", []):
            piece = (c.get("delta") or {}).get("content")
            if piece:
                times.append(time.perf_counter())
                text += piece
    return times, text


def per_token_ms(times):
    return (times[-1] - times[0]) / (len(times) - 1) * 1000 if len(times) > 2 else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orchard", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--tokenizer", default="../shared/tokenizers/qwen3",
                    help="a tokenizer with a chat template (the random-weight bench models have none)")
    args = ap.parse_args()
    server, port = start_server(args.orchard, args.model, "--parallel", "1", "--ctx-size", "512",
                                "--tokenizer", args.tokenizer)
    try:
        base = {"messages": [{"role": "user", "content": "Describe a person."}], "max_tokens": args.max_tokens,
                "stream": True, "temperature": 1.0}
        stream(port, dict(base, seed=0))  # warm up
        plain, constrained = [], []
        for i in range(args.requests):
            times, _ = stream(port, dict(base, seed=i))
            plain.append(per_token_ms(times))
            fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
            times, text = stream(port, dict(base, seed=i, response_format=fmt))
            json.loads(text)  # must parse
            constrained.append(per_token_ms(times))
        p, c = statistics.median(plain), statistics.median(constrained)
        print(f"plain       : {p:.2f} ms/token (median of {args.requests})")
        print(f"json_schema : {c:.2f} ms/token (median of {args.requests})")
        print(f"overhead    : {c - p:+.2f} ms/token = {100 * (c - p) / p:+.1f}% of decode time")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
