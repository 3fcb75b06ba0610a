#!/usr/bin/env bash
# Limited-memory mode side by side with llama.cpp (mmap), each run inside a cgroup v1 memory limit
# that counts page cache, with the page cache dropped before every run.
#
#   bench/flash_compare.sh MODEL.gguf [PERCENT ...]        (default: mem 120 90 50)
#
# PERCENT: a memory limit as a percentage of the file size; "mem": no limit and no budget (the
# in-memory speed the 120% run is compared with).
#
#   LLAMA_BENCH   llama-bench built beside the project (default ../bench-work/llama.cpp/build/bin/
#                 llama-bench, as bench/limits_report.sh builds it); NO_LLAMA=1 skips it
#   RESERVE_MIB   memory left for everything but the weights: KV cache, activations, code
#                 (default 64); orchard's --memory-budget is the limit minus this
#   PROMPT GEN    llama-bench style prompt and decode lengths (default 16 16)
#   LIMIT_MIB     run at this absolute limit instead of percents of the file (e.g. 1024)
#
# Needs root (cgroup, drop_caches). Prints per limit: decode t/s of both and their ratio, bytes
# read per decoded token, the disk's direct-read bandwidth and the decode bound it sets
# (bandwidth / bytes per token), peak memory of the cgroup (page cache included) and whether the
# kernel had to kill anything.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:?usage: bench/flash_compare.sh MODEL.gguf [PERCENT ...]}"
shift
PERCENTS="${*:-mem 120 90 50}"
[ -n "${LIMIT_MIB:-}" ] && PERCENTS="abs"
ORCHARD="${ORCHARD:-$REPO/build/bin/orchard}"
LLAMA_BENCH="${LLAMA_BENCH:-$REPO/../bench-work/llama.cpp/build/bin/llama-bench}"
RESERVE=$(( ${RESERVE_MIB:-64} * 1048576 ))
PROMPT="${PROMPT:-16}"
GEN="${GEN:-16}"
CG=/sys/fs/cgroup/memory/orchard_flash_bench
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

[ -x "$ORCHARD" ] || { echo "build orchard first: cmake --build build --target orchard_cli" >&2; exit 2; }
[ -d /sys/fs/cgroup/memory ] || { echo "needs cgroup v1's memory controller at /sys/fs/cgroup/memory" >&2; exit 2; }
mkdir -p "$CG"
FILE_BYTES=$(stat -c %s "$MODEL")

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

direct_read_bandwidth() {  # bytes/s: the best of three sequential O_DIRECT passes over the model
  local best=0 start end rate
  for _ in 1 2 3; do
    drop_caches
    start=$(date +%s.%N)
    dd if="$MODEL" of=/dev/null bs=32M iflag=direct status=none
    end=$(date +%s.%N)
    rate=$(python3 -c "print(int($FILE_BYTES / ($end - $start)))")
    [ "$rate" -gt "$best" ] && best=$rate
  done
  echo "$best"
}

# run_limited LIMIT_BYTES OUTFILE CMD...: runs CMD in the cgroup; writes "peak failcnt oom_kills rc"
run_limited() {
  local limit=$1 out=$2
  shift 2
  echo 0 > "$CG/memory.max_usage_in_bytes" 2>/dev/null || true
  echo 0 > "$CG/memory.failcnt"
  echo -1 > "$CG/memory.limit_in_bytes"
  echo "$limit" > "$CG/memory.limit_in_bytes"
  local kills_before
  kills_before=$(awk '/oom_kill /{print $2}' "$CG/memory.oom_control")
  drop_caches
  local rc=0
  sh -c 'echo $$ > '"$CG"'/cgroup.procs; exec "$@"' sh "$@" > "$out" 2> "$out.err" || rc=$?
  echo "$(cat "$CG/memory.max_usage_in_bytes") $(cat "$CG/memory.failcnt") \
$(( $(awk '/oom_kill /{print $2}' "$CG/memory.oom_control") - kills_before )) $rc" > "$out.mem"
}

