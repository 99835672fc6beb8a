//! Namespace operations: lookup, create, mkdir, mknod, symlink, link,
//! unlink, rmdir, rename, readdir, readlink, setattr. Each is one
//! transaction.
//!
//! Contention design: creating or removing an entry never rewrites the
//! parent's attribute record. The parent's mtime/ctime are raised with an
//! atomic max and its subdirectory count with an atomic add, so concurrent
//! creates in one directory do not conflict; they read the parent record
//! (tracked), so they do conflict with its removal or a permission change.

use super::attr::{decode_dentry, encode_dentry, Attr, FileKind, Timestamp};
use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino, ROOT_INO, TRASH_INO};
use super::{
    decode_attr, entry_space, load_attr, load_attr_record, load_attrs, space_of, Ctx, Meta,
    MIN_SPACE_BYTES, W_OK, X_OK,
};
use crate::kv::txn::ScanOpts;
use crate::kv::{encode_counter, Txn};

pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

/// Longest name of a directory entry, in bytes.
pub const NAME_MAX: usize = 255;

/// Deepest directory tree a rename checks for loops; deeper is ELOOP-safe
/// refusal rather than an unbounded walk.
const MAX_DEPTH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: FileKind,
    /// With `plus`.
    pub attr: Option<Attr>,
}

/// A directory entry being removed: its directory, the directory's inode
/// and the name.
#[derive(Clone, Copy)]
struct Entry<'a> {
    dir: &'a Attr,
    parent: Ino,
    name: &'a [u8],
}

/// A time to set: the caller's, or now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timestamp),
}

/// What a rename changed besides the entries, for a client that keeps
/// directory attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    /// Nothing (the same entry, or two links of one inode).
    Nothing,
    /// Only files moved or were replaced: both parents' mtime and ctime
    /// were raised to (at least) `at`, and nothing else of theirs changed.
    Files { at: Timestamp },
    /// A directory moved, was replaced or exchanged (link counts and its
    /// own ctime changed), or the outcome was recognised after an unknown
    /// commit.
    Directories,
}

/// Changes asked of `setattr`; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Timestamp>,
}

fn check_name(name: &[u8]) -> MetaResult<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return errno(libc::EINVAL);
    }
    if name.len() > NAME_MAX {
        return errno(libc::ENAMETOOLONG);
    }
    Ok(())
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

fn biased(t: Timestamp) -> Vec<u8> {
    encode_counter(t.to_biased_nanos() as i64)
}

/// Records an entry change in directory `dir` at `now`: raises its mtime
/// and ctime without reading them.
fn touch_dir(tx: &Txn, dir: Ino, now: Timestamp) -> MetaResult<()> {
    tx.max(keys::dir_mtime(dir), now.to_biased_nanos())?;
    tx.max(keys::dir_ctime(dir), now.to_biased_nanos())?;
    Ok(())
}

/// The parent directories of an operation and the entry of `name` in
/// each, all read tracked in one round trip, with search and write
/// permission on each directory checked. The directories' times and link
/// counts (kept in other keys) are not filled in.
async fn writable_dirs(
    tx: &Txn,
    ctx: &Ctx,
    wanted: &[(Ino, &[u8])],
) -> MetaResult<Vec<(Attr, Option<(FileKind, Ino)>)>> {
    let keys: Vec<_> = wanted
        .iter()
        .flat_map(|&(dir, name)| [keys::attr(dir), keys::dentry(dir, name)])
        .collect();
    let raws = tx.batch_get(&keys).await?;
    let mut out = Vec::with_capacity(wanted.len());
    for (&(dir, name), pair) in wanted.iter().zip(raws.chunks(2)) {
        let attr = match &pair[0] {
            Some(raw) => decode_attr(dir, raw)?,
            None => return errno(libc::ENOENT),
        };
        if !attr.is_dir() {
            return errno(libc::ENOTDIR);
        }
        if !ctx.can(&attr, W_OK | X_OK) {
            return errno(libc::EACCES);
        }
        let entry = match &pair[1] {
            Some(raw) => Some(parse_dentry(dir, name, raw)?),
            None => None,
        };
        out.push((attr, entry));
    }
    Ok(out)
}

/// [`writable_dirs`] for one directory.
async fn writable_dir(
    tx: &Txn,
    ctx: &Ctx,
    dir: Ino,
    name: &[u8],
) -> MetaResult<(Attr, Option<(FileKind, Ino)>)> {
    let mut found = writable_dirs(tx, ctx, &[(dir, name)]).await?;
    Ok(found.remove(0))
}

fn parse_dentry(parent: Ino, name: &[u8], raw: &[u8]) -> MetaResult<(FileKind, Ino)> {
    Ok(decode_dentry(raw).ok_or_else(|| {
        crate::kv::KvError::Fatal(format!(
            "entry '{}' of inode {parent} is damaged",
            String::from_utf8_lossy(name)
        ))
    })?)
}

