//! The FUSE edge: translates fuser callbacks into [`Vfs`] calls and the
//! results into replies. Nothing here decides file system behaviour.
//!
//! No fuser thread waits on the KV store or object storage: each callback
//! moves its reply into a task on the tokio runtime and returns at once.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::Instrument;

use crate::meta::{Attr, Ctx, FileKind, Ino, LockKind, SetAttr, TimeSet, Timestamp, ROOT_INO};
use crate::vfs::{Vfs, VfsError, VfsResult};

/// Kernel cache timeouts (`--attr-cache`, `--entry-cache`,
/// `--dir-entry-cache`).
#[derive(Debug, Clone, Copy)]
pub struct CacheTimeouts {
    pub attr: Duration,
    pub entry: Duration,
    pub dir_entry: Duration,
}

/// Bytes the kernel may send in one write and read ahead: 1 MiB, so a
/// sequential stream costs a quarter of the requests of the 128 KiB
/// default (FUSE allows up to 16 MiB with max_pages; beyond 1 MiB the
/// gain is small and every request buffer grows).
const MAX_IO_BYTES: u32 = 1 << 20;

/// Entries returned by one readdir request at most (the kernel's buffer
/// of 4 KiB to 128 KiB limits it further).
const READDIR_BATCH: usize = 512;

/// `st_blksize`: the I/O size programs like cp use for their buffers.
const BLKSIZE: u32 = 1 << 16;

/// The fuser file system: a runtime to run requests on and the state
/// every request task shares.
pub struct FuseFs {
    rt: tokio::runtime::Handle,
    edge: Arc<Edge>,
}

/// What request tasks share: the vfs and how to present it.
struct Edge {
    vfs: Arc<Vfs>,
    /// The volume inode shown as the mount's root (`--subdir`).
    root: Ino,
    ttl: CacheTimeouts,
    /// Set once the session exists; used to drop the kernel's cached
    /// attributes and pages of a file another host changed.
    notifier: Arc<OnceLock<Notifier>>,
}

impl FuseFs {
    pub fn new(
        vfs: Arc<Vfs>,
        rt: tokio::runtime::Handle,
        root: Ino,
        ttl: CacheTimeouts,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> FuseFs {
        FuseFs {
            rt,
            edge: Arc::new(Edge {
                vfs,
                root,
                ttl,
                notifier,
            }),
        }
    }

    /// Runs `work` inside a span named after the operation: first right
    /// here, on the fuser thread, up to its first wait (a KV round trip,
    /// an upload permit). A request that has to wait is parked, not
    /// spawned: it becomes a runtime task only when what it waits for
    /// wakes it, from the thread that finished the wait.
    ///
    /// Most requests either finish without waiting (answered from what
    /// this mount knows, or by the embedded store) or wait once for the
    /// network. Polling once here saves handing every request to a runtime
    /// worker (measured on Redis, 0.24 -> 0.21 ms of mount CPU per
    /// create); parking instead of spawning saves waking a worker only to
    /// find the request still waiting: the answer's arrival wakes the
    /// worker anyway, and the request then runs there at once. A fuser
    /// thread still never waits: a pending request returns at once.
    fn spawn<F>(&self, op: &'static str, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let work = Box::pin(
            async move {
                work.await;
                crate::metrics::fuse_op(op, started.elapsed());
            }
            .instrument(tracing::debug_span!("fuse", op)),
        );
        let _runtime = self.rt.enter();
        Parked::run(self.rt.clone(), work);
    }

    fn ino(&self, ino: INodeNo) -> Ino {
        self.edge.ino(ino)
    }
}

impl Edge {
    fn ino(&self, ino: INodeNo) -> Ino {
        if ino.0 == ROOT_INO {
            self.root
        } else {
            ino.0
        }
    }

    fn node(&self, ino: Ino) -> INodeNo {
        if ino == self.root {
            INodeNo(ROOT_INO)
        } else {
            INodeNo(ino)
        }
    }

    fn file_attr(&self, ino: Ino, attr: &Attr) -> FileAttr {
        file_attr(self.node(ino), attr)
    }

