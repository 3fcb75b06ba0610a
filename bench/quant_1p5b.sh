#!/usr/bin/env bash
# Quantization of the random-weight Qwen2.5-1.5B shape: time, size against the f16 file, and KL
# against the f16 model (20 random sequences of 64 tokens). Long (minutes): run by hand.
#   bash bench/quant_1p5b.sh F16.gguf [out-folder] [llama.cpp build/bin folder]
# F16.gguf: python3 bench/make_models.py --shape qwen2.5-1.5b --type f16 --out F16.gguf
# With llama.cpp's bin folder, its llama-quantize makes Q4_0 and Q4_K_M of the same weights.
# KL needs the fast kernels (a random 1.5B model through the scalar reference takes hours).
set -euo pipefail
cd "$(dirname "$0")/.."
f16=$1
out=${2:-/tmp/orchard-quant-1p5b}
llama_bin=${3:-}
orchard=${ORCHARD:-build/bin/orchard}
mkdir -p "$out"
f16_bytes=$(stat -c %s "$f16")
report() {
  local file=$1
  local bytes kl
  bytes=$(stat -c %s "$file")
  kl=$("$orchard" kld --base "$f16" --model "$file" --sequences 20 --seq-len 64 --seed 1 | awk '/mean KL/ {print $3, $4, $5}')
  printf "| %s | %d | %.2f%% | %s |\n" "$(basename "$file")" "$bytes" "$(echo "100 * $bytes / $f16_bytes" | bc -l)" "$kl"
}
for t in q4_os q4_om; do
  /usr/bin/time -f "$t: %e s wall, %U s user, %S s sys, %M KB peak RSS" \
    "$orchard" quantize --model "$f16" --out "$out/orchard-$t.gguf" --type "$t" 2>&1 | tail -1
done
if [ -n "$llama_bin" ]; then
  for t in Q4_0 Q4_K_M; do
    "$llama_bin/llama-quantize" "$f16" "$out/llamacpp-$t.gguf" "$t" 2 > /dev/null 2>&1
  done
fi
echo "| file | bytes | of f16 | mean KL vs f16 |"
echo "|---|---|---|---|"
for f in "$out"/*.gguf; do report "$f"; done
