//! Loading a dump (jfs's or JuiceFS's) into an empty metadata store.
//!
//! A parser on a blocking thread walks the JSON with serde's streaming
//! visitors and hands one record at a time (an entry with its chunks, the
//! end of a directory, a deleted file) over a bounded channel to the
//! writer, which batches the keys into transactions within the engine's
//! limits. Memory holds the open directories' counts and the inodes with
//! several links, never the tree.
//!
//! Everything a volume derives is recomputed, not trusted from the dump:
//! directory counts and usage, volume usage, slice reference counts (added
//! up in the store itself as `K` counters, then lowered by one, the first
//! record not being counted), link counts of hard-linked files, the id
//! allocators (set past every loaded id). The volume record is written
//! last, so a load that stops halfway leaves no volume to mount.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::{
    kind_from_name, unescape, DumpError, DumpedAttr, DumpedChunk, DumpedDelFile, DumpedXattr,
    JUICEFS_TRASH_INODE,
};
use crate::kv::{decode_counter, encode_counter, Db, KeyRange, KvError};
use crate::meta::keys::{self, Ino, TRASH_INO, TRASH_NAME};
use crate::meta::{
    encode_dentry, entry_space, inode_space, Attr, FileKind, JuiceFsBlocks, SliceRecord, Volume,
    ID_BATCH, ID_SHARDS, ROOT_INO, SCHEMA_VERSION,
};

/// Records in flight between the parser and the writer.
const CHANNEL_RECORDS: usize = 1024;

/// Loaded JuiceFS inodes move up by this much, past the ids jfs reserves
/// (JuiceFS numbers files from 2; jfs keeps ids below 1024).
const JUICEFS_INODE_SHIFT: u64 = 1024;

/// JuiceFS's trash hour directories land here and up.
const JUICEFS_TRASH_BASE: u64 = 1 << 48;

/// What a load did.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub entries: u64,
    pub inodes: u64,
    pub slices: u64,
    /// The dump came from JuiceFS: its blocks are read in place.
    pub from_juicefs: bool,
    /// Things the user should know (a secret key to set again, ...).
    pub notes: Vec<String>,
}

pub struct LoadOptions {
    /// Object storage keys to store instead of the dump's (a dump carries
    /// no secret key unless made with `--keep-secret-key`).
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// The secret key to put back where the dump says it was removed
    /// (from the environment); never added to a volume that had none.
    pub removed_secret_key: Option<String>,
}

/// One step of the dump, in document order.
#[derive(Debug)]
enum Record {
    Setting(Json),
    Counters(Json),
    DelFile(DumpedDelFile),
    /// An entry; a directory's is followed by its entries, then `Leave`.
    Entry(Entry),
    Leave,
}

#[derive(Debug, Default)]
struct Entry {
    /// The dumped inode of the directory holding it; None for the root.
    parent: Option<u64>,
    name: Vec<u8>,
    /// JuiceFS's `Trash` tree root, loaded as `/.trash`.
    trash_root: bool,
    attr: DumpedAttr,
    symlink: Option<String>,
    xattrs: Vec<DumpedXattr>,
    chunks: Vec<DumpedChunk>,
}

