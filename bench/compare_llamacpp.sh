#!/usr/bin/env bash
# Side-by-side speed of orchard and llama.cpp on the same random-weight GGUF files, 2 threads.
#
#   bench/compare_llamacpp.sh [WORK_DIR]      (default WORK_DIR: ../bench-work beside the repo)
#
# 1. builds llama.cpp (build 4748) from source in WORK_DIR/llama.cpp, outside this repository:
#    from LLAMA_SRC (a checkout) when set, else by cloning LLAMA_GIT (default the GitHub repo)
#    with a sparse checkout that leaves out four large vocab files;
#    LLAMA_FLAGS picks the build: default native (uses AMX where the CPU has it);
#    LLAMA_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" gives the AVX-512 build.
# 2. makes the models with bench/make_models.py (SHAPE, TYPES; default qwen2.5-1.5b, q4_0 q4_k_m)
# 3. runs `llama-bench -p 512 -n 128 -r 3 -t 2` and `orchard bench -p 512 -n 128 -r 3 -t 2 --json`
#    on each file, one after the other (never at the same time), and prints a table.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$REPO/../bench-work}"
SHAPE="${SHAPE:-qwen2.5-1.5b}"
TYPES="${TYPES:-q4_0 q4_k_m}"
THREADS="${THREADS:-2}"
PROMPT="${PROMPT:-512}"
GEN="${GEN:-128}"
REPS="${REPS:-3}"
LLAMA_GIT="${LLAMA_GIT:-https://github.com/ggerganov/llama.cpp}"
mkdir -p "$WORK/models"

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

printf '%-28s %10s %16s %16s %16s %16s %10s\n' file MiB llama_pp llama_tg orchard_pp orchard_tg rss_MiB
for type in $TYPES; do
  model="$WORK/models/$SHAPE-$type.gguf"
  [ -f "$model" ] || python3 "$REPO/bench/make_models.py" --shape "$SHAPE" --type "$type" --out "$model"
  llama_json="$("$LLAMA/build/bin/llama-bench" -m "$model" -p "$PROMPT" -n "$GEN" -r "$REPS" -t "$THREADS" -o json)"
  orchard_json="$("$ORCHARD" bench --model "$model" -p "$PROMPT" -n "$GEN" -r "$REPS" -t "$THREADS" --json)"
  python3 - "$model" "$llama_json" "$orchard_json" <<'PY'
import json, os, sys
model, llama, orchard = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp = next(r for r in llama if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r for r in llama if r["n_gen"] > 0 and r["n_prompt"] == 0)
f = lambda m, s: f"{m:7.2f} +- {s:5.2f}"
print(f"{os.path.basename(model):28s} {os.path.getsize(model) / 2**20:10.0f} {f(pp['avg_ts'], pp['stddev_ts']):>16s} "
      f"{f(tg['avg_ts'], tg['stddev_ts']):>16s} {f(orchard['pp_tps'], orchard['pp_tps_sd']):>16s} "
      f"{f(orchard['tg_tps'], orchard['tg_tps_sd']):>16s} {orchard['peak_rss_bytes'] / 2**20:10.0f}")
PY
done
