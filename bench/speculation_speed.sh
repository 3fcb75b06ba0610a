#!/usr/bin/env bash
# Speculative decoding's speed (issue 20), by hand on a quiet machine, on the Qwen2.5-1.5B shape
# with random Q4_0 weights (bench/make_models.py):
#   1. prompt lookup (--spec ngram) on an input-grounded task: summarize and quote a given text
#      (bench/data/grounded_prompt.txt). Random weights do not summarize: their greedy output
#      soon repeats itself, and the lookup drafts that repetition; the acceptance rate printed is
#      what the figure rests on, not a property of real summaries;
#   2. a draft model: the target's own first 4 of 28 layers (bench/truncate_gguf.py), until the
#      trainer distills a draft;
#   3. limited-memory mode at a budget of half the file, prompt lookup: the streamed weights are
#      read once per pass, so the tokens per pass are the tokens per read of the weights.
# Each line of `orchard bench --spec/--draft-model` alternates runs without and with speculation
# (medians of -r runs) and prints both, their ratio and the acceptance rate (--draft-max 4).
#   bash bench/speculation_speed.sh [MODEL_DIR]   (default /tmp/models)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/models}
mkdir -p "$dir"
model=$dir/qwen2.5-1.5b-q4_0.gguf
draft=$dir/qwen2.5-1.5b-q4_0-first4.gguf
[ -f "$model" ] || python3 bench/make_models.py --shape qwen2.5-1.5b --type q4_0 --out "$model"
[ -f "$draft" ] || python3 bench/truncate_gguf.py --in "$model" --layers 4 --out "$draft"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target orchard_cli >/dev/null
orchard=build/bin/orchard
prompt=bench/data/grounded_prompt.txt
common=(--model "$model" --prompt-file "$prompt" -n 128 -r 3 -t 2 --draft-max 4)
echo "== prompt lookup, input-grounded task"
$orchard bench "${common[@]}" --spec ngram
echo "== draft model: the target's first 4 layers"
$orchard bench "${common[@]}" --draft-model "$draft"
budget=$(( $(stat -c %s "$model") / 2 ))
echo "== limited-memory mode, budget $budget bytes (half the file), prompt lookup"
$orchard bench "${common[@]}" --spec ngram --memory-budget "$budget"
