//! Checking a volume, and repairing what is safe to repair.
//!
//! One pass pages through the inode families (`'A' ...`) in key order, a
//! page per transaction, keeping a compact record per inode (about 64
//! bytes: kind, links found, the first parent, usage) and per slice (its
//! size, references, blocks seen); a second pass lists the objects under
//! `chunks/`. Memory grows with inodes and slices, never with names or
//! chunk contents. Then it compares:
//!
//! - entries pointing to missing inodes;
//! - inodes no entry points to (not the root, not open by a live session);
//! - link counts and parent inodes;
//! - directory counters (subdirectories, usage) and volume usage;
//! - slice reference counters (`K`) against the chunk records;
//! - blocks missing from object storage (with the path of a file that
//!   needs them), and objects nothing references;
//! - uploads left pending by dead sessions, and files open by dead sessions.
//!
//! A check of a live volume can see changes made while it runs; repair a
//! volume that is not mounted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::data::block::{block_key, slice_key_prefix};
use crate::kv::{decode_counter, encode_counter, KeyRange, KvError};
use crate::meta::keys::{self, tag, Ino};
use crate::meta::{
    decode_dentry, encode_dentry, entry_space, inode_space, Attr, Ctx, FileKind, Meta, MetaError,
    SliceRecord, Timestamp, ROOT_INO,
};
use crate::object::{ObjectError, ObjectStore};

/// Keys per page of the inode pass.
const PAGE_KEYS: usize = 2048;
/// Objects per page of the listing.
const PAGE_OBJECTS: usize = 10_000;
/// Problems described one by one per kind; the rest are counted.
const DETAILS_PER_KIND: usize = 100;
/// Name of the directory unreachable inodes are put in.
pub const LOST_FOUND: &[u8] = b"lost+found";

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Kv(#[from] KvError),
    #[error("object storage: {0}")]
    Object(#[from] ObjectError),
    #[error("{0}")]
    Usage(String),
}

pub struct FsckOptions {
    /// Only check (and repair) the subtree at this path.
    pub path: Option<String>,
    pub repair: bool,
    /// List object storage: missing blocks and objects nobody references.
    pub check_objects: bool,
    /// Unreferenced objects younger than this are left alone (an upload
    /// may be under way).
    pub grace_secs: i64,
    /// Only what `jfs gc` looks for: leaked objects and stale uploads.
    pub leaks_only: bool,
}

/// What was found, per kind of problem.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub inodes: u64,
    pub entries: u64,
    pub slices: u64,
    pub objects: u64,
    /// Objects nothing references, and their bytes.
    pub leaked_objects: u64,
    pub leaked_bytes: u64,
    /// Chunks of more than one slice record: (inode, chunk index).
    #[serde(skip)]
    pub fragmented: Vec<(Ino, u32)>,
    /// kind -> (found, repaired)
    pub counts: BTreeMap<&'static str, (u64, u64)>,
    pub details: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub kind: &'static str,
    pub what: String,
    pub repaired: bool,
}

impl Report {
    /// Problems left after the repairs.
    pub fn remaining(&self) -> u64 {
        self.counts
            .values()
            .map(|(found, fixed)| found - fixed)
            .sum()
    }

    fn found(&mut self, kind: &'static str, what: String, repaired: bool) {
        let entry = self.counts.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += u64::from(repaired);
        if entry.0 as usize <= DETAILS_PER_KIND {
            self.details.push(Problem {
                kind,
                what,
                repaired,
            });
        }
    }
}

/// What the inode pass keeps of one inode.
#[derive(Debug, Default, Clone)]
struct Node {
    attr: Option<NodeAttr>,
    /// Entries naming it, and the directory of the first.
    links: u32,
    first_parent: Ino,
    /// The directories of its other names (files with several links).
    more_parents: Vec<Ino>,
    open: bool,
}

#[derive(Debug, Clone, Copy)]
struct NodeAttr {
    kind: FileKind,
    nlink: u32,
    parent: Ino,
    length: u64,
}

/// A directory's stored counters and what its entries add up to.
#[derive(Debug, Default, Clone, Copy)]
struct DirCounts {
    stored_subdirs: i64,
    stored_space: i64,
    stored_entries: i64,
    subdirs: i64,
    space: i64,
    entries: i64,
}

