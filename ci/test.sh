#!/usr/bin/env bash
# Runs every test of jfs: installs what is missing, checks formatting and
# lints, starts an S3-compatible server, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

ci/install.sh
export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --features redb,sqlite --quiet -- -D warnings
# The TiKV and FoundationDB engines are checked here; their suites run
# against a real cluster when JFS_TEST_TIKV or FDB_CLUSTER_FILE is set
# (README, Testing). Linking the fdb feature needs libfdb_c.
log "cargo clippy --features tikv,fdb (check only)"
cargo clippy --lib --features tikv,fdb --quiet -- -D warnings
. ci/s3.sh
. ci/etcd.sh
. ci/redis.sh
. ci/postgres.sh
. ci/mysql.sh
log "cargo test"
# Missing POSIX suite tools fail the run here instead of being skipped.
export JFS_REQUIRE_SUITES=1
cargo test --features redb,sqlite
