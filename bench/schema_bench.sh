#!/usr/bin/env bash
# Per-token cost of JSON Schema constrained decoding with the qwen3 (Qwen2.5) vocabulary on one
# core, and the one-time costs (vocabulary trie, compile, masks at first use).
#
#   bench/schema_bench.sh [TOKENIZER_DIR] [RUNS] [MAX_TOKENS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tokenizer=${1:-$repo/../shared/tokenizers/qwen3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$repo/build" -j2 --target orchard_runtime > /dev/null
# The runtime layer's library and the layers beneath it, in link order (docs/architecture.md, "Layers").
libs=()
for layer in runtime flash model template tokenizer formats kernels tensor base; do
  libs+=("$repo/build/liborchard_$layer.a")
done
g++ -O2 -std=c++20 -I"$repo/include" -I"$repo/src" "$repo/bench/schema_bench.cpp" "${libs[@]}" \
  -lpthread -o "$work/schema_bench"

pin=()
command -v taskset > /dev/null && pin=(taskset -c 0)
"${pin[@]}" "$work/schema_bench" "$tokenizer" "${2:-40}" "${3:-200}"
