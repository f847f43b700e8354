#!/usr/bin/env bash
# Minimizes a target's corpus in place (keeps only inputs that add coverage): fuzz/cmin.sh TARGET
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/cmin.sh TARGET}
export RUSTC_BOOTSTRAP=1
exec cargo fuzz cmin --release --sanitizer address "$target" "corpus/$target" -- -rss_limit_mb=2048 -timeout=10
