#!/usr/bin/env bash
# From a fresh clone: install dependencies, build, and run the bundled stories260K model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
model=models/stories260K/stories260K.gguf
./build/bin/orchard info --model "$model"
./build/bin/orchard logits --model "$model" --tokens 1,403,407,261,378 --out build/stories260K.logits.f32
echo "logits of 5 positions x 512 tokens written to build/stories260K.logits.f32"