#[derive(Debug, Clone, Copy)]
struct SliceUse {
    size: u32,
    records: u32,
    /// A file holding it, to name in reports.
    ino: Ino,
    blocks_seen: u32,
}

struct Checker<'a> {
    meta: &'a Meta,
    objects: Arc<dyn ObjectStore>,
    options: &'a FsckOptions,
    nodes: HashMap<Ino, Node>,
    dirs: HashMap<Ino, DirCounts>,
    slices: HashMap<u64, SliceUse>,
    /// (inode, session) of every open marker.
    opens: Vec<(Ino, u64)>,
    live_sessions: HashSet<u64>,
    scope: Option<Ino>,
    report: Report,
}

/// Checks the volume of `meta` (objects in `objects`), repairing what is
/// safe when asked.
pub async fn fsck(
    meta: &Meta,
    objects: Arc<dyn ObjectStore>,
    options: &FsckOptions,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Report, FsckError> {
    let mut checker = Checker {
        meta,
        objects,
        options,
        nodes: HashMap::new(),
        dirs: HashMap::new(),
        slices: HashMap::new(),
        opens: Vec::new(),
        live_sessions: HashSet::new(),
        scope: None,
        report: Report::default(),
    };
    if let Some(path) = &options.path {
        checker.scope = Some(resolve(meta, path).await?);
    }
    checker.load_sessions().await?;
    checker.scan_inodes(progress).await?;
    if !options.leaks_only {
        checker.check_entries().await?;
        checker.check_inodes().await?;
        checker.check_dirs().await?;
    }
    if checker.scope.is_none() {
        if !options.leaks_only {
            checker.check_usage().await?;
            checker.check_slice_refs().await?;
        }
        checker.check_pending().await?;
    }
    if options.check_objects {
        checker.check_objects(progress).await?;
    }
    Ok(checker.report)
}

/// The inode at `path` (absolute, from the volume's root).
async fn resolve(meta: &Meta, path: &str) -> Result<Ino, FsckError> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = meta
            .lookup(&Ctx::root(), ino, part.as_bytes())
            .await
            .map_err(|e| FsckError::Usage(format!("--path {path}: {part}: {e}")))?
            .0;
    }
    Ok(ino)
}

