#!/usr/bin/env bash
# Starts `orchard serve` on the tiny chat model and drives it with curl and the official
# `openai` npm client (installed from the npm registry into the build folder).
#   integration_test.sh ORCHARD_BINARY SHARED_DIR NPM_DIR
set -euo pipefail
orchard=$1 shared=$2 npm_dir=$3
here=$(cd "$(dirname "$0")" && pwd)
model="$shared/models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"

mkdir -p "$npm_dir"
cp "$here/package.json" "$here/openai_client.mjs" "$here/embeddings_client.mjs" "$npm_dir/"
cp "$here/responses_client.mjs" "$here/ollama_client.mjs" "$here/check.mjs" "$npm_dir/"
# Installed again whenever the pinned versions change (the lock file kept beside node_modules).
if ! cmp -s "$here/package-lock.json" "$npm_dir/node_modules/.installed-lock.json"; then
  cp "$here/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$here/package-lock.json" "$npm_dir/node_modules/.installed-lock.json"
fi

log=$(mktemp)
"$orchard" serve --model "$model" --port 0 --parallel 4 --ctx-size 4096 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do
  grep -q "serving" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; echo "server exited"; exit 1; }
  sleep 0.1
done
port=$(sed -n 's/.*http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
[ -n "$port" ] || { cat "$log"; echo "no port"; exit 1; }
base="http://127.0.0.1:$port"

# curl: health, a plain request, a streamed one ending in [DONE], and an error object.
curl -fsS "$base/health" | grep -q '"ok"'
curl -fsS "$base/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4}' | grep -q '"chat.completion"'
curl -fsS -N "$base/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"stream":true}' | tail -2 | grep -q '^data: \[DONE\]'
code=$(curl -s -o /tmp/orchard-bad.json -w '%{http_code}' "$base/v1/chat/completions" -d '{"messages":')
[ "$code" = 400 ] && grep -q '"error"' /tmp/orchard-bad.json
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/nothing")
[ "$code" = 404 ]
# A body over the 4 MiB limit is refused with 413 and an error object.
big=$(mktemp)
head -c 5000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"messages":[{"role":"user","content":"/; s/$/"}]}/' > "$big"
code=$(curl -s -o /tmp/orchard-big.json -w '%{http_code}' "$base/v1/chat/completions" --data-binary "@$big")
rm -f "$big"
[ "$code" = 413 ] && grep -q '"error"' /tmp/orchard-big.json
curl -fsS "$base/v1/completions" -d '{"prompt":"Once","max_tokens":3}' | grep -q '"text_completion"'

node "$npm_dir/openai_client.mjs" "$base"
node "$npm_dir/embeddings_client.mjs" "$base"
node "$npm_dir/responses_client.mjs" "$base"  # the Responses API
node "$npm_dir/ollama_client.mjs" "$base"  # the Ollama API, with the official ollama client
kill -0 $server  # still serving after everything above

# A second server, started with --api-key: 401 without the key, 200 with it (the official client).
log2=$(mktemp)
"$orchard" serve --model "$model" --port 0 --parallel 2 --ctx-size 512 --api-key sk-integration 2>"$log2" &
keyed=$!
trap 'kill $server $keyed 2>/dev/null || true; wait $server $keyed 2>/dev/null || true; rm -f "$log" "$log2"' EXIT
for _ in $(seq 1 300); do
  grep -q "serving" "$log2" && break
  kill -0 $keyed 2>/dev/null || { cat "$log2"; echo "the server with --api-key exited"; exit 1; }
  sleep 0.1
done
port2=$(sed -n 's/.*http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log2" | head -1)
[ -n "$port2" ] || { cat "$log2"; echo "no port"; exit 1; }
node "$npm_dir/openai_client.mjs" "http://127.0.0.1:$port2" --api-key sk-integration
