#!/usr/bin/env bash
# Cache-hit throughput, side by side with nginx proxy_cache on this machine.
#   benches/wrk-cache-hit.sh [ROUNDS=3]
# Starts ../shared/bench/nginx-baseline.sh (origin :18081 with the corpus, nginx edge :18082)
# and imgedge (:18090, admin :18091) in front of the same origin, warms both, then runs
# ../shared/bench/ab-wrk.sh (wrk -t2 -c32 -d8s, A B A B ...) on the ~180 KB meadow JPEG.
# Env: IMGEDGE_BIN (default target/release/imgedge), FILE, WRK_ARGS, IMGEDGE_EXTRA (YAML lines).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
file=${FILE:-meadow_1280x1024.jpg}
bin=${IMGEDGE_BIN:-target/release/imgedge}
[ -x "$bin" ] || cargo build --release
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
cat > "$work/imgedge.yaml" <<CONF
server: {threads: ${THREADS:-2}, work_stealing: ${WS:-true}, pid_file: $work/pid, upgrade_sock: $work/upgrade.sock}
listen: ["127.0.0.1:18090"]
admin: {listen: "127.0.0.1:18091"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin}]
log: {access: false, level: warn}
${IMGEDGE_EXTRA:-}
CONF
"$bin" -c "$work/imgedge.yaml" 2>"$work/imgedge.log" &
pid=$!
trap 'kill $pid 2>/dev/null; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:18091/healthz" && break; sleep 0.1; done
a="http://127.0.0.1:18090/$file"; b="http://127.0.0.1:18082/$file"
for u in "$a" "$b"; do curl -s -o /dev/null "$u"; curl -s -o /dev/null -D - "$u" | grep -i x-cache-status; done
echo "A = imgedge cache hit, B = nginx proxy_cache hit ($(nproc) cores, $(uname -r))"
bash "$shared/bench/ab-wrk.sh" "$a" "$b" "$rounds"
echo "imgedge peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$pid/status)"
