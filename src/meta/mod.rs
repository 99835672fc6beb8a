//! The POSIX namespace on top of the KV contract, independent of the engine.
//!
//! Every operation is one transaction run by the retry runner. Writes are
//! idempotent under `MaybeCommitted`: ids are allocated before the
//! transaction, and a retry after an unknown outcome recognises its own
//! effect (the inode it created, the slice it appended) instead of failing
//! or applying it twice. What cannot be recognised is a created inode that
//! another client removed in between: the retry creates it again, an empty
//! node, never a second link to a live one.
//! Read-only operations use snapshot reads. The schema is `schema/README.md`.

mod access;
mod attr;
mod chunks;
mod error;
mod ids;
pub mod keys;
mod locks;
mod namespace;
pub mod overlay;
mod reclaim;
mod session;
mod setting;
mod trash;
mod xattr;

use std::future::Future;

pub use access::{Ctx, R_OK, W_OK, X_OK};
pub use attr::{decode_dentry, encode_dentry, Attr, FileKind, SliceRecord, Timestamp};
pub use chunks::{
    CHUNK_SIZE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, MAX_CHUNK_RECORDS,
};
pub use error::{errno, MetaError, MetaResult};
pub use ids::{BATCH as ID_BATCH, SHARDS as ID_SHARDS};
pub use keys::{Ino, ROOT_INO, TRASH_INO};
pub use locks::{LockKind, PosixLock};
pub use namespace::{DirEntry, Renamed, SetAttr, TimeSet, RENAME_EXCHANGE, RENAME_NOREPLACE};
pub use reclaim::ReclaimCursor;
pub use session::{Session, SessionInfo};
pub use setting::{new_uuid, validate_name, JuiceFsBlocks, Volume, SCHEMA_VERSION};
pub use trash::{create_trash_dir, utc_time};

use std::collections::HashMap;

use crate::kv::{decode_counter, decode_max, encode_counter, Db, Key, KvError, Txn, Value};
use ids::IdAllocator;

/// Shards of the usage counters: each client has its own group of
/// `USAGE_SHARDS_PER_CLIENT`, and picks one by directory, so that its
/// operations in different directories do not contend for one counter.
const USAGE_SHARDS: u16 = 64;
const USAGE_SHARDS_PER_CLIENT: u16 = 4;

/// Shards of a directory's usage counters (few, since removing the
/// directory deletes them all in one transaction).
const DIR_USAGE_SHARDS: u16 = 8;

/// Space every inode is charged at least, as JuiceFS does: 4 KiB.
pub const MIN_SPACE_BYTES: u64 = 4096;

/// A mounted (or inspected) volume's metadata.
pub struct Meta {
    db: Db,
    volume: Volume,
    usage_shard: u16,
    inodes: IdAllocator,
    slices: IdAllocator,
    session: std::sync::Mutex<Option<u64>>,
    /// Woken when this client releases a lock, for its blocked takers.
    lock_released: tokio::sync::Notify,
    /// The inode each name pointed to when this client last created or
    /// looked it up, and whether it is a directory (an inode's kind never
    /// changes): a lookup reads the entry and that inode's keys in one
    /// round trip, and a guess gone stale only costs the second read.
    hints: std::sync::Mutex<Hints>,
    /// Slice ids reserved for uploads and already marked pending, handed
    /// out by [`Meta::upload_slice_id`].
    reserved_slices: tokio::sync::Mutex<Vec<u64>>,
    /// Woken when this client queues data to reclaim (a deleted file, a
    /// released slice), for [`Meta::reclaim_queued`].
    reclaim_work: tokio::sync::Notify,
}

/// An inode a name pointed to, and whether it is a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hint {
    ino: Ino,
    dir: bool,
}

/// Names remembered in [`Meta`]'s hints before they start over.
const HINTS_CAPACITY: usize = 100_000;

/// The hints by directory, then name: a lookup finds its name without
/// copying it, and a hint that did not change is not written again.
#[derive(Default)]
struct Hints {
    by_dir: HashMap<Ino, HashMap<Vec<u8>, Hint>>,
    len: usize,
}

