#!/usr/bin/env bash
# A cold srcset workload, side by side with ipx (sharp + libvips, no result cache, as it runs
# behind a CDN): every large corpus photo in 10 variants (widths 320 640 960 1280 1920 x webp
# and jpeg, q80), each URL requested once, 8 at a time, through a freshly started imgedge
# (memory cache only, source cache on: the default) and through ipx; origin requests counted
# (imgedge: its upstream request counter; ipx fetches the original for every request).
#   benches/srcset.sh [ROUNDS=3]
# Starts ../shared/bench/nginx-baseline.sh (the origin, :18081) and ../shared/bench/
# ipx-baseline.sh (:18890), imgedge on :18092 (admin :18093). Env: IMGEDGE_BIN, SHARED,
# PARALLEL (8), SOURCE_CACHE (true; false: the behaviour before the source cache).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
par=${PARALLEL:-8}
bin=${IMGEDGE_BIN:-target/release/imgedge}
[ -x "$bin" ] || cargo build --release
files=(seeding_5312x2988.jpg seeding_4k_3840x2160.jpg sunset_4272x2848.jpg storm_1920x1280.jpg
  meadow_1280x1024.jpg friends_exif_orient6.jpg emerald_logo_alpha_1689x1800.png
  aitzgorri_3088x2056.webp)
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
bash "$shared/bench/ipx-baseline.sh" start
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; bash "$shared/bench/ipx-baseline.sh" stop; bash "$shared/bench/nginx-baseline.sh" stop >/dev/null; rm -rf "$work"' EXIT
cat > "$work/imgedge.yaml" <<CONF
server: {threads: 2, pid_file: $work/pid, upgrade_sock: $work/upgrade.sock}
listen: ["127.0.0.1:18092"]
admin: {listen: "127.0.0.1:18093"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin, source_cache: ${SOURCE_CACHE:-true}}]
cache: {memory_bytes: 2GiB}
transform: {quality: 80}
log: {access: false, level: warn}
CONF
: > "$work/imgedge.urls"; : > "$work/ipx.urls"
for f in "${files[@]}"; do
  for w in 320 640 960 1280 1920; do
    for fmt in webp jpeg; do
      echo "http://127.0.0.1:18092/$f?width=$w&format=$fmt" >> "$work/imgedge.urls"
      echo "http://127.0.0.1:18890/w_$w&f_$fmt&q_80/http://127.0.0.1:18081/$f" >> "$work/ipx.urls"
    done
  done
done
n=$(wc -l < "$work/imgedge.urls")
# Runs the URL list once, PARALLEL at a time, in shuffled order (the same for both); prints
# seconds and checks every answer was a 200.
run() { # URLS
  local t0 t1 codes
  shuf --random-source=<(yes) "$1" > "$work/order"
  t0=$(date +%s.%N)
  codes=$(xargs -P "$par" -n 1 curl -s -o /dev/null -w '%{http_code}\n' < "$work/order" | sort | uniq -c | tr -s ' ')
  t1=$(date +%s.%N)
  [ "$(echo "$codes" | tr -d ' ')" = "${n}200" ] || echo "  non-200 answers: $codes" >&2
  echo "$t1 - $t0" | bc -l
}
echo "srcset: ${#files[@]} originals x 10 variants = $n URLs, $par at a time, $(nproc) cores"
echo "round  imgedge_s  imgedge_req/s  imgedge_origin_requests  ipx_s  ipx_req/s  ipx_origin_requests"
for r in $(seq 1 "$rounds"); do
  "$bin" -c "$work/imgedge.yaml" 2> "$work/imgedge.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:18093/healthz" && break; sleep 0.1; done
  a=$(run "$work/imgedge.urls")
  origin=$(curl -s http://127.0.0.1:18093/metrics | awk '/^imgedge_upstream_requests_total/{s+=$2} END{print s+0}')
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  b=$(run "$work/ipx.urls")
  printf '%5d  %9.2f  %13.1f  %23d  %5.2f  %9.1f  %19d\n' "$r" "$a" "$(echo "$n / $a" | bc -l)" \
    "$origin" "$b" "$(echo "$n / $b" | bc -l)" "$n"
done
