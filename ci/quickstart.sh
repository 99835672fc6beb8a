#!/usr/bin/env bash
# The main job on a fresh machine: installs what is needed, builds and
# installs jfs, formats a volume on the embedded metadata engine with local
# object storage, and mounts it, ready to use.
#
#   JFS_NAME (myjfs), JFS_META (/var/lib/jfs/$JFS_NAME.meta),
#   JFS_MOUNT (/jfs) and JFS_BUCKET (/var/jfs) change the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

name=${JFS_NAME:-myjfs}
meta=${JFS_META:-/var/lib/jfs/$name.meta}
mnt=${JFS_MOUNT:-/jfs}
bucket=${JFS_BUCKET:-/var/jfs}

ci/install.sh
log "cargo build --release"
cargo build --release --quiet --bin jfs
install -m 0755 target/release/jfs /usr/local/bin/jfs
jfs --version

if jfs status "$meta" >/dev/null 2>&1; then
  log "volume at $meta exists: mounting it"
else
  mkdir -p "$(dirname "$meta")"
  jfs format "$meta" "$name" --storage file --bucket "$bucket"
fi
mkdir -p "$mnt"
if grep -qs " $mnt fuse" /proc/mounts; then
  log "$mnt is already mounted"
else
  jfs mount --background "$meta" "$mnt"
fi
df -h "$mnt"
log "ready: $mnt is a jfs volume ('jfs umount $mnt' to unmount)"