impl Hints {
    fn get(&self, parent: Ino, name: &[u8]) -> Option<Hint> {
        self.by_dir.get(&parent)?.get(name).copied()
    }

    fn set(&mut self, parent: Ino, name: &[u8], hint: Hint) {
        if let Some(known) = self.by_dir.get_mut(&parent).and_then(|d| d.get_mut(name)) {
            *known = hint;
            return;
        }
        if self.len >= HINTS_CAPACITY {
            self.by_dir.clear();
            self.len = 0;
        }
        self.by_dir
            .entry(parent)
            .or_default()
            .insert(name.to_vec(), hint);
        self.len += 1;
    }

    fn forget(&mut self, parent: Ino, name: &[u8]) {
        let Some(dir) = self.by_dir.get_mut(&parent) else {
            return;
        };
        if dir.remove(name).is_some() {
            self.len -= 1;
            if dir.is_empty() {
                self.by_dir.remove(&parent);
            }
        }
    }
}

/// Volume-wide usage, summed over the counter shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub inode_limit: u64,
    pub used_inodes: u64,
}

impl Meta {
    /// Writes a new volume: its record and the root directory. Refuses a
    /// store that already holds a volume unless `force`, in which case only
    /// the record is rewritten (the tree is kept).
    pub async fn format(db: &Db, volume: &Volume, force: bool) -> MetaResult<()> {
        validate_name(&volume.name).map_err(MetaError::Volume)?;
        let volume = volume.clone();
        let result = db
            .run_idempotent("format", |tx| {
                let volume = volume.clone();
                async move {
                    if let Some(existing) = tx.get(&keys::setting()).await? {
                        let old = Volume::decode(&existing).map_err(KvError::Fatal)?;
                        if tx.after_maybe_committed() && old == volume {
                            return Ok(Ok(()));
                        }
                        if !force {
                            return Ok(Err(old));
                        }
                    }
                    tx.put(keys::setting(), volume.encode())?;
                    if tx.get(&keys::attr(ROOT_INO)).await?.is_none() {
                        let now = Timestamp::now();
                        let mut root = Attr::new(FileKind::Directory, 0o777, 0, 0, now);
                        root.parent = ROOT_INO;
                        tx.put(keys::attr(ROOT_INO), root.encode())?;
                        tx.put(
                            keys::dir_mtime(ROOT_INO),
                            encode_counter(now.to_biased_nanos() as i64),
                        )?;
                        tx.put(
                            keys::dir_ctime(ROOT_INO),
                            encode_counter(now.to_biased_nanos() as i64),
                        )?;
                        tx.add(keys::counter("inodes", 0), 1)?;
                        tx.add(keys::counter("space", 0), MIN_SPACE_BYTES as i64)?;
                    }
                    if volume.trash_days > 0
                        && tx.get(&keys::attr(keys::TRASH_INO)).await?.is_none()
                    {
                        trash::create_trash_dir(&tx)?;
                    }
                    Ok(Ok(()))
                }
            })
            .await?;
        result.map_err(|old| {
            MetaError::Volume(format!(
                "this metadata store already holds volume '{}' (uuid {}); use --force to overwrite its settings",
                old.name, old.uuid
            ))
        })
    }

