#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan, in build-fuzz/) and runs each one
# for SECONDS (default 20) on a copy of its seed corpus in fuzz/corpus/<target>/.
#   bash scripts/fuzz.sh                  # every target, 20 s each (what CI runs)
#   bash scripts/fuzz.sh 600 gguf         # one target (or several), 10 minutes each
#   bash scripts/fuzz.sh 600 --merge      # also merge new coverage into the committed corpora
# Any finding (crash, sanitizer report, exception other than orchard::Error, leak, timeout,
# memory over the limit) fails the run and prints the path of the input that caused it (under
# build-fuzz/artifacts/). Replay one with: build-fuzz/bin/fuzz_<target> <file>
# FUZZ_FLAGS adds libFuzzer flags, e.g. FUZZ_FLAGS="-fork=1 -ignore_crashes=1" for long runs that
# go on after a finding (each input that crashes is still written and fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
merge=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --merge) merge=1 ;;
    ''|*[!0-9]*) targets+=("$arg") ;;
    *) seconds=$arg ;;
  esac
done
all=(gguf hf_model llama2c tokenizer_json chat_template json_schema openai_request binary_http ohttp_keys
  ohttp_decapsulate attestation tpm_evidence privacy_pass train_dataset teacher_store teacher_pack distill_prompts
  peft_adapter pii router_config)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# Longest input per target: room for the largest seed (the GGUF seeds are tiny models of up to
# 70 KB), small enough that the mutator stays fast.
max_len_of() {
  case "$1" in
    gguf) echo 131072 ;;
    tokenizer_json) echo 65536 ;;
    hf_model|llama2c|chat_template|openai_request|binary_http|peft_adapter) echo 16384 ;;
    json_schema|attestation|teacher_pack|distill_prompts|pii|router_config) echo 8192 ;;
    ohttp_keys|ohttp_decapsulate|tpm_evidence|privacy_pass|train_dataset|teacher_store) echo 4096 ;;
    *) echo "fuzz.sh: unknown target '$1' (targets: ${all[*]})" >&2; exit 2 ;;
  esac
}
dict_of() {
  case "$1" in
    chat_template) echo fuzz/dict/jinja.dict ;;
    hf_model|tokenizer_json|json_schema|openai_request|distill_prompts|router_config) echo fuzz/dict/json.dict ;;
    pii) echo fuzz/dict/pii.dict ;;
    train_dataset) echo fuzz/dict/train.dict ;;
    teacher_pack|teacher_store) echo fuzz/dict/teacher.dict ;;
    peft_adapter) echo fuzz/dict/peft.dict ;;
    *) echo "" ;;
  esac
}
for t in "${targets[@]}"; do max_len_of "$t" >/dev/null; done

# libFuzzer comes with Debian's clang and its runtime package (not in scripts/packages.txt: only
# this script needs them).
if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi

dir=build-fuzz
# -O1 keeps the instrumented library quick to build; -g1 gives the reports line numbers.
CC=clang CXX=clang++ cmake -S . -B "$dir" -DORCHARD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" >/dev/null
mkdir -p "$dir/logs"
if ! cmake --build "$dir" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >"$dir/logs/build.log" 2>&1; then
  grep -E 'error|Error' "$dir/logs/build.log" | head -30
  echo "fuzz: build failed (log: $dir/logs/build.log)"
  exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$dir/artifacts" "$dir/logs"
# One target's run; prints its verdict line(s) and returns 1 on a finding.
run_target() {
  local t=$1
  # libFuzzer adds what it finds to its first corpus folder: a scratch copy, never the
  # committed seeds (--merge copies the inputs that add coverage back, minimized, afterwards).
  local work="$dir/corpus-run/$t"
  rm -rf "$work" && mkdir -p "$work"
  cp -r "fuzz/corpus/$t/." "$work/"
  local dict log start before after rc runs
  dict=$(dict_of "$t")
  log="$dir/logs/$t.log"
  start=$(date +%s)
  before=$(ls "$dir/artifacts" | grep -c "^$t-" || true)
  set +e
  "$dir/bin/fuzz_$t" "$work" -max_total_time="$seconds" -max_len="$(max_len_of "$t")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" \
    ${dict:+-dict=$dict} ${FUZZ_FLAGS:-} >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # (with FUZZ_FLAGS=-fork=1 the parent reports totals in its "#N" progress lines instead)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9][0-9]*\):\{0,1\}[[:space:]].*/\1/p' "$log" | tail -1)
  # With -fork=1 -ignore_crashes=1 libFuzzer exits 0 after findings: a new artifact fails too.
  after=$(ls "$dir/artifacts" | grep -c "^$t-" || true)
  if [ $rc -ne 0 ] || [ "$after" -gt "$before" ]; then
    echo "fuzz: $t FAILED after $(( $(date +%s) - start )) s (exit $rc); log: $log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -20 || true
    ls -t "$dir/artifacts" | grep "^$t-" | head -$(( after - before > 0 ? after - before : 1 )) | sed "s|^|fuzz: finding: $dir/artifacts/|"
    return 1
  fi
  echo "fuzz: $t ok: ${runs:-?} runs in $(( $(date +%s) - start )) s, corpus $(ls "$work" | wc -l) files"
  if [ $merge -eq 1 ]; then
    "$dir/bin/fuzz_$t" -merge=1 -max_len="$(max_len_of "$t")" -timeout=10 -rss_limit_mb=2048 \
      "fuzz/corpus/$t" "$work" >>"$log" 2>&1
    echo "fuzz: $t corpus now $(ls "fuzz/corpus/$t" | wc -l) files"
  fi
}

# One target per core at a time (each is single-threaded): 18 targets at 20 s take 3 minutes on
# 2 cores instead of 6. Each run's verdict is printed as it ends.
failed=()
for t in "${targets[@]}"; do
  rm -f "$dir/logs/$t.verdict.rc"
  (
    if run_target "$t" >"$dir/logs/$t.verdict" 2>&1; then echo 0; else echo 1; fi >"$dir/logs/$t.verdict.rc"
    cat "$dir/logs/$t.verdict"
  ) &
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
done
wait
for t in "${targets[@]}"; do
  [ "$(cat "$dir/logs/$t.verdict.rc" 2>/dev/null)" = 0 ] || failed+=("$t")
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (inputs under $dir/artifacts/)"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed (${seconds} s each)"
