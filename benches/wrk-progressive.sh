#!/usr/bin/env bash
# One variant of each large progressive photo (400 px wide JPEG q80), cache off, through imgedge,
# side by side with thumbor (PIL engine, no storage, no result storage) and ipx (sharp + libvips,
# no result cache), all fetching the original from the nginx origin on every request.
#   benches/wrk-progressive.sh [ROUNDS=3]
# Starts ../shared/bench/nginx-baseline.sh (origin :18081), imgedge (:18192, admin :18193, route
# `cache: false`), thumbor (:18194, 2 processes) and ../shared/bench/ipx-baseline.sh (IPX_PORT,
# default :18890), then ../shared/bench/ab-wrk.sh per file: A = imgedge, B = thumbor, then ipx.
# Env: IMGEDGE_BIN, FILES (default "sunset_4272x2848.jpg seeding_5312x2988.jpg"), WRK_ARGS
# (default -t2 -c32 -d10s), PEERS (default "thumbor ipx"), THUMBOR_VENV (default
# /tmp/imgedge-thumbor: `pip install thumbor` there when missing), AB_BIN (another imgedge build
# as a peer "ab" on :18196, admin :18197: add "ab" to PEERS), DECODED_CACHE (imgedge's
# transform.decoded_cache_bytes, default 0: every request decodes, as the peers do; the key is
# left out for the AB_BIN build, which may predate it).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
rounds=${1:-3}
files=${FILES:-sunset_4272x2848.jpg seeding_5312x2988.jpg}
peers=${PEERS:-thumbor ipx}
bin=${IMGEDGE_BIN:-target/release/imgedge}
export WRK_ARGS=${WRK_ARGS:--t2 -c32 -d10s}
ipx_port=${IPX_PORT:-18890}
[ -x "$bin" ] || cargo build --release
bash "$shared/bench/nginx-baseline.sh" start "$shared/corpus" >/dev/null
work=$(mktemp -d)
pids=()
thumbor_pid=
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [ -n "$thumbor_pid" ] && kill -- -"$thumbor_pid" 2>/dev/null
  [[ " $peers " == *" ipx "* ]] && IPX_PORT=$ipx_port bash "$shared/bench/ipx-baseline.sh" stop >/dev/null 2>&1
  bash "$shared/bench/nginx-baseline.sh" stop >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
start_edge() { # BIN PORT ADMIN_PORT [TRANSFORM_EXTRA]
  cat > "$work/imgedge-$2.yaml" <<CONF
server: {threads: 2, pid_file: $work/pid-$2, upgrade_sock: $work/upgrade-$2.sock}
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$3"}
upstreams:
  origin: {peers: ["127.0.0.1:18081"]}
routes: [{prefix: /, upstream: origin, cache: false}]
transform: {quality: 80${4:-}}
log: {access: false, level: warn}
CONF
  "$1" -c "$work/imgedge-$2.yaml" 2>"$work/imgedge-$2.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$3/healthz" && break; sleep 0.1; done
}
start_edge "$bin" 18192 18193 ", decoded_cache_bytes: ${DECODED_CACHE:-0}"
if [[ " $peers " == *" thumbor "* ]]; then
  venv=${THUMBOR_VENV:-/tmp/imgedge-thumbor}
  [ -x "$venv/bin/thumbor" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q thumbor; }
  cat > "$work/thumbor.conf" <<CONF
ENGINE = 'thumbor.engines.pil'
LOADER = 'thumbor.loaders.http_loader'
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
ALLOW_UNSAFE_URL = True
QUALITY = 80
MAX_WIDTH = 0
MAX_HEIGHT = 0
CONF
  setsid "$venv/bin/thumbor" -i 127.0.0.1 -p 18194 --processes 2 -c "$work/thumbor.conf" >"$work/thumbor.log" 2>&1 &
  thumbor_pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:18194/healthcheck" && break; sleep 0.2; done
  echo "thumbor $("$venv/bin/thumbor" --version 2>&1 | tail -1), Pillow $("$venv/bin/python" -c 'import PIL; print(PIL.__version__)') (2 processes)"
fi
[[ " $peers " == *" ipx "* ]] && IPX_PORT=$ipx_port bash "$shared/bench/ipx-baseline.sh" start
[ -n "${AB_BIN:-}" ] && start_edge "$AB_BIN" 18196 18197
for file in $files; do
  a="http://127.0.0.1:18192/$file?width=400&format=jpeg&quality=80"
  for peer in $peers; do
    case $peer in
      thumbor) b="http://127.0.0.1:18194/unsafe/400x0/127.0.0.1:18081/$file" ;;
      ipx) b="http://127.0.0.1:$ipx_port/w_400&f_jpeg&q_80/http://127.0.0.1:18081/$file" ;;
      ab) b="http://127.0.0.1:18196/$file?width=400&format=jpeg&quality=80" ;;
      *) echo "unknown peer $peer" >&2; exit 2 ;;
    esac
    curl -s -o "$work/a.jpg" "$a"; curl -s -o "$work/b.jpg" "$b"
    echo "== $file: A = imgedge $bin (cache off), B = $peer$([ "$peer" = ab ] && echo " $AB_BIN") ($(nproc) cores, wrk $WRK_ARGS, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "A output: $(file -b "$work/a.jpg" | cut -d, -f1,8) $(stat -c %s "$work/a.jpg") bytes"
    echo "B output: $(file -b "$work/b.jpg" | cut -d, -f1,8) $(stat -c %s "$work/b.jpg") bytes"
    bash "$shared/bench/ab-wrk.sh" "$a" "$b" "$rounds"
  done
done
echo "imgedge peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/${pids[0]}/status")"
