#!/usr/bin/env bash
# Soak: DURATION seconds (default 600) of mixed traffic from wrk (-t2 -cCONNS), run as
# consecutive WINDOW-second wrk runs (default 30 s) so req/s and errors are reported over time;
# imgedge's RSS is sampled at start, after each window, and at the end.
#   benches/soak.sh            env: DURATION, WINDOW, CONNS (default 16), MEMORY (cache.memory_bytes,
#                              default 64MiB), IMGEDGE_BIN
# Traffic (Lua, per request): 75% cache hits (8 fixed URLs), 15% misses (a query never seen before,
# fetched from the origin and stored), 10% transforms of the meadow JPEG to a random width in
# 64..1024 (random format webp/jpeg): new widths are transform misses, repeated ones hits.
# heap_MiB: live heap as jemalloc counts it (imgedge_memory_allocated_bytes); RSS minus that is
# allocator overhead and pages not yet returned.
# Origin: ../shared/bench/nginx-baseline.sh (:18081, the corpus). imgedge: :18192, admin :18193.
# Target: 0 errors, 0 non-2xx, RSS flat after the warm-up window (the memory cache is bounded by
# cache.memory_bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
bin=$(realpath "${IMGEDGE_BIN:-target/release/imgedge}")
duration=${DURATION:-600}; window=${WINDOW:-30}; conns=${CONNS:-16}; memory=${MEMORY:-64MiB}
[ -x "$bin" ] || cargo build --release
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
cat > "$work/imgedge.yaml" <<CONF
server: {threads: ${THREADS:-2}, pid_file: $work/pid, upgrade_sock: $work/upgrade.sock}
listen: ["127.0.0.1:18192"]
admin: {listen: "127.0.0.1:18193"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin}]
cache: {memory_bytes: $memory}
log: {access: false, level: warn}
CONF
"$bin" -c "$work/imgedge.yaml" 2>"$work/imgedge.log" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18193/healthz && break; sleep 0.1; done
rss() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status"; }
# The allocator's view (jemalloc builds): live heap bytes, MiB; "-" when not reported.
live() { curl -s http://127.0.0.1:18193/metrics | awk '/^imgedge_memory_allocated_bytes /{v=$2} END{if (v > 0) printf "%.1f", v/1048576; else printf "-"}'; }

cat > "$work/soak.lua" <<'LUA'
local hits = {
  "/meadow_1280x1024.jpg", "/storm_1920x1280.jpg", "/friends_exif_orient6.jpg",
  "/seeding_pan_anim_480x320.gif", "/meadow_1280x1024.jpg?width=320",
  "/meadow_1280x1024.jpg?width=640&format=webp", "/storm_1920x1280.jpg?width=480",
  "/friends_exif_orient6.jpg?width=200",
}
local n, id = 0, 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args)
  math.randomseed(os.time() * 7919 + (tid or 0))
  prefix = tostring(math.random(1, 1e9))
end
function request()
  n = n + 1
  local r = math.random(100)
  local path
  if r <= 75 then
    path = hits[math.random(#hits)]
  elseif r <= 90 then
    path = "/meadow_1280x1024.jpg?miss=" .. prefix .. "-" .. n
  else
    local fmt = (math.random(2) == 1) and "webp" or "jpeg"
    path = "/meadow_1280x1024.jpg?width=" .. math.random(64, 1024) .. "&format=" .. fmt
  end
  return wrk.format("GET", path)
end
LUA

echo "machine: $(nproc) cores, $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
echo "wrk -t2 -c$conns, ${window}s windows for ${duration}s; cache.memory_bytes $memory"
start_rss=$(rss)
echo "RSS at start (idle, empty cache): ${start_rss} MiB"
printf '%-8s %10s %10s %8s %8s %10s %10s %s\n' window req/s requests errors non2xx rss_MiB heap_MiB load
total=0; total_err=0; total_bad=0; w=0; elapsed=0; warm_rss=""
while [ "$elapsed" -lt "$duration" ]; do
  w=$((w + 1))
  out=$(wrk -t2 -c"$conns" -d"${window}s" --timeout 10s -s "$work/soak.lua" http://127.0.0.1:18192 2>&1)
  elapsed=$((elapsed + window))
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  req=$(awk '/requests in/{print $1}' <<<"$out")
  err=$(awk '/Socket errors:/{gsub(",",""); print $4+$6+$8+$10}' <<<"$out"); err=${err:-0}
  bad=$(awk '/Non-2xx or 3xx responses:/{print $5}' <<<"$out"); bad=${bad:-0}
  r=$(rss); [ "$w" -eq 2 ] && warm_rss=$r
  total=$((total + req)); total_err=$((total_err + err)); total_bad=$((total_bad + bad))
  printf '%-8s %10s %10s %8s %8s %10s %10s %s\n' "$((elapsed - window))-${elapsed}s" "$rps" "$req" "$err" "$bad" "$r" "$(live)" "$(cut -d' ' -f1 /proc/loadavg)"
done
end_rss=$(rss)
echo "total: $total requests in ${elapsed}s, socket errors: $total_err, non-2xx: $total_bad"
echo "RSS: start ${start_rss} MiB, after warm-up (end of window 2) ${warm_rss:-n/a} MiB, end ${end_rss} MiB; peak $(awk '/VmHWM/{printf "%.1f", $2/1024}' /proc/$pid/status) MiB"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
curl -s http://127.0.0.1:18193/metrics | grep -E '^imgedge_cache_(bytes|capacity_bytes|items|evictions_total)' || true