    fn entry_ttl(&self, attr: &Attr) -> Duration {
        if attr.is_dir() {
            self.ttl.dir_entry
        } else {
            self.ttl.entry
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, result: VfsResult<(Ino, Attr)>) {
        match result {
            Ok((ino, attr)) => reply.entry_with_ttls(
                &self.ttl.attr,
                &self.entry_ttl(&attr),
                &self.file_attr(ino, &attr),
                Generation(0),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn errno(e: VfsError) -> Errno {
    Errno::from_i32(e.0)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn file_attr(ino: INodeNo, attr: &Attr) -> FileAttr {
    FileAttr {
        ino,
        size: attr.length,
        blocks: attr.length.div_ceil(512),
        atime: attr.atime.to_system_time(),
        mtime: attr.mtime.to_system_time(),
        ctime: attr.ctime.to_system_time(),
        crtime: attr.ctime.to_system_time(),
        kind: file_type(attr.kind),
        perm: attr.mode,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The caller's credentials. FUSE gives only the primary group; the
/// supplementary ones come from /proc, as permission checks need them.
fn ctx(req: &Request) -> Ctx {
    let mut ctx = Ctx::user(req.uid(), req.gid());
    ctx.pid = req.pid();
    if ctx.uid != 0 {
        ctx.groups = supplementary_groups(req.pid());
    }
    ctx
}

fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => Timestamp {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (sec, nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsec == 0 {
                Timestamp { sec, nsec: 0 }
            } else {
                Timestamp {
                    sec: sec - 1,
                    nsec: 1_000_000_000 - nsec,
                }
            }
        }
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timestamp(t)),
    }
}

fn lock_kind(typ: i32) -> VfsResult<LockKind> {
    match typ {
        libc::F_RDLCK => Ok(LockKind::Read),
        libc::F_WRLCK => Ok(LockKind::Write),
        libc::F_UNLCK => Ok(LockKind::Unlock),
        _ => Err(VfsError::errno(libc::EINVAL)),
    }
}

/// FUSE lock ranges are inclusive, to OFFSET_MAX for "to the end";
/// ours are half-open with `u64::MAX` as the end of file.
fn lock_end(end: u64) -> u64 {
    if end >= i64::MAX as u64 {
        u64::MAX
    } else {
        end + 1
    }
}

fn name(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags as F;
        // Requests the kernel can do without: each is asked for only if
        // this kernel offers it.
        // flock(2) comes as whole-file locks of the open file (FUSE_FLOCK_LOCKS),
        // so it excludes across hosts too.
        for flag in [
            F::FUSE_POSIX_LOCKS,
            F::FUSE_FLOCK_LOCKS,
            F::FUSE_DO_READDIRPLUS,
            F::FUSE_READDIRPLUS_AUTO,
            F::FUSE_PARALLEL_DIROPS,
            F::FUSE_EXPORT_SUPPORT,
        ] {
            if config.capabilities().contains(flag) {
                let _ = config.add_capabilities(flag);
            }
        }
        let _ = config.set_max_write(MAX_IO_BYTES);
        let _ = config.set_max_readahead(MAX_IO_BYTES);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        let this = self.edge.clone();
        self.spawn("lookup", async move {
            let result = vfs.lookup(&ctx, parent, &n).await;
            this.reply_entry(reply, result);
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (vfs, ino) = (self.edge.vfs.clone(), self.ino(ino));
        let this = self.edge.clone();
        self.spawn("getattr", async move {
            match vfs.getattr(ino).await {
                Ok((attr, ttl)) => reply.attr(&ttl, &this.file_attr(ino, &attr)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(timestamp),
        };
        let (vfs, ctx, ino) = (self.edge.vfs.clone(), ctx(req), self.ino(ino));
        let this = self.edge.clone();
        self.spawn("setattr", async move {
            match vfs.setattr(&ctx, ino, &set).await {
                Ok(attr) => reply.attr(&this.ttl.attr, &this.file_attr(ino, &attr)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (vfs, ino) = (self.edge.vfs.clone(), self.ino(ino));
        self.spawn("readlink", async move {
            match vfs.readlink(ino).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        let this = self.edge.clone();
        self.spawn("mknod", async move {
            let result = vfs.mknod(&ctx, parent, &n, mode, umask, rdev).await;
            this.reply_entry(reply, result);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        let this = self.edge.clone();
        self.spawn("mkdir", async move {
            let result = vfs.mkdir(&ctx, parent, &n, mode, umask).await;
            this.reply_entry(reply, result);
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        self.spawn("unlink", async move {
            reply_empty(reply, vfs.unlink(&ctx, parent, &n).await);
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        self.spawn("rmdir", async move {
            reply_empty(reply, vfs.rmdir(&ctx, parent, &n).await);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let (vfs, ctx, parent) = (self.edge.vfs.clone(), ctx(req), self.ino(parent));
        let (n, target) = (name(link_name), target.as_os_str().as_bytes().to_vec());
        let this = self.edge.clone();
        self.spawn("symlink", async move {
            let result = vfs.symlink(&ctx, parent, &n, &target).await;
            this.reply_entry(reply, result);
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (vfs, ctx) = (self.edge.vfs.clone(), ctx(req));
        let (parent, n) = (self.ino(parent), name(n));
        let (new_parent, new_name) = (self.ino(new_parent), name(new_name));
        self.spawn("rename", async move {
            let renamed = vfs
                .rename(&ctx, parent, &n, new_parent, &new_name, flags.bits())
                .await;
            reply_empty(reply, renamed);
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        new_parent: INodeNo,
        new_name: &OsStr,
        reply: ReplyEntry,
    ) {
        let (vfs, ctx, ino) = (self.edge.vfs.clone(), ctx(req), self.ino(ino));
        let (new_parent, new_name) = (self.ino(new_parent), name(new_name));
        let this = self.edge.clone();
        self.spawn("link", async move {
            let result = vfs
                .link(&ctx, ino, new_parent, &new_name)
                .await
                .map(|attr| (ino, attr));
            this.reply_entry(reply, result);
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (vfs, ctx, node, ino) = (self.edge.vfs.clone(), ctx(req), ino, self.ino(ino));
        let notifier = self.edge.notifier.clone();
        self.spawn("open", async move {
            match vfs.open(&ctx, ino, flags.0).await {
                Ok(opened) => {
                    let mut fopen = FopenFlags::empty();
                    if opened.keep_cache {
                        fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                    } else {
                        // Changed elsewhere: the kernel's cached length and
                        // times must go too, not only its pages.
                        invalidate(&notifier, node).await;
                    }
                    reply.opened(FileHandle(opened.fh), fopen);
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("read", async move {
            match vfs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (vfs, data) = (self.edge.vfs.clone(), data.to_vec());
        self.spawn("write", async move {
            match vfs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("flush", async move {
            reply_empty(reply, vfs.flush(fh.0, Some(lock_owner.0)).await);
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("release", async move {
            // The kernel names an owner when the open file held flock locks.
            if let Some(owner) = lock_owner {
                if let Err(e) = vfs.unlock_flock(fh.0, owner.0).await {
                    tracing::warn!(error = %e, "releasing flock locks failed");
                }
            }
            reply_empty(reply, vfs.release(fh.0).await);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("fsync", async move {
            reply_empty(reply, vfs.fsync(fh.0).await);
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let (vfs, ctx, node, ino) = (self.edge.vfs.clone(), ctx(req), ino, self.ino(ino));
        let notifier = self.edge.notifier.clone();
        self.spawn("opendir", async move {
            match vfs.opendir(&ctx, ino).await {
                Ok(opened) => {
                    // The kernel caches listings (a repeated `ls` is not a
                    // round trip) and keeps them while the directory is
                    // unchanged; this mount's own changes drop them in the
                    // kernel, and changes seen here drop them now.
                    let mut fopen = FopenFlags::FOPEN_CACHE_DIR;
                    if opened.keep_cache {
                        fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                    } else {
                        invalidate(&notifier, node).await;
                    }
                    reply.opened(FileHandle(opened.fh), fopen);
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (vfs, ctx) = (self.edge.vfs.clone(), ctx(req));
        let this = self.edge.clone();
        self.spawn("readdir", async move {
            match vfs.readdir(&ctx, fh.0, offset, READDIR_BATCH).await {
                Ok(entries) => {
                    for (next, e) in entries {
                        if reply.add(
                            this.node(e.ino),
                            next,
                            file_type(e.kind),
                            OsStr::from_bytes(&e.name),
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (vfs, ctx) = (self.edge.vfs.clone(), ctx(req));
        let this = self.edge.clone();
        self.spawn("readdirplus", async move {
            match vfs.readdir(&ctx, fh.0, offset, READDIR_BATCH).await {
                Ok(entries) => {
                    for (next, e) in entries {
                        let node = this.node(e.ino);
                        // "." and ".." carry no attributes; the kernel
                        // ignores what comes with them.
                        let attr = e.attr.unwrap_or_else(|| {
                            Attr::new(FileKind::Directory, 0o755, 0, 0, Timestamp::default())
                        });
                        let ttl = this.entry_ttl(&attr);
                        if reply.add(
                            node,
                            next,
                            OsStr::from_bytes(&e.name),
                            &ttl,
                            &file_attr(node, &attr),
                            Generation(0),
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.edge.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every directory change is already a committed transaction.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let vfs = self.edge.vfs.clone();
        self.spawn("statfs", async move {
            match vfs.statfs().await {
                Ok(s) => {
                    const BSIZE: u64 = 4096;
                    // Unlimited volumes show 1 PiB and 10^10 inodes, as
                    // JuiceFS does, so df and free-space checks work.
                    let capacity = if s.capacity_bytes == 0 {
                        1 << 50
                    } else {
                        s.capacity_bytes
                    };
                    let inodes = if s.inode_limit == 0 {
                        10_000_000_000
                    } else {
                        s.inode_limit
                    };
                    let blocks = capacity / BSIZE;
                    let free = capacity.saturating_sub(s.used_bytes) / BSIZE;
                    let ffree = inodes.saturating_sub(s.used_inodes);
                    reply.statfs(
                        blocks,
                        free,
                        free,
                        inodes,
                        ffree,
                        BSIZE as u32,
                        255,
                        BSIZE as u32,
                    );
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (vfs, ctx, ino, n, value) = (
            self.edge.vfs.clone(),
            ctx(req),
            self.ino(ino),
            name(n),
            value.to_vec(),
        );
        self.spawn("setxattr", async move {
            reply_empty(
                reply,
                vfs.setxattr(&ctx, ino, &n, &value, flags as u32).await,
            );
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let (vfs, ino, n) = (self.edge.vfs.clone(), self.ino(ino), name(n));
        self.spawn("getxattr", async move {
            match vfs.getxattr(ino, &n).await {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let (vfs, ino) = (self.edge.vfs.clone(), self.ino(ino));
        self.spawn("listxattr", async move {
            match vfs.listxattr(ino).await {
                Ok(names) => {
                    let mut list = Vec::new();
                    for n in names {
                        list.extend_from_slice(&n);
                        list.push(0);
                    }
                    reply_xattr(reply, size, &list)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (vfs, ctx, ino, n) = (self.edge.vfs.clone(), ctx(req), self.ino(ino), name(n));
        self.spawn("removexattr", async move {
            reply_empty(reply, vfs.removexattr(&ctx, ino, &n).await);
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (vfs, ctx, ino) = (self.edge.vfs.clone(), ctx(req), self.ino(ino));
        self.spawn("access", async move {
            reply_empty(reply, vfs.access(&ctx, ino, mask.bits() as u32).await);
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (vfs, ctx, parent, n) = (self.edge.vfs.clone(), ctx(req), self.ino(parent), name(n));
        let this = self.edge.clone();
        self.spawn("create", async move {
            match vfs.create(&ctx, parent, &n, mode, umask, flags).await {
                Ok((ino, attr, opened)) => reply.created(
                    &this.entry_ttl(&attr),
                    &this.file_attr(ino, &attr),
                    Generation(0),
                    FileHandle(opened.fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let (vfs, ino) = (self.edge.vfs.clone(), self.ino(ino));
        self.spawn("getlk", async move {
            let found = match lock_kind(typ) {
                Ok(kind) => {
                    vfs.getlk(ino, lock_owner.0, kind, start, lock_end(end))
                        .await
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(None) => reply.locked(0, 0, libc::F_UNLCK, 0),
                Ok(Some(l)) => {
                    let typ = if l.kind == LockKind::Read {
                        libc::F_RDLCK
                    } else {
                        libc::F_WRLCK
                    };
                    let end = if l.end == u64::MAX {
                        i64::MAX as u64
                    } else {
                        l.end - 1
                    };
                    reply.locked(l.start, end, typ, l.pid)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("setlk", async move {
            let done = match lock_kind(typ) {
                Ok(kind) => {
                    vfs.setlk(fh.0, lock_owner.0, pid, kind, start, lock_end(end), sleep)
                        .await
                }
                Err(e) => Err(e),
            };
            reply_empty(reply, done);
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let vfs = self.edge.vfs.clone();
        self.spawn("fallocate", async move {
            reply_empty(
                reply,
                vfs.fallocate(fh.0, mode as u32, offset, length).await,
            );
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let vfs = self.edge.vfs.clone();
        // One reply carries at most a u32 of bytes.
        let len = len.min(u32::MAX as u64 & !0xfff);
        self.spawn("copy_file_range", async move {
            match vfs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
                .await
            {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}

type Work = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A request polled on the fuser thread that has to wait: kept here until
/// its waker is called, which then hands it to the runtime. Called on a
/// runtime worker (the usual case: a reply from the network, read by a
/// worker), the spawn goes to that worker's own queue, so no other thread
/// is woken.
struct Parked {
    rt: tokio::runtime::Handle,
    state: std::sync::Mutex<ParkState>,
}

enum ParkState {
    /// Being polled on the fuser thread; `woken` if its waker was called
    /// meanwhile.
    Polling {
        woken: bool,
    },
    Waiting(Work),
    Spawned,
}

impl Parked {
    /// Polls `work` once here; finished, parked, or spawned if woken while
    /// it was being polled.
    fn run(rt: tokio::runtime::Handle, mut work: Work) {
        use std::task::{Context, Waker};
        let parked = Arc::new(Parked {
            rt,
            state: std::sync::Mutex::new(ParkState::Polling { woken: false }),
        });
        let waker = Waker::from(parked.clone());
        if work
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            return;
        }
        let mut state = parked.lock();
        if matches!(*state, ParkState::Polling { woken: true }) {
            *state = ParkState::Spawned;
            drop(state);
            parked.rt.spawn(work);
        } else {
            *state = ParkState::Waiting(work);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ParkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::task::Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, ParkState::Spawned) {
            ParkState::Polling { .. } => *state = ParkState::Polling { woken: true },
            ParkState::Waiting(work) => {
                drop(state);
                // The task polls the request again with its own waker. If
                // the runtime has shut down, the request ends with it
                // (dropped, its reply answering EIO).
                drop(self.rt.spawn(work));
            }
            ParkState::Spawned => {}
        }
    }
}

/// Drops what the kernel caches of `node` (attributes, pages, a
/// directory's listing). The kernel waits for pages locked by reads in
/// flight, which need a runtime worker to finish: it waits on a blocking
/// thread, never on a worker (a worker blocked here deadlocked fsx's mmap
/// reads).
async fn invalidate(notifier: &Arc<OnceLock<Notifier>>, node: INodeNo) {
    if notifier.get().is_none() {
        return;
    }
    let notifier = notifier.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(n) = notifier.get() {
            let _ = n.inval_inode(node, 0, 0);
        }
    })
    .await;
}

/// Answers a request whose only result is success or an errno.
fn reply_empty(reply: ReplyEmpty, result: VfsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}