BANDWIDTH=$(direct_read_bandwidth)
echo "model $MODEL: $FILE_BYTES bytes ($((FILE_BYTES / 1048576)) MiB); direct-read bandwidth $((BANDWIDTH / 1000000)) MB/s"
echo "orchard: bench -p $PROMPT -n $GEN -r 1 -t 2 --memory-budget (limit - $((RESERVE / 1048576)) MiB); llama.cpp: llama-bench -p $PROMPT -n $GEN -r 1 -t 2 (mmap)"

for pct in $PERCENTS; do
  budget_option=()
  if [ "$pct" = mem ]; then limit=-1; label="none"
  else
    if [ "$pct" = abs ]; then limit=$((LIMIT_MIB * 1048576)); label="${LIMIT_MIB}MiB"
    else limit=$((FILE_BYTES * pct / 100)); label="$pct%"; fi
    budget_option=(--memory-budget $((limit - RESERVE)))
  fi
  run_limited "$limit" "$OUT/orchard.json" "$ORCHARD" bench --model "$MODEL" -p "$PROMPT" -n "$GEN" -r 1 -t 2 \
    "${budget_option[@]}" --json
  if [ -z "${NO_LLAMA:-}" ] && [ -x "$LLAMA_BENCH" ]; then
    run_limited "$limit" "$OUT/llama.json" "$LLAMA_BENCH" -m "$MODEL" -p "$PROMPT" -n "$GEN" -r 1 -t 2 -o json
  else
    echo "[]" > "$OUT/llama.json"; echo "0 0 0 skipped" > "$OUT/llama.json.mem"
  fi
  python3 - "$label" "$limit" "$BANDWIDTH" "$OUT" <<'PY'
import json, sys
label, limit, bandwidth, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
MiB = 1048576

def mem(name):
    peak, failcnt, kills, rc = open(f"{out}/{name}.mem").read().split()
    return int(peak), int(failcnt), int(kills), rc

def load(name):
    try:
        return json.load(open(f"{out}/{name}"))
    except (OSError, ValueError):
        return None

o, (o_peak, o_fail, o_kills, o_rc) = load("orchard.json"), mem("orchard.json")
l, (l_peak, _, l_kills, l_rc) = load("llama.json"), mem("llama.json")
if o is None or o_rc != "0":
    err = open(f"{out}/orchard.json.err").read().strip().splitlines()
    print(f"limit {label}: orchard failed rc={o_rc} oom_kills={o_kills}: {err[-1] if err else ''}")
    sys.exit(0)
o_tg = o["tg_tps"]
per_token = o.get("flash_bytes_read_per_token", 0) if o.get("flash_active") else 0
line = (f"limit {label}{f' ({limit // MiB} MiB)' if limit > 0 else ''}: orchard decode {o_tg:.2f} t/s prefill {o['pp_tps']:.1f} t/s, "
        f"flash {'on' if o.get('flash_active') else 'off'}, read {per_token / 1e6:.0f} MB/token, "
        f"peak cgroup {o_peak // MiB} MiB (rss {o['peak_rss_bytes'] // MiB} MiB), oom kills {o_kills}")
if per_token:
    bound = bandwidth / per_token
    line += f"; disk bound {bound:.2f} t/s -> {100 * o_tg / bound:.0f}% of it"
print(line)
if l_rc == "skipped":
    print("  llama.cpp: skipped")
elif l_rc != "0" or not l:
    print(f"  llama.cpp: failed rc={l_rc}, oom kills {l_kills} (peak cgroup {l_peak // MiB} MiB)")
else:
    tg = next(r for r in l if r["n_gen"] > 0 and r["n_prompt"] == 0)["avg_ts"]
    pp = next(r for r in l if r["n_prompt"] > 0 and r["n_gen"] == 0)["avg_ts"]
    print(f"  llama.cpp: decode {tg:.2f} t/s prefill {pp:.1f} t/s, peak cgroup {l_peak // MiB} MiB"
          f" -> orchard/llama.cpp decode {o_tg / tg:.2f}x")
PY
done
echo -1 > "$CG/memory.limit_in_bytes"
