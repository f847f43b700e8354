#!/usr/bin/env bash
# Transform throughput through the proxy with caching off (every request fetches the 4K JPEG
# from the origin and resizes it to 400 px JPEG q80), side by side with nginx image_filter.
#   benches/wrk-transform.sh [ROUNDS=3]
# Starts ../shared/bench/nginx-baseline.sh (origin :18081, image_filter resizer :18083) and
# imgedge (:18092, admin :18093, route `cache: false`), then ../shared/bench/ab-wrk.sh with
# WRK_ARGS (default -t2 -c32 -d10s). Prints imgedge's peak RSS (VmHWM) over the whole run.
# Env: IMGEDGE_BIN, FILE, WRK_ARGS; AB_BIN: another imgedge build as B (on :18096, admin
# :18097) instead of nginx, to compare two builds in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
file=${FILE:-seeding_4k_3840x2160.jpg}
bin=${IMGEDGE_BIN:-target/release/imgedge}
export WRK_ARGS=${WRK_ARGS:--t2 -c32 -d10s}
[ -x "$bin" ] || cargo build --release
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
start_edge() { # BIN PORT ADMIN_PORT
  cat > "$work/imgedge-$2.yaml" <<CONF
server: {threads: 2, pid_file: $work/pid-$2, upgrade_sock: $work/upgrade-$2.sock}
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$3"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin, cache: false}]
transform: {quality: 80}
log: {access: false, level: warn}
CONF
  "$1" -c "$work/imgedge-$2.yaml" 2>"$work/imgedge-$2.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$3/healthz" && break; sleep 0.1; done
}
start_edge "$bin" 18092 18093
a="http://127.0.0.1:18092/$file?width=400&format=jpeg&quality=80"
b="http://127.0.0.1:18083/resize/400/-/$file"
label="B = nginx image_filter"
if [ -n "${AB_BIN:-}" ]; then
  start_edge "$AB_BIN" 18096 18097
  b="http://127.0.0.1:18096/$file?width=400&format=jpeg&quality=80"; label="B = imgedge $AB_BIN (cache off)"
fi
curl -s -o "$work/a.jpg" "$a"; curl -s -o "$work/b.jpg" "$b"
echo "A output: $(file -b "$work/a.jpg" | cut -d, -f1,8) $(stat -c %s "$work/a.jpg") bytes"
echo "B output: $(file -b "$work/b.jpg" | cut -d, -f1,8) $(stat -c %s "$work/b.jpg") bytes"
echo "A = imgedge $bin (cache off), $label ($(nproc) cores, wrk $WRK_ARGS)"
bash "$shared/bench/ab-wrk.sh" "$a" "$b" "$rounds"
echo "imgedge peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/${pids[0]}/status")"
