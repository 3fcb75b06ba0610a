#!/usr/bin/env bash
# The private cloud node's chain of trust, end to end, on this machine (docs/cloud.md, "Trust chain"):
#   1. make the release keys and a release of the node (binary, model, configuration: measured and
#      signed), and publish it in a transparency log (`orchard log serve`) cosigned by a witness;
#   2. start a software TPM (swtpm) per node, nginx as the relay, and 2 attested nodes whose
#      attestation keys are in those TPMs;
#   3. the client fetches anonymous tokens from an issuer (`orchard tokens issue`, Privacy Pass),
#      verifies the nodes (`orchard cloud ask` in attested mode) and streams an answer, paying one
#      token per request, which the node redeems once;
#   4. restart one node with a different model file: the client refuses that node (its measurement
#      is not the release's) and keeps being answered by the other, which the refused node's own
#      metrics confirm (no request reached it).
# Exits 0 only if all of that happened; stops everything it started.
#   deploy/demo_attested.sh [WORKDIR]        ORCHARD=path/to/orchard (default build/bin/orchard)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
orchard=$(realpath "${ORCHARD:-$here/../build/bin/orchard}")
shared=$(realpath "${ORCHARD_SHARED:-$here/../../shared}")
model="$shared/models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"
work=${1:-$(mktemp -d /tmp/orchard-demo-XXXXXX)}
mkdir -p "$work"; work=$(cd "$work" && pwd)
pids=()