/// Loads the dump read from `input` into `db`, which must be empty.
/// `progress` gets the entries loaded so far and the expected total.
pub async fn load(
    db: Db,
    input: Box<dyn Read + Send>,
    options: LoadOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LoadStats, DumpError> {
    let first = db.scan_page(&KeyRange::from(Vec::new()), 1).await?;
    if !first.entries.is_empty() {
        return Err(DumpError::Format(
            "the metadata store is not empty: load into an empty one (a new database, prefix or path)"
                .into(),
        ));
    }
    let (sender, mut receiver) = mpsc::channel(CHANNEL_RECORDS);
    let parser = tokio::task::spawn_blocking(move || parse(input, sender));
    let mut loader = Loader::new(db, options);
    let mut failure = None;
    while let Some(record) = receiver.recv().await {
        if let Err(e) = loader.apply(record).await {
            failure = Some(e);
            break;
        }
        progress(loader.stats.entries, loader.expected);
    }
    // Dropping the receiver stops a parser still running.
    drop(receiver);
    let parsed = parser
        .await
        .map_err(|e| DumpError::Format(format!("the parser stopped: {e}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    parsed?;
    loader.finish().await
}

/// The parser's side: the whole document, record by record.
fn parse(input: Box<dyn Read + Send>, sender: mpsc::Sender<Record>) -> Result<(), DumpError> {
    let reader = std::io::BufReader::with_capacity(1 << 20, input);
    let mut de = serde_json::Deserializer::from_reader(reader);
    Document { out: &sender }.deserialize(&mut de)?;
    de.end()?;
    Ok(())
}

fn send<E: de::Error>(out: &mpsc::Sender<Record>, record: Record) -> Result<(), E> {
    out.blocking_send(record)
        .map_err(|_| E::custom("the load stopped"))
}

struct Document<'a> {
    out: &'a mpsc::Sender<Record>,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a dump: a JSON object with Setting, Counters and FSTree")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "Setting" => send(self.out, Record::Setting(map.next_value()?))?,
                "Counters" => send(self.out, Record::Counters(map.next_value()?))?,
                "DelFiles" => map.next_value_seed(DelFiles { out: self.out })?,
                "FSTree" => map.next_value_seed(EntrySeed {
                    out: self.out,
                    parent: None,
                    name: Vec::new(),
                    trash_root: false,
                })?,
                "Trash" => map.next_value_seed(EntrySeed {
                    out: self.out,
                    parent: Some(1),
                    name: TRASH_NAME.to_vec(),
                    trash_root: true,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct DelFiles<'a> {
    out: &'a mpsc::Sender<Record>,
}

impl<'de> DeserializeSeed<'de> for DelFiles<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DelFiles<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of deleted files")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(deleted) = seq.next_element::<DumpedDelFile>()? {
            send(self.out, Record::DelFile(deleted))?;
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

struct EntrySeed<'a> {
    out: &'a mpsc::Sender<Record>,
    parent: Option<u64>,
    name: Vec<u8>,
    trash_root: bool,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry: an object with attr")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut entry = Entry {
            parent: self.parent,
            name: self.name,
            trash_root: self.trash_root,
            ..Default::default()
        };
        let mut sent = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "attr" => entry.attr = map.next_value()?,
                "symlink" => entry.symlink = Some(map.next_value()?),
                "xattrs" => entry.xattrs = map.next_value::<Option<_>>()?.unwrap_or_default(),
                "chunks" => entry.chunks = map.next_value::<Option<_>>()?.unwrap_or_default(),
                "entries" if !sent => {
                    let ino = entry.attr.inode;
                    send(self.out, Record::Entry(std::mem::take(&mut entry)))?;
                    sent = true;
                    map.next_value_seed(Entries {
                        out: self.out,
                        parent: ino,
                    })?;
                    send(self.out, Record::Leave)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !sent {
            let is_dir = entry.attr.kind == "directory";
            send(self.out, Record::Entry(entry))?;
            if is_dir {
                send(self.out, Record::Leave)?;
            }
        }
        Ok(())
    }
}

struct Entries<'a> {
    out: &'a mpsc::Sender<Record>,
    parent: u64,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a directory's entries: an object of name -> entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            map.next_value_seed(EntrySeed {
                out: self.out,
                parent: Some(self.parent),
                name: unescape(&name),
                trash_root: false,
            })?;
        }
        Ok(())
    }
}

/// A write waiting in the current batch.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Add(Vec<u8>, i64),
}

/// Counts of a directory whose entries are being loaded.
struct OpenDir {
    ino: Ino,
    entries: i64,
    space: i64,
    subdirs: i64,
}

/// The writer's side.
struct Loader {
    db: Db,
    options: LoadOptions,
    setting: Option<Json>,
    juicefs: bool,
    trash_days: u32,
    batch: Vec<Op>,
    batch_bytes: usize,
    max_ops: usize,
    max_bytes: usize,
    dirs: Vec<OpenDir>,
    /// Inodes with several links: (names seen, link count dumped).
    links: HashMap<Ino, (u32, u32)>,
    /// A JuiceFS trash root not written yet: kept only if the volume has
    /// a trash or the dump's trash holds something.
    held_trash_root: Option<Entry>,
    trash_loaded: bool,
    used_inodes: i64,
    used_space: i64,
    max_ino: u64,
    max_slice: u64,
    expected: u64,
    /// A jfs dump's first unallocated inode, slice and session ids.
    next_ids: [u64; 3],
    stats: LoadStats,
}

