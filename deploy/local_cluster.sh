#!/usr/bin/env bash
# Starts nginx (the relay, with TLS from a test CA made here) and N Orchard nodes on loopback
# ports, and stops them.
#   deploy/local_cluster.sh start DIR --model M [--nodes 2] [--port 8443] [--plain] [--log URL] [-- NODE ARGS...]
#   deploy/local_cluster.sh stop DIR
# start writes DIR/cluster.env: RELAY (https URL), CA (the CA certificate to verify it with),
# NODE_PIDS, NODE_PORTS, ADMIN_PORTS, NGINX_PID. Nodes are `orchard serve --private` (--plain:
# plain `orchard serve`, reachable at RELAY/v1/..., for the plaintext comparison of
# `orchard cloud load`). Each node runs in DIR/nodes/K (its working, temporary and cache
# directories); its stderr is DIR/nodes/K/stderr.log. ORCHARD=path/to/orchard (default: build/bin/orchard).
# Private nodes are named nodeK (--node-name); NODE_ARGS_K adds arguments to node K only (its own
# TPM, say). Attested nodes' bundles (GET /attestation) go into the relay's /nodes list; --log
# makes the relay serve the transparency log at RELAY/log/ too, so that clients reach it only
# through the relay.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0"; exit 2; }
shift 2

stop() {
  [ -f "$dir/cluster.env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null || true
  for p in ${NODE_PIDS:-}; do kill "$p" 2>/dev/null || true; done
  for p in ${NODE_PIDS:-} ${NGINX_PID:-}; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -f "$dir/cluster.env"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "local_cluster.sh: unknown command '$cmd' (start or stop)" >&2; exit 2; }

model=""; nodes=2; port=8443; plain=0; node_args=(); log_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --plain) plain=1; shift ;;
    --log) log_url=$2; shift 2 ;;
    --) shift; node_args=("$@"); break ;;
    *) echo "local_cluster.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] || { echo "local_cluster.sh: --model is required" >&2; exit 2; }
orchard=$(realpath "${ORCHARD:-$here/../build/bin/orchard}")
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "local_cluster.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 2; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

