#!/usr/bin/env bash
# Installs what building and testing jfs needs, skipping what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

need_rust
# C toolchain for the bundled SQLite of the sqlite candidate store.
need_apt gcc libc6-dev pkg-config
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true
log "dependencies ready"