impl Loader {
    fn new(db: Db, options: LoadOptions) -> Loader {
        let limits = db.limits();
        // Three quarters of the engine's limits, so a record's keys fit in
        // the room a batch leaves (etcd: 96 operations).
        let max_ops = (limits.max_txn_ops.min(4096) * 3 / 4).max(16);
        let max_bytes = (limits.max_txn_bytes.min(4 << 20) * 3 / 4).max(64 << 10);
        Loader {
            db,
            options,
            setting: None,
            juicefs: false,
            trash_days: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            max_ops,
            max_bytes,
            dirs: Vec::new(),
            links: HashMap::new(),
            held_trash_root: None,
            trash_loaded: false,
            used_inodes: 0,
            used_space: 0,
            max_ino: ROOT_INO,
            max_slice: 0,
            expected: 0,
            next_ids: [0; 3],
            stats: LoadStats::default(),
        }
    }

    async fn apply(&mut self, record: Record) -> Result<(), DumpError> {
        match record {
            Record::Setting(setting) => {
                self.juicefs = setting.get("JfsDataFormat").is_none();
                self.stats.from_juicefs = self.juicefs;
                self.trash_days =
                    setting.get("TrashDays").and_then(Json::as_u64).unwrap_or(0) as u32;
                check_juicefs_setting(&setting)?;
                self.setting = Some(setting);
            }
            Record::Counters(counters) => {
                let number = |k: &str| counters.get(k).and_then(Json::as_u64).unwrap_or(0);
                self.expected = number("usedInodes");
                if !self.juicefs {
                    // The allocators of a jfs volume resume where the
                    // dumped one stood.
                    self.next_ids = [
                        number("nextInodes"),
                        number("nextChunk"),
                        number("nextSession"),
                    ];
                }
            }
            Record::DelFile(deleted) => {
                self.need_setting()?;
                let ino = self.map_ino(deleted.inode);
                self.put(
                    keys::deleted_file(ino, deleted.length),
                    encode_counter(deleted.expire),
                )
                .await?;
                self.put_chunks(ino, &deleted.chunks).await?;
            }
            Record::Entry(entry) => {
                self.need_setting()?;
                if entry.trash_root {
                    self.held_trash_root = Some(entry);
                } else {
                    if let Some(root) = self.held_trash_root.take() {
                        self.entry(root).await?;
                    }
                    self.entry(entry).await?;
                }
            }
            Record::Leave => {
                if let Some(root) = self.held_trash_root.take() {
                    if self.trash_days == 0 {
                        // JuiceFS's empty trash of a volume without one.
                        return Ok(());
                    }
                    self.entry(root).await?;
                }
                let Some(dir) = self.dirs.pop() else {
                    return Err(DumpError::Format("unbalanced directory entries".into()));
                };
                self.put(keys::subdirs(dir.ino), encode_counter(dir.subdirs))
                    .await?;
                self.put(keys::dir_space(dir.ino, 0), encode_counter(dir.space))
                    .await?;
                self.put(keys::dir_inodes(dir.ino, 0), encode_counter(dir.entries))
                    .await?;
            }
        }
        Ok(())
    }

    fn need_setting(&self) -> Result<(), DumpError> {
        match self.setting {
            Some(_) => Ok(()),
            None => Err(DumpError::Format(
                "the dump has no Setting before its tree: is it a jfs or JuiceFS dump?".into(),
            )),
        }
    }

    /// The inode a dumped inode becomes: jfs's dumps keep theirs; JuiceFS's
    /// move past the ids jfs reserves, its trash to jfs's.
    fn map_ino(&self, ino: u64) -> Ino {
        if !self.juicefs || ino == ROOT_INO {
            ino
        } else if ino == JUICEFS_TRASH_INODE {
            TRASH_INO
        } else if ino > JUICEFS_TRASH_INODE {
            JUICEFS_TRASH_BASE + (ino - JUICEFS_TRASH_INODE)
        } else {
            ino + JUICEFS_INODE_SHIFT
        }
    }

