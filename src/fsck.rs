//! Checking a volume, and repairing what is safe to repair.
//!
//! The check pages through the inode families (`'A' ...`) in key order, a
//! page per transaction, and lists the objects under `chunks/`. It keeps a
//! compact record per inode (kind, links found, first parent) and per
//! slice (size, references, blocks seen), but only for the ids of the
//! current *pass*: a volume of more than `inodes_per_pass` inodes (one
//! million by default, about 200 MB) is checked in several passes over the
//! keys, each taking the ids `id % passes == pass`, so memory stays bounded
//! whatever the volume's size. It compares:
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
//! Repair runs in two rounds: the namespace first (entries, links,
//! parents, lost+found), then, on what that left, the counters and the
//! objects. A check of a live volume can see changes made while it runs;
//! repair a volume that is not mounted.

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
/// Fragmented chunks remembered for `jfs gc --compact` per run.
const FRAGMENTED_KEPT: usize = 100_000;
/// Inodes per pass by default: about 200 MB of records.
pub const DEFAULT_INODES_PER_PASS: u64 = 1_000_000;
/// Keys per batched read of entries' attributes.
const ATTR_BATCH: usize = 100;
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
    /// Inodes (and slices) held in memory per pass; 0 for the default.
    pub inodes_per_pass: u64,
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
    /// Chunks of more than one slice record: (inode, chunk index), the
    /// first `FRAGMENTED_KEPT`; `fragmented_chunks` counts them all.
    #[serde(skip)]
    pub fragmented: Vec<(Ino, u32)>,
    pub fragmented_chunks: u64,
    /// Passes over the keys (see the module documentation).
    pub passes: u64,
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
    passes: u64,
    pass: u64,
    /// Records of this pass's inodes, directories and slices.
    nodes: HashMap<Ino, Node>,
    dirs: HashMap<Ino, DirCounts>,
    slices: HashMap<u64, SliceUse>,
    /// (inode, session) of the open markers of this pass's inodes.
    opens: Vec<(Ino, u64)>,
    live_sessions: HashSet<u64>,
    scope: Option<Ino>,
    /// Whether directories are inside the `--path` subtree (bounded cache).
    scope_cache: HashMap<Ino, bool>,
    /// Volume usage found, over all passes.
    used_inodes: i64,
    used_space: i64,
    keys_seen: u64,
    report: Report,
}

/// What a round of passes checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Everything (a check without repair).
    All,
    /// Entries, links, parents, unreachable inodes (repair, first).
    Namespace,
    /// Counters and objects (repair, second, on the repaired namespace).
    Counters,
}

