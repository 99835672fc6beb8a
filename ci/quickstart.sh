#!/usr/bin/env bash
# The main job on a fresh machine: installs what is needed, builds jfs in
# release mode and runs the embedded engine comparison.
#
# `jfs format` and `jfs mount` are not built yet (see README, "Status"); when
# they are, this script formats a volume on the embedded default with local
# object storage and mounts it.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

ci/install.sh
cargo build --release --features redb,sqlite --bin jfs --example kv_engine_compare --example meta_bench
./target/release/jfs --version
./target/release/examples/kv_engine_compare
./target/release/examples/meta_bench
