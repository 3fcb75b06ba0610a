#!/usr/bin/env bash
# The stories260K distillation example end to end (issue 18's acceptance; docs/distillation.md):
#   1. 2,000 training and 200 held-out story openings (bench/distill_prompts.py), disjoint;
#   2. the teacher, stories260K, served by `orchard serve`; its answers with top-20 log-probabilities
#      collected through /v1/completions;
#   3. per seed, a student with half its parameters from random init (dim 64, 2 layers, 4 heads,
#      4 KV heads, FFN 128, untied output: 147,776 against 292,800), trained twice on the same data
#      order for the same steps and tokens: SFT on the answers (--loss ce) and SFT + logit KD
#      (--loss kd, alpha 0.5, T 1);
#   4. both students evaluated on the held-out set (top-1 agreement, KL(teacher || student) on the
#      teacher's top 20, CE on the teacher's answers; and the teacher's score of the student's own
#      greedy answers), then quantized to q8_0 and evaluated again;
#   5. two reports (float32 and q8_0) as HTML, and a verdict: on every seed, KD's KL and CE below SFT's.
#
#   bench/distill_stories.sh [WORKDIR]        (default /tmp/distill-stories; about 10 minutes on 2 cores)
# Environment: ORCHARD (default build/bin/orchard), SEEDS ("1 2 3"), STEPS (600), LR (3e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHARD=${ORCHARD:-build/bin/orchard}
WORK=${1:-/tmp/distill-stories}
SEEDS=${SEEDS:-1 2 3}
STEPS=${STEPS:-600}
LR=${LR:-3e-3}
TEACHER_MODEL=../shared/models/stories260K/stories260K.gguf
mkdir -p "$WORK"

python3 bench/distill_prompts.py --train 2000 --held-out 200 --out-dir "$WORK"

"$ORCHARD" serve --model "$TEACHER_MODEL" --port 0 --parallel 8 2> "$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  PORT=$(grep -o 'http://[^ ]*:[0-9]*' "$WORK/serve.log" | head -1 | sed 's/.*://') || true
  [ -n "${PORT:-}" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { echo "orchard serve did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }
TEACHER=http://127.0.0.1:$PORT
COLLECT=(--teacher "$TEACHER" --endpoint completions --top-logprobs 20 --max-tokens 96 --temperature 1 --concurrency 8)
"$ORCHARD" distill collect "${COLLECT[@]}" --prompts "$WORK/train_prompts.jsonl" --out "$WORK/train.jsonl"
"$ORCHARD" distill collect "${COLLECT[@]}" --prompts "$WORK/held_out_prompts.jsonl" --out "$WORK/held_out.jsonl"
"$ORCHARD" distill pack --data "$WORK/train.jsonl" --student "$TEACHER_MODEL" --out "$WORK/train.otkd" | tee "$WORK/pack.txt"

RUNS="" RUNS_Q8=""
for seed in $SEEDS; do
  "$ORCHARD" train init --like "$TEACHER_MODEL" --dim 64 --layers 2 --heads 4 --kv-heads 4 --ffn 128 --seed "$seed" \
    --out "$WORK/init-$seed.gguf"
  for mode in sft kd; do
    dir=$WORK/$mode-$seed
    loss=ce
    [ "$mode" = kd ] && loss=kd
    "$ORCHARD" distill train --model "$WORK/init-$seed.gguf" --data "$WORK/train.otkd" --eval "$WORK/held_out.jsonl" \
      --out "$dir" --loss "$loss" --steps "$STEPS" --lr "$LR" --warmup 30 --min-lr 3e-4 --batch-tokens 4096 \
      --eval-every 50 --seed "$seed" 2> "$dir.log"
    "$ORCHARD" distill eval --student "$dir/model.gguf" --teacher "$TEACHER" --endpoint completions \
      --prompts "$WORK/held_out_prompts.jsonl" --cache "$WORK/held_out.jsonl" --teacher-score --max-tokens 96 \
      --out "$dir/eval.json" > /dev/null
    "$ORCHARD" quantize --model "$dir/model.gguf" --type q8_0 --out "$dir/model-q8_0.gguf" > /dev/null
    "$ORCHARD" distill eval --student "$dir/model-q8_0.gguf" --teacher "$TEACHER" --endpoint completions \
      --prompts "$WORK/held_out_prompts.jsonl" --cache "$WORK/held_out.jsonl" --teacher-score --max-tokens 96 \
      --out "$dir/eval-q8_0.json" > /dev/null
    RUNS+="${RUNS:+,}$mode/seed$seed=$dir:$dir/eval.json"
    RUNS_Q8+="${RUNS_Q8:+,}$mode-q8_0/seed$seed=$dir:$dir/eval-q8_0.json"
  done
done
"$ORCHARD" distill report --run "$RUNS" --title "stories260K distilled into a 148K student: SFT vs SFT + KD" \
  --out "$WORK/report.html"
"$ORCHARD" distill report --run "$RUNS_Q8" --title "The same students quantized to q8_0" --out "$WORK/report-q8_0.html"

# The verdict, seed by seed (float32 and q8_0).
python3 - "$WORK" $SEEDS <<'EOF'
import json, sys
work, seeds = sys.argv[1], sys.argv[2:]
ok = True
for suffix in ["", "-q8_0"]:
    for seed in seeds:
        sft = json.load(open(f"{work}/sft-{seed}/eval{suffix}.json"))
        kd = json.load(open(f"{work}/kd-{seed}/eval{suffix}.json"))
        line = []
        for key in ["kl", "ce", "agreement"]:
            line.append(f"{key} sft {sft[key]:.4f} kd {kd[key]:.4f}")
        score = [x.get("teacher_score", {}).get("mean_logprob_per_token") for x in (sft, kd)]
        line.append(f"teacher score sft {score[0]:.4f} kd {score[1]:.4f}")
        better = kd["kl"] < sft["kl"] and kd["ce"] < sft["ce"]
        ok = ok and better
        print(f"seed {seed}{suffix or ' f32'}: " + ", ".join(line) + ("  KD better" if better else "  KD NOT better"))
print("verdict:", "KD student beats SFT on KL and CE on every seed, f32 and q8_0" if ok else "FAILED")
sys.exit(0 if ok else 1)
EOF
FIRST=$(echo $SEEDS | cut -d' ' -f1)
echo "the q8_0 KD student (seed $FIRST) tells a story:"
"$ORCHARD" run --model "$WORK/kd-$FIRST/model-q8_0.gguf" --prompt "One day, a little girl named Lily" --max-tokens 60 \
  --temperature 0 2> /dev/null
echo
echo "reports: $WORK/report.html $WORK/report-q8_0.html"
