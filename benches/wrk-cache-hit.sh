#!/usr/bin/env bash
# Cache-hit throughput, side by side with nginx proxy_cache on this machine.
#   benches/wrk-cache-hit.sh [ROUNDS=3]
# Starts ../shared/bench/nginx-baseline.sh (origin :18081 with the corpus, nginx edge :18082)
# and imgedge (:18090, admin :18091) in front of the same origin, warms both, then runs
# ../shared/bench/ab-wrk.sh (wrk -t2 -c32 -d8s, A B A B ...) on the ~180 KB meadow JPEG.
# Env: IMGEDGE_BIN (default target/release/imgedge), FILE, WRK_ARGS, IMGEDGE_EXTRA (YAML lines),
# AB_BIN: another imgedge build as B (on :18094, admin :18095) instead of nginx, to compare two
# builds in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
file=${FILE:-meadow_1280x1024.jpg}
bin=${IMGEDGE_BIN:-target/release/imgedge}
[ -x "$bin" ] || cargo build --release
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
start_edge() { # BIN PORT ADMIN_PORT
  cat > "$work/imgedge-$2.yaml" <<CONF
server: {threads: ${THREADS:-2}, work_stealing: ${WS:-true}, pid_file: $work/pid-$2, upgrade_sock: $work/upgrade-$2.sock}
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$3"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin}]
log: {access: false, level: warn}
${IMGEDGE_EXTRA:-}
CONF
  "$1" -c "$work/imgedge-$2.yaml" 2>"$work/imgedge-$2.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$3/healthz" && break; sleep 0.1; done
}
start_edge "$bin" 18090 18091
a="http://127.0.0.1:18090/$file"; b="http://127.0.0.1:18082/$file"
label="B = nginx proxy_cache hit"
if [ -n "${AB_BIN:-}" ]; then
  start_edge "$AB_BIN" 18094 18095
  b="http://127.0.0.1:18094/$file"; label="B = imgedge $AB_BIN cache hit"
fi
for u in "$a" "$b"; do curl -s -o /dev/null "$u"; curl -s -o /dev/null -D - "$u" | grep -i x-cache-status; done
echo "A = imgedge $bin cache hit, $label ($(nproc) cores, $(uname -r))"
bash "$shared/bench/ab-wrk.sh" "$a" "$b" "$rounds"
echo "imgedge peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/${pids[0]}/status")"
