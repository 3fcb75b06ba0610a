#!/usr/bin/env bash
# Orchard against llama.cpp and against this machine's own limits, in one run (issue 22).
#
#   bench/limits_report.sh [WORK_DIR]      (default WORK_DIR: ../bench-work beside the repo)
#
# 1. builds ../shared/tools/limits.c and measures the read bandwidth of 2 threads and the int8
#    `vpdpbusd` peak (the figures every bound below divides by);
# 2. builds llama.cpp (build 4748) in WORK_DIR/llama.cpp, outside this repository: from LLAMA_SRC
#    (a checkout) when set, else by cloning LLAMA_GIT with a sparse checkout that leaves out four
#    large vocab files; LLAMA_FLAGS adds compiler flags;
# 3. makes the models with bench/make_models.py (SHAPE, TYPES; default qwen2.5-1.5b and
#    q4_0 q4_k_m q4_os q8_0; q4_os is `orchard quantize` of the f16 file);
# 4. runs `llama-bench -p P -n N -r 1 -t 2` and `orchard bench -p P -n N -r 1 -t 2 --json` on each
#    file, REPS times interleaved (never at the same time), and prints medians:
#    - prefill: t/s, the ratio to llama.cpp, and the fraction of the int8 bound (the peak over
#      the int8 operations of a prompt token at the activation levels orchard chose: 2 per
#      multiply-add, twice over on two levels; the output matrix counted for the last token only);
#    - decode: t/s, the ratio to llama.cpp, the bytes read per token (every matrix, and the
#      KV cache at the mean position of the run), and the fraction of the bandwidth bound, for
#      the median run and for the best ("best"). limits.c also runs before and after every
#      orchard run, and the bounds use the best of all its runs;
#    - decode against the memory of the moment ("paired"): a further `orchard bench -p 0 -n N
#      --plain-read` reads a buffer of the weights' size after each decoded token with the same
#      threads (64-byte loads, as limits.c) and gives, as a median over the tokens, the read's
#      time over the token's: the fraction of the memory's rate the decode reached while the
#      neighbours' load was what it was then ("read GB/s": that read's median rate).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$REPO/../bench-work}"
SHAPE="${SHAPE:-qwen2.5-1.5b}"
TYPES="${TYPES:-q4_0 q4_k_m q4_os q8_0}"
THREADS="${THREADS:-2}"
PROMPT="${PROMPT:-512}"
GEN="${GEN:-128}"
REPS="${REPS:-3}"
LLAMA_GIT="${LLAMA_GIT:-https://github.com/ggerganov/llama.cpp}"
mkdir -p "$WORK/models" "$WORK/runs"

# ---- the machine's limits ----
gcc -O2 -march=native -fopenmp "$REPO/../shared/tools/limits.c" -o "$WORK/limits"

# ---- llama.cpp, built beside the project ----
LLAMA="$WORK/llama.cpp"
if [ ! -x "$LLAMA/build/bin/llama-bench" ]; then
  if [ ! -d "$LLAMA" ]; then
    if [ -n "${LLAMA_SRC:-}" ]; then
      git clone -q --no-checkout "$LLAMA_SRC" "$LLAMA"
    else
      git clone -q --no-checkout --filter=blob:none "$LLAMA_GIT" "$LLAMA"
    fi
    git -C "$LLAMA" sparse-checkout init --no-cone
    printf '/*\n!/models/ggml-vocab-aquila.gguf\n!/models/ggml-vocab-command-r.gguf\n!/models/ggml-vocab-llama-bpe.gguf\n!/models/ggml-vocab-qwen2.gguf\n' \
      > "$LLAMA/.git/info/sparse-checkout"
    git -C "$LLAMA" checkout -q "${LLAMA_REF:-HEAD}" || true
  fi
  cmake -S "$LLAMA" -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="${LLAMA_FLAGS:-}" -DCMAKE_CXX_FLAGS="${LLAMA_FLAGS:-}" > "$WORK/llama-cmake.log"
  cmake --build "$LLAMA/build" -j2 --target llama-bench > "$WORK/llama-build.log"
fi

# ---- orchard ----
cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$REPO/build" -j2 --target orchard_cli > /dev/null
ORCHARD="$REPO/build/bin/orchard"

# ---- the models ----
for type in $TYPES; do
  model="$WORK/models/$SHAPE-$type.gguf"
  [ -f "$model" ] && continue
  if [ "$type" = q4_os ]; then
    f16="$WORK/models/$SHAPE-f16.gguf"
    [ -f "$f16" ] || python3 "$REPO/bench/make_models.py" --shape "$SHAPE" --type f16 --out "$f16"
    "$ORCHARD" quantize --model "$f16" --out "$model" --type q4_os > /dev/null
  else
    python3 "$REPO/bench/make_models.py" --shape "$SHAPE" --type "$type" --out "$model"
  fi
done

