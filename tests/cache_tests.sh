#!/usr/bin/env bash
# HTTP caching conformance: the public cache test suite (tests/cache-tests/, the one behind
# cache-tests.fyi) run through imgedge, counted as cache-tests.fyi counts.
#
# usage: tests/cache_tests.sh [--max-required N] [--min-passes N] [--id ID] [--out DIR] [IMGEDGE]
#
#   IMGEDGE            the binary to test (default: ${CARGO_TARGET_DIR:-target}/release/imgedge)
#   --max-required N   fail when more than N required tests fail (default 5)
#   --min-passes N     fail when fewer than N tests pass (default 210)
#   --id ID            run one test (its id) and print the suite's request/response dump instead
#   --out DIR          where results.json, the config and the logs go (default target/cache-tests)
#
# The suite's server listens on a free loopback port; imgedge, on free loopback ports, runs with
# its defaults except `cache.default_ttl: 0s` (no freshness invented for responses that state
# none) and one route `/` to that server. Exit status: 0 when the counts meet both bounds, 1 when
# they do not (or the run failed), 2 when it could not start (no node, no npm dependencies).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=$ROOT/tests/cache-tests
MAX_REQUIRED=5
MIN_PASSES=210
TEST_ID=""
OUT=$ROOT/target/cache-tests
BIN=${CARGO_TARGET_DIR:-target}/release/imgedge
CLI_TIMEOUT=180 # seconds; a normal run takes about a minute: this only stops a hung one

usage() { sed -n '5,11p' "$0" | cut -c3- >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --max-required) MAX_REQUIRED=${2:?}; shift 2 ;;
    --min-passes) MIN_PASSES=${2:?}; shift 2 ;;
    --id) TEST_ID=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    -h | --help | -*) usage ;;
    *) BIN=$1; shift ;;
  esac
done
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
if [ ! -x "$BIN" ]; then
  echo "cache_tests: no imgedge binary at $BIN (cargo build --release)" >&2
  exit 2
fi

# --import (the preloads) came with Node.js 18.18
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number)
  process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)' 2>/dev/null; then
  echo "cache_tests: the HTTP caching suite needs Node.js >= 18.18 (found:" \
    "$(node --version 2>/dev/null || echo none)) and its npm dependencies: run 'bash .ci/setup'" >&2
  exit 2
fi
if [ ! -f "$SUITE/node_modules/undici/package.json" ]; then
  echo "cache_tests: the suite's npm dependencies are missing ($SUITE/node_modules):" \
    "run 'bash .ci/setup' (npm ci --prefix tests/cache-tests)" >&2
  exit 2
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{results.json,summary.txt,imgedge.yaml,imgedge.log,origin.log,cli.log,origin.pid}