    async fn entry(&mut self, entry: Entry) -> Result<(), DumpError> {
        let Some(kind) = kind_from_name(&entry.attr.kind) else {
            return Err(DumpError::Format(format!(
                "entry {}: unknown type '{}'",
                String::from_utf8_lossy(&entry.name),
                entry.attr.kind
            )));
        };
        let ino = match entry.parent {
            None => ROOT_INO,
            Some(_) => self.map_ino(entry.attr.inode),
        };
        let parent = entry.parent.map_or(ROOT_INO, |p| self.map_ino(p));
        if entry.parent.is_some() {
            self.stats.entries += 1;
        }
        if ino == TRASH_INO {
            self.trash_loaded = true;
        }
        if entry.parent.is_some() {
            if ino == ROOT_INO || ino < ID_BATCH && ino != TRASH_INO {
                return Err(DumpError::Format(format!(
                    "entry {}: inode {ino} is reserved",
                    String::from_utf8_lossy(&entry.name)
                )));
            }
            self.put(keys::dentry(parent, &entry.name), encode_dentry(kind, ino))
                .await?;
        }
        let mut attr = entry
            .attr
            .to_attr()
            .ok_or_else(|| DumpError::Format("an entry has a damaged attr".into()))?;
        if entry.trash_root {
            attr.mode = 0o700;
            attr.uid = 0;
            attr.gid = 0;
        }
        // A file with several links: written once, counted at every name.
        if kind != FileKind::Directory && attr.nlink > 1 {
            let seen = self.links.entry(ino).or_insert((0, attr.nlink));
            seen.0 += 1;
            if seen.0 > 1 {
                self.count_in_parent(entry.parent.is_some(), crate::meta::MIN_SPACE_BYTES, false);
                return Ok(());
            }
        }
        attr.parent = match kind {
            FileKind::Directory => parent,
            _ if attr.nlink == 1 => parent,
            _ => 0,
        };
        match kind {
            FileKind::Directory => attr.length = 4096,
            FileKind::Symlink => {
                let target = unescape(entry.symlink.as_deref().unwrap_or_default());
                attr.length = target.len() as u64;
                self.put(keys::symlink(ino), target).await?;
            }
            _ => {}
        }
        attr.slice_seq = entry.chunks.iter().map(|c| c.slices.len() as u64).sum();
        self.put_chunks(ino, &entry.chunks).await?;
        for x in &entry.xattrs {
            self.put(keys::xattr(ino, &unescape(&x.name)), unescape(&x.value))
                .await?;
        }
        self.put(keys::attr(ino), attr.encode()).await?;
        if kind == FileKind::Directory {
            let mtime = attr.mtime.to_biased_nanos() as i64;
            let ctime = attr.ctime.to_biased_nanos() as i64;
            self.put(keys::dir_mtime(ino), encode_counter(mtime))
                .await?;
            self.put(keys::dir_ctime(ino), encode_counter(ctime))
                .await?;
        }
        self.count_in_parent(
            entry.parent.is_some(),
            entry_space(&attr),
            kind == FileKind::Directory,
        );
        if kind == FileKind::Directory {
            self.dirs.push(OpenDir {
                ino,
                entries: 0,
                space: 0,
                subdirs: 0,
            });
        }
        self.used_inodes += 1;
        self.used_space += inode_space(&attr) as i64;
        self.stats.inodes += 1;
        if ino < JUICEFS_TRASH_BASE || !self.juicefs {
            self.max_ino = self.max_ino.max(ino);
        }
        Ok(())
    }

    fn count_in_parent(&mut self, has_parent: bool, space: u64, is_dir: bool) {
        if !has_parent {
            return;
        }
        if let Some(dir) = self.dirs.last_mut() {
            dir.entries += 1;
            dir.space += space as i64;
            dir.subdirs += i64::from(is_dir);
        }
    }