# ---- the runs: limits first and last, each file's peers interleaved ----
rm -f "$WORK"/runs/*
"$WORK/limits" > "$WORK/runs/limits.0"
for rep in $(seq 1 "$REPS"); do
  for type in $TYPES; do
    model="$WORK/models/$SHAPE-$type.gguf"
    "$LLAMA/build/bin/llama-bench" -m "$model" -p "$PROMPT" -n "$GEN" -r 1 -t "$THREADS" -o json \
      > "$WORK/runs/llama.$type.$rep"
    "$WORK/limits" > "$WORK/runs/limits.$type.$rep.before"
    "$ORCHARD" bench --model "$model" -p "$PROMPT" -n "$GEN" -r 1 -t "$THREADS" --json \
      > "$WORK/runs/orchard.$type.$rep"
    "$WORK/limits" > "$WORK/runs/limits.$type.$rep.after"
    "$ORCHARD" bench --model "$model" -p 0 -n "$GEN" -r 1 -t "$THREADS" --plain-read --json \
      > "$WORK/runs/paired.$type.$rep"
  done
done
"$WORK/limits" > "$WORK/runs/limits.1"

python3 - "$WORK/runs" "$SHAPE" "$TYPES" "$REPS" "$PROMPT" "$GEN" <<'PY'
import json, os, re, statistics, sys
runs, shape, types, reps, prompt, gen = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
med = statistics.median
def limits(name):  # (read bandwidth B/s, int8 peak ops/s) of one limits.c run
    text = open(os.path.join(runs, name)).read()
    return (float(re.search(r"read bandwidth.*?: ([0-9.]+) GB/s", text).group(1)) * 1e9,
            float(re.search(r"peak.*?: ([0-9.]+) TOPS", text).group(1)) * 1e12)
# Every limits.c run of the script: first, last, and around each orchard run. The neighbours' load
# takes this machine's bandwidth from about 80 GB/s to 45 and back within seconds, so the best of
# many short runs is what the machine can do; the range shows how much it moved.
bw, peak = zip(*(limits(name) for name in sorted(os.listdir(runs)) if name.startswith("limits.")))
bandwidth, int8_peak = max(bw), max(peak)
print(f"machine: read bandwidth {bandwidth / 1e9:.1f} GB/s (best of {len(bw)} runs, lowest {min(bw) / 1e9:.1f}), "
      f"int8 vpdpbusd peak {int8_peak / 1e12:.2f} T ops/s (lowest {min(peak) / 1e12:.2f}); "
      f"medians of {reps} interleaved runs, pp{prompt} and tg{gen}, 2 threads")
print(f"{'file':22s} {'MiB':>6s} | {'llama pp':>9s} {'orchard pp':>10s} {'ratio':>6s} {'1-level':>7s} {'Gops/tok':>8s} {'bound':>6s} {'of bound':>8s} | "
      f"{'llama tg':>8s} {'orchard tg':>10s} {'ratio':>6s} {'MB/tok':>7s} {'bound':>6s} {'of bound':>8s} {'best':>6s} {'read GB/s':>9s} {'paired':>6s} | {'RSS MiB':>7s}")
for t in types:
    ll = [json.load(open(os.path.join(runs, f"llama.{t}.{r}"))) for r in range(1, reps + 1)]
    oo = [json.load(open(os.path.join(runs, f"orchard.{t}.{r}"))) for r in range(1, reps + 1)]
    pr = [json.load(open(os.path.join(runs, f"paired.{t}.{r}"))) for r in range(1, reps + 1)]
    l_pp = med(next(x for x in l if x["n_prompt"] > 0 and x["n_gen"] == 0)["avg_ts"] for l in ll)
    l_tg = med(next(x for x in l if x["n_gen"] > 0 and x["n_prompt"] == 0)["avg_ts"] for l in ll)
    o_pp, o_tg = med(o["pp_tps"] for o in oo), med(o["tg_tps"] for o in oo)
    o = oo[0]
    # int8 operations of one prompt token: the layers' matrices, and the output matrix for the last token.
    levels = lambda macs, single: 2 * (2 * macs - single)
    ops = levels(o["layer_macs"], o["layer_single_level_macs"]) + levels(o["output_macs"], o["output_single_level_macs"]) / prompt
    single_share = o["layer_single_level_macs"] / o["layer_macs"]
    pp_bound = int8_peak / ops
    # Bytes of one decoded token: every matrix, and the KV cache up to the mean position of tg.
    kv_per_position = o["kv_cache_bytes"] / (prompt + gen)
    bytes_per_token = o["layer_bytes"] + o["output_bytes"] + kv_per_position * gen / 2
    tg_bound = bandwidth / bytes_per_token
    # The best run against the same bound: the machine's quiet moments, when the neighbours leave
    # it its full bandwidth, are seconds long, and one run may fall in one while another does not.
    best = max(o["tg_tps"] for o in oo) / tg_bound
    print(f"{shape + '-' + t:22s} {o['file_bytes'] / 2**20:6.0f} | {l_pp:9.1f} {o_pp:10.1f} {o_pp / l_pp:5.2f}x {100 * single_share:6.0f}% "
          f"{ops / 1e9:8.2f} {pp_bound:6.0f} {100 * o_pp / pp_bound:7.0f}% | {l_tg:8.1f} {o_tg:10.1f} {o_tg / l_tg:5.2f}x "
          f"{bytes_per_token / 1e6:7.0f} {tg_bound:6.1f} {100 * o_tg / tg_bound:7.0f}% {100 * best:5.0f}% "
          f"{med(x['plain_read_gbs'] for x in pr):9.1f} {100 * med(x['tg_of_plain_read'] for x in pr):5.0f}% | "
          f"{med(x['peak_rss_bytes'] for x in oo) / 2**20:7.0f}")
PY