    /// Opens the volume in `db`.
    pub async fn load(db: Db) -> MetaResult<Meta> {
        let raw = db
            .run("load_setting", |tx| async move {
                tx.snapshot_get(&keys::setting()).await
            })
            .await?;
        let Some(raw) = raw else {
            return Err(MetaError::Volume(
                "no volume in this metadata store: run `jfs format` first".into(),
            ));
        };
        let volume = Volume::decode(&raw).map_err(MetaError::Volume)?;
        if volume.schema_version > SCHEMA_VERSION {
            return Err(MetaError::Volume(format!(
                "volume '{}' uses metadata schema {} but this jfs knows only up to {}: upgrade jfs",
                volume.name, volume.schema_version, SCHEMA_VERSION
            )));
        }
        if volume.schema_version < SCHEMA_VERSION {
            return Err(MetaError::Volume(format!(
                "volume '{}' uses metadata schema {}, which this jfs no longer reads (it predates any release): re-create the volume",
                volume.name, volume.schema_version
            )));
        }
        Ok(Meta {
            db,
            volume,
            usage_shard: fastrand::u16(..USAGE_SHARDS / USAGE_SHARDS_PER_CLIENT)
                * USAGE_SHARDS_PER_CLIENT,
            inodes: IdAllocator::new("ino"),
            slices: IdAllocator::new("slice"),
            session: std::sync::Mutex::new(None),
            lock_released: tokio::sync::Notify::new(),
            hints: std::sync::Mutex::new(Hints::default()),
            reserved_slices: tokio::sync::Mutex::new(Vec::new()),
            reclaim_work: tokio::sync::Notify::new(),
        })
    }

    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A new slice id for the data path.
    pub async fn new_slice_id(&self) -> MetaResult<u64> {
        Ok(self.slices.next(&self.db).await?)
    }