mkdir -p "$dir"/{ca,nginx,logs,tmp/body,tmp/proxy,tmp/fastcgi,tmp/uwsgi,tmp/scgi,nodes}
dir=$(cd "$dir" && pwd)
# nginx's workers run as nobody when started by root: they must reach the temp folders.
chmod 755 "$dir" "$dir/tmp" "$dir"/tmp/* 2>/dev/null || true

# A test CA and the relay's certificate for 127.0.0.1 and localhost.
if [ ! -f "$dir/ca/relay.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Orchard test CA" \
    -keyout "$dir/ca/ca.key" -out "$dir/ca/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/ca/relay.key" -out "$dir/ca/relay.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$dir/ca/ext.cnf"
  openssl x509 -req -in "$dir/ca/relay.csr" -CA "$dir/ca/ca.crt" -CAkey "$dir/ca/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/ca/ext.cnf" -out "$dir/ca/relay.crt" 2>/dev/null
fi

node_pids=(); node_ports=(); admin_ports=()
for k in $(seq 0 $((nodes - 1))); do
  mkdir -p "$dir/nodes/$k/tmp" "$dir/nodes/$k/cache"
  args=(serve --model "$model" --port 0 --admin-port 0)
  [ $plain = 1 ] || args+=(--private --node-name "node$k")
  extra="NODE_ARGS_$k"; read -r -a extra_args <<< "${!extra:-}"
  args+=("${extra_args[@]}")
  (cd "$dir/nodes/$k" && TMPDIR="$dir/nodes/$k/tmp" XDG_CACHE_HOME="$dir/nodes/$k/cache" HOME="$dir/nodes/$k" \
     exec "$orchard" "${args[@]}" "${node_args[@]}" </dev/null >/dev/null 2>"$dir/nodes/$k/stderr.log") &
  node_pids+=($!)
done
for k in $(seq 0 $((nodes - 1))); do
  for _ in $(seq 600); do
    grep -q "http://127.0.0.1:[0-9]*" "$dir/nodes/$k/stderr.log" 2>/dev/null && break
    kill -0 "${node_pids[$k]}" 2>/dev/null || { cat "$dir/nodes/$k/stderr.log" >&2; exit 1; }
    sleep 0.1
  done
  line=$(grep -m1 -o "on http://[0-9.]*:[0-9]*" "$dir/nodes/$k/stderr.log" | head -1)
  node_ports+=("${line##*:}")
  admin_ports+=("$(grep -o "127.0.0.1:[0-9]*" "$dir/nodes/$k/stderr.log" | tail -1 | cut -d: -f2)")
done

# The per-node blocks. ${UPSTREAM_HOST:-127.0.0.1}:port, or a port of NODE_PORT_OVERRIDE_K (tests
# put a recording proxy between nginx and a node that way).
upstreams=""; locations=""; list='<!--# config errmsg="" -->{"nodes":['
pool="  upstream pool {\n    least_conn;  # as the client does: the node with the fewest requests in flight\n"
for k in $(seq 0 $((nodes - 1))); do
  override="NODE_PORT_OVERRIDE_$k"; p=${!override:-${node_ports[$k]}}
  upstreams+="  upstream node$k { server 127.0.0.1:$p; keepalive 64; }\n"
  pool+="    server 127.0.0.1:$p;\n"
  locations+="    location = /nodes/node$k/gateway { proxy_pass http://node$k/gateway; }\n"
  locations+="    location = /nodes/node$k/ohttp-keys { proxy_pass http://node$k/ohttp-keys; }\n"
  locations+="    location = /_keys/node$k { internal; proxy_buffering on; proxy_intercept_errors on; error_page 500 502 503 504 =200 /_nokeys; proxy_pass http://node$k/ohttp-keys?format=hex; }\n"
  locations+="    location = /_attestation/node$k { internal; proxy_buffering on; proxy_intercept_errors on; error_page 404 500 502 503 504 =200 /_noattestation; proxy_pass http://node$k/attestation; }\n"
  [ "$k" -gt 0 ] && list+=','
  list+="{\"name\":\"node$k\",\"keys\":\"<!--# include virtual='/_keys/node$k' -->\",\"attestation\":<!--# include virtual='/_attestation/node$k' -->}"
done
pool+="    keepalive 64;\n  }\n"
list+=']}'
if [ $plain = 1 ]; then
  upstreams+="$pool"
  locations+="    location /v1/ { proxy_pass http://pool; }\n"
fi
if [ -n "$log_url" ]; then
  locations+="    location /log/ { proxy_pass ${log_url%/}/; }\n"
fi
printf '%s\n' "$list" > "$dir/nginx/nodes.json"
sed -e "s|@DIR@|$dir|g" -e "s|@LISTEN@|127.0.0.1:$port|" "$here/nginx/relay.conf.in" |
  awk -v u="$(printf "$upstreams")" -v l="$(printf "$locations")" '/^@UPSTREAMS@$/ {print u; next} /^@LOCATIONS@$/ {print l; next} {print}' \
  > "$dir/nginx/nginx.conf"
"$nginx_bin" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g "user $(id -un);" </dev/null >/dev/null 2>"$dir/logs/nginx-start.log" ||
  { cat "$dir/logs/nginx-start.log" >&2; exit 1; }
for _ in $(seq 50); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done

cat > "$dir/cluster.env" <<ENV
RELAY=https://127.0.0.1:$port
CA=$dir/ca/ca.crt
NODE_PIDS="${node_pids[*]}"
NODE_PORTS="${node_ports[*]}"
ADMIN_PORTS="${admin_ports[*]}"
NGINX_PID=$(cat "$dir/nginx.pid")
ENV
echo "local_cluster: relay https://127.0.0.1:$port (CA $dir/ca/ca.crt), $nodes nodes on ports ${node_ports[*]}" >&2
