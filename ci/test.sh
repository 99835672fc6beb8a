#!/usr/bin/env bash
# Runs every test of jfs: installs what is missing, checks formatting and
# lints, then the unit tests, the KV conformance suite (every engine
# available here) and the crash test.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

ci/install.sh
export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --features redb,sqlite --quiet -- -D warnings
log "cargo test"
cargo test --features redb,sqlite
