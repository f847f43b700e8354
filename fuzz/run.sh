#!/usr/bin/env bash
# Runs one fuzz target: fuzz/run.sh TARGET [SECONDS] [more libFuzzer flags]
#   TARGET: transform_url | config | decode | svg     SECONDS: default 600 (the issue's minimum)
# New inputs go to fuzz/corpus/TARGET (seeds in fuzz/seeds/TARGET are read, not written);
# a crash, hang (>10 s) or out-of-memory (>2 GiB) stops the run and leaves the input in
# fuzz/artifacts/TARGET/. Only a stable toolchain is installed: RUSTC_BOOTSTRAP=1 lets it take
# the -Z flags cargo-fuzz passes (-Zsanitizer=address and friends).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags]}
secs=${2:-600}
shift $(($# < 2 ? $# : 2))
case $target in
  transform_url) max_len=4096 ;;   # a request target; the proxy refuses URLs over 8 KiB
  config) max_len=16384 ;;         # conf/reference.yaml (every key) is ~12 KiB
  decode) max_len=65536 ;;         # 2 bytes of transform + a source image
  svg) max_len=65536 ;;            # an SVG document through the sanitizer
  *) echo "unknown target $target (transform_url, config, decode, svg)" >&2; exit 2 ;;
esac
mkdir -p "corpus/$target" "artifacts/$target"
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --release --sanitizer address "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
  -print_final_stats=1 "$@"