ORIGIN_PID=""
PROXY_PID=""
CLI_PID=""
stop() {
  # only what this script started, by pid
  if [ -n "$CLI_PID" ] && kill -TERM "$CLI_PID" 2>/dev/null; then
    wait "$CLI_PID" 2>/dev/null || true
  fi
  if [ -n "$PROXY_PID" ] && kill -INT "$PROXY_PID" 2>/dev/null; then # Pingora: fast shutdown
    for _ in $(seq 100); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
  fi
  if [ -n "$ORIGIN_PID" ] && kill -TERM "$ORIGIN_PID" 2>/dev/null; then
    wait "$ORIGIN_PID" 2>/dev/null || true
  fi
  CLI_PID=""
  PROXY_PID=""
  ORIGIN_PID=""
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# until CMD succeeds, while PID lives, for at most SECONDS: readiness without fixed sleeps
poll() {
  local pid=$1 seconds=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@"; do
    kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}
# shellcheck disable=SC2317 # called through poll
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# shellcheck disable=SC2317 # called through poll; the server prints the port it got
origin_port() {
  ORIGIN_PORT=$(sed -n 's|^Listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$OUT/origin.log")
  [ -n "$ORIGIN_PORT" ]
}
started=$SECONDS

# 1. the suite's server, on a port of its choosing (0), loopback only
: >"$OUT/origin.log"
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port=0 \
  npm_config_pidfile="$OUT/origin.pid" \
  node --no-warnings --import ./loopback.mjs test-engine/server/server.mjs) \
  >"$OUT/origin.log" 2>&1 &
ORIGIN_PID=$!
ORIGIN_PORT=""
if ! poll "$ORIGIN_PID" 30 origin_port; then
  echo "cache_tests: the suite's server did not start:" >&2
  cat "$OUT/origin.log" >&2
  exit 1
fi

# 2. imgedge in front of it, on two free loopback ports
read -r PROXY_PORT ADMIN_PORT < <(node -e '
  const net = require("net")
  const socks = [net.createServer(), net.createServer()]
  let bound = 0
  for (const s of socks) s.listen(0, "127.0.0.1", () => {
    if (++bound < socks.length) return
    console.log(socks.map(t => t.address().port).join(" "))
    for (const t of socks) t.close()
  })') || true
[ -n "${ADMIN_PORT:-}" ] || { echo "cache_tests: found no free loopback port" >&2; exit 1; }
cat >"$OUT/imgedge.yaml" <<EOF
# tests/cache_tests.sh: imgedge's defaults, but no freshness for responses that state none
server: {pid_file: "$OUT/imgedge.pid", upgrade_sock: "$OUT/imgedge_upgrade.sock"}
listen: ["127.0.0.1:$PROXY_PORT"]
admin: {listen: "127.0.0.1:$ADMIN_PORT"}
upstreams:
  origin: {peers: ["127.0.0.1:$ORIGIN_PORT"]}
routes:
  - {prefix: /, upstream: origin}
cache: {default_ttl: 0s}
EOF
if ! "$BIN" -t -c "$OUT/imgedge.yaml" >"$OUT/imgedge.log" 2>&1; then
  echo "cache_tests: imgedge rejects $OUT/imgedge.yaml:" >&2
  cat "$OUT/imgedge.log" >&2
  exit 1
fi
"$BIN" -c "$OUT/imgedge.yaml" >"$OUT/imgedge.log" 2>&1 &
PROXY_PID=$!
if ! poll "$PROXY_PID" 30 listening "$PROXY_PORT" \
  || ! poll "$PROXY_PID" 30 listening "$ADMIN_PORT"; then
  echo "cache_tests: imgedge did not start:" >&2
  tail -20 "$OUT/imgedge.log" >&2
  exit 1
fi

# 3. the suite's CLI against imgedge (the client appends /test/..., /config/... to the base), in
#    the background so that stop() can end it
cli() {
  (cd "$SUITE" && exec env npm_config_base="http://127.0.0.1:$PROXY_PORT" npm_config_id="$1" \
    npm_package_config_id="$1" timeout "$CLI_TIMEOUT" \
    node --no-warnings --import ./file-global.mjs test-engine/cli.mjs) &
  CLI_PID=$!
}
status=0
if [ -n "$TEST_ID" ]; then
  cli "$TEST_ID"
  wait "$CLI_PID" || status=$?
  exit $status
fi
echo "cache-tests: suite $(sed -n 's/^Commit: *//p' "$SUITE/README.md"), imgedge $BIN; logs in $OUT"
cli "" >"$OUT/results.json" 2>"$OUT/cli.log"
wait "$CLI_PID" || status=$?
CLI_PID=""
stop
if [ $status -ne 0 ]; then
  [ $status -eq 124 ] && echo "cache_tests: the suite did not finish in ${CLI_TIMEOUT}s" >&2
  echo "cache_tests: the suite's CLI failed ($status):" >&2
  tail -20 "$OUT/cli.log" >&2
  exit 1
fi

# 4. the counts, every required failure, and the bounds
status=0
node "$SUITE/count.mjs" --list --max-required "$MAX_REQUIRED" --min-passes "$MIN_PASSES" \
  "$OUT/results.json" | tee "$OUT/summary.txt" || status=$?
echo "cache-tests: ran in $((SECONDS - started))s; bounds: <= $MAX_REQUIRED required failures," \
  ">= $MIN_PASSES passes: $([ $status -eq 0 ] && echo met || echo NOT MET)"
exit $status
