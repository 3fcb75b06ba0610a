#!/usr/bin/env bash
# Size and KL (against the f32 model) of Orchard's quantization types and llama.cpp's files of
# the same weights, for the table in docs/quantization.md.
#   bash bench/quant_table.sh [build/bin/orchard] [out-folder]
# Golden models: random weights, so KL is measured on 20 random sequences of 64 tokens (seed 1)
# and calibration uses random ids of another seed (--calibration-tokens-file). stories260K (a
# trained model): KL over its own greedy generations (shared expected_generation.json), both
# without calibration and calibrated on the same text. KL runs on the reference kernels (exact
# float32), so the figures do not include the fast kernels' activation rounding.
set -euo pipefail
cd "$(dirname "$0")/.."
orchard=${1:-build/bin/orchard}
out=${2:-/tmp/orchard-quant-table}
shared=${ORCHARD_SHARED:-../shared}
mkdir -p "$out"
python3 -c "
import random
r = random.Random(12345)
print(' '.join(str(r.randrange(1024)) for _ in range(4096)))" > "$out/calibration-ids.txt"

row() {  # file base kld-args...
  local file=$1 base=$2; shift 2
  local kl
  kl=$("$orchard" kld --kernels reference --base "$base" --model "$file" "$@" | awk '/mean KL/ {print $3, $4, $5}')
  printf "| %s | %d | %s |\n" "$(basename "$file")" "$(stat -c %s "$file")" "$kl"
}

for arch in llama qwen2; do
  base=$shared/golden/$arch-f32.gguf
  echo "### $arch (f32: $(stat -c %s "$base") bytes)"
  echo "| file | bytes | mean KL |"
  echo "|---|---|---|"
  for t in q4_0 q4_k_m q5_k_m q8_0; do row "$shared/golden/$arch-$t.gguf" "$base" --sequences 20 --seq-len 64 --seed 1; done
  for t in q4_os q4_om q4_0 q8_0; do
    "$orchard" quantize --model "$base" --out "$out/$arch-orchard-$t.gguf" --type "$t" 2>/dev/null
    row "$out/$arch-orchard-$t.gguf" "$base" --sequences 20 --seq-len 64 --seed 1
    "$orchard" quantize --model "$base" --out "$out/$arch-orchard-$t-calibrated.gguf" --type "$t" \
      --calibration-tokens-file "$out/calibration-ids.txt" 2>/dev/null
    row "$out/$arch-orchard-$t-calibrated.gguf" "$base" --sequences 20 --seq-len 64 --seed 1
  done
done

stories=$shared/models/stories260K/stories260K.gguf
python3 -c "
import json, sys
cases = json.load(open(sys.argv[1]))['cases']
print(''.join(c['expected_stdout'] for c in cases))" "$shared/models/stories260K/expected_generation.json" > "$out/stories-greedy.txt"
echo "### stories260K (f32: $(stat -c %s "$stories") bytes), KL over its greedy generations (seq-len 64)"
echo "| file | bytes | mean KL |"
echo "|---|---|---|"
for t in q4_os q4_om q4_0 q8_0; do
  "$orchard" quantize --model "$stories" --out "$out/stories-$t.gguf" --type "$t" 2>/dev/null
  row "$out/stories-$t.gguf" "$stories" --text-file "$out/stories-greedy.txt" --seq-len 64
  "$orchard" quantize --model "$stories" --out "$out/stories-$t-calibrated.gguf" --type "$t" \
    --calibration "$out/stories-greedy.txt" 2>/dev/null
  row "$out/stories-$t-calibrated.gguf" "$stories" --text-file "$out/stories-greedy.txt" --seq-len 64
done