    /// Runs `body` as one transaction. A POSIX error from the body discards
    /// its writes and is returned; KV errors are retried by the runner.
    /// Bodies must be safe to run again after `MaybeCommitted` (see the
    /// module documentation).
    pub(crate) async fn txn<T, F, Fut>(&self, name: &'static str, body: F) -> MetaResult<T>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = MetaResult<T>>,
    {
        self.run_txn(name, false, body).await
    }

    /// Runs `body` as one transaction; a `recent` one is read-only and may
    /// read a recent past snapshot of the store (one consistent state,
    /// missing at most the commits whose change notices have not reached
    /// this process: see [`crate::kv::Engine::begin_recent`]). Recent
    /// reads are for answers the kernel keeps for its cache timeouts
    /// anyway; never for open (close-to-open).
    async fn run_txn<T, F, Fut>(
        &self,
        name: &'static str,
        recent: bool,
        mut body: F,
    ) -> MetaResult<T>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = MetaResult<T>>,
    {
        let attempt = |tx: Txn| {
            let fut = body(tx.clone());
            async move {
                match fut.await {
                    Ok(v) => Ok(Ok(v)),
                    Err(MetaError::Kv(e)) => Err(e),
                    Err(other) => {
                        tx.discard_writes();
                        Ok(Err(other))
                    }
                }
            }
        };
        let result = if recent {
            self.db.run_recent(name, attempt).await?
        } else {
            self.db.run_idempotent(name, attempt).await?
        };
        result
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: Ino) -> MetaResult<Attr> {
        self.getattr_at(ino, false).await
    }

    /// [`Meta::getattr`] at a recent snapshot (see [`crate::kv::Engine::begin_recent`]):
    /// for the kernel, which keeps the answer for its attribute timeout.
    pub async fn getattr_recent(&self, ino: Ino) -> MetaResult<Attr> {
        self.getattr_at(ino, true).await
    }

    async fn getattr_at(&self, ino: Ino, recent: bool) -> MetaResult<Attr> {
        self.run_txn("getattr", recent, |tx| async move {
            load_attr(&tx, ino, false)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))
        })
        .await
    }

    /// Checks `mask` (R_OK, W_OK, X_OK) for `ctx` on `ino`.
    pub async fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> MetaResult<()> {
        let attr = self.getattr(ino).await?;
        if ctx.can(&attr, mask) {
            Ok(())
        } else {
            errno(libc::EACCES)
        }
    }

    pub async fn statfs(&self) -> MetaResult<StatFs> {
        let (used_bytes, used_inodes) = self
            .txn("statfs", |tx| async move {
                Ok((
                    sum_counter(&tx, "space").await?,
                    sum_counter(&tx, "inodes").await?,
                ))
            })
            .await?;
        Ok(StatFs {
            capacity_bytes: self.volume.capacity_bytes,
            used_bytes: used_bytes.max(0) as u64,
            inode_limit: self.volume.inode_limit,
            used_inodes: used_inodes.max(0) as u64,
        })
    }

    /// Adds to this client's shard of the usage counters for an operation
    /// in directory `dir`.
    fn charge(&self, tx: &Txn, dir: Ino, space: i64, inodes: i64) -> MetaResult<()> {
        let shard = self.usage_shard + (dir % USAGE_SHARDS_PER_CLIENT as u64) as u16;
        if space != 0 {
            tx.add(keys::counter("space", shard), space)?;
        }
        if inodes != 0 {
            tx.add(keys::counter("inodes", shard), inodes)?;
        }
        Ok(())
    }

    /// Adds to directory `dir`'s usage (its entries' space and count).
    fn charge_dir(&self, tx: &Txn, dir: Ino, space: i64, inodes: i64) -> MetaResult<()> {
        self.charge_dir_for(tx, dir, dir, space, inodes)
    }

    /// Adds to directory `dir`'s usage for an operation coming from
    /// directory `from`, which picks the shard among this client's: moves
    /// into the trash from different directories (all into one hour
    /// directory) then add to different counters and do not wait for
    /// each other.
    fn charge_dir_for(
        &self,
        tx: &Txn,
        dir: Ino,
        from: Ino,
        space: i64,
        inodes: i64,
    ) -> MetaResult<()> {
        let lane = (from % USAGE_SHARDS_PER_CLIENT as u64) as u16;
        let shard = (self.usage_shard + lane) % DIR_USAGE_SHARDS;
        if space != 0 {
            tx.add(keys::dir_space(dir, shard), space)?;
        }
        if inodes != 0 {
            tx.add(keys::dir_inodes(dir, shard), inodes)?;
        }
        Ok(())
    }

    /// Charges a change of a file's space: to the volume, and to its
    /// directory while it has a single parent (see [`entry_space`]).
    fn charge_length(&self, tx: &Txn, attr: &Attr, space: i64) -> MetaResult<()> {
        self.charge(tx, attr.parent, space, 0)?;
        if attr.parent != 0 && space != 0 {
            self.charge_dir(tx, attr.parent, space, 0)?;
        }
        Ok(())
    }

    /// Space and entries of directory `ino` (its direct entries), summed
    /// over the shards.
    pub async fn dir_usage(&self, ino: Ino) -> MetaResult<(u64, u64)> {
        self.txn("dir_usage", |tx| async move {
            let space = sum_shards(&tx, &keys::dir_space_shards(ino)).await?;
            let inodes = sum_shards(&tx, &keys::dir_inodes_shards(ino)).await?;
            Ok((space.max(0) as u64, inodes.max(0) as u64))
        })
        .await
    }

    /// ENOSPC when the volume's capacity or inode limit would be passed.
    async fn check_quota(&self, tx: &Txn, space: u64, inodes: u64) -> MetaResult<()> {
        if inodes > 0 && self.volume.inode_limit > 0 {
            let used = sum_counter(tx, "inodes").await?.max(0) as u64;
            if used + inodes > self.volume.inode_limit {
                return errno(libc::ENOSPC);
            }
        }
        if space > 0 && self.volume.capacity_bytes > 0 {
            let used = sum_counter(tx, "space").await?.max(0) as u64;
            if used + space > self.volume.capacity_bytes {
                return errno(libc::ENOSPC);
            }
        }
        Ok(())
    }
}

/// What an entry counts in its directory's usage: a file with one parent
/// its length rounded up to 4 KiB (kept up to date as it changes); anything
/// else, including a file that has had several links (parent 0), 4 KiB.
pub fn entry_space(attr: &Attr) -> u64 {
    if attr.kind == FileKind::File && attr.parent != 0 {
        space_of(attr.length)
    } else {
        MIN_SPACE_BYTES
    }
}

/// What an inode counts in the volume's usage: a file its length rounded
/// up to 4 KiB, anything else 4 KiB.
pub fn inode_space(attr: &Attr) -> u64 {
    if attr.kind == FileKind::File {
        space_of(attr.length)
    } else {
        MIN_SPACE_BYTES
    }
}

