#!/usr/bin/env bash
# Cost of rate limiting on cache hits: the same warm hit through imgedge without limits, with a
# non-tripping per-IP policy on the local backend, and on the Redis backend.
#   benches/wrk-limits.sh [ROUNDS=3]
# Starts the nginx origin of ../shared/bench/nginx-baseline.sh (:18081), a redis-server
# (:18379) and three imgedge instances (:18094 none, :18095 local, :18096 redis), then
# ../shared/bench/ab-wrk.sh (wrk -t2 -c32 -d8s) local vs none and redis vs none.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
file=${FILE:-meadow_1280x1024.jpg}
bin=${IMGEDGE_BIN:-target/release/imgedge}
[ -x "$bin" ] || cargo build --release
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
rpid=$!
pids=()
trap 'kill "${pids[@]}" $rpid 2>/dev/null; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
start() { # name port limits-yaml
  cat > "$work/$1.yaml" <<CONF
server: {threads: 2, pid_file: $work/$1.pid, upgrade_sock: $work/$1.sock}
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$(($2 + 100))"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin}]
log: {access: false, level: warn}
$3
CONF
  "$bin" -c "$work/$1.yaml" 2>"$work/$1.log" & pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$(($2 + 100))/healthz" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$2/$file"
}
policy='  policies: [{name: per_ip, key: client_ip, rate: "1000000/s", burst: 1000000}]'
start none 18094 ""
start local 18095 "limits:
$policy"
start redis 18096 "limits:
$policy
  backend: {kind: redis, redis_url: \"redis://127.0.0.1:18379\", timeout_ms: 20, on_error: local}"
curl -s -o /dev/null -D - "http://127.0.0.1:18096/$file" | grep -i '^ratelimit' || true
if [ -z "${ONLY_REDIS:-}" ]; then echo "== local backend (A) vs no limits (B)"
bash "$shared/bench/ab-wrk.sh" "http://127.0.0.1:18095/$file" "http://127.0.0.1:18094/$file" "$rounds"; fi
echo "== redis backend (A) vs no limits (B)"
bash "$shared/bench/ab-wrk.sh" "http://127.0.0.1:18096/$file" "http://127.0.0.1:18094/$file" "$rounds"