/// Checks the volume of `meta` (objects in `objects`), repairing what is
/// safe when asked.
pub async fn fsck(
    meta: &Meta,
    objects: Arc<dyn ObjectStore>,
    options: &FsckOptions,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Report, FsckError> {
    let per_pass = match options.inodes_per_pass {
        0 => DEFAULT_INODES_PER_PASS,
        n => n,
    };
    let used = meta.statfs().await?.used_inodes;
    let passes = used.div_ceil(per_pass).max(1);
    let mut checker = Checker {
        meta,
        objects,
        options,
        passes,
        pass: 0,
        nodes: HashMap::new(),
        dirs: HashMap::new(),
        slices: HashMap::new(),
        opens: Vec::new(),
        live_sessions: HashSet::new(),
        scope: None,
        scope_cache: HashMap::new(),
        used_inodes: 0,
        used_space: 0,
        keys_seen: 0,
        report: Report {
            passes,
            ..Default::default()
        },
    };
    if let Some(path) = &options.path {
        checker.scope = Some(resolve(meta, path).await?);
    }
    checker.load_sessions().await?;
    let rounds: &[Round] = match (options.leaks_only, options.repair) {
        (true, _) => &[Round::Counters],
        (false, false) => &[Round::All],
        (false, true) => &[Round::Namespace, Round::Counters],
    };
    for &round in rounds {
        let last = round != Round::Namespace;
        checker.used_inodes = 0;
        checker.used_space = 0;
        if last && checker.scope.is_none() {
            // Before the listing, so their objects are gone from it.
            checker.check_pending().await?;
        }
        for pass in 0..passes {
            checker.pass = pass;
            checker.nodes.clear();
            checker.dirs.clear();
            checker.slices.clear();
            checker.opens.clear();
            checker.scan_inodes(last, progress).await?;
            if round != Round::Counters {
                checker.check_entries().await?;
                checker.check_inodes().await?;
            }
            if round != Round::Namespace {
                if !options.leaks_only {
                    checker.check_dirs().await?;
                    if checker.scope.is_none() {
                        checker.check_slice_refs().await?;
                    }
                }
                if options.check_objects {
                    checker.check_objects(progress).await?;
                }
            }
        }
        if last && checker.scope.is_none() && !options.leaks_only {
            checker.check_usage().await?;
        }
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
        for s in self.meta.list_sessions().await? {
            if s.alive_at(now) {
                self.live_sessions.insert(s.sid);
            }
        }
        Ok(())
    }

    /// Whether `id` (an inode or a slice) belongs to this pass.
    fn mine(&self, id: u64) -> bool {
        id % self.passes == self.pass
    }

    /// One pass over the inode families; `count` adds to the report's
    /// totals (once per check).
    async fn scan_inodes(
        &mut self,
        count: bool,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<(), FsckError> {
        let db = self.meta.db().clone();
        let mut next = Some(keys::inodes_all());
        while let Some(range) = next {
            let page = db.scan_page(&range, PAGE_KEYS).await?;
            next = page.next;
            // What the entries of this pass's directories count: their
            // inodes' attributes, read a batch at a time.
            let children: Vec<Ino> = page
                .entries
                .iter()
                .filter_map(|(key, value)| match keys::parse_inode_key(key) {
                    Some((dir, tag::DENTRY, _)) if self.mine(dir) => {
                        decode_dentry(value).map(|(_, child)| child)
                    }
                    _ => None,
                })
                .collect();
            let mut spaces = HashMap::new();
            for batch in children.chunks(ATTR_BATCH) {
                let wanted: Vec<Vec<u8>> = batch.iter().map(|i| keys::attr(*i)).collect();
                let wanted = &wanted;
                let attrs = db
                    .run("fsck_attrs", |tx| async move {
                        tx.snapshot_batch_get(wanted).await
                    })
                    .await?;
                for (ino, raw) in batch.iter().zip(attrs) {
                    if let Some(attr) = raw.as_deref().and_then(Attr::decode) {
                        spaces.insert(*ino, entry_space(&attr) as i64);
                    }
                }
            }
            for (key, value) in page.entries {
                self.keys_seen += 1;
                let Some((ino, t, rest)) = keys::parse_inode_key(&key) else {
                    continue;
                };
                self.key(ino, t, rest, &value, &spaces, count);
            }
            progress("keys checked", self.keys_seen);
        }
        for node in self.nodes.values() {
            if let Some(attr) = &node.attr {
                self.used_inodes += 1;
                self.used_space += Self::inode_space_of(attr);
            }
        }
        if count {
            self.report.inodes += self.nodes.values().filter(|n| n.attr.is_some()).count() as u64;
            self.report.slices += self.slices.len() as u64;
        }
        Ok(())
    }

    fn key(
        &mut self,
        ino: Ino,
        t: u8,
        rest: &[u8],
        value: &[u8],
        spaces: &HashMap<Ino, i64>,
        count: bool,
    ) {
        match t {
            tag::ATTR if self.mine(ino) => {
                let node = self.nodes.entry(ino).or_default();
                match Attr::decode(value) {
                    Some(a) => {
                        node.attr = Some(NodeAttr {
                            kind: a.kind,
                            nlink: a.nlink,
                            parent: a.parent,
                            length: a.length,
                        });
                    }
                    None => self
                        .report
                        .found("damaged attributes", format!("inode {ino}"), false),
                }
            }
            tag::DENTRY => {
                if count && self.mine(ino) {
                    self.report.entries += 1;
                }
                let Some((kind, child)) = decode_dentry(value) else {
                    if self.mine(ino) {
                        self.report.found(
                            "damaged entry",
                            format!("entry {} in inode {ino}", String::from_utf8_lossy(rest)),
                            false,
                        );
                    }
                    return;
                };
                if self.mine(child) {
                    let node = self.nodes.entry(child).or_default();
                    node.links += 1;
                    if node.links == 1 {
                        node.first_parent = ino;
                    } else {
                        node.more_parents.push(ino);
                    }
                }
                if self.mine(ino) {
                    let dir = self.dirs.entry(ino).or_default();
                    dir.entries += 1;
                    dir.subdirs += i64::from(kind == FileKind::Directory);
                    dir.space += spaces.get(&child).copied().unwrap_or(0);
                }
            }
            tag::CHUNK => match SliceRecord::decode_list(value) {
                Some(records) => {
                    if records.len() > 1 && self.mine(ino) && count {
                        self.report.fragmented_chunks += 1;
                        if self.report.fragmented.len() < FRAGMENTED_KEPT {
                            if let Ok(index) = rest.try_into().map(u32::from_be_bytes) {
                                self.report.fragmented.push((ino, index));
                            }
                        }
                    }
                    let (passes, pass) = (self.passes, self.pass);
                    for r in records
                        .iter()
                        .filter(|r| r.id != 0 && r.id % passes == pass)
                    {
                        let s = self.slices.entry(r.id).or_insert(SliceUse {
                            size: r.size,
                            records: 0,
                            ino,
                            blocks_seen: 0,
                        });
                        s.records += 1;
                    }
                }
                None if self.mine(ino) => {
                    self.report
                        .found("damaged chunk", format!("inode {ino}"), false)
                }
                None => {}
            },
            tag::SUBDIRS if self.mine(ino) => {
                self.dirs.entry(ino).or_default().stored_subdirs = decode_counter(value)
            }
            tag::DIR_SPACE if self.mine(ino) => {
                self.dirs.entry(ino).or_default().stored_space += decode_counter(value)
            }
            tag::DIR_INODES if self.mine(ino) => {
                self.dirs.entry(ino).or_default().stored_entries += decode_counter(value)
            }
            tag::OPEN if self.mine(ino) => {
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

    /// The directory holding `ino`: from this pass's records, else its
    /// attributes' parent.
    async fn parent_of(&self, ino: Ino) -> Option<Ino> {
        if let Some(n) = self.nodes.get(&ino).filter(|n| n.links > 0) {
            return Some(n.first_parent);
        }
        let raw = self
            .meta
            .db()
            .run("fsck_parent", |tx| async move {
                tx.snapshot_get(&keys::attr(ino)).await
            })
            .await
            .ok()??;
        Attr::decode(&raw).map(|a| a.parent).filter(|p| *p != 0)
    }

    /// Whether `ino` is inside the subtree being checked.
    async fn in_scope(&mut self, ino: Ino) -> bool {
        let Some(top) = self.scope else {
            return true;
        };
        let mut chain = Vec::new();
        let mut at = ino;
        let inside = loop {
            if at == top {
                break true;
            }
            if at == ROOT_INO || chain.len() > 4096 {
                break false;
            }
            if let Some(known) = self.scope_cache.get(&at) {
                break *known;
            }
            chain.push(at);
            match self.parent_of(at).await {
                Some(parent) => at = parent,
                None => break false,
            }
        };
        if self.scope_cache.len() > 100_000 {
            self.scope_cache.clear();
        }
        for i in chain {
            self.scope_cache.insert(i, inside);
        }
        inside
    }

    /// A path of `ino` for messages: its first name up to the root.
    async fn path_of(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO && parts.len() < 256 {
            let Some(parent) = self.parent_of(at).await else {
                parts.push(format!("<inode {at}, no name>"));
                break;
            };
            let name = self
                .name_in(parent, at)
                .await
                .unwrap_or_else(|| format!("<inode {at}>"));
            parts.push(name);
            at = parent;
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
                if !self.in_scope(dir).await {
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
            if ino == ROOT_INO || node.links > 0 && !self.in_scope(ino).await {
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
    async fn move_to_lost_found(&self, ino: Ino, kind: FileKind) -> Result<bool, FsckError> {
        let ctx = Ctx::root();
        let dir = match self.meta.lookup(&ctx, ROOT_INO, LOST_FOUND).await {
            Ok((dir, _)) => dir,
            Err(MetaError::Errno(libc::ENOENT)) => {
                let (dir, _) = self.meta.mkdir(&ctx, ROOT_INO, LOST_FOUND, 0o700).await?;
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
        Ok(done.is_some())
    }

    fn inode_space_of(attr: &NodeAttr) -> i64 {
        let mut a = Attr::new(attr.kind, 0, 0, 0, Timestamp::default());
        a.length = attr.length;
        inode_space(&a) as i64
    }

    /// This pass's directories' counters against their entries.
    async fn check_dirs(&mut self) -> Result<(), FsckError> {
        let mut dirs: Vec<(Ino, DirCounts)> = self
            .dirs
            .iter()
            .filter(|(ino, _)| {
                self.nodes
                    .get(ino)
                    .and_then(|n| n.attr)
                    .is_some_and(|a| a.kind == FileKind::Directory)
            })
            .map(|(i, d)| (*i, *d))
            .collect();
        dirs.sort_by_key(|(i, _)| *i);
        for (ino, d) in dirs {
            if (d.stored_subdirs, d.stored_space, d.stored_entries)
                == (d.subdirs, d.space, d.entries)
            {
                continue;
            }
            if !self.in_scope(ino).await {
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

    /// The volume's usage counters against its inodes (all passes).
    async fn check_usage(&mut self) -> Result<(), FsckError> {
        let (inodes, space) = (self.used_inodes, self.used_space);
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
                if self.mine(id) {
                    stored.insert((id, size), decode_counter(&value));
                }
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

    /// Uploads pending for sessions that are gone, with blocks stored. A
    /// slice id a writer reserved and never uploaded to (writers reserve
    /// them sixteen at a time, see `Meta::upload_slice_id`) has none: its
    /// entry is no problem, dropped by repair and by any mount's upkeep.
    async fn check_pending(&mut self) -> Result<(), FsckError> {
        for (key, value) in read_all(self.meta, &keys::pending_uploads_all()).await? {
            let (Some(id), sid) = (be_u64(&key, 1), be_u64(&value, 0).unwrap_or(0)) else {
                continue;
            };
            if self.live_sessions.contains(&sid) {
                continue;
            }
            let stored = self
                .objects
                .list(&slice_key_prefix(id), None, PAGE_OBJECTS)
                .await?;
            if stored.is_empty() {
                if self.options.repair {
                    self.meta.forget_pending(id).await?;
                }
                continue;
            }
            let mut repaired = false;
            if self.options.repair {
                for object in stored {
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
            .filter(|id| self.mine(*id))
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
                let Some((id, index, len)) = parse_block_key(&object.key) else {
                    continue;
                };
                if !self.mine(id) {
                    continue;
                }
                listed += 1;
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
        self.report.objects += listed;
        self.report.leaked_objects += orphans;
        self.report.leaked_bytes += orphan_bytes;
        let mut missing: Vec<(u64, SliceUse)> = self
            .slices
            .iter()
            .filter(|(_, s)| (s.blocks_seen as u64) < (s.size as u64).div_ceil(block_size))
            .map(|(id, s)| (*id, *s))
            .collect();
        missing.sort_by_key(|(id, _)| *id);
        for (id, s) in missing {
            // A deleted file's slices are being reclaimed: blocks go first.
            let live = self
                .meta
                .db()
                .run("fsck_live", |tx| async move {
                    tx.snapshot_get(&keys::attr(s.ino)).await
                })
                .await?
                .is_some();
            if !live || !self.in_scope(s.ino).await {
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
    Ok(meta.db().scan_pages(range, PAGE_KEYS).await?)
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