impl Checker<'_> {
    async fn load_sessions(&mut self) -> Result<(), FsckError> {
        let now = Timestamp::now().sec;
        for (sid, expiry, _) in self.meta.list_sessions().await? {
            if expiry >= now {
                self.live_sessions.insert(sid);
            }
        }
        Ok(())
    }

    async fn scan_inodes(&mut self, progress: &mut dyn FnMut(&str, u64)) -> Result<(), FsckError> {
        let db = self.meta.db().clone();
        let mut next = Some(keys::inodes_all());
        let mut seen = 0u64;
        while let Some(range) = next {
            let page = db.scan_page(&range, PAGE_KEYS).await?;
            next = page.next;
            for (key, value) in page.entries {
                seen += 1;
                let Some((ino, t, rest)) = keys::parse_inode_key(&key) else {
                    continue;
                };
                self.key(ino, t, rest, &value);
            }
            progress("keys checked", seen);
        }
        self.report.inodes = self.nodes.values().filter(|n| n.attr.is_some()).count() as u64;
        self.report.slices = self.slices.len() as u64;
        Ok(())
    }

    fn key(&mut self, ino: Ino, t: u8, rest: &[u8], value: &[u8]) {
        match t {
            tag::ATTR => {
                let node = self.nodes.entry(ino).or_default();
                match Attr::decode(value) {
                    Some(a) => {
                        node.attr = Some(NodeAttr {
                            kind: a.kind,
                            nlink: a.nlink,
                            parent: a.parent,
                            length: a.length,
                        });
                        if a.kind == FileKind::Directory {
                            self.dirs.entry(ino).or_default();
                        }
                    }
                    None => self
                        .report
                        .found("damaged attributes", format!("inode {ino}"), false),
                }
            }
            tag::DENTRY => {
                self.report.entries += 1;
                let Some((kind, child)) = decode_dentry(value) else {
                    self.report.found(
                        "damaged entry",
                        format!("entry {} in inode {ino}", String::from_utf8_lossy(rest)),
                        false,
                    );
                    return;
                };
                let node = self.nodes.entry(child).or_default();
                node.links += 1;
                if node.links == 1 {
                    node.first_parent = ino;
                } else {
                    node.more_parents.push(ino);
                }
                let dir = self.dirs.entry(ino).or_default();
                dir.entries += 1;
                dir.subdirs += i64::from(kind == FileKind::Directory);
            }
            tag::CHUNK => match SliceRecord::decode_list(value) {
                Some(records) => {
                    if records.len() > 1 {
                        if let Ok(index) = rest.try_into().map(u32::from_be_bytes) {
                            self.report.fragmented.push((ino, index));
                        }
                    }
                    for r in records.iter().filter(|r| r.id != 0) {
                        let s = self.slices.entry(r.id).or_insert(SliceUse {
                            size: r.size,
                            records: 0,
                            ino,
                            blocks_seen: 0,
                        });
                        s.records += 1;
                    }
                }
                None => self
                    .report
                    .found("damaged chunk", format!("inode {ino}"), false),
            },
            tag::SUBDIRS => {
                self.dirs.entry(ino).or_default().stored_subdirs = decode_counter(value)
            }
            tag::DIR_SPACE => {
                self.dirs.entry(ino).or_default().stored_space += decode_counter(value)
            }
            tag::DIR_INODES => {
                self.dirs.entry(ino).or_default().stored_entries += decode_counter(value)
            }
            tag::OPEN => {
                if let Ok(sid) = rest.try_into().map(u64::from_be_bytes) {
                    self.opens.push((ino, sid));
                    if self.live_sessions.contains(&sid) {
                        self.nodes.entry(ino).or_default().open = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `ino` is inside the subtree being checked.
    fn in_scope(&self, ino: Ino) -> bool {
        let Some(top) = self.scope else {
            return true;
        };
        let mut at = ino;
        for _ in 0..4096 {
            if at == top {
                return true;
            }
            if at == ROOT_INO {
                return false;
            }
            match self.nodes.get(&at) {
                Some(n) if n.links > 0 => at = n.first_parent,
                _ => return false,
            }
        }
        false
    }

    /// A path of `ino` for messages: its first name up to the root.
    async fn path_of(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO && parts.len() < 256 {
            let Some(node) = self.nodes.get(&at).filter(|n| n.links > 0) else {
                parts.push(format!("<inode {at}, no name>"));
                break;
            };
            let name = self
                .name_in(node.first_parent, at)
                .await
                .unwrap_or_else(|| format!("<inode {at}>"));
            parts.push(name);
            at = node.first_parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The first name of `child` in directory `dir`.
    async fn name_in(&self, dir: Ino, child: Ino) -> Option<String> {
        self.names_in(dir, child)
            .await
            .ok()?
            .into_iter()
            .next()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
    }

    async fn names_in(&self, dir: Ino, child: Ino) -> Result<Vec<Vec<u8>>, FsckError> {
        let mut names = Vec::new();
        let mut next = Some(keys::dentries(dir));
        while let Some(range) = next {
            let page = self.meta.db().scan_page(&range, PAGE_KEYS).await?;
            next = page.next;
            for (key, value) in page.entries {
                if decode_dentry(&value).is_some_and(|(_, i)| i == child) {
                    if let Some(name) = keys::dentry_name(dir, &key) {
                        names.push(name.to_vec());
                    }
                }
            }
        }
        Ok(names)
    }

    /// Entries pointing to inodes that are not there.
    async fn check_entries(&mut self) -> Result<(), FsckError> {
        let dangling: Vec<(Ino, Vec<Ino>)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.attr.is_none() && n.links > 0)
            .map(|(ino, n)| {
                let mut parents = vec![n.first_parent];
                parents.extend(&n.more_parents);
                (*ino, parents)
            })
            .collect();
        for (child, parents) in dangling {
            for dir in parents {
                if !self.in_scope(dir) {
                    continue;
                }
                for name in self.names_in(dir, child).await? {
                    let path = format!(
                        "{}/{}",
                        self.path_of(dir).await.trim_end_matches('/'),
                        String::from_utf8_lossy(&name)
                    );
                    let mut repaired = false;
                    if self.options.repair {
                        let key = keys::dentry(dir, &name);
                        self.meta
                            .db()
                            .run("fsck_drop_entry", |tx| {
                                let key = key.clone();
                                async move { tx.delete(key) }
                            })
                            .await?;
                        // The directory's counters are rewritten below.
                        if let Some(d) = self.dirs.get_mut(&dir) {
                            d.entries -= 1;
                        }
                        repaired = true;
                    }
                    self.report.found(
                        "entry to a missing inode",
                        format!("{path} -> inode {child}"),
                        repaired,
                    );
                }
            }
        }
        Ok(())
    }

    /// Link counts, parents, unreachable inodes, files open by dead
    /// sessions.
    async fn check_inodes(&mut self) -> Result<(), FsckError> {
        let mut lost = Vec::new();
        let mut fixes: Vec<(Ino, u32, Ino, String)> = Vec::new();
        let mut cleaned_sessions = false;
        let inos: Vec<Ino> = self.nodes.keys().copied().collect();
        for ino in inos {
            let node = self.nodes[&ino].clone();
            let Some(attr) = node.attr else { continue };
            if ino == ROOT_INO || !self.in_scope(ino) && node.links > 0 {
                continue;
            }
            if node.links == 0 {
                if node.open {
                    continue; // open-but-unlinked: its session deletes it
                }
                if self.opens.iter().any(|(i, _)| *i == ino) {
                    // Held open only by dead sessions: their cleanup
                    // deletes it.
                    let repaired = self.options.repair && {
                        if !cleaned_sessions {
                            self.meta.clean_dead_sessions().await?;
                            cleaned_sessions = true;
                        }
                        true
                    };
                    self.report.found(
                        "file open by a dead session",
                        format!("inode {ino}"),
                        repaired,
                    );
                    continue;
                }
                if self.scope.is_none() {
                    lost.push((ino, attr.kind));
                }
                continue;
            }
            if attr.kind == FileKind::Directory {
                if node.links > 1 {
                    let path = self.path_of(ino).await;
                    self.report.found(
                        "directory with several names",
                        format!("{path} (inode {ino}, {} names)", node.links),
                        false,
                    );
                }
                if attr.parent != node.first_parent {
                    let path = self.path_of(ino).await;
                    fixes.push((
                        ino,
                        attr.nlink,
                        node.first_parent,
                        format!(
                            "{path}: parent {} recorded, {} holds it",
                            attr.parent, node.first_parent
                        ),
                    ));
                }
                continue;
            }
            let parent = match node.links {
                1 if attr.parent == 0 => 0,
                1 => node.first_parent,
                _ => 0,
            };
            if attr.nlink != node.links || attr.parent != parent {
                let path = self.path_of(ino).await;
                fixes.push((
                    ino,
                    node.links,
                    parent,
                    format!(
                        "{path}: {} links and parent {} recorded, {} names found (parent {parent})",
                        attr.nlink, attr.parent, node.links
                    ),
                ));
            }
        }
        for (ino, nlink, parent, what) in fixes {
            let repaired = self.options.repair && self.set_links(ino, nlink, parent).await?;
            if repaired {
                if let Some(a) = self.nodes.get_mut(&ino).and_then(|n| n.attr.as_mut()) {
                    a.nlink = nlink;
                    a.parent = parent;
                }
            }
            self.report
                .found("wrong link count or parent", what, repaired);
        }
        for (ino, kind) in lost {
            let repaired = self.options.repair && self.move_to_lost_found(ino, kind).await?;
            self.report.found(
                "unreachable inode",
                format!("inode {ino} ({kind:?}) has no name"),
                repaired,
            );
        }
        Ok(())
    }

    async fn set_links(&self, ino: Ino, nlink: u32, parent: Ino) -> Result<bool, FsckError> {
        Ok(self
            .meta
            .db()
            .run("fsck_links", |tx| async move {
                let Some(raw) = tx.get(&keys::attr(ino)).await? else {
                    return Ok(false);
                };
                let Some(mut attr) = Attr::decode(&raw) else {
                    return Ok(false);
                };
                if attr.kind != FileKind::Directory {
                    attr.nlink = nlink;
                }
                attr.parent = parent;
                tx.put(keys::attr(ino), attr.encode())?;
                Ok(true)
            })
            .await?)
    }

    /// Gives an unreachable inode the name `lost+found/INODE`.
    async fn move_to_lost_found(&mut self, ino: Ino, kind: FileKind) -> Result<bool, FsckError> {
        let ctx = Ctx::root();
        let dir = match self.meta.lookup(&ctx, ROOT_INO, LOST_FOUND).await {
            Ok((dir, _)) => dir,
            Err(MetaError::Errno(libc::ENOENT)) => {
                let (dir, _) = self.meta.mkdir(&ctx, ROOT_INO, LOST_FOUND, 0o700).await?;
                // mkdir counted it in the root's stored counters.
                let root = self.dirs.entry(ROOT_INO).or_default();
                root.stored_entries += 1;
                root.stored_subdirs += 1;
                root.stored_space += crate::meta::MIN_SPACE_BYTES as i64;
                root.entries += 1;
                root.subdirs += 1;
                self.dirs.entry(dir).or_default();
                let node = self.nodes.entry(dir).or_default();
                node.links = 1;
                node.first_parent = ROOT_INO;
                node.attr = Some(NodeAttr {
                    kind: FileKind::Directory,
                    nlink: 2,
                    parent: ROOT_INO,
                    length: 4096,
                });
                dir
            }
            Err(e) => return Err(e.into()),
        };
        let name = ino.to_string().into_bytes();
        let done = self
            .meta
            .db()
            .run("fsck_lost_found", |tx| {
                let name = name.clone();
                async move {
                    let Some(raw) = tx.get(&keys::attr(ino)).await? else {
                        return Ok(None);
                    };
                    let Some(mut attr) = Attr::decode(&raw) else {
                        return Ok(None);
                    };
                    attr.parent = dir;
                    if attr.kind != FileKind::Directory {
                        attr.nlink = 1;
                    }
                    tx.put(keys::attr(ino), attr.encode())?;
                    tx.put(keys::dentry(dir, &name), encode_dentry(kind, ino))?;
                    tx.add(keys::dir_inodes(dir, 0), 1)?;
                    tx.add(keys::dir_space(dir, 0), entry_space(&attr) as i64)?;
                    if kind == FileKind::Directory {
                        tx.add(keys::subdirs(dir), 1)?;
                    }
                    Ok(Some(attr))
                }
            })
            .await?;
        let Some(attr) = done else { return Ok(false) };
        // Counted in lost+found's counters, rewritten by the next check.
        let node = self.nodes.entry(ino).or_default();
        node.links = 1;
        node.first_parent = dir;
        node.attr = Some(NodeAttr {
            kind: attr.kind,
            nlink: attr.nlink,
            parent: dir,
            length: attr.length,
        });
        let counts = self.dirs.entry(dir).or_default();
        counts.entries += 1;
        counts.subdirs += i64::from(kind == FileKind::Directory);
        counts.stored_entries += 1;
        counts.stored_subdirs += i64::from(kind == FileKind::Directory);
        counts.stored_space += entry_space(&attr) as i64;
        Ok(true)
    }

    /// What an inode's record says it counts in its directory.
    fn entry_space_of(attr: &NodeAttr) -> i64 {
        let mut a = Attr::new(attr.kind, 0, 0, 0, Timestamp::default());
        a.length = attr.length;
        a.parent = attr.parent;
        entry_space(&a) as i64
    }

    fn inode_space_of(attr: &NodeAttr) -> i64 {
        let mut a = Attr::new(attr.kind, 0, 0, 0, Timestamp::default());
        a.length = attr.length;
        inode_space(&a) as i64
    }

    /// Directory counters against their entries.
    async fn check_dirs(&mut self) -> Result<(), FsckError> {
        for node in self.nodes.values() {
            let Some(attr) = &node.attr else { continue };
            let space = Self::entry_space_of(attr);
            for dir in std::iter::once(&node.first_parent).chain(&node.more_parents) {
                if node.links > 0 {
                    if let Some(d) = self.dirs.get_mut(dir) {
                        d.space += space;
                    }
                }
            }
        }
        let mut dirs: Vec<(Ino, DirCounts)> = self
            .dirs
            .iter()
            .filter(|(ino, _)| self.nodes.get(ino).is_some_and(|n| n.attr.is_some()))
            .map(|(i, d)| (*i, *d))
            .collect();
        dirs.sort_by_key(|(i, _)| *i);
        for (ino, d) in dirs {
            if !self.in_scope(ino) {
                continue;
            }
            if (d.stored_subdirs, d.stored_space, d.stored_entries)
                == (d.subdirs, d.space, d.entries)
            {
                continue;
            }
            let path = self.path_of(ino).await;
            let what = format!(
                "{path}: stored subdirs {} space {} entries {}, found {} {} {}",
                d.stored_subdirs, d.stored_space, d.stored_entries, d.subdirs, d.space, d.entries
            );
            let repaired = self.options.repair && {
                self.set_dir_counts(ino, &d).await?;
                true
            };
            self.report
                .found("wrong directory counters", what, repaired);
        }
        Ok(())
    }

    async fn set_dir_counts(&self, ino: Ino, d: &DirCounts) -> Result<(), FsckError> {
        let d = *d;
        self.meta
            .db()
            .run("fsck_dir_counts", |tx| async move {
                for range in [keys::dir_space_shards(ino), keys::dir_inodes_shards(ino)] {
                    for (k, _) in tx.scan_all(&range, 64, false).await? {
                        tx.delete(k)?;
                    }
                }
                tx.put(keys::subdirs(ino), encode_counter(d.subdirs))?;
                tx.put(keys::dir_space(ino, 0), encode_counter(d.space))?;
                tx.put(keys::dir_inodes(ino, 0), encode_counter(d.entries))?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The volume's usage counters against its inodes.
    async fn check_usage(&mut self) -> Result<(), FsckError> {
        let (mut inodes, mut space) = (0i64, 0i64);
        for node in self.nodes.values() {
            if let Some(attr) = &node.attr {
                inodes += 1;
                space += Self::inode_space_of(attr);
            }
        }
        for (name, found) in [("inodes", inodes), ("space", space)] {
            let shards = keys::counter_shards(name);
            let stored: i64 = read_all(self.meta, &shards)
                .await?
                .iter()
                .map(|(_, v)| decode_counter(v))
                .sum();
            if stored == found {
                continue;
            }
            let repaired = self.options.repair && {
                self.meta
                    .db()
                    .run("fsck_usage", |tx| {
                        let shards = shards.clone();
                        async move {
                            for (k, _) in tx.scan_all(&shards, 64, false).await? {
                                tx.delete(k)?;
                            }
                            tx.put(keys::counter(name, 0), encode_counter(found))?;
                            Ok(())
                        }
                    })
                    .await?;
                true
            };
            self.report.found(
                "wrong volume usage",
                format!("{name}: {stored} stored, {found} found"),
                repaired,
            );
        }
        Ok(())
    }

    /// `K id size` must count the records of a slice beyond the first.
    async fn check_slice_refs(&mut self) -> Result<(), FsckError> {
        let mut stored: HashMap<(u64, u32), i64> = HashMap::new();
        for (key, value) in read_all(self.meta, &keys::slice_refs_all()).await? {
            if let (Some(id), Some(size)) = (be_u64(&key, 1), be_u32(&key, 9)) {
                stored.insert((id, size), decode_counter(&value));
            }
        }
        let mut wrong = Vec::new();
        for (id, s) in &self.slices {
            let expected = i64::from(s.records) - 1;
            let have = stored.remove(&(*id, s.size)).unwrap_or(0);
            if have != expected {
                wrong.push((*id, s.size, have, expected));
            }
        }
        for ((id, size), have) in stored {
            wrong.push((id, size, have, 0));
        }
        wrong.sort();
        for (id, size, have, expected) in wrong {
            let repaired = self.options.repair && {
                let key = keys::slice_refs(id, size);
                self.meta
                    .db()
                    .run("fsck_refs", |tx| {
                        let key = key.clone();
                        async move {
                            if expected > 0 {
                                tx.put(key, encode_counter(expected))
                            } else {
                                tx.delete(key)
                            }
                        }
                    })
                    .await?;
                true
            };
            self.report.found(
                "wrong slice reference count",
                format!(
                    "slice {id} ({size} bytes): {have} extra references stored, {expected} found"
                ),
                repaired,
            );
        }
        Ok(())
    }

    /// Uploads pending for sessions that are gone.
    async fn check_pending(&mut self) -> Result<(), FsckError> {
        for (key, value) in read_all(self.meta, &keys::pending_uploads_all()).await? {
            let (Some(id), sid) = (be_u64(&key, 1), be_u64(&value, 0).unwrap_or(0)) else {
                continue;
            };
            if self.live_sessions.contains(&sid) {
                continue;
            }
            let mut repaired = false;
            if self.options.repair {
                for object in self
                    .objects
                    .list(&slice_key_prefix(id), None, PAGE_OBJECTS)
                    .await?
                {
                    self.objects.delete(&object.key).await?;
                }
                self.meta.forget_pending(id).await?;
                repaired = true;
            }
            self.report.found(
                "upload pending for a dead session",
                format!("slice {id} (session {sid})"),
                repaired,
            );
        }
        Ok(())
    }

    /// Lists `chunks/`: blocks the slices need, objects nothing needs.
    async fn check_objects(
        &mut self,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<(), FsckError> {
        let block_size = self.meta.volume().block_size_bytes.max(1) as u64;
        let known: HashSet<u64> = read_all(self.meta, &keys::pending_uploads_all())
            .await?
            .iter()
            .chain(read_all(self.meta, &KeyRange::prefix(b"Q")).await?.iter())
            .filter_map(|(k, _)| be_u64(k, 1))
            .collect();
        let now = Timestamp::now().sec;
        let mut after: Option<String> = None;
        let mut listed = 0u64;
        let (mut orphans, mut orphan_bytes) = (0u64, 0u64);
        loop {
            let page = self
                .objects
                .list("chunks/", after.as_deref(), PAGE_OBJECTS)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for object in page {
                listed += 1;
                let Some((id, index, len)) = parse_block_key(&object.key) else {
                    continue;
                };
                if let Some(s) = self.slices.get_mut(&id) {
                    let start = index as u64 * block_size;
                    let expected = (s.size as u64).saturating_sub(start).min(block_size);
                    if start < s.size as u64 && expected == len as u64 {
                        s.blocks_seen += 1;
                    }
                    continue;
                }
                if known.contains(&id) || self.scope.is_some() || object.key.ends_with(".tmp") {
                    continue;
                }
                orphans += 1;
                orphan_bytes += object.size;
                let old = object
                    .modified_secs
                    .is_some_and(|t| now - t >= self.options.grace_secs);
                let repaired = self.options.repair && old && {
                    self.objects.delete(&object.key).await?;
                    true
                };
                self.report.found(
                    "object nothing references",
                    format!("{} ({} bytes)", object.key, object.size),
                    repaired,
                );
            }
            progress("objects listed", listed);
        }
        self.report.objects = listed;
        self.report.leaked_objects = orphans;
        self.report.leaked_bytes = orphan_bytes;
        let mut missing: Vec<(u64, SliceUse)> = self
            .slices
            .iter()
            .filter(|(_, s)| (s.blocks_seen as u64) < (s.size as u64).div_ceil(block_size))
            .map(|(id, s)| (*id, *s))
            .collect();
        missing.sort_by_key(|(id, _)| *id);
        for (id, s) in missing {
            // A deleted file's slices are being reclaimed: blocks go first.
            let live = self.nodes.get(&s.ino).is_some_and(|n| n.attr.is_some());
            if !live || !self.in_scope(s.ino) {
                continue;
            }
            let blocks = (s.size as u64).div_ceil(block_size);
            let mut absent = Vec::new();
            for index in 0..blocks {
                let len = (s.size as u64 - index * block_size).min(block_size) as u32;
                let key = block_key(id, index as u32, len);
                if self.objects.head(&key).await?.is_none() {
                    absent.push(key);
                }
            }
            if absent.is_empty() {
                continue; // written while the listing ran
            }
            let path = self.path_of(s.ino).await;
            self.report.found(
                "missing block",
                format!("{path} (inode {}) needs {}", s.ino, absent.join(", ")),
                false,
            );
        }
        Ok(())
    }
}

async fn read_all(meta: &Meta, range: &KeyRange) -> Result<Vec<(Vec<u8>, Vec<u8>)>, FsckError> {
    let mut all = Vec::new();
    let mut next = Some(range.clone());
    while let Some(range) = next {
        let page = meta.db().scan_page(&range, PAGE_KEYS).await?;
        next = page.next;
        all.extend(page.entries);
    }
    Ok(all)
}

/// `chunks/A/B/{id}_{index}_{len}` -> (id, index, len).
pub fn parse_block_key(key: &str) -> Option<(u64, u32, u32)> {
    let name = key.strip_prefix("chunks/")?.rsplit('/').next()?;
    let mut parts = name.split('_');
    let id = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((id, index, len))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_parse() {
        assert_eq!(
            parse_block_key(&block_key(1_234_567, 3, 4096)),
            Some((1_234_567, 3, 4096))
        );
        assert_eq!(parse_block_key("chunks/0/0/1_2"), None);
        assert_eq!(parse_block_key("jfs-volume.uuid"), None);
    }
}