/// The space an inode of `length` bytes is charged.
fn space_of(length: u64) -> u64 {
    length.div_ceil(MIN_SPACE_BYTES).max(1) * MIN_SPACE_BYTES
}

async fn sum_counter(tx: &Txn, name: &str) -> MetaResult<i64> {
    sum_shards(tx, &keys::counter_shards(name)).await
}

/// The sum of the counters in `shards` (a snapshot read).
async fn sum_shards(tx: &Txn, shards: &crate::kv::KeyRange) -> MetaResult<i64> {
    let values = tx.scan_all(shards, 256, true).await?;
    Ok(values.iter().map(|(_, v)| decode_counter(v)).sum())
}

/// Reads the attributes of `ino`, with a directory's separately kept times
/// and subdirectory count folded in. `tracked` makes the attribute record a
/// read conflict; the directory keys are always read as snapshot, since
/// concurrent entry changes update them without conflicting.
pub(crate) async fn load_attr(tx: &Txn, ino: Ino, tracked: bool) -> MetaResult<Option<Attr>> {
    if !tracked {
        return load_attr_snapshot(tx, ino).await;
    }
    let raw = tx.get(&keys::attr(ino)).await?;
    Ok(load_attrs_from(tx, &[ino], vec![raw])
        .await?
        .pop()
        .flatten())
}

/// [`load_attr`] as snapshot: the directory keys are read with the record,
/// in one round trip (a file has none, a directory needs no second read).
async fn load_attr_snapshot(tx: &Txn, ino: Ino) -> MetaResult<Option<Attr>> {
    let raws = tx.snapshot_batch_get(&attr_keys(ino, true)).await?;
    attr_from(ino, raws)
}

/// The keys holding the attributes of `ino`: its record, and for a
/// directory the separately kept times and subdirectory count.
fn attr_keys(ino: Ino, dir: bool) -> Vec<Key> {
    if dir {
        vec![
            keys::attr(ino),
            keys::dir_mtime(ino),
            keys::dir_ctime(ino),
            keys::subdirs(ino),
        ]
    } else {
        vec![keys::attr(ino)]
    }
}

/// The attributes from the values of [`attr_keys`], in order; None when
/// the inode is gone, or is a directory and `raws` lacks its other keys.
fn attr_from(ino: Ino, raws: Vec<Option<Value>>) -> MetaResult<Option<Attr>> {
    let mut raws = raws.into_iter();
    let Some(raw) = raws.next().flatten() else {
        return Ok(None);
    };
    let mut attr = decode_attr(ino, &raw)?;
    if attr.is_dir() {
        let extra: Vec<_> = raws.collect();
        let [mtime, ctime, subdirs] = extra.as_slice() else {
            return Ok(None);
        };
        apply_dir_keys(&mut attr, mtime, ctime, subdirs);
    }
    Ok(Some(attr))
}

impl Meta {
    /// The inode `name` in `parent` last pointed to, as far as this client
    /// saw.
    fn hinted(&self, parent: Ino, name: &[u8]) -> Option<Hint> {
        let hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        hints.get(parent, name)
    }

    /// Remembers that `name` in `parent` points to inode `ino` of `kind`
    /// (None: is gone).
    fn hint(&self, parent: Ino, name: &[u8], ino: Option<(Ino, FileKind)>) {
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        match ino {
            Some((ino, kind)) => {
                let dir = kind == FileKind::Directory;
                hints.set(parent, name, Hint { ino, dir });
            }
            None => hints.forget(parent, name),
        }
    }
}

/// Folds a directory's separately kept times and subdirectory count into
/// its attributes.
fn apply_dir_keys(
    attr: &mut Attr,
    mtime: &Option<Vec<u8>>,
    ctime: &Option<Vec<u8>>,
    subdirs: &Option<Vec<u8>>,
) {
    if let Some(m) = mtime {
        attr.mtime = Timestamp::from_biased_nanos(decode_max(m));
    }
    if let Some(c) = ctime {
        attr.ctime = Timestamp::from_biased_nanos(decode_max(c));
    }
    attr.nlink = 2 + subdirs.as_deref().map_or(0, decode_counter).max(0) as u32;
}

