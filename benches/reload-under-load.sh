#!/usr/bin/env bash
# Graceful reload under load: measure capacity with wrk, run wrk at ~80% of it, reload imgedge
# RELOADS times during the run exactly as systemd/imgedge.service does (imgedge -t; imgedge -u -d;
# kill -QUIT $MAINPID), and report requests, socket errors (connect/read/write/timeout) and
# non-2xx answers. Target: 0 errors, 0 non-2xx.
#   benches/reload-under-load.sh            env: DURATION (s, default 40), RELOADS (default 3),
#                                           CONNS (default 32), LOAD (fraction, default 0.8)
# Origin: ../shared/bench/nginx-baseline.sh (origin :18081 with the corpus). imgedge: :18190,
# admin :18191, daemonized with its pid file and upgrade socket in a temporary directory.
# Requests: 4 in 5 are cache hits on the meadow JPEG, 1 in 5 a miss (a new ?v= each time).
#
# wrk has no rate flag. The script throttles with a per-connection Lua delay(): with C
# connections each waiting D ms between a response and its next request, the rate is
# C / (D + L) where L is the mean latency; D is computed from the measured capacity and the
# latency of a short calibration run at the target rate.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
bin=$(realpath "${IMGEDGE_BIN:-target/release/imgedge}")
duration=${DURATION:-40}; reloads=${RELOADS:-3}; conns=${CONNS:-32}; load=${LOAD:-0.8}
file=${FILE:-meadow_1280x1024.jpg}
[ -x "$bin" ] || cargo build --release
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
conf=$work/imgedge.yaml
cat > "$conf" <<CONF
server: {threads: ${THREADS:-2}, pid_file: $work/imgedge.pid, upgrade_sock: $work/upgrade.sock,
         error_log: $work/error.log, grace_period_seconds: 2, graceful_shutdown_timeout_seconds: 10}
listen: ["127.0.0.1:18190"]
admin: {listen: "127.0.0.1:18191"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin}]
cache: {memory_bytes: 256MiB}
log: {access: false, level: info}
CONF
cleanup() {
  [ -s "$work/imgedge.pid" ] && kill -INT "$(cat "$work/imgedge.pid")" 2>/dev/null || true
  bash "$shared/bench/nginx-baseline.sh" stop >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" -t -c "$conf" >/dev/null
"$bin" -d -c "$conf"                       # returns once the daemon is ready
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18191/healthz && break; sleep 0.1; done
url="http://127.0.0.1:18190/$file"
curl -sf -o /dev/null "$url"

cat > "$work/mix.lua" <<LUA
-- 4 in 5 requests hit the cached file, 1 in 5 misses (a query never seen before).
local n, id = 0, 0
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args) math.randomseed(os.time() * 1000 + (tid or 0)) ; prefix = tostring(math.random(1, 1e9)) end
function request()
  n = n + 1
  if n % 5 == 0 then return wrk.format("GET", "/$file?v=" .. prefix .. "-" .. n) end
  return wrk.format("GET", "/$file")
end
function delay() return delay_ms end
LUA

wrkrun() { # $1 = seconds; prints wrk's output
  wrk -t2 -c"$conns" -d"$1"s --latency --timeout 10s -s "$work/mix.lua" "http://127.0.0.1:18190" 2>&1
}
ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$1"; }

echo "machine: $(nproc) cores, $(uname -r); load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
cap_out=$(DELAY_MS=0 wrkrun 10)
capacity=$(awk '/^Requests\/sec:/{print $2}' <<<"$cap_out")
target=$(awk -v c="$capacity" -v l="$load" 'BEGIN{printf "%.0f", c*l}')
delay=$(awk -v c="$conns" -v t="$target" 'BEGIN{printf "%.2f", c/t*1000}')
cal_out=$(DELAY_MS=$delay wrkrun 5)
lat=$(ms "$(awk '/^    Latency/{print $2}' <<<"$cal_out")")
delay=$(awk -v c="$conns" -v t="$target" -v l="$lat" 'BEGIN{d=c/t*1000-l; if (d<0) d=0; printf "%.2f", d}')
echo "capacity: $capacity req/s (wrk -t2 -c$conns, no delay); target $target req/s ($load); delay ${delay} ms per request per connection (calibration latency ${lat} ms)"

DELAY_MS=$delay wrkrun "$duration" > "$work/wrk.out" &
wrk_pid=$!
gap=$(( duration / (reloads + 1) ))
pids=("$(cat "$work/imgedge.pid")")
for i in $(seq 1 "$reloads"); do
  sleep "$gap"
  main=$(cat "$work/imgedge.pid")          # systemd's \$MAINPID
  t0=$(date +%s.%N)
  "$bin" -t -c "$conf" >/dev/null          # ExecReload line 1
  "$bin" -u -d -c "$conf"                  # ExecReload line 2: returns when the new daemon is ready
  kill -QUIT "$main"                       # ExecReload line 3
  new=$(cat "$work/imgedge.pid")
  pids+=("$new")
  echo "reload $i: pid $main -> $new ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s for the three commands)"
done
wait "$wrk_pid" || true
out=$(cat "$work/wrk.out")
req=$(awk '/requests in/{print $1}' <<<"$out")
rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
errs=$(awk '/Socket errors:/{gsub(",",""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10}' <<<"$out")
non2xx=$(awk '/Non-2xx or 3xx responses:/{print $5}' <<<"$out")
echo "run: ${duration}s at ~$target req/s with $reloads reloads: $req requests ($rps req/s), socket errors: ${errs:-connect 0, read 0, write 0, timeout 0}, non-2xx: ${non2xx:-0}"
echo "p99 latency: $(awk '$1=="99%"{print $2}' <<<"$out"); processes: ${pids[*]}; last alive: $(kill -0 "${pids[-1]}" 2>/dev/null && echo yes || echo no)"
grep -c "draining" "$work/error.log" | sed 's/^/old processes that drained: /'