    async fn put_chunks(&mut self, ino: Ino, chunks: &[DumpedChunk]) -> Result<(), DumpError> {
        for chunk in chunks {
            let records: Vec<SliceRecord> = chunk
                .slices
                .iter()
                .map(|s| SliceRecord {
                    pos: s.pos,
                    id: s.id,
                    size: s.size,
                    offset: s.off,
                    len: s.len,
                })
                .collect();
            for r in records.iter().filter(|r| r.id != 0) {
                self.max_slice = self.max_slice.max(r.id);
                self.stats.slices += 1;
                self.add(keys::slice_refs(r.id, r.size), 1).await?;
            }
            self.put(
                keys::chunk(ino, chunk.index),
                SliceRecord::encode_list(&records),
            )
            .await?;
        }
        Ok(())
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DumpError> {
        self.batch_bytes += key.len() + value.len();
        self.batch.push(Op::Put(key, value));
        self.flush_if_full().await
    }

    async fn add(&mut self, key: Vec<u8>, delta: i64) -> Result<(), DumpError> {
        self.batch_bytes += key.len() + 8;
        self.batch.push(Op::Add(key, delta));
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> Result<(), DumpError> {
        if self.batch.len() >= self.max_ops || self.batch_bytes >= self.max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Commits the batch. An unknown outcome is an error, not a retry: the
    /// batch's additions must not count twice.
    async fn flush(&mut self) -> Result<(), DumpError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let batch = &batch;
        self.db
            .run("load", |tx| async move {
                for op in batch {
                    match op {
                        Op::Put(k, v) => tx.put(k.clone(), v.clone())?,
                        Op::Add(k, d) => tx.add(k.clone(), *d)?,
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| match e {
                KvError::MaybeCommitted(_) => DumpError::Format(format!(
                    "{e}: the load cannot tell whether its last batch was stored; empty the store and load again"
                )),
                other => other.into(),
            })
    }

    async fn finish(mut self) -> Result<LoadStats, DumpError> {
        let Some(setting) = self.setting.take() else {
            return Err(DumpError::Format("the dump has no Setting".into()));
        };
        if !self.dirs.is_empty() || self.used_inodes == 0 {
            return Err(DumpError::Format(
                "the dump ends before its tree does: is the file complete?".into(),
            ));
        }
        // The id allocators start past every loaded id.
        let per_batch = ID_SHARDS * ID_BATCH;
        let [next_ino, next_slice, next_session] = self.next_ids;
        for (kind, max, next) in [
            ("ino", self.max_ino, next_ino),
            ("slice", self.max_slice, next_slice),
            ("session", 0, next_session),
        ] {
            let batch = (max / per_batch + 1).max(next.div_ceil(per_batch));
            for shard in 0..ID_SHARDS as u16 {
                self.put(keys::counter(kind, shard), encode_counter(batch as i64))
                    .await?;
            }
        }
        self.put(keys::counter("inodes", 0), encode_counter(self.used_inodes))
            .await?;
        self.put(keys::counter("space", 0), encode_counter(self.used_space))
            .await?;
        self.flush().await?;
        self.fix_link_counts().await?;
        self.lower_slice_refs().await?;
        let volume = self.volume(&setting)?;
        if volume.trash_days > 0 && !self.trash_loaded {
            self.db
                .run("load_trash", |tx| async move {
                    crate::meta::create_trash_dir(&tx)
                })
                .await?;
        }
        self.db
            .run("load_setting", |tx| {
                let record = volume.encode();
                async move { tx.put(keys::setting(), record) }
            })
            .await?;
        Ok(self.stats)
    }

    /// Link counts of hard-linked files from the names actually loaded.
    async fn fix_link_counts(&mut self) -> Result<(), DumpError> {
        let wrong: Vec<(Ino, u32)> = self
            .links
            .iter()
            .filter(|(_, (seen, dumped))| seen != dumped)
            .map(|(ino, (seen, _))| (*ino, *seen))
            .collect();
        for (ino, seen) in wrong {
            self.db
                .run("load_nlink", |tx| async move {
                    if let Some(raw) = tx.get(&keys::attr(ino)).await? {
                        if let Some(mut attr) = Attr::decode(&raw) {
                            attr.nlink = seen;
                            if seen == 1 {
                                // One name left: its parent is not known here.
                                attr.parent = 0;
                            }
                            tx.put(keys::attr(ino), attr.encode())?;
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// `K id size` counted every record of a slice; the schema counts the
    /// references beyond the first.
    async fn lower_slice_refs(&mut self) -> Result<(), DumpError> {
        let mut next = Some(keys::slice_refs_all());
        while let Some(range) = next {
            let page = self.db.scan_page(&range, self.max_ops).await?;
            next = page.next;
            let page = &page.entries;
            self.db
                .run("load_refs", |tx| async move {
                    for (key, value) in page {
                        let refs = decode_counter(value);
                        if refs <= 1 {
                            tx.delete(key.clone())?;
                        } else {
                            tx.put(key.clone(), encode_counter(refs - 1))?;
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// The volume record from the dump's `Setting` (jfs's or JuiceFS's).
    fn volume(&mut self, s: &Json) -> Result<Volume, DumpError> {
        let text = |k: &str| s.get(k).and_then(Json::as_str).map(str::to_string);
        let number = |k: &str| s.get(k).and_then(Json::as_u64).unwrap_or(0);
        let name = text("Name").ok_or_else(|| DumpError::Format("Setting has no Name".into()))?;
        let mut volume = Volume::new(
            &name,
            &text("Storage").unwrap_or_else(|| "file".into()),
            &text("Bucket").unwrap_or_default(),
        );
        if let Some(uuid) = text("UUID") {
            volume.uuid = uuid;
        }
        volume.schema_version = SCHEMA_VERSION;
        let block_kib = number("BlockSize");
        if block_kib > 0 {
            volume.block_size_bytes = (block_kib * 1024) as u32;
        }
        volume.trash_days = number("TrashDays") as u32;
        volume.capacity_bytes = number("Capacity");
        volume.inode_limit = number("Inodes");
        if let Some(created) = s.get("JfsCreated").and_then(Json::as_i64) {
            volume.created = created;
        }
        volume.access_key = self
            .options
            .access_key
            .clone()
            .or_else(|| text("AccessKey").filter(|k| !k.is_empty()));
        let dumped_secret = text("SecretKey").filter(|k| !k.is_empty());
        volume.secret_key = match (&self.options.secret_key, dumped_secret) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(k)) if k == "removed" => {
                if self.options.removed_secret_key.is_none() {
                    self.stats.notes.push(
                        "the dump has no secret key: set it with `jfs config META_URL --secret-key KEY`"
                            .into(),
                    );
                }
                self.options.removed_secret_key.clone()
            }
            (None, other) => other,
        };
        let compression = text("Compression").unwrap_or_else(|| "none".into());
        if self.juicefs {
            volume.juicefs_blocks = Some(JuiceFsBlocks {
                slice_ids_below: self.max_slice + 1,
                compression: compression.clone(),
            });
            // New blocks are jfs's: zstd where JuiceFS compressed.
            volume.compression = if compression == "none" {
                "none".into()
            } else {
                "zstd".into()
            };
        } else {
            volume.compression = compression;
            if let Some(legacy) = s.get("JfsJuiceFsBlocks") {
                volume.juicefs_blocks = serde_json::from_value(legacy.clone()).ok();
            }
        }
        Ok(volume)
    }
}

/// Refuses JuiceFS volumes whose objects jfs cannot read in place.
fn check_juicefs_setting(s: &Json) -> Result<(), DumpError> {
    let set = |k: &str| match s.get(k) {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(v)) => !v.is_empty(),
        Some(Json::Number(n)) => n.as_u64() != Some(0),
        _ => false,
    };
    if set("EncryptKey") {
        return Err(DumpError::Format(
            "the JuiceFS volume is encrypted: jfs cannot read its objects".into(),
        ));
    }
    if set("HashPrefix") || set("Shards") {
        return Err(DumpError::Format(
            "the JuiceFS volume uses hash-prefixed or sharded object names: jfs cannot read them in place".into(),
        ));
    }
    if let Some(c) = s.get("Compression").and_then(Json::as_str) {
        if !matches!(c, "none" | "lz4" | "zstd" | "") {
            return Err(DumpError::Format(format!(
                "compression '{c}' is not one jfs reads (none, lz4, zstd)"
            )));
        }
    }
    Ok(())
}
