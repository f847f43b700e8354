#!/usr/bin/env bash
# The whole test suite: installs what is missing, then format, lint, Dockerfile lint, and every
# unit and end-to-end test (release build: the image code is too slow unoptimized).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
hadolint Dockerfile
cargo test --release
