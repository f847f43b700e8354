#!/usr/bin/env bash
# The whole test suite: installs what is missing, then format, lint, Dockerfile lint, every
# unit and end-to-end test (release build: the image code is too slow unoptimized), and the
# public HTTP caching test suite through the binary that cargo test built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
hadolint Dockerfile
cargo test --release
tests/cache_tests.sh "${CARGO_TARGET_DIR:-target}/release/imgedge"
