#!/usr/bin/env bash
# Storage of a teacher's top-20 log-probabilities on a 151,936-token vocabulary (issue 18): collect
# 300 answers of 32 tokens from `orchard serve` on the Qwen2.5-0.5B shape (random weights: the top
# 20 ids are spread over the whole vocabulary, the costliest case for the id codes), then pack them
# at Q = 9, 10 (the default) and 12, each with the KD-loss check under the model's own logits.
#
#   bench/make_models.py --shape qwen2.5-0.5b --type q4_0 --out /tmp/models/qwen2.5-0.5b-q4_0.gguf
#   bench/distill_storage.sh [MODEL] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHARD=${ORCHARD:-build/bin/orchard}
MODEL=${1:-/tmp/models/qwen2.5-0.5b-q4_0.gguf}
WORK=${2:-/tmp/distill-storage}
mkdir -p "$WORK"
python3 -c "
import json
with open('$WORK/prompts.jsonl', 'w') as f:
    for i in range(300): f.write(json.dumps({'id': i, 'prompt': f'Once upon a time, number {i}'}) + '\n')"
"$ORCHARD" serve --model "$MODEL" --tokenizer ../shared/tokenizers/qwen3 --port 0 --parallel 16 2> "$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  PORT=$(grep -o 'http://[^ ]*:[0-9]*' "$WORK/serve.log" | head -1 | sed 's/.*://') || true
  [ -n "${PORT:-}" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { echo "orchard serve did not start" >&2; exit 1; }
rm -f "$WORK/answers.jsonl"
"$ORCHARD" distill collect --teacher "http://127.0.0.1:$PORT" --endpoint completions --prompts "$WORK/prompts.jsonl" \
  --out "$WORK/answers.jsonl" --concurrency 16 --top-logprobs 20 --max-tokens 32
kill $SERVER
echo "JSONL: $(stat -c %s "$WORK/answers.jsonl") bytes"
for q in 9 10 12; do
  echo "== Q = $q"
  "$ORCHARD" distill pack --data "$WORK/answers.jsonl" --student "$MODEL" --out "$WORK/answers-q$q.otkd" \
    --value-bits "$q" --check-logits student --check-examples 40 | grep -E "^records|^pack|^KD-loss"
done