say() { echo "demo: $*" >&2; }
cleanup() {
  bash "$here/local_cluster.sh" stop "$work/cluster" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
for tool in swtpm nginx openssl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { say "$tool is not installed (scripts/packages.txt)"; exit 2; }
done

# Two adjacent free loopback ports (swtpm's server and control ports).
free_port_pair() {
  python3 -c '
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()'
}
# Starts a background command whose stdout names its address; sets $url to it. (Not in a $(...)
# subshell, so that the process lands in $pids and is stopped at the end.)
start_listening() {
  local log=$1; shift
  "$@" >"$log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 200); do
    if grep -q "listening on " "$log"; then url=$(grep -o "listening on [^ ]*" "$log" | head -1 | cut -d' ' -f3); return; fi
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  say "$* did not start"; exit 1
}

say "1. keys, the log with its witness, the release"
cd "$work"
rm -rf ./*.key ./*.pub token clients log witness.state client.state tpm0 tpm1 cluster spent wallet
release_vkey=$("$orchard" key generate --name release.demo --out release.key)
log_vkey=$("$orchard" key generate --name log.demo --out log.key)
witness_vkey=$("$orchard" key generate --name witness.demo --out witness.key)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > token && chmod 600 token
start_listening witness.log "$orchard" log witness --key witness.key --log-vkey "$log_vkey" --state witness.state --port 0
witness_url=$url
start_listening log.log "$orchard" log serve --dir log --key log.key --port 0 --append-token-file token \
  --witness "$witness_url" --witness-vkey "$witness_vkey"
log_url=$url
"$orchard" tokens keygen --out issuer.key --public-out issuer.pub >/dev/null  # nodes take only its tokens
token_args=(--token-issuer-key "$work/issuer.pub" --token-issuer-name issuer.demo)
"$orchard" release measure --name orchard-demo-1 --model "$model" --private "${token_args[@]}" > release.txt
"$orchard" release sign --key release.key --statement release.txt --out release.note
"$orchard" log append --url "$log_url" --token-file token --entry release.note >/dev/null
say "   release $(grep '^measurement' release.txt) logged at $log_url"

say "   the token issuer; the client fetches 8 tokens"
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'demo-client %s\n' "$secret" > clients && chmod 600 clients
start_listening issuer.log "$orchard" tokens issue --key issuer.key --clients clients --port 0 --rate 20
issuer_url=$url
DEMO_SECRET=$secret "$orchard" tokens fetch --issuer "$issuer_url" --issuer-key issuer.pub --auth-env DEMO_SECRET \
  --issuer-name issuer.demo --count 8 --wallet wallet >/dev/null
[ "$(wc -l < wallet)" = 8 ] || { say "the wallet does not hold 8 tokens"; exit 1; }

say "2. a software TPM per node, nginx and 2 attested nodes"
tcti=()
for k in 0 1; do
  mkdir -p "tpm$k"
  port=$(free_port_pair)
  swtpm socket --tpm2 --tpmstate dir="$work/tpm$k" --server type=tcp,port="$port" --ctrl type=tcp,port=$((port + 1)) \
    --flags not-need-init >/dev/null 2>&1 </dev/null &
  pids+=($!)
  tcti+=("swtpm:host=127.0.0.1,port=$port")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
done
node_args=(--release "$work/release.note" --log-url "$log_url" --log-token-file "$work/token"
           "${token_args[@]}" --token-store "$work/spent")
NODE_ARGS_0="--attester tpm:${tcti[0]}" NODE_ARGS_1="--attester tpm:${tcti[1]}" ORCHARD="$orchard" \
  bash "$here/local_cluster.sh" start "$work/cluster" --model "$model" --nodes 2 --port "$(free_port_pair)" --log "$log_url" \
  -- "${node_args[@]}"
# shellcheck disable=SC1091
. "$work/cluster/cluster.env"
read -r -a node_pids <<< "$NODE_PIDS"; read -r -a node_ports <<< "$NODE_PORTS"
untokened=("$orchard" cloud ask --relay "$RELAY" --ca-file "$CA" --log-key "$log_vkey" --release-key "$release_vkey"
           --witness-key "$witness_vkey" --state "$work/client.state" --max-tokens 16)
ask=("${untokened[@]}" --tokens "$work/wallet")

say "3. the client verifies the nodes and streams an answer"
"${ask[@]}" --stream --prompt "Tell me a story" > answer.txt 2> ask.err || { cat ask.err >&2; exit 1; }
[ -s answer.txt ] || { say "no answer"; exit 1; }
grep -q "answered by node" ask.err || { cat ask.err >&2; exit 1; }
grep -q "refused node" ask.err && { say "a node was refused before anything changed"; cat ask.err >&2; exit 1; }
say "   answer: $(tr -cd '[:print:]' < answer.txt | head -c 80)... ($(grep -o 'answered by node [a-z0-9]*' ask.err))"

if "${untokened[@]}" --prompt "Free ride" > /dev/null 2> free.err; then say "a request without a token was answered"; exit 1; fi
grep -q "Privacy Pass token refused" free.err || { cat free.err >&2; exit 1; }
say "   without a token: $(grep -o 'refused the request (401)[^,]*' free.err | head -1)"

say "4. node1 restarted with another model file"
cp "$model" other-model.gguf && printf 'not the released model' >> other-model.gguf
kill "${node_pids[1]}"; for _ in $(seq 100); do kill -0 "${node_pids[1]}" 2>/dev/null || break; sleep 0.1; done
"$orchard" serve --private --model "$work/other-model.gguf" --port "${node_ports[1]}" --admin-port 0 --node-name node1 \
  --attester "tpm:${tcti[1]}" "${node_args[@]}" </dev/null >/dev/null 2> node1-restarted.log &
pids+=($!)
for _ in $(seq 200); do grep -q "gateway on http" node1-restarted.log && break; sleep 0.05; done
grep -q "NOT what its release states" node1-restarted.log || { cat node1-restarted.log >&2; exit 1; }
admin1=$(grep -o "(/metrics) on http://127.0.0.1:[0-9]*" node1-restarted.log | grep -o "[0-9]*$")
for i in 1 2 3 4; do
  "${ask[@]}" --stream --prompt "Question $i" > "answer$i.txt" 2> "ask$i.err" || { cat "ask$i.err" >&2; exit 1; }
  grep -q "refused node node1: measurement differs from the release's" "ask$i.err" || { cat "ask$i.err" >&2; exit 1; }
  grep -q "answered by node node0" "ask$i.err" || { cat "ask$i.err" >&2; exit 1; }
  [ -s "answer$i.txt" ] || { say "no answer $i"; exit 1; }
done
posts=$(curl -s "http://127.0.0.1:$admin1/metrics" | awk '/^orchard_requests_total\{endpoint="\/gateway"/ {n += $2} END {print n + 0}')
[ "$posts" = 0 ] || { say "the refused node received $posts gateway requests"; exit 1; }
[ "$(wc -l < wallet)" = 3 ] || { say "5 requests should have spent 5 tokens, $(wc -l < wallet) of 8 left"; exit 1; }
say "   4 answers from node0; node1 refused each time ($(grep -o 'measurement differs[^(]*' ask1.err | head -1)); node1 received nothing"
say "passed"