async fn get_dentry(tx: &Txn, parent: Ino, name: &[u8]) -> MetaResult<Option<(FileKind, Ino)>> {
    match tx.get(&keys::dentry(parent, name)).await? {
        None => Ok(None),
        Some(v) => Ok(Some(parse_dentry(parent, name, &v)?)),
    }
}

async fn is_empty_dir(tx: &Txn, ino: Ino) -> MetaResult<bool> {
    Ok(tx
        .scan(&keys::dentries(ino), ScanOpts::limit(1))
        .await?
        .entries
        .is_empty())
}

impl Meta {
    /// Looks `name` up in `parent`.
    pub async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> MetaResult<(Ino, Attr)> {
        self.lookup_at(ctx, parent, name, false).await
    }

    /// [`Meta::lookup`] at a recent snapshot (see [`crate::kv::Engine::begin_recent`]):
    /// for the kernel, which keeps the answer for its entry timeout.
    pub async fn lookup_recent(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
    ) -> MetaResult<(Ino, Attr)> {
        self.lookup_at(ctx, parent, name, true).await
    }

    async fn lookup_at(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        recent: bool,
    ) -> MetaResult<(Ino, Attr)> {
        check_name(name)?;
        self.run_txn("lookup", recent, |tx| async move {
            // Root may search any directory, and the kernel asks only in
            // directories: its lookups read the entry and the inode only.
            let dir = if ctx.is_root() && name != b".." {
                None
            } else {
                let dir = load_attr_record(&tx, parent, false)
                    .await?
                    .ok_or(MetaError::Errno(libc::ENOENT))?;
                if !dir.is_dir() {
                    return errno(libc::ENOTDIR);
                }
                if !ctx.can(&dir, X_OK) {
                    return errno(libc::EACCES);
                }
                Some(dir)
            };
            let ino = match name {
                b"." => parent,
                b".." => dir.map_or(ROOT_INO, |d| d.parent.max(ROOT_INO)),
                _ => {
                    // With a guess of the inode, its keys come in the same
                    // read as the entry, at the same snapshot.
                    let guess = self.hinted(parent, name);
                    let mut wanted = vec![keys::dentry(parent, name)];
                    if let Some(g) = guess {
                        wanted.extend(super::attr_keys(g.ino, g.dir));
                    }
                    let mut raws = tx.snapshot_batch_get(&wanted).await?;
                    let attr_raws = raws.split_off(1);
                    let Some(entry) = raws.pop().flatten() else {
                        self.hint(parent, name, None);
                        return errno(libc::ENOENT);
                    };
                    let (kind, ino) = parse_dentry(parent, name, &entry)?;
                    self.hint(parent, name, Some((ino, kind)));
                    if guess.map(|g| g.ino) == Some(ino) {
                        if let Some(attr) = super::attr_from(ino, attr_raws)? {
                            return Ok((ino, attr));
                        }
                    }
                    ino
                }
            };
            let attr = load_attr(&tx, ino, false)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            Ok((ino, attr))
        })
        .await
    }

