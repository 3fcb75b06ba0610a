#!/usr/bin/env bash
# The private cloud node's cost in tokens/s (docs/cloud.md, "Measured costs"): 16 concurrent
# streaming clients for 60 s through nginx (TLS) to 2 nodes, encrypted (Oblivious HTTP, chunked,
# padded) and the same load in plaintext to plain `orchard serve` nodes with prefix reuse off
# (the same work without encryption), interleaved, 3 runs each; then the medians and the ratio.
# Finally one encrypted run with a node killed (SIGKILL) 20 s in.
#   [TOKENIZER=DIR] bash bench/cloud_load.sh MODEL.gguf [RUNS=3] [SECONDS=60] [CLIENTS=16]
# Build first (build/bin/orchard); run alone on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; runs=${2:-3}; seconds=${3:-60}; clients=${4:-16}
orchard=$(realpath build/bin/orchard)
work=$(mktemp -d /tmp/orchard-cloud-load.XXXXXX)
node_args=(--parallel 16 --threads 1 ${TOKENIZER:+--tokenizer "$TOKENIZER"})
trap 'deploy/local_cluster.sh stop "$work/c" >/dev/null 2>&1 || true' EXIT

run_one() {  # mode (ohttp|plaintext) [kill]
  # Plain nodes reuse no prefix between requests, as the private node (--private turns it off).
  local extra=(-- "${node_args[@]}")
  [ "$1" = plaintext ] && extra=(--plain -- "${node_args[@]}" --no-prefix-reuse)
  ORCHARD=$orchard deploy/local_cluster.sh start "$work/c" --model "$model" --nodes 2 --port 18643 "${extra[@]}" >/dev/null 2>&1
  # shellcheck disable=SC1091
  . "$work/c/cluster.env"
  local flags=(); [ "$1" = plaintext ] && flags=(--plaintext)
  if [ "${2:-}" = kill ]; then (sleep 20; kill -9 "${NODE_PIDS##* }") & fi
  "$orchard" cloud load --relay "$RELAY" --ca-file "$CA" --clients "$clients" --seconds "$seconds" "${flags[@]}" || true
  wait
  deploy/local_cluster.sh stop "$work/c"
}

for i in $(seq "$runs"); do
  run_one ohttp | tee -a "$work/ohttp.jsonl"
  run_one plaintext | tee -a "$work/plaintext.jsonl"
done
python3 - "$work" <<'PY'
import json, statistics, sys
w = sys.argv[1]
rows = {m: [json.loads(l) for l in open(f"{w}/{m}.jsonl") if l.startswith("{")] for m in ("ohttp", "plaintext")}
med = {m: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "ttft_median_ms", "ttft_p95_ms")} for m, rs in rows.items()}
for m, rs in rows.items():
    print(m, "tokens/s", [round(r["tokens_per_s"], 1) for r in rs], "failures", [r["failures"] for r in rs])
print(json.dumps(med))
print("encrypted / plaintext tokens/s: %.3f" % (med["ohttp"]["tokens_per_s"] / med["plaintext"]["tokens_per_s"]))
print("TTFT overhead: median %+.1f ms, p95 %+.1f ms" % (med["ohttp"]["ttft_median_ms"] - med["plaintext"]["ttft_median_ms"],
                                                        med["ohttp"]["ttft_p95_ms"] - med["plaintext"]["ttft_p95_ms"]))
# Bytes on the wire per request, from the relay's access log (answer body, whole request).
sizes = {"ohttp": [], "plaintext": []}
for line in open(f"{w}/c/logs/access.log"):
    parts = line.split()
    if len(parts) < 7 or parts[3] != "200":
        continue
    mode = "ohttp" if parts[2].endswith('/gateway"') else "plaintext" if parts[2] == '/v1/chat/completions"' else None
    if mode:
        sizes[mode].append((int(parts[4]), int(parts[5])))
for m, s in sizes.items():
    if s:
        print("%s: %d requests, answer %.0f bytes and request %.0f bytes on average" %
              (m, len(s), sum(a for a, _ in s) / len(s), sum(r for _, r in s) / len(s)))
if sizes["ohttp"] and sizes["plaintext"]:
    a = sum(x for x, _ in sizes["ohttp"]) / len(sizes["ohttp"]) / (sum(x for x, _ in sizes["plaintext"]) / len(sizes["plaintext"]))
    print("answer bytes, encrypted and padded / plaintext: %.2f (per request; the plaintext count includes HTTP chunk framing)" % a)
PY
echo "--- one node killed 20 s into an encrypted run:"
run_one ohttp kill
rm -rf "$work"
