#!/usr/bin/env bash
# Installs what building and testing jfs needs, skipping what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

need_rust
# C toolchain for the bundled SQLite of the sqlite candidate store.
need_apt gcc libc6-dev pkg-config
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true
# The S3-compatible server for the tests.
if ! command -v moto_server >/dev/null 2>&1; then
  log "pip install moto[server]"
  python3 -m pip install --quiet "moto[server]" boto3
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
log "dependencies ready"
