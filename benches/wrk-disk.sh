#!/usr/bin/env bash
# Disk cache tier: hit throughput from disk vs memory, and time to first hit after a restart.
#   benches/wrk-disk.sh [ROUNDS=3]
# Origin: ../shared/bench/nginx-baseline.sh (:18081) serving the corpus plus a 23 KB JPEG.
#  1. Two imgedge instances with a disk tier, warmed with the same ~200 transformed URLs of two
#     corpus photos (widths 200..596 of meadow_1280x1024.jpg and storm_1920x1280.jpg):
#       A (:18090) memory_bytes 1MiB: the working set (~5 MB) does not fit, hits come from disk
#       B (:18092) memory_bytes 512MiB: every hit from memory
#     ../shared/bench/ab-wrk.sh runs wrk -t2 -c32 -d8s with a Lua script cycling the URL list,
#     A B A B ...
#  2. A gets ENTRIES (10000) more entries (the small JPEG with ?v=N), is killed (SIGKILL) and
#     restarted; reports the time from exec to the first HIT and to the end of the index scan.
# Env: IMGEDGE_BIN (default target/release/imgedge), ENTRIES, WRK_ARGS (without -s).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(cd "${SHARED:-../shared}" && pwd)
rounds=${1:-3}
entries=${ENTRIES:-10000}
bin=$(realpath "${IMGEDGE_BIN:-target/release/imgedge}")
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
mkdir -p "$work/corpus"
ln -s "$shared"/corpus/*.jpg "$work/corpus/"
cp tests/fixtures/friends_orient6_386x256.jpg "$work/corpus/small.jpg"
bash "$shared/bench/nginx-baseline.sh" start "$work/corpus" >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  bash "$shared/bench/nginx-baseline.sh" stop >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start_edge() { # name port admin_port memory_bytes
  cat > "$work/$1.yaml" <<CONF
server: {threads: 2, pid_file: $work/$1.pid, upgrade_sock: $work/$1.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$3"}
upstreams: {origin: {peers: ["127.0.0.1:18081"]}}
routes: [{prefix: /, upstream: origin}]
cache:
  memory_bytes: $4
  max_object_bytes: 1MiB
  disk: {path: $work/$1-disk, bytes: 4GiB}
log: {access: false, level: warn}
CONF
  "$bin" -c "$work/$1.yaml" 2>>"$work/$1.log" &
  pids+=($!)
  eval "pid_$1=$!"
  disown
  for _ in $(seq 1 400); do curl -sf -o /dev/null "http://127.0.0.1:$3/healthz" && return; sleep 0.05; done
  echo "imgedge $1 did not start: $(cat "$work/$1.log")" >&2; exit 1
}
metric() { # admin_port name-prefix
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {print s + 0}'
}

start_edge A 18090 18091 1MiB
start_edge B 18092 18093 512MiB
: > "$work/urls.txt"
for f in meadow_1280x1024.jpg storm_1920x1280.jpg; do
  for w in $(seq 200 4 596); do echo "/$f?width=$w" >> "$work/urls.txt"; done
done
n=$(wc -l < "$work/urls.txt")
cat > "$work/urls.lua" <<LUA
local paths = {}
for line in io.lines("$work/urls.txt") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
for port in 18090 18092; do
  sed "s|^|http://127.0.0.1:$port|" "$work/urls.txt" | xargs -P 2 -I{} curl -sf -o /dev/null {}
done
for _ in $(seq 1 200); do
  [ "$(metric 18091 imgedge_cache_disk_items)" -ge "$n" ] && break; sleep 0.1
done
echo "working set: $n transformed URLs, $(metric 18091 'imgedge_cache_disk_bytes ') bytes on A's disk;" \
  "A memory $(metric 18091 'imgedge_cache_bytes ') bytes ($(metric 18091 imgedge_cache_items) items)"
disk_hits0=$(metric 18091 'imgedge_cache_disk_lookups_total{result="hit"}')
hits0=$(metric 18091 'imgedge_cache_lookups_total{result="hit"}')
origin0=$(metric 18091 imgedge_upstream_requests_total)
echo "A = hits from the disk tier (memory 1MiB), B = hits from memory ($(nproc) cores, $(uname -r))"
WRK_ARGS="${WRK_ARGS:--t2 -c32 -d8s} -s $work/urls.lua" \
  bash "$shared/bench/ab-wrk.sh" "http://127.0.0.1:18090/" "http://127.0.0.1:18092/" "$rounds"
echo "A during the runs: $(( $(metric 18091 'imgedge_cache_disk_lookups_total{result="hit"}') - disk_hits0 )) disk hits," \
  "$(( $(metric 18091 'imgedge_cache_lookups_total{result="hit"}') - hits0 )) memory hits," \
  "$(( $(metric 18091 imgedge_upstream_requests_total) - origin0 )) origin requests (ab-wrk's warm-up GET /)"
kill -9 "$pid_B"

echo "filling A with $entries more entries ..."
python3 - "$entries" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", 18090)
for i in range(int(sys.argv[1])):
    c.request("GET", f"/small.jpg?v={i}")
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
total=$((n + entries))
# Wait for the asynchronous writes (a write skipped under back-pressure never comes).
for _ in $(seq 1 600); do
  done_=$(( $(metric 18091 imgedge_cache_disk_items) + $(metric 18091 'imgedge_cache_disk_writes_total{result="skipped"}') ))
  [ "$done_" -ge "$total" ] && break; sleep 0.1
done
echo "A: $(metric 18091 imgedge_cache_disk_items) entries, $(metric 18091 'imgedge_cache_disk_bytes ') bytes on disk" \
  "($(metric 18091 'imgedge_cache_disk_writes_total{result="skipped"}') writes skipped under back-pressure); kill -9 and restart"
kill -9 "$pid_A"
sync
probe="http://127.0.0.1:18090/small.jpg?v=$((entries / 2))"
t0=$(date +%s%N)
"$bin" -c "$work/A.yaml" 2>>"$work/A.log" &
pids+=($!)
disown
until [ "$(curl -s -o /dev/null -D - "$probe" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}')" = "HIT" ]; do :; done
t1=$(date +%s%N)
until [ "$(metric 18091 imgedge_cache_disk_index_ready)" = 1 ]; do :; done
t2=$(date +%s%N)
echo "restart with $total entries on disk: first HIT after $(( (t1 - t0) / 1000000 )) ms (from exec)," \
  "index ready after $(( (t2 - t0) / 1000000 )) ms; scan took $(metric 18091 imgedge_cache_disk_scan_seconds) s;" \
  "$(metric 18091 imgedge_cache_disk_items) entries indexed"