    /// Creates a regular file, device, fifo or socket.
    pub async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        rdev: u32,
    ) -> MetaResult<(Ino, Attr)> {
        if kind == FileKind::Directory || kind == FileKind::Symlink {
            return errno(libc::EINVAL);
        }
        self.create_node(ctx, parent, name, kind, mode, rdev, None, None)
            .await
    }

    pub async fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
    ) -> MetaResult<(Ino, Attr)> {
        self.create_node(ctx, parent, name, FileKind::Directory, mode, 0, None, None)
            .await
    }

    pub async fn symlink(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        target: &[u8],
    ) -> MetaResult<(Ino, Attr)> {
        if target.is_empty() || target.contains(&0) {
            return errno(libc::EINVAL);
        }
        if target.len() > libc::PATH_MAX as usize {
            return errno(libc::ENAMETOOLONG);
        }
        self.create_node(
            ctx,
            parent,
            name,
            FileKind::Symlink,
            0o777,
            0,
            Some(target),
            None,
        )
        .await
    }

    /// Creates a node; with `open_for`, also opens it for that session in
    /// the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn create_node(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        rdev: u32,
        target: Option<&[u8]>,
        open_for: Option<u64>,
    ) -> MetaResult<(Ino, Attr)> {
        check_name(name)?;
        if is_dot(name) {
            return errno(libc::EEXIST);
        }
        let ino = self.inodes.next(&self.db).await?;
        let now = Timestamp::now();
        let created = self
            .txn("create", |tx| async move {
                // `ino` is this call's alone: if it has attributes, an
                // attempt whose reply was lost made them, wherever its
                // entry is now (another client may have renamed it).
                if tx.after_maybe_committed() {
                    if let Some(attr) = load_attr(&tx, ino, false).await? {
                        return Ok((ino, attr));
                    }
                }
                let (dir, found) = writable_dir(&tx, ctx, parent, name).await?;
                if found.is_some() {
                    return errno(libc::EEXIST);
                }
                self.check_quota(&tx, MIN_SPACE_BYTES, 1).await?;
                let mut mode = mode & 0o7777;
                let gid = if dir.mode as u32 & libc::S_ISGID != 0 {
                    if kind == FileKind::Directory {
                        mode |= libc::S_ISGID;
                    }
                    dir.gid
                } else {
                    ctx.gid
                };
                let mut attr = Attr::new(kind, mode as u16, ctx.uid, gid, now);
                attr.parent = parent;
                attr.rdev = rdev;
                if let Some(target) = target {
                    attr.length = target.len() as u64;
                    tx.put(keys::symlink(ino), target.to_vec())?;
                }
                tx.put(keys::attr(ino), attr.encode())?;
                tx.put(keys::dentry(parent, name), encode_dentry(kind, ino))?;
                if kind == FileKind::Directory {
                    tx.put(keys::dir_mtime(ino), biased(now))?;
                    tx.put(keys::dir_ctime(ino), biased(now))?;
                    tx.add(keys::subdirs(parent), 1)?;
                    // A new inode has no entries: lookups of names in it
                    // need not ask the store until one is added.
                    tx.promise_empty(keys::dentries(ino));
                }
                touch_dir(&tx, parent, now)?;
                self.charge(&tx, parent, MIN_SPACE_BYTES as i64, 1)?;
                self.charge_dir(&tx, parent, MIN_SPACE_BYTES as i64, 1)?;
                if let Some(sid) = open_for {
                    super::session::mark_open(&tx, ino, sid)?;
                }
                Ok((ino, attr))
            })
            .await?;
        self.hint(parent, name, Some((created.0, kind)));
        Ok(created)
    }

    /// Creates a regular file and opens it for this session, in one
    /// transaction (open(2) with O_CREAT of a new name). The caller closes
    /// it with [`Meta::close`].
    pub async fn create_open(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
    ) -> MetaResult<(Ino, Attr)> {
        let sid = self.require_session()?;
        self.create_node(ctx, parent, name, FileKind::File, mode, 0, None, Some(sid))
            .await
    }

    /// Adds the name `name` in `parent` for the existing inode `ino`.
    pub async fn link(&self, ctx: &Ctx, ino: Ino, parent: Ino, name: &[u8]) -> MetaResult<Attr> {
        check_name(name)?;
        if is_dot(name) {
            return errno(libc::EEXIST);
        }
        let now = Timestamp::now();
        self.txn("link", |tx| async move {
            let (_, found) = writable_dir(&tx, ctx, parent, name).await?;
            let mut attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if attr.is_dir() {
                return errno(libc::EPERM);
            }
            if let Some((_, existing)) = found {
                if tx.after_maybe_committed() && existing == ino {
                    return Ok(attr);
                }
                return errno(libc::EEXIST);
            }
            if attr.nlink == u32::MAX {
                return errno(libc::EMLINK);
            }
            // With several links a file counts 4 KiB in each directory.
            if attr.parent != 0 {
                let was = entry_space(&attr) as i64;
                self.charge_dir(&tx, attr.parent, MIN_SPACE_BYTES as i64 - was, 0)?;
            }
            self.charge_dir(&tx, parent, MIN_SPACE_BYTES as i64, 1)?;
            attr.nlink += 1;
            attr.ctime = now;
            attr.parent = 0;
            tx.put(keys::attr(ino), attr.encode())?;
            tx.put(keys::dentry(parent, name), encode_dentry(attr.kind, ino))?;
            touch_dir(&tx, parent, now)?;
            Ok(attr)
        })
        .await
    }

    /// Removes a non-directory entry. The inode goes when its last link and
    /// its last open (on any host) are gone. Returns the time the parent's
    /// mtime and ctime were raised to (at least).
    pub async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> MetaResult<Timestamp> {
        check_name(name)?;
        if is_dot(name) {
            return errno(libc::EISDIR);
        }
        let now = Timestamp::now();
        // An inode for the trash's hour directory, in case this unlink is
        // the first of the hour.
        let hour_ino = self.trash_hour_ino().await?;
        self.txn("unlink", |tx| async move {
            let (dir, found) = writable_dir(&tx, ctx, parent, name).await?;
            let Some((kind, ino)) = found else {
                return if tx.after_maybe_committed() {
                    Ok(now)
                } else {
                    errno(libc::ENOENT)
                };
            };
            if kind == FileKind::Directory {
                return errno(libc::EISDIR);
            }
            let attr = load_attr(&tx, ino, true).await?;
            if let Some(attr) = &attr {
                if !ctx.may_delete_from(&dir, attr) {
                    return errno(libc::EPERM);
                }
            }
            tx.delete(keys::dentry(parent, name))?;
            touch_dir(&tx, parent, now)?;
            let space = attr.as_ref().map_or(MIN_SPACE_BYTES, entry_space);
            self.charge_dir(&tx, parent, -(space as i64), -1)?;
            if let Some(attr) = attr {
                let entry = Entry {
                    dir: &dir,
                    parent,
                    name,
                };
                self.remove_link(&tx, ino, attr, entry, hour_ino, now)
                    .await?;
            }
            Ok(now)
        })
        .await
    }

    /// An inode id for the trash's hour directory, allocated before an
    /// operation that may move a file to the trash (0 without a trash).
    async fn trash_hour_ino(&self) -> MetaResult<Ino> {
        if self.volume.trash_days > 0 {
            Ok(self.inodes.next(&self.db).await?)
        } else {
            Ok(0)
        }
    }

    /// Removes the link `entry` of non-directory `ino` inside `tx` (its
    /// dentry is already gone): a regular file losing its last link goes to
    /// the trash when the volume keeps one (unless it is in the trash
    /// already); otherwise the link is dropped as [`Meta::drop_link`] does.
    async fn remove_link(
        &self,
        tx: &Txn,
        ino: Ino,
        attr: Attr,
        entry: Entry<'_>,
        hour_ino: Ino,
        now: Timestamp,
    ) -> MetaResult<()> {
        let in_trash = entry.parent == TRASH_INO || entry.dir.parent == TRASH_INO;
        if hour_ino != 0 && attr.kind == FileKind::File && attr.nlink == 1 && !in_trash {
            // Tracked, so an engine may answer from what it knows (the
            // trash rarely changes) and verify at commit.
            if let Some(trash) = load_attr_record(tx, TRASH_INO, true).await? {
                return self
                    .move_to_trash(tx, ino, attr, &trash, entry, hour_ino, now)
                    .await;
            }
        }
        self.drop_link(tx, ino, attr, now).await
    }

    /// Moves a file whose last link is being removed into the trash's
    /// directory of the current hour (made if needed), as
    /// `PARENT-INODE-NAME`.
    #[allow(clippy::too_many_arguments)]
    async fn move_to_trash(
        &self,
        tx: &Txn,
        ino: Ino,
        mut attr: Attr,
        trash: &Attr,
        entry: Entry<'_>,
        hour_ino: Ino,
        now: Timestamp,
    ) -> MetaResult<()> {
        let (parent, name) = (entry.parent, entry.name);
        let hour = super::trash::hour_name(now.sec).into_bytes();
        let hour_dir = match get_dentry(tx, TRASH_INO, &hour).await? {
            Some((_, existing)) => existing,
            None => {
                let mut dir = Attr::new(FileKind::Directory, trash.mode, 0, 0, now);
                dir.parent = TRASH_INO;
                tx.put(keys::attr(hour_ino), dir.encode())?;
                tx.put(
                    keys::dentry(TRASH_INO, &hour),
                    encode_dentry(FileKind::Directory, hour_ino),
                )?;
                tx.put(keys::dir_mtime(hour_ino), biased(now))?;
                tx.put(keys::dir_ctime(hour_ino), biased(now))?;
                tx.add(keys::subdirs(TRASH_INO), 1)?;
                touch_dir(tx, TRASH_INO, now)?;
                self.charge(tx, TRASH_INO, MIN_SPACE_BYTES as i64, 1)?;
                self.charge_dir(tx, TRASH_INO, MIN_SPACE_BYTES as i64, 1)?;
                hour_ino
            }
        };
        let mut trash_name = format!("{parent}-{ino}-").into_bytes();
        let room = NAME_MAX - trash_name.len();
        trash_name.extend_from_slice(&name[..name.len().min(room)]);
        tx.put(
            keys::dentry(hour_dir, &trash_name),
            encode_dentry(FileKind::File, ino),
        )?;
        attr.parent = hour_dir;
        attr.ctime = now;
        tx.put(keys::attr(ino), attr.encode())?;
        // The hour directory's times stay those of its creation: every
        // unlink of every client moves a file into it, and moving its
        // time keys would make all of them wait for each other (etcd:
        // 4 processes unlinked no faster than 1). Its listings are never
        // reused by a mount for that reason (`Vfs::opendir`).
        self.charge_dir_for(tx, hour_dir, parent, entry_space(&attr) as i64, 1)?;
        Ok(())
    }

    /// Removes one link of a non-directory inode inside `tx`, deleting the
    /// inode when it was the last link and nobody has it open.
    async fn drop_link(
        &self,
        tx: &Txn,
        ino: Ino,
        mut attr: Attr,
        now: Timestamp,
    ) -> MetaResult<()> {
        attr.nlink = attr.nlink.saturating_sub(1);
        attr.ctime = now;
        if attr.nlink > 0 {
            tx.put(keys::attr(ino), attr.encode())?;
            return Ok(());
        }
        if !self.delete_unless_open(tx, ino, &attr, None).await? {
            // Kept until its last close (or its sessions are cleaned up).
            tx.put(keys::attr(ino), attr.encode())?;
        }
        Ok(())
    }

    /// Deletes `ino`, which has no links left, unless a session (other
    /// than `closing`, whose marker goes in this transaction) has it open;
    /// true if deleted. Its open markers and extended attributes are read
    /// together, one range and one round trip (tracked: an open or a
    /// setxattr racing this makes one of the two retry).
    pub(crate) async fn delete_unless_open(
        &self,
        tx: &Txn,
        ino: Ino,
        attr: &Attr,
        closing: Option<u64>,
    ) -> MetaResult<bool> {
        let found = tx.scan_all(&keys::opens_to_xattrs(ino), 128, false).await?;
        let markers = keys::opens(ino);
        let open = found.iter().any(|(key, _)| {
            markers.contains(key) && closing.is_none_or(|sid| *key != keys::open(ino, sid))
        });
        if open {
            return Ok(false);
        }
        let xattrs = found
            .into_iter()
            .filter(|(key, _)| keys::xattr_name(ino, key).is_some())
            .map(|(key, _)| key)
            .collect();
        self.delete_inode_with(tx, ino, attr, xattrs).await?;
        Ok(true)
    }

    /// Deletes an inode with no links and no opens: its attributes, symlink
    /// target and extended attributes now; its data through the
    /// deleted-file queue, reclaimed in the background in bounded steps.
    pub(crate) async fn delete_inode(&self, tx: &Txn, ino: Ino, attr: &Attr) -> MetaResult<()> {
        let xattrs = tx
            .scan_all(&keys::xattrs(ino), 128, true)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        self.delete_inode_with(tx, ino, attr, xattrs).await
    }

    /// [`Meta::delete_inode`] with the keys of its extended attributes
    /// already read.
    async fn delete_inode_with(
        &self,
        tx: &Txn,
        ino: Ino,
        attr: &Attr,
        xattrs: Vec<crate::kv::Key>,
    ) -> MetaResult<()> {
        tx.delete(keys::attr(ino))?;
        match attr.kind {
            FileKind::Symlink => tx.delete(keys::symlink(ino))?,
            FileKind::Directory => {
                tx.delete(keys::dir_mtime(ino))?;
                tx.delete(keys::dir_ctime(ino))?;
                tx.delete(keys::subdirs(ino))?;
                for range in [keys::dir_space_shards(ino), keys::dir_inodes_shards(ino)] {
                    for (key, _) in tx.scan_all(&range, 64, true).await? {
                        tx.delete(key)?;
                    }
                }
            }
            FileKind::File if attr.slice_seq > 0 => {
                tx.put(
                    keys::deleted_file(ino, attr.length),
                    encode_counter(Timestamp::now().sec),
                )?;
                self.reclaim_work.notify_one();
            }
            _ => {}
        }
        for key in xattrs {
            tx.delete(key)?;
        }
        let space = if attr.kind == FileKind::File {
            space_of(attr.length)
        } else {
            MIN_SPACE_BYTES
        };
        self.charge(tx, attr.parent, -(space as i64), -1)
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> MetaResult<()> {
        check_name(name)?;
        match name {
            b"." => return errno(libc::EINVAL),
            b".." => return errno(libc::ENOTEMPTY),
            _ => {}
        }
        let now = Timestamp::now();
        self.txn("rmdir", |tx| async move {
            let (dir, found) = writable_dir(&tx, ctx, parent, name).await?;
            let Some((kind, ino)) = found else {
                return if tx.after_maybe_committed() {
                    Ok(())
                } else {
                    errno(libc::ENOENT)
                };
            };
            if kind != FileKind::Directory {
                return errno(libc::ENOTDIR);
            }
            let attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if !ctx.may_delete_from(&dir, &attr) {
                return errno(libc::EPERM);
            }
            // Tracked: a concurrent create inside makes one of the two retry.
            if !is_empty_dir(&tx, ino).await? {
                return errno(libc::ENOTEMPTY);
            }
            tx.delete(keys::dentry(parent, name))?;
            tx.add(keys::subdirs(parent), -1)?;
            touch_dir(&tx, parent, now)?;
            self.charge_dir(&tx, parent, -(MIN_SPACE_BYTES as i64), -1)?;
            self.delete_inode(&tx, ino, &attr).await
        })
        .await
    }

    /// Renames `src_parent/src_name` to `dst_parent/dst_name`, replacing a
    /// file or an empty directory, or exchanging the two with
    /// `RENAME_EXCHANGE`. Moving a directory checks the destination's whole
    /// ancestor chain inside the transaction, so concurrent renames can
    /// never create a loop or an orphan.
    pub async fn rename(
        &self,
        ctx: &Ctx,
        src_parent: Ino,
        src_name: &[u8],
        dst_parent: Ino,
        dst_name: &[u8],
        flags: u32,
    ) -> MetaResult<Renamed> {
        check_name(src_name)?;
        check_name(dst_name)?;
        let exchange = flags & RENAME_EXCHANGE != 0;
        if flags & !(RENAME_EXCHANGE | RENAME_NOREPLACE) != 0
            || (exchange && flags & RENAME_NOREPLACE != 0)
        {
            return errno(libc::EINVAL);
        }
        if is_dot(src_name) || is_dot(dst_name) {
            return errno(if is_dot(dst_name) && !is_dot(src_name) {
                libc::EEXIST
            } else {
                libc::EBUSY
            });
        }
        let now = Timestamp::now();
        // What the previous attempt saw, to recognise its own effect after
        // an unknown commit outcome: (source inode, destination inode).
        let seen: std::sync::Mutex<Option<(Ino, Option<Ino>)>> = std::sync::Mutex::new(None);
        let seen = &seen;
        // An inode for the trash's hour directory, should the rename replace
        // a file's last link.
        let hour_ino = self.trash_hour_ino().await?;
        self.txn("rename", |tx| async move {
            let mut found =
                writable_dirs(&tx, ctx, &[(src_parent, src_name), (dst_parent, dst_name)]).await?;
            let (dst_dir, dst) = found.pop().ok_or(MetaError::Errno(libc::EIO))?;
            let (src_dir, src_entry) = found.pop().ok_or(MetaError::Errno(libc::EIO))?;
            let previous = *seen.lock().unwrap_or_else(|p| p.into_inner());
            if let (true, Some((prev_src, prev_dst))) = (tx.after_maybe_committed(), previous) {
                let now_src = src_entry.map(|e| e.1);
                let now_dst = dst.map(|e| e.1);
                let applied = if exchange {
                    now_src == prev_dst && now_dst == Some(prev_src)
                } else {
                    now_src.is_none() && now_dst == Some(prev_src)
                };
                if applied {
                    return Ok(Renamed::Directories);
                }
            }
            let Some((src_kind, src_ino)) = src_entry else {
                return errno(libc::ENOENT);
            };
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((src_ino, dst.map(|e| e.1)));
            if src_parent == dst_parent && src_name == dst_name {
                return Ok(Renamed::Nothing);
            }
            let mut src = load_attr(&tx, src_ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if !ctx.may_delete_from(&src_dir, &src) {
                return errno(libc::EPERM);
            }
            let dst_attr = match dst {
                Some((_, dst_ino)) => {
                    let attr = load_attr(&tx, dst_ino, true)
                        .await?
                        .ok_or(MetaError::Errno(libc::ENOENT))?;
                    if !ctx.may_delete_from(&dst_dir, &attr) {
                        return errno(libc::EPERM);
                    }
                    Some((dst_ino, attr))
                }
                None => None,
            };
            if let Some((dst_ino, _)) = &dst_attr {
                if flags & RENAME_NOREPLACE != 0 {
                    return errno(libc::EEXIST);
                }
                if *dst_ino == src_ino && !exchange {
                    return Ok(Renamed::Nothing); // Two links of one inode.
                }
            } else if exchange {
                return errno(libc::ENOENT);
            }
            let dirs_involved =
                src.is_dir() || dst_attr.as_ref().is_some_and(|(_, attr)| attr.is_dir());
            // A directory changing parent: its ".." changes, which needs
            // write permission on it, and it must not go inside itself.
            if src.is_dir() && src_parent != dst_parent {
                if !ctx.is_root() && !ctx.can(&src, W_OK) {
                    return errno(libc::EACCES);
                }
                check_not_ancestor(&tx, src_ino, dst_parent, &dst_dir).await?;
            }
            if exchange {
                let Some((dst_ino, mut dst_attr)) = dst_attr else {
                    return errno(libc::ENOENT);
                };
                if dst_attr.is_dir() && src_parent != dst_parent {
                    if !ctx.is_root() && !ctx.can(&dst_attr, W_OK) {
                        return errno(libc::EACCES);
                    }
                    check_not_ancestor(&tx, dst_ino, src_parent, &src_dir).await?;
                }
                tx.put(
                    keys::dentry(src_parent, src_name),
                    encode_dentry(dst_attr.kind, dst_ino),
                )?;
                tx.put(
                    keys::dentry(dst_parent, dst_name),
                    encode_dentry(src_kind, src_ino),
                )?;
                if src_parent != dst_parent {
                    let moved = |a: &mut Attr, from: Ino, to: Ino| -> MetaResult<()> {
                        if a.is_dir() {
                            tx.add(keys::subdirs(from), -1)?;
                            tx.add(keys::subdirs(to), 1)?;
                        }
                        self.charge_dir(&tx, from, -(entry_space(a) as i64), -1)?;
                        if a.is_dir() || a.parent == from {
                            a.parent = to;
                        }
                        self.charge_dir(&tx, to, entry_space(a) as i64, 1)
                    };
                    moved(&mut src, src_parent, dst_parent)?;
                    moved(&mut dst_attr, dst_parent, src_parent)?;
                }
                dst_attr.ctime = now;
                tx.put(keys::attr(dst_ino), dst_attr.encode())?;
                if dst_attr.is_dir() {
                    tx.max(keys::dir_ctime(dst_ino), now.to_biased_nanos())?;
                }
            } else {
                if let Some((dst_ino, dst_attr)) = dst_attr {
                    self.charge_dir(&tx, dst_parent, -(entry_space(&dst_attr) as i64), -1)?;
                    match (src.is_dir(), dst_attr.is_dir()) {
                        (true, false) => return errno(libc::ENOTDIR),
                        (false, true) => return errno(libc::EISDIR),
                        (true, true) => {
                            if !is_empty_dir(&tx, dst_ino).await? {
                                return errno(libc::ENOTEMPTY);
                            }
                            tx.add(keys::subdirs(dst_parent), -1)?;
                            self.delete_inode(&tx, dst_ino, &dst_attr).await?;
                        }
                        (false, false) => {
                            let entry = Entry {
                                dir: &dst_dir,
                                parent: dst_parent,
                                name: dst_name,
                            };
                            self.remove_link(&tx, dst_ino, dst_attr, entry, hour_ino, now)
                                .await?;
                        }
                    }
                }
                tx.delete(keys::dentry(src_parent, src_name))?;
                tx.put(
                    keys::dentry(dst_parent, dst_name),
                    encode_dentry(src_kind, src_ino),
                )?;
                if src_parent != dst_parent {
                    if src.is_dir() {
                        tx.add(keys::subdirs(src_parent), -1)?;
                        tx.add(keys::subdirs(dst_parent), 1)?;
                    }
                    self.charge_dir(&tx, src_parent, -(entry_space(&src) as i64), -1)?;
                    if src.is_dir() || src.parent == src_parent {
                        src.parent = dst_parent;
                    }
                    self.charge_dir(&tx, dst_parent, entry_space(&src) as i64, 1)?;
                }
            }
            src.ctime = now;
            tx.put(keys::attr(src_ino), src.encode())?;
            if src.is_dir() {
                // A directory's ctime lives in its own key (schema: 'K').
                tx.max(keys::dir_ctime(src_ino), now.to_biased_nanos())?;
            }
            touch_dir(&tx, src_parent, now)?;
            if dst_parent != src_parent {
                touch_dir(&tx, dst_parent, now)?;
            }
            Ok(if dirs_involved {
                Renamed::Directories
            } else {
                Renamed::Files { at: now }
            })
        })
        .await
    }

    /// Up to `limit` entries of directory `ino` after the name `after` (from
    /// the start if `None`), in name order. Paging by name never skips or
    /// repeats an entry that exists for the whole listing. With `plus`, each
    /// entry carries its attributes.
    pub async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: Option<&[u8]>,
        limit: usize,
        plus: bool,
    ) -> MetaResult<Vec<DirEntry>> {
        self.txn("readdir", |tx| async move {
            let dir = load_attr(&tx, ino, false)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if !dir.is_dir() {
                return errno(libc::ENOTDIR);
            }
            if !ctx.can(&dir, super::R_OK) {
                return errno(libc::EACCES);
            }
            let range = match after {
                Some(name) => keys::dentries_after(ino, name),
                None => keys::dentries(ino),
            };
            let page = tx.scan(&range, ScanOpts::limit(limit).snapshot()).await?;
            let mut entries = Vec::with_capacity(page.entries.len());
            for (key, value) in page.entries {
                let (kind, child) = decode_dentry(&value).ok_or(MetaError::Errno(libc::EIO))?;
                let name = keys::dentry_name(ino, &key).unwrap_or_default().to_vec();
                entries.push(DirEntry {
                    name,
                    ino: child,
                    kind,
                    attr: None,
                });
            }
            if plus {
                let inos: Vec<Ino> = entries.iter().map(|e| e.ino).collect();
                for (entry, attr) in entries.iter_mut().zip(load_attrs(&tx, &inos).await?) {
                    entry.attr = attr;
                }
            }
            Ok(entries)
        })
        .await
    }

    pub async fn readlink(&self, ino: Ino) -> MetaResult<Vec<u8>> {
        self.txn("readlink", |tx| async move {
            match tx.snapshot_get(&keys::symlink(ino)).await? {
                Some(target) => Ok(target),
                None => match load_attr(&tx, ino, false).await? {
                    Some(_) => errno(libc::EINVAL),
                    None => errno(libc::ENOENT),
                },
            }
        })
        .await
    }

    /// Changes attributes with the POSIX rules on who may change what. A
    /// size change truncates or extends the file.
    pub async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> MetaResult<Attr> {
        if let Some(size) = set.size {
            self.shrink_in_steps(ctx, ino, size).await?;
        }
        let now = Timestamp::now();
        self.txn("setattr", |tx| async move {
            let mut attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            let owner = ctx.is_root() || ctx.uid == attr.uid;
            let mut changed = false;
            if let Some(uid) = set.uid {
                if uid != attr.uid && !ctx.is_root() {
                    return errno(libc::EPERM);
                }
            }
            if let Some(gid) = set.gid {
                if gid != attr.gid && !ctx.is_root() && !(ctx.uid == attr.uid && ctx.in_group(gid))
                {
                    return errno(libc::EPERM);
                }
            }
            if set.uid.is_some() || set.gid.is_some() {
                // A change of owner or group drops set-uid, and set-gid on
                // group-executable files (Linux does so for root too).
                if !attr.is_dir() {
                    attr.mode &= !(libc::S_ISUID as u16);
                    if attr.mode & 0o010 != 0 {
                        attr.mode &= !(libc::S_ISGID as u16);
                    }
                }
            }
            if let Some(uid) = set.uid {
                attr.uid = uid;
                changed = true;
            }
            if let Some(gid) = set.gid {
                attr.gid = gid;
                changed = true;
            }
            if let Some(mode) = set.mode {
                if !owner {
                    return errno(libc::EPERM);
                }
                let mut mode = (mode & 0o7777) as u16;
                if !ctx.is_root() && !attr.is_dir() && !ctx.in_group(attr.gid) {
                    mode &= !(libc::S_ISGID as u16);
                }
                attr.mode = mode;
                changed = true;
            }
            if let Some(size) = set.size {
                if attr.is_dir() {
                    return errno(libc::EISDIR);
                }
                if attr.kind != FileKind::File {
                    return errno(libc::EINVAL);
                }
                if !owner && !ctx.can(&attr, W_OK) {
                    return errno(libc::EACCES);
                }
                self.resize_in_txn(&tx, ino, &mut attr, size, now).await?;
                changed = true;
            }
            for (which, set_time) in [(0, set.atime), (1, set.mtime)] {
                let Some(set_time) = set_time else { continue };
                let t = match set_time {
                    TimeSet::Now => {
                        if !owner && !ctx.can(&attr, W_OK) {
                            return errno(libc::EACCES);
                        }
                        now
                    }
                    TimeSet::At(t) => {
                        if !owner {
                            return errno(libc::EPERM);
                        }
                        t
                    }
                };
                if which == 0 {
                    attr.atime = t;
                } else {
                    attr.mtime = t;
                    if attr.is_dir() {
                        tx.put(keys::dir_mtime(ino), biased(t))?;
                    }
                }
                changed = true;
            }
            if changed {
                attr.ctime = set.ctime.unwrap_or(now);
                if attr.is_dir() {
                    tx.put(keys::dir_ctime(ino), biased(attr.ctime))?;
                }
                tx.put(keys::attr(ino), attr.encode())?;
            }
            Ok(attr)
        })
        .await
    }
}

