#!/usr/bin/env python3
"""The hybrid router's `pre` mode overhead (issue 19's acceptance): the decision's own work beyond
the prefill the local model does anyway, as a fraction of the local time to first token.

    bench/router_overhead.py [--model /tmp/models/qwen2.5-0.5b-q4_0.gguf] [--lengths 128,512]
                             [--runs 3] [--repeat 5] [--threads 0] [--limit 0.05]
                             [--build-dir build]

For each prompt length, from an empty cache each time:
  plain: time to the first token of a generating job alone;
  pre:   router::compute_pre_signals (the scoring job: top-5 logprobs of the last 64 prompt
         tokens and one greedy step) and router::decide (the PII scan of the prompt's text), as
         the device endpoint runs them, then the same generating job, which reuses the scoring
         job's cache and last logits (it prefills nothing); time to its first token.
overhead = (pre - plain) / plain per run, each run's pre and plain the medians of --repeat
interleaved pairs (their order alternating, so that a drift in the machine's speed falls on both);
the median over the runs is checked against --limit. Exit 0 when every length passes, 1 otherwise.

Builds bench/router_overhead.cpp against the build directory's layer libraries (as
bench/schema_bench.sh does) and makes the random-weight model with bench/make_models.py when it
is missing. Run it on a quiet machine: timings taken while other builds run are not valid.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The runtime layer and the layers beneath it, in link order (docs/architecture.md, "Layers").
WINDOW = 8  # router::kPreWindow
LAYERS = ["runtime", "tokenizer", "template", "flash", "model", "kernels", "formats", "tensor", "base"]


def build_tool(build_dir, out):
    subprocess.run(["cmake", "-S", REPO, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "orchard_runtime"], check=True,
                   stdout=subprocess.DEVNULL)
    libs = [os.path.join(build_dir, f"liborchard_{layer}.a") for layer in LAYERS]
    # The router's decision without its endpoint (which needs the server and cloud layers).
    router = [os.path.join(REPO, "src", "router", f + ".cpp") for f in ("signals", "decision", "config", "pii")]
    subprocess.run(["g++", "-O2", "-std=c++20", "-I" + os.path.join(REPO, "include"), "-I" + os.path.join(REPO, "src"),
                    os.path.join(REPO, "bench", "router_overhead.cpp"), *router, *libs, "-lpthread", "-o", out],
                   check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/models/qwen2.5-0.5b-q4_0.gguf")
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved pairs per run")
    ap.add_argument("--threads", type=int, default=0, help="forward-pass threads (0: every CPU)")
    ap.add_argument("--limit", type=float, default=0.05)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    args = ap.parse_args()
    if args.runs < 1 or args.repeat < 1:
        sys.exit("--runs and --repeat must be at least 1")

    if not os.path.exists(args.model):
        os.makedirs(os.path.dirname(args.model) or ".", exist_ok=True)
        subprocess.run([sys.executable, os.path.join(REPO, "bench", "make_models.py"), "--shape", "qwen2.5-0.5b",
                        "--type", "q4_0", "--out", args.model], check=True)

    with tempfile.TemporaryDirectory() as work:
        tool = os.path.join(work, "router_overhead")
        build_tool(os.path.abspath(args.build_dir), tool)
        proc = subprocess.run([tool, args.model, args.lengths, str(args.runs * args.repeat), str(args.threads)],
                              check=True, stdout=subprocess.PIPE, text=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    print(f"model {args.model}, window {WINDOW}, {args.runs} runs of {args.repeat} pairs, "
          f"threads {args.threads or 'all'}")
    print(f"{'prompt':>7} {'plain ttft s':>13} {'pre ttft s':>11} {'scoring s':>10} {'overhead':>9}  verdict")
    ok = True
    for n in sorted({r["prompt_tokens"] for r in rows}):
        mine = [r for r in rows if r["prompt_tokens"] == n]
        for r in mine:  # the generating job must have reused the scoring job's cache
            if r["generation_cached_tokens"] != n or r["scored_tokens"] != min(WINDOW, n - 1):
                sys.exit(f"prompt of {n} tokens: the generating job reused {r['generation_cached_tokens']} tokens "
                         f"(expected {n}) and {r['scored_tokens']} were scored")
        per_run, plains, pres, scorings = [], [], [], []
        for run in range(args.runs):
            group = [r for r in mine if r["run"] // args.repeat == run]
            plains.append(statistics.median(r["plain_ttft_s"] for r in group))
            pres.append(statistics.median(r["pre_ttft_s"] for r in group))
            scorings.append(statistics.median(r["scoring_s"] for r in group))
            per_run.append((pres[-1] - plains[-1]) / plains[-1])
        overhead = statistics.median(per_run)
        passed = overhead <= args.limit
        ok = ok and passed
        print(f"{n:>7} {statistics.median(plains):>13.4f} {statistics.median(pres):>11.4f} "
              f"{statistics.median(scorings):>10.4f} {overhead:>8.1%}  "
              f"{'PASS' if passed else 'FAIL'} (limit {args.limit:.0%}; runs "
              f"{', '.join(f'{x:.1%}' for x in per_run)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
