#!/usr/bin/env bash
# Encoding throughput of the qwen3 tokenizer on one core, against transformers.js (the Hugging
# Face tokenizer implementation for JavaScript) on the same text and core.
#
#   bench/tokenizer_bench.sh [TOKENIZER_DIR] [TEXT_FILE]
#
# Defaults: ../shared/tokenizers/qwen3 and /usr/share/common-licenses/GPL-3 repeated to > 1 MB.
# The peer is installed with npm into $ORCHARD_BENCH_NODE_DIR (default: a folder under /tmp,
# outside the repository); set ORCHARD_BENCH_NO_PEER=1 to skip it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tokenizer=${1:-$repo/../shared/tokenizers/qwen3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

text=${2:-}
if [[ -z "$text" ]]; then
  text=$work/prose.txt
  while [[ ! -s "$text" || $(stat -c %s "$text") -lt 1000000 ]]; do
    cat /usr/share/common-licenses/GPL-3 >> "$text"
  done
fi

# The library, then the benchmark program linked against it.
cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$repo/build" -j2 --target orchard_tokenizer > /dev/null
# The tokenizer layer needs only these beneath it (docs/architecture.md, "Layers").
g++ -O2 -std=c++20 -I"$repo/include" "$repo/bench/tokenizer_bench.cpp" "$repo/build/liborchard_tokenizer.a" \
  "$repo/build/liborchard_formats.a" "$repo/build/liborchard_tensor.a" "$repo/build/liborchard_base.a" \
  -o "$work/tokenizer_bench"

pin=()
command -v taskset > /dev/null && pin=(taskset -c 0)
ours=$("${pin[@]}" "$work/tokenizer_bench" "$tokenizer" "$text" 5)
echo "$ours"

if [[ "${ORCHARD_BENCH_NO_PEER:-0}" == 1 ]] || ! command -v node > /dev/null; then
  exit 0
fi
node_dir=${ORCHARD_BENCH_NODE_DIR:-/tmp/orchard-tokenizer-bench-node}
if [[ ! -d "$node_dir/node_modules/@huggingface/transformers" ]]; then
  mkdir -p "$node_dir"
  # --ignore-scripts: the tokenizer needs no ONNX runtime binaries.
  (cd "$node_dir" && npm init -y > /dev/null && npm install --ignore-scripts @huggingface/transformers > /dev/null)
fi
cp "$repo/bench/tokenizer_bench_peer.mjs" "$node_dir/"
peer=$("${pin[@]}" node "$node_dir/tokenizer_bench_peer.mjs" "$tokenizer" "$text")
echo "$peer"
awk -v a="$ours" -v b="$peer" 'BEGIN {
  n = split(a, x, " "); m = split(b, y, " ");
  printf "ratio (orchard / transformers.js): %.1fx\n", x[n-1] / y[m-1] }'