/// The attribute record of `ino` alone: for a directory, its times and
/// link count are not filled in. Enough for permission checks and modes.
pub(crate) async fn load_attr_record(
    tx: &Txn,
    ino: Ino,
    tracked: bool,
) -> MetaResult<Option<Attr>> {
    let raw = if tracked {
        tx.get(&keys::attr(ino)).await?
    } else {
        tx.snapshot_get(&keys::attr(ino)).await?
    };
    raw.map(|raw| decode_attr(ino, &raw)).transpose()
}

/// Decodes the attribute record of `ino`; a record that does not decode is
/// damaged metadata, reported as such.
pub(crate) fn decode_attr(ino: Ino, raw: &[u8]) -> MetaResult<Attr> {
    Ok(Attr::decode(raw)
        .ok_or_else(|| KvError::Fatal(format!("attribute record of inode {ino} is damaged")))?)
}

/// Snapshot reads of the attributes of every inode in `inos`, in two round
/// trips whatever their number (records, then the directories' keys).
pub(crate) async fn load_attrs(tx: &Txn, inos: &[Ino]) -> MetaResult<Vec<Option<Attr>>> {
    let keys: Vec<_> = inos.iter().map(|&ino| keys::attr(ino)).collect();
    let raws = tx.snapshot_batch_get(&keys).await?;
    load_attrs_from(tx, inos, raws).await
}

/// Decodes attribute records and folds in the directories' separately kept
/// times and subdirectory counts (read as snapshot in one batch).
pub(crate) async fn load_attrs_from(
    tx: &Txn,
    inos: &[Ino],
    raws: Vec<Option<Vec<u8>>>,
) -> MetaResult<Vec<Option<Attr>>> {
    let mut attrs = Vec::with_capacity(raws.len());
    for (ino, raw) in inos.iter().zip(raws) {
        attrs.push(raw.map(|raw| decode_attr(*ino, &raw)).transpose()?);
    }
    let dirs: Vec<usize> = (0..attrs.len())
        .filter(|&i| attrs[i].as_ref().is_some_and(Attr::is_dir))
        .collect();
    if dirs.is_empty() {
        return Ok(attrs);
    }
    let extra_keys: Vec<_> = dirs
        .iter()
        .flat_map(|&i| {
            [
                keys::dir_mtime(inos[i]),
                keys::dir_ctime(inos[i]),
                keys::subdirs(inos[i]),
            ]
        })
        .collect();
    let extra = tx.snapshot_batch_get(&extra_keys).await?;
    for (n, &i) in dirs.iter().enumerate() {
        let Some(attr) = attrs[i].as_mut() else {
            continue;
        };
        apply_dir_keys(attr, &extra[3 * n], &extra[3 * n + 1], &extra[3 * n + 2]);
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_found_replaced_forgotten_and_bounded() {
        let mut hints = Hints::default();
        let file = Hint { ino: 7, dir: false };
        hints.set(1, b"a", file);
        hints.set(1, b"a", Hint { ino: 8, dir: true });
        assert_eq!(hints.get(1, b"a"), Some(Hint { ino: 8, dir: true }));
        assert_eq!((hints.get(2, b"a"), hints.len), (None, 1));
        hints.forget(1, b"a");
        hints.forget(1, b"a");
        assert_eq!((hints.get(1, b"a"), hints.len), (None, 0));
        assert!(hints.by_dir.is_empty(), "an emptied directory is dropped");
        for i in 0..HINTS_CAPACITY as u64 {
            hints.set(i % 10, &i.to_be_bytes(), file);
        }
        assert_eq!(hints.len, HINTS_CAPACITY);
        hints.set(3, b"new", file);
        assert_eq!(hints.len, 1, "a full map starts over");
        assert_eq!(hints.get(3, b"new"), Some(file));
    }
}