impl Meta {
    /// Removes `name` in `parent` and, for a directory, everything below it
    /// (as `rm -r`), one entry per transaction, depth first: memory stays
    /// bounded by the depth of the tree, and every transaction stays within
    /// the strict limits whatever the size of the tree.
    pub async fn remove_tree(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> MetaResult<u64> {
        let (ino, attr) = self.lookup(ctx, parent, name).await?;
        if !attr.is_dir() {
            self.unlink(ctx, parent, name).await?;
            return Ok(1);
        }
        let mut removed = 0u64;
        let mut stack: Vec<(Ino, Vec<u8>, Ino)> = vec![(parent, name.to_vec(), ino)];
        while let Some((dir_parent, dir_name, dir)) = stack.last().cloned() {
            let page = self.readdir(ctx, dir, None, 100, false).await?;
            if page.is_empty() {
                match self.rmdir(ctx, dir_parent, &dir_name).await {
                    Ok(()) | Err(MetaError::Errno(libc::ENOENT)) => {}
                    // Something was created meanwhile: list again.
                    Err(MetaError::Errno(libc::ENOTEMPTY)) => continue,
                    Err(e) => return Err(e),
                }
                removed += 1;
                stack.pop();
                continue;
            }
            for entry in page {
                if entry.kind == FileKind::Directory {
                    stack.push((dir, entry.name, entry.ino));
                    break;
                }
                match self.unlink(ctx, dir, &entry.name).await {
                    Ok(_) | Err(MetaError::Errno(libc::ENOENT)) => removed += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

/// EINVAL if `dir` is `moving` or lies below it. Reads every ancestor of
/// `dir` tracked, so a concurrent rename that changes the chain conflicts;
/// `dir`'s own record (`dir_attr`) the caller has read tracked already.
async fn check_not_ancestor(tx: &Txn, moving: Ino, dir: Ino, dir_attr: &Attr) -> MetaResult<()> {
    if dir == moving {
        return errno(libc::EINVAL);
    }
    if dir == ROOT_INO {
        return Ok(());
    }
    let mut current = dir_attr.parent;
    for _ in 0..MAX_DEPTH {
        if current == moving {
            return errno(libc::EINVAL);
        }
        if current == ROOT_INO {
            return Ok(());
        }
        // The record alone holds the parent: one read per level.
        let attr = load_attr_record(tx, current, true)
            .await?
            .ok_or(MetaError::Errno(libc::ENOENT))?;
        current = attr.parent;
    }
    errno(libc::ELOOP)
}
