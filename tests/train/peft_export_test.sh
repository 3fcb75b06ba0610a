#!/usr/bin/env bash
# LoRA export checked by another framework (issue 17): `orchard train` trains rank-4 adapters on
# all seven projections of the golden llama (a few steps, so that both A and B have moved), writes
# them in PEFT's layout, and tests/train/peft_check.py applies that adapter the way PEFT does to the
# Hugging Face copy of the same model (golden/llama-hf-f32, rows in Hugging Face's order) in a
# float64 PyTorch forward of its own; Orchard's logits of the base GGUF with the adapter merged in
# (`orchard train merge`, reference kernels) must agree within 1e-4 max abs. About 5 s.
#   peft_export_test.sh ORCHARD SHARED_DIR
set -euo pipefail
orchard=$1
shared=$2
here=$(cd "$(dirname "$0")" && pwd)
# Debian's python3-torch belongs to /usr/bin/python3 (a pyenv python3 earlier on PATH lacks it).
python=/usr/bin/python3
"$python" -c "import torch" || { echo "peft_export_test: $python cannot import torch (apt-get install python3-torch)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Token ids: the golden GGUFs carry no usable tokenizer, so the data is pre-tokenized.
"$python" - "$work/data.jsonl" <<'PY'
import json, random, sys
rng = random.Random(4)
with open(sys.argv[1], "w") as f:
    for _ in range(8):
        f.write(json.dumps({"tokens": [rng.randrange(1, 1000) for _ in range(24)]}) + "\n")
PY
"$orchard" train --model "$shared/golden/llama-f32.gguf" --data "$work/data.jsonl" --lora-rank 4 --lora-alpha 8 \
  --lora-targets q,k,v,o,gate,up,down --steps 3 --batch-tokens 96 --lr 0.02 --seed 2 --out "$work/run" >/dev/null 2>&1 \
  || { echo "peft_export_test: orchard train failed" >&2; exit 1; }
"$orchard" train merge --model "$shared/golden/llama-f32.gguf" --adapter "$work/run" --out "$work/merged.gguf" >/dev/null
tokens=1,5,17,300,42,7,999,511,2,64,1020,3,100,250,12,800
"$orchard" logits --model "$work/merged.gguf" --tokens $tokens --out "$work/merged.f32" --kernels reference
"$orchard" logits --model "$shared/golden/llama-f32.gguf" --tokens $tokens --out "$work/base.f32" --kernels reference
# The adapter must matter: the base's logits fail the same check.
if "$python" "$here/peft_check.py" --hf "$shared/golden/llama-hf-f32" --adapter "$work/run" --tokens $tokens \
     --logits "$work/base.f32" >/dev/null 2>&1; then
  echo "peft_export_test: the trained adapter changes nothing (the base's logits pass the check)" >&2
  exit 1
fi
"$python" "$here/peft_check.py" --hf "$shared/golden/llama-hf-f32" --adapter "$work/run" --tokens $tokens \
  --logits "$work/merged.f32"
