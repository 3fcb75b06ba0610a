#!/usr/bin/env python3
"""Serving LoRA adapters per request (issue 20's acceptance): the aggregate decode throughput of
16 concurrent streams spread over 4 adapters against 16 streams on the base alone, one server.

    bench/adapter_throughput.py [--model /tmp/models/qwen2.5-0.5b-q4_0.gguf] [--rank 16]
                                [--streams 16] [--tokens 96] [--runs 3] [--threads 0]
                                [--orchard build/bin/orchard] [--target 0.80]

The base is the random-weight qwen2.5-0.5b in q4_0 (made with bench/make_models.py when missing);
the 4 adapters are random PEFT folders of rank --rank on all 7 projections of every layer
(q, k, v, o, gate, up, down; float32), written here. One `orchard serve --parallel STREAMS
--allow-adapter-updates` holds them all, loaded through POST /v1/adapters. A run sends STREAMS greedy completions at once (distinct prompts, --tokens each) and
takes tokens/s = the completion tokens of all of them / the wall time from the first request to
the last answer. Runs alternate between the base (no "model") and the adapters (stream i asks for
adapter i % 4), after one warm-up of each; the medians of --runs of each give

    ratio = adapters tokens/s / base tokens/s

which issue 20 wants >= 0.80. Exit 0 when the ratio reaches --target, 1 otherwise. Random weights
make random text, which may end early at an end-of-sequence token: the tokens counted are those
the server reports in each answer's usage, so an early end costs no accuracy. Run it on a quiet
machine: timings taken while other builds run are not valid.
"""
import argparse
import array
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orchard_server import start_server  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# qwen2.5-0.5b (bench/make_models.py): width 896, 24 layers, 14 heads and 2 KV heads of 64, ffn 4864.
DIM, FFN, KV_DIM, LAYERS = 896, 4864, 128, 24
TARGETS = [("self_attn", "q_proj", DIM, DIM), ("self_attn", "k_proj", DIM, KV_DIM), ("self_attn", "v_proj", DIM, KV_DIM),
           ("self_attn", "o_proj", DIM, DIM), ("mlp", "gate_proj", DIM, FFN), ("mlp", "up_proj", DIM, FFN),
           ("mlp", "down_proj", FFN, DIM)]
WORDS = ("the river carried old letters past the mill where a clock kept time for nobody and the baker "
         "counted loaves while rain wrote notes on every window of the quiet town").split()


def write_adapter(folder, rank, seed):
    """A PEFT folder: A ~ U(-1, 1) / sqrt(in), B ~ N(0, 0.02), float32. The values are drawn once into
    a pool and each tensor takes a slice at a random place: speed does not depend on them."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    pool_a = array.array("f", (rng.uniform(-1, 1) for _ in range(1 << 18)))
    pool_b = array.array("f", (rng.gauss(0, 0.02) for _ in range(1 << 18)))

    def tensor(pool, n, scale):
        start = rng.randrange(len(pool))
        out = array.array("f")
        while len(out) < n:
            out.extend(pool[start:start + n - len(out)])
            start = 0
        if scale != 1:
            out = array.array("f", (x * scale for x in out))
        return out.tobytes()

    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for layer in range(LAYERS):
        for part, module, n_in, n_out in TARGETS:
            prefix = f"base_model.model.model.layers.{layer}.{part}.{module}"
            for suffix, shape, data in (("lora_A", [rank, n_in], tensor(pool_a, rank * n_in, n_in ** -0.5)),
                                        ("lora_B", [n_out, rank], tensor(pool_b, n_out * rank, 1))):
                header[f"{prefix}.{suffix}.weight"] = {"dtype": "F32", "shape": shape,
                                                       "data_offsets": [offset, offset + len(data)]}
                blobs.append(data)
                offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": [t[1] for t in TARGETS],
              "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
              "task_type": "CAUSAL_LM"}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(config, f)


def prompt(i):
    rng = random.Random(1000 + i)
    return " ".join(rng.choice(WORDS) for _ in range(24))


def one_run(port, streams, tokens, models):
    """Tokens/s of `streams` greedy completions sent at once."""
    counts, errors = [0] * streams, []
    barrier = threading.Barrier(streams + 1)

    def stream(i):
        body = {"prompt": prompt(i), "max_tokens": tokens, "temperature": 0}
        if models[i] is not None:
            body["model"] = models[i]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                counts[i] = json.load(response)["usage"]["completion_tokens"]
        except Exception as e:  # noqa: BLE001 - a failed stream fails the run below
            errors.append(f"stream {i}: {e}")

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    if errors:
        sys.exit("; ".join(errors))
    return sum(counts) / seconds, sum(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/models/qwen2.5-0.5b-q4_0.gguf")
    ap.add_argument("--orchard", default=os.path.join(REPO, "build", "bin", "orchard"))
    ap.add_argument("--adapters-dir", default="/tmp/models/qwen2.5-0.5b-adapters")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.80)
    args = ap.parse_args()

    if not os.path.exists(args.model):
        os.makedirs(os.path.dirname(args.model) or ".", exist_ok=True)
        subprocess.run([sys.executable, os.path.join(REPO, "bench", "make_models.py"), "--shape", "qwen2.5-0.5b",
                        "--type", "q4_0", "--out", args.model], check=True)
    names = [f"a{i}" for i in range(4)]
    folders = []
    for i, name in enumerate(names):
        folders.append(os.path.join(args.adapters_dir, f"rank{args.rank}-{name}"))
        if not os.path.exists(os.path.join(folders[-1], "adapter_config.json")):
            print(f"writing {folders[-1]}", file=sys.stderr)
            write_adapter(folders[-1], args.rank, seed=i)

    server, port = start_server(args.orchard, args.model, "--parallel", str(args.streams), "--threads",
                                str(args.threads), "--allow-adapter-updates")
    try:
        for name, folder in zip(names, folders):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/adapters",
                                             data=json.dumps({"name": name, "path": folder}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                assert json.load(response)["id"] == name
        base_models = [None] * args.streams
        adapter_models = [names[i % len(names)] for i in range(args.streams)]
        one_run(port, args.streams, args.tokens, base_models)  # warm-up: pages, packing, the pool's threads
        one_run(port, args.streams, args.tokens, adapter_models)
        base, adapters = [], []
        for run in range(args.runs):
            # Alternating which goes first, so that a drift in the machine's speed falls on both.
            order = [("base", base_models, base), ("adapters", adapter_models, adapters)]
            for label, models, out in (order if run % 2 == 0 else order[::-1]):
                rate, count = one_run(port, args.streams, args.tokens, models)
                out.append(rate)
                print(f"run {run + 1} {label:8s}: {rate:8.1f} tokens/s ({count} tokens)", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    b, a = statistics.median(base), statistics.median(adapters)
    ratio = a / b
    print(f"model {os.path.basename(args.model)}, {args.streams} streams x {args.tokens} tokens, "
          f"4 adapters of rank {args.rank} on q,k,v,o,gate,up,down")
    print(f"base alone:          {b:8.1f} tokens/s (median of {args.runs}: {', '.join(f'{x:.1f}' for x in base)})")
    print(f"across 4 adapters:   {a:8.1f} tokens/s (median of {args.runs}: {', '.join(f'{x:.1f}' for x in adapters)})")
    print(f"ratio {ratio:.3f} (target >= {args.target:.2f}): {'PASS' if ratio >= args.target else 'FAIL'}")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
