#!/usr/bin/env python3
"""Collection speed (issue 18): `orchard distill collect` with top-20 log-probabilities against
`orchard serve`, side by side with bench/load_test.py's clients (streamed, no log-probabilities) at
the same concurrency and answer length, on one server, in interleaved rounds; prints the median
tokens/s of each and their ratio (the target: collect >= 80% of the load test).

    bench/distill_collect_speed.py --model /tmp/models/qwen2.5-0.5b-q4_0.gguf \
        --tokenizer ../shared/tokenizers/qwen3 --clients 16 --max-tokens 32 --rounds 3

Both send /v1/completions with "Once upon a time, number N" prompts at temperature 1 (the
server's default); with random weights every answer runs to --max-tokens, so both generate the
same lengths. Collect's rate is its completion tokens over its wall time, start-up and the final
fsync included. Standard library only.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from load_test import DEFAULT_ORCHARD, run_clients
from orchard_server import start_server


def collect_round(orchard, port, clients, max_tokens, prompts, top_logprobs, workdir, index):
    prompts_path = os.path.join(workdir, f"prompts-{index}.jsonl")
    out_path = os.path.join(workdir, f"out-{index}.jsonl")
    with open(prompts_path, "w") as f:
        for i in range(prompts):
            f.write(json.dumps({"id": i, "prompt": f"Once upon a time, number {index * 1000000 + i}"}) + "\n")
    started = time.monotonic()
    done = subprocess.run([orchard, "distill", "collect", "--teacher", f"http://127.0.0.1:{port}", "--endpoint",
                           "completions", "--prompts", prompts_path, "--out", out_path, "--concurrency", str(clients),
                           "--top-logprobs", str(top_logprobs), "--max-tokens", str(max_tokens)],
                          capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"collect failed: {done.stderr[-2000:]}")
    tokens = 0
    with open(out_path) as f:
        for line in f:
            record = json.loads(line)
            tokens += len(record["teacher_tokens"])
            assert all(len(row) == top_logprobs for row in record["teacher_top"]), "a row without its top k"
    return tokens / elapsed, tokens, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orchard", default=DEFAULT_ORCHARD)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30, help="the load test's time per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top-logprobs", type=int, default=20)
    args = ap.parse_args()
    server_args = ["--parallel", str(args.clients)]
    if args.tokenizer:
        server_args += ["--tokenizer", args.tokenizer]
    server, port = start_server(args.orchard, args.model, *server_args)
    load, collect = [], []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            run_clients(server, port, args.clients, 5, args.max_tokens, "completions", True)  # warm up
            for r in range(args.rounds):
                result = run_clients(server, port, args.clients, args.seconds, args.max_tokens, "completions", True)
                if result["failed"]:
                    raise SystemExit(f"load test: {result['failed']} requests failed: {result['errors'][:3]}")
                load.append(result["tps"])
                # As many prompts as the load test answered in the same time, rounded up to a full wave.
                prompts = max(args.clients, -(-int(result["tps"] * args.seconds / args.max_tokens) // args.clients)
                              * args.clients)
                tps, tokens, elapsed = collect_round(args.orchard, port, args.clients, args.max_tokens, prompts,
                                                     args.top_logprobs, workdir, r)
                collect.append(tps)
                print(f"round {r + 1}: load test {result['tps']:.1f} tokens/s; collect {tps:.1f} tokens/s "
                      f"({tokens} tokens in {elapsed:.1f} s, top-{args.top_logprobs})", flush=True)
    finally:
        server.terminate()
        server.wait()
    a, b = statistics.median(load), statistics.median(collect)
    print(f"median: load test {a:.1f} tokens/s, collect {b:.1f} tokens/s: collect/load = {b / a:.2f} "
          f"(target >= 0.80) at {args.clients} concurrent, {args.max_tokens} tokens per answer")


if __name__ == "__main__":
    main()
