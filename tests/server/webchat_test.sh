#!/usr/bin/env bash
# The web chat page in a real browser: starts `orchard serve` on the tiny chat model and drives
# Debian's chromium (headless) with playwright-core from npm (installed into NPM_DIR, its own
# folder so that it never races the integration test's npm install).
#   webchat_test.sh ORCHARD_BINARY SHARED_DIR NPM_DIR [SCREENSHOT.png]
# scripts/setup.sh installs chromium: without it the test fails (it is not skipped).
set -euo pipefail
orchard=$1 shared=$2 npm_dir=$3 screenshot=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
model="$shared/models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"
chromium=${ORCHARD_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$chromium" ]; then
  echo "FAILED: $chromium is missing: the web chat test needs Debian's chromium (scripts/setup.sh installs it: apt-get install chromium)"
  exit 1
fi

mkdir -p "$npm_dir"
cp "$here/package.json" "$here/webchat_test.mjs" "$npm_dir/"
# Installed again whenever the pinned versions change (the lock file kept beside node_modules).
if ! cmp -s "$here/package-lock.json" "$npm_dir/node_modules/.installed-lock.json"; then
  cp "$here/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$here/package-lock.json" "$npm_dir/node_modules/.installed-lock.json"
fi

# Starts `orchard serve` with the given options; sets $port, and $servers for the trap.
servers=() logs=()
trap 'for p in "${servers[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; rm -f "${logs[@]}"' EXIT
start_server() {
  local log
  log=$(mktemp)
  logs+=("$log")
  "$orchard" serve --model "$model" --port 0 "$@" 2>"$log" &
  servers+=($!)
  for _ in $(seq 1 300); do
    grep -q "serving" "$log" && break
    kill -0 "${servers[-1]}" 2>/dev/null || { cat "$log"; echo "server exited"; exit 1; }
    sleep 0.1
  done
  port=$(sed -n 's/.*http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$port" ] || { cat "$log"; echo "no port"; exit 1; }
}

# One slot and one thread: the answer (up to 8000 tokens) streams for seconds, long enough to
# watch it grow and stop it halfway. On two activation levels the tiny model's greedy answer to the
# test's prompt never ends (it repeats); with the levels measured at load it ends after a few
# tokens, too soon to be stopped.
start_server --parallel 1 --threads 1 --ctx-size 8192 --stream-interval-ms 30 --activations two
open=$port
# A server with --api-key: the page loads without it, and the API calls carry it.
start_server --parallel 1 --api-key sk-webchat-test
keyed=$port

ORCHARD_CHROMIUM="$chromium" node "$npm_dir/webchat_test.mjs" "http://127.0.0.1:$open" "http://127.0.0.1:$keyed" "$screenshot"
for p in "${servers[@]}"; do kill -0 $p; done  # still serving after everything above
