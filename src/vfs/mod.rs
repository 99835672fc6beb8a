//! The file system as the kernel sees it, without the kernel: open files
//! and handles, directory listings, close-to-open, and the orchestration of
//! reads and writes over `meta` and `data`. Every method is async and
//! answers with a value or an errno; the FUSE adapter (`crate::fuse`) only
//! translates. Testable without a mount.
//!
//! Consistency: `open` always reads the inode's attributes from the KV
//! store (close-to-open), and tells the caller whether cached pages are
//! still good (same mtime and length as this mount last saw). `flush`
//! (every close) and `fsync` return only when the data is stored and the
//! slice committed. Writes buffered in a writer are visible to this mount's
//! reads (a read flushes first) and its `getattr` (the buffered length).

mod dirs;
mod error;
mod files;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dirs::DirAttrs;
pub use error::{VfsError, VfsResult};
use files::{DirHandle, OpenFile};

use crate::data::{DataStore, FileReader, FileWriter};
use crate::meta::{
    Attr, Ctx, DirEntry, FileKind, Ino, LockKind, Meta, PosixLock, Renamed, SetAttr, Timestamp,
    R_OK, TRASH_INO, W_OK,
};

/// Handle number given to the kernel for an open file or directory.
pub type Fh = u64;

/// Entries a directory listing fetches from the KV store at a time.
const LISTING_PAGE: usize = 1024;

/// How many closed files' last known (mtime, length) are remembered for
/// the keep-cache decision; beyond it the memory is simply cleared.
const SEEN_LIMIT: usize = 100_000;

/// Mount options the vfs itself honours.
#[derive(Debug, Clone, Default)]
pub struct VfsOptions {
    pub read_only: bool,
    /// `--enable-xattr`: without it extended attributes answer ENOTSUP
    /// (the kernel then stops asking, which saves a lookup per write).
    pub xattr: bool,
    /// How long the kernel keeps attributes (`--attr-cache`); directory
    /// attributes this mount read are kept as long (see `dirs`). Zero
    /// keeps nothing.
    pub attr_cache: Duration,
    /// Answer the kernel's lookups and getattrs at a recent snapshot (see
    /// [`crate::kv::Engine::begin_recent`]): for a mount whose kernel keeps
    /// entries and attributes for a while anyway. Off, every answer is
    /// read at the newest snapshot.
    pub recent_reads: bool,
}

enum Handle {
    File(Arc<OpenFile>),
    Dir(Arc<DirHandle>),
}

/// One mounted volume.
pub struct Vfs {
    meta: Arc<Meta>,
    data: Arc<DataStore>,
    options: VfsOptions,
    files: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    handles: Mutex<HashMap<Fh, Handle>>,
    next_fh: AtomicU64,
    /// (mtime, length) of files as this mount last saw them at open or
    /// after its own writes: an unchanged file keeps the kernel's pages;
    /// (mtime, ctime) of directories at opendir: an unchanged one keeps the
    /// kernel's cached listing.
    seen: Mutex<HashMap<Ino, (Timestamp, u64)>>,
    /// Directory attributes last read, with this mount's changes applied.
    dirs: DirAttrs,
    /// Files released for the last time whose close in the KV store waits
    /// for the next batch.
    closing: Mutex<Closing>,
    me: std::sync::Weak<Vfs>,
}

#[derive(Default)]
struct Closing {
    queue: Vec<Arc<OpenFile>>,
    /// A task is closing the queue's files.
    running: bool,
}

/// How long a released file waits for others to be closed with it in one
/// transaction. An open in that time reuses the open marker.
const CLOSE_DELAY: Duration = Duration::from_millis(100);
/// Files per close transaction (two deletes each; etcd takes 128
/// operations per transaction).
const CLOSE_BATCH: usize = 32;

/// What `open` and `create` tell the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: Fh,
    /// The file did not change since this mount last saw it: pages cached
    /// by the kernel are still valid.
    pub keep_cache: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// O_ACCMODE of open flags as R_OK / W_OK.
fn access_mask(flags: i32) -> u32 {
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => R_OK,
        libc::O_WRONLY => W_OK,
        _ => R_OK | W_OK,
    }
}

fn kind_of_mode(mode: u32) -> VfsResult<FileKind> {
    Ok(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => FileKind::File,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        _ => return Err(VfsError::errno(libc::EINVAL)),
    })
}

impl Vfs {
    pub fn new(meta: Arc<Meta>, data: Arc<DataStore>, options: VfsOptions) -> Arc<Vfs> {
        Arc::new_cyclic(|me| Vfs {
            meta,
            data,
            dirs: DirAttrs::new(options.attr_cache),
            options,
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            seen: Mutex::new(HashMap::new()),
            closing: Mutex::new(Closing::default()),
            me: me.clone(),
        })
    }

    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    pub fn data(&self) -> &Arc<DataStore> {
        &self.data
    }

    fn writable(&self) -> VfsResult<()> {
        if self.options.read_only {
            return Err(VfsError::errno(libc::EROFS));
        }
        Ok(())
    }

    fn open_file(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// Attributes with this mount's buffered writes taken into account.
    fn local_view(&self, ino: Ino, mut attr: Attr) -> Attr {
        if let Some(file) = self.open_file(ino) {
            if file.is_dirty() {
                attr.length = attr.length.max(file.length());
            }
        }
        attr
    }

    pub async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> VfsResult<(Ino, Attr)> {
        let (ino, attr) = if self.options.recent_reads {
            self.meta.lookup_recent(ctx, parent, name).await?
        } else {
            self.meta.lookup(ctx, parent, name).await?
        };
        Ok((ino, self.local_view(ino, attr)))
    }

    /// The attributes of `ino` and how long the kernel may keep them. A
    /// directory this mount just changed is answered from its last read
    /// with the change applied (see `dirs`).
    pub async fn getattr(&self, ino: Ino) -> VfsResult<(Attr, Duration)> {
        let ticket = match self.dirs.get(ino) {
            Ok(known) => return Ok(known),
            Err(ticket) => ticket,
        };
        let read_at = Instant::now();
        let attr = if self.options.recent_reads {
            self.meta.getattr_recent(ino).await?
        } else {
            self.meta.getattr(ino).await?
        };
        self.dirs.learn(ino, &attr, read_at, ticket);
        Ok((self.local_view(ino, attr), self.options.attr_cache))
    }

    /// Follows an entry change in `dir` that made `result`'s node (whose
    /// ctime is the change's time) in the known directory attributes.
    fn created<T>(&self, dir: Ino, result: &VfsResult<T>, attr: impl Fn(&T) -> &Attr) {
        match result {
            Ok(made) => {
                let attr = attr(made);
                self.dirs
                    .entry_changed(dir, attr.ctime, attr.is_dir() as i64);
            }
            Err(_) => self.dirs.forget(dir),
        }
    }

    /// chmod, chown, utimes and truncate. A truncate first commits what
    /// this mount has buffered for the file, so the new length wins.
    pub async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> VfsResult<Attr> {
        self.writable()?;
        let file = self.open_file(ino);
        if set.size.is_some() {
            if let Some(file) = &file {
                file.flush().await?;
            }
        }
        let attr = self.meta.setattr(ctx, ino, set).await;
        // Only directories are kept (a file's setattr is the hot case of
        // truncates and utimes: nothing to drop).
        if attr.as_ref().map_or(true, Attr::is_dir) {
            self.dirs.forget(ino);
        }
        let attr = attr?;
        if let (Some(file), Some(_)) = (&file, set.size) {
            file.set_length(attr.length);
        }
        Ok(attr)
    }

    /// Creates a node of the kind in `mode`'s type bits (a regular file
    /// when none), with permission bits `mode & !umask`.
    pub async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> VfsResult<(Ino, Attr)> {
        self.writable()?;
        let kind = kind_of_mode(mode)?;
        let perm = mode & 0o7777 & !umask;
        let made = match kind {
            FileKind::Directory => self.meta.mkdir(ctx, parent, name, perm).await,
            FileKind::Symlink => return Err(VfsError::errno(libc::EINVAL)),
            _ => self.meta.mknod(ctx, parent, name, kind, perm, rdev).await,
        }
        .map_err(VfsError::from);
        self.created(parent, &made, |(_, attr)| attr);
        made
    }

    pub async fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> VfsResult<(Ino, Attr)> {
        self.writable()?;
        let made = self
            .meta
            .mkdir(ctx, parent, name, mode & 0o7777 & !umask)
            .await
            .map_err(VfsError::from);
        self.created(parent, &made, |(_, attr)| attr);
        made
    }

    pub async fn symlink(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        target: &[u8],
    ) -> VfsResult<(Ino, Attr)> {
        self.writable()?;
        let made = self
            .meta
            .symlink(ctx, parent, name, target)
            .await
            .map_err(VfsError::from);
        self.created(parent, &made, |(_, attr)| attr);
        made
    }

    pub async fn link(&self, ctx: &Ctx, ino: Ino, parent: Ino, name: &[u8]) -> VfsResult<Attr> {
        self.writable()?;
        let linked = self
            .meta
            .link(ctx, ino, parent, name)
            .await
            .map_err(VfsError::from);
        self.created(parent, &linked, |attr| attr);
        Ok(self.local_view(ino, linked?))
    }

    pub async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> VfsResult<()> {
        self.writable()?;
        match self.meta.unlink(ctx, parent, name).await {
            Ok(at) => {
                self.dirs.entry_changed(parent, at, 0);
                Ok(())
            }
            Err(e) => {
                self.dirs.forget(parent);
                Err(e.into())
            }
        }
    }

    pub async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> VfsResult<()> {
        self.writable()?;
        let removed = self.meta.rmdir(ctx, parent, name).await;
        // The removed directory's attributes are gone too.
        self.dirs.forget_all();
        Ok(removed?)
    }

    pub async fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> VfsResult<()> {
        self.writable()?;
        let renamed = self
            .meta
            .rename(ctx, parent, name, new_parent, new_name, flags)
            .await;
        match renamed {
            Ok(Renamed::Nothing) => {}
            Ok(Renamed::Files { at }) => {
                self.dirs.entry_changed(parent, at, 0);
                self.dirs.entry_changed(new_parent, at, 0);
            }
            // The moved or replaced directory changed too, and link counts.
            Ok(Renamed::Directories) | Err(_) => self.dirs.forget_all(),
        }
        renamed?;
        Ok(())
    }

    pub async fn readlink(&self, ino: Ino) -> VfsResult<Vec<u8>> {
        Ok(self.meta.readlink(ino).await?)
    }

    pub async fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> VfsResult<()> {
        if mask & W_OK != 0 {
            self.writable()?;
        }
        Ok(self.meta.access(ctx, ino, mask).await?)
    }

    /// Creates a regular file and opens it (O_CREAT). With O_EXCL an
    /// existing name is EEXIST; without it the existing file is opened.
    pub async fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> VfsResult<(Ino, Attr, Opened)> {
        self.writable()?;
        // A new name is created and opened in one transaction.
        let created = self
            .meta
            .create_open(ctx, parent, name, mode & 0o7777 & !umask)
            .await;
        match &created {
            Ok((_, attr)) => self.dirs.entry_changed(parent, attr.ctime, 0),
            Err(e) if e.errno() == libc::EEXIST => {}
            Err(_) => self.dirs.forget(parent),
        }
        match created {
            Ok((ino, attr)) => {
                let opened = self.adopt_new_file(ino, &attr).await;
                Ok((ino, attr, opened))
            }
            Err(e) if e.errno() == libc::EEXIST && flags & libc::O_EXCL == 0 => {
                let (ino, attr) = self.meta.lookup(ctx, parent, name).await?;
                let opened = self.open_inode(ctx, ino, flags).await?;
                Ok((ino, attr, opened))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Registers a file this session created already open.
    async fn adopt_new_file(&self, ino: Ino, attr: &Attr) -> Opened {
        let file = Arc::new(OpenFile::new(
            ino,
            FileWriter::new(self.data.clone(), ino),
            FileReader::new(self.data.clone(), ino),
        ));
        {
            let mut state = file.state.lock().await;
            state.opens = 1;
            state.marked = true;
        }
        file.set_length(attr.length);
        lock(&self.files).insert(ino, file.clone());
        self.remember(ino, (attr.mtime, attr.length));
        let fh = self.add_handle(Handle::File(file));
        Opened {
            fh,
            keep_cache: true,
        }
    }

    /// Opens a file: its attributes are read fresh from the KV store.
    pub async fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> VfsResult<Opened> {
        if access_mask(flags) & W_OK != 0 || flags & libc::O_TRUNC != 0 {
            self.writable()?;
        }
        self.open_inode(ctx, ino, flags).await
    }

    async fn open_inode(&self, ctx: &Ctx, ino: Ino, flags: i32) -> VfsResult<Opened> {
        let mask = access_mask(flags);
        let (file, attr) = loop {
            let file = {
                let mut files = lock(&self.files);
                files
                    .entry(ino)
                    .or_insert_with(|| {
                        Arc::new(OpenFile::new(
                            ino,
                            FileWriter::new(self.data.clone(), ino),
                            FileReader::new(self.data.clone(), ino),
                        ))
                    })
                    .clone()
            };
            let mut state = file.state.lock().await;
            if state.closed {
                // Lost a race with the last release: take a fresh entry.
                continue;
            }
            // Chunk records read before this open go (close-to-open); a
            // first open reads the first chunk's again with the attributes.
            file.reader.forget_chunks();
            let before = file.reader.changes();
            let attr = if !state.marked {
                match self.meta.open_reading(ctx, ino, mask).await {
                    Ok((attr, first_chunk)) => {
                        state.marked = true;
                        if let Some(records) = first_chunk {
                            file.reader.know_chunk(0, records, before);
                        }
                        attr
                    }
                    Err(e) => {
                        state.closed = true;
                        self.forget_file(&file);
                        return Err(e.into());
                    }
                }
            } else {
                let attr = self.meta.getattr(ino).await?;
                if attr.is_dir() && mask & W_OK != 0 {
                    return Err(VfsError::errno(libc::EISDIR));
                }
                if !ctx.can(&attr, mask) {
                    return Err(VfsError::errno(libc::EACCES));
                }
                attr
            };
            state.opens += 1;
            drop(state);
            break (file, attr);
        };
        if !file.is_dirty() {
            file.set_opened_length(attr.length);
        }
        let now = (attr.mtime, attr.length);
        let keep_cache = self.remember(ino, now);
        let fh = self.add_handle(Handle::File(file));
        Ok(Opened { fh, keep_cache })
    }

    fn forget_file(&self, file: &Arc<OpenFile>) {
        let mut files = lock(&self.files);
        if files.get(&file.ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            files.remove(&file.ino);
        }
    }

    fn add_handle(&self, handle: Handle) -> Fh {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        fh
    }

    fn file(&self, fh: Fh) -> VfsResult<Arc<OpenFile>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::File(f)) => Ok(f.clone()),
            _ => Err(VfsError::errno(libc::EBADF)),
        }
    }

    fn dir(&self, fh: Fh) -> VfsResult<Arc<DirHandle>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::Dir(d)) => Ok(d.clone()),
            _ => Err(VfsError::errno(libc::EBADF)),
        }
    }

    /// Up to `size` bytes at `offset`. Data this mount has buffered for the
    /// file is committed first, so a reader sees every write before it.
    pub async fn read(&self, fh: Fh, offset: u64, size: u32) -> VfsResult<bytes::Bytes> {
        let file = self.file(fh)?;
        file.flush().await?;
        Ok(file
            .reader
            .read(offset, size as usize, file.length())
            .await?)
    }

    pub async fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> VfsResult<u32> {
        self.writable()?;
        let file = self.file(fh)?;
        file.write(offset, data).await?;
        Ok(data.len() as u32)
    }

    /// close(2) of one descriptor: commits buffered data (close-to-open)
    /// and drops the POSIX locks `lock_owner` holds on the file, as POSIX
    /// says any close does.
    pub async fn flush(&self, fh: Fh, lock_owner: Option<u64>) -> VfsResult<()> {
        let file = self.file(fh)?;
        let flushed = file.flush().await;
        if let Some(owner) = lock_owner {
            if file.posix_locked() {
                self.meta
                    .setlk(file.ino, owner, 0, LockKind::Unlock, 0..u64::MAX, false)
                    .await?;
            }
        }
        Ok(flushed?)
    }

    pub async fn fsync(&self, fh: Fh) -> VfsResult<()> {
        let file = self.file(fh)?;
        file.flush().await?;
        Ok(self
            .meta
            .db()
            .sync()
            .await
            .map_err(crate::meta::MetaError::from)?)
    }

    /// The last release of a file on this mount closes it in the KV store
    /// (an unlinked file is deleted when no host has it open): at once if
    /// it holds POSIX locks, otherwise with other files in the next batch.
    pub async fn release(&self, fh: Fh) -> VfsResult<()> {
        let Some(Handle::File(file)) = lock(&self.handles).remove(&fh) else {
            return Err(VfsError::errno(libc::EBADF));
        };
        let mut state = file.state.lock().await;
        state.opens -= 1;
        if state.opens > 0 {
            return Ok(());
        }
        let flushed = file.flush().await;
        let now = file.posix_locked();
        if now {
            state.closed = true;
            state.marked = false;
            self.forget_file(&file);
        }
        drop(state);
        if file.was_written() {
            // Our own writes changed mtime: remember the result, so that the
            // next open keeps the pages the kernel cached while writing.
            if let Ok(attr) = self.meta.getattr(file.ino).await {
                self.remember(file.ino, (attr.mtime, attr.length));
            }
        }
        if now {
            self.meta.close(file.ino).await?;
        } else {
            self.close_later(file);
        }
        Ok(flushed?)
    }

    /// Drops the flock(2) locks of the open file `owner` (the kernel asks
    /// at its release; they are whole-file locks of that owner).
    pub async fn unlock_flock(&self, fh: Fh, owner: u64) -> VfsResult<()> {
        let file = self.file(fh)?;
        if file.posix_locked() {
            self.meta
                .setlk(file.ino, owner, 0, LockKind::Unlock, 0..u64::MAX, false)
                .await?;
        }
        Ok(())
    }

    /// Queues a released file for the next close batch.
    fn close_later(&self, file: Arc<OpenFile>) {
        let mut closing = lock(&self.closing);
        closing.queue.push(file);
        if closing.running {
            return;
        }
        let Some(vfs) = self.me.upgrade() else {
            return;
        };
        closing.running = true;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CLOSE_DELAY).await;
                if !vfs.close_queued().await {
                    break;
                }
            }
        });
    }

    /// Closes one batch of queued files; false when the queue was empty
    /// (the closing task then ends).
    async fn close_queued(&self) -> bool {
        let batch: Vec<Arc<OpenFile>> = {
            let mut closing = lock(&self.closing);
            if closing.queue.is_empty() {
                closing.running = false;
                return false;
            }
            let n = closing.queue.len().min(CLOSE_BATCH);
            closing.queue.drain(..n).collect()
        };
        let mut files: Vec<Arc<OpenFile>> = Vec::with_capacity(batch.len());
        for file in batch {
            if !files.iter().any(|f| Arc::ptr_eq(f, &file)) {
                files.push(file);
            }
        }
        // Holding the files' state makes an open wait for the close, then
        // take a fresh entry and write a new marker after it.
        let mut states = Vec::with_capacity(files.len());
        for file in &files {
            states.push(file.state.lock().await);
        }
        let mut inos = Vec::new();
        for (file, state) in files.iter().zip(&states) {
            if state.opens == 0 && state.marked && !state.closed {
                inos.push(file.ino);
            }
        }
        if inos.is_empty() {
            return true;
        }
        match self.meta.close_many(&inos).await {
            Ok(()) => {
                for (file, state) in files.iter().zip(states.iter_mut()) {
                    if state.opens == 0 && state.marked && !state.closed {
                        state.closed = true;
                        state.marked = false;
                        self.forget_file(file);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, files = inos.len(), "closing files failed; trying again");
                drop(states);
                lock(&self.closing).queue.extend(files);
            }
        }
        true
    }

    /// Records what this mount saw of `ino` at an open; true when it is
    /// what it saw at the one before.
    fn remember(&self, ino: Ino, seen: (Timestamp, u64)) -> bool {
        let mut map = lock(&self.seen);
        if map.len() >= SEEN_LIMIT {
            map.clear();
        }
        map.insert(ino, seen) == Some(seen)
    }

    /// Opens a directory. `keep_cache` says the kernel may list it from
    /// what it cached at an earlier open: its mtime and ctime are what this
    /// mount saw then. Every change of entries sets both, from any host;
    /// utimes sets the mtime back but moves the ctime. The trash's hour
    /// directories are the exception (files moved in leave their times
    /// alone), so their listings are never reused.
    pub async fn opendir(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Opened> {
        let (ticket, read_at) = (self.dirs.ticket(ino), Instant::now());
        let attr = self.meta.getattr(ino).await?;
        self.dirs.learn(ino, &attr, read_at, ticket);
        if !attr.is_dir() {
            return Err(VfsError::errno(libc::ENOTDIR));
        }
        if !ctx.can(&attr, R_OK) {
            return Err(VfsError::errno(libc::EACCES));
        }
        let parent = if attr.parent == 0 { ino } else { attr.parent };
        let ctime = (attr.ctime.sec as u64) << 30 | attr.ctime.nsec as u64;
        let keep_cache = attr.parent != TRASH_INO && self.remember(ino, (attr.mtime, ctime));
        let fh = self.add_handle(Handle::Dir(Arc::new(DirHandle::new(ino, parent))));
        Ok(Opened { fh, keep_cache })
    }

    /// Entries of an open directory from position `offset` on, each with
    /// the position of the next one, "." and ".." first. Offset 0 starts a
    /// fresh listing (rewinddir); other positions continue the listing
    /// this handle holds, fetched from the KV store page by page by name,
    /// so a position always means the same entry.
    pub async fn readdir(
        &self,
        ctx: &Ctx,
        fh: Fh,
        offset: u64,
        max: usize,
    ) -> VfsResult<Vec<(u64, DirEntry)>> {
        let dir = self.dir(fh)?;
        let mut listing = dir.listing.lock().await;
        if offset == 0 {
            listing.reset(dir.ino, dir.parent);
        }
        let want = offset as usize + max;
        while listing.entries.len() < want && !listing.done {
            let after = listing.cursor.clone();
            let page = self
                .meta
                .readdir(ctx, dir.ino, after.as_deref(), LISTING_PAGE, true)
                .await?;
            listing.done = page.len() < LISTING_PAGE;
            if let Some(last) = page.last() {
                listing.cursor = Some(last.name.clone());
            }
            listing
                .entries
                .extend(page.into_iter().filter(|e| e.attr.is_some()).map(|mut e| {
                    e.attr = e.attr.map(|a| self.local_view(e.ino, a));
                    e
                }));
        }
        let start = (offset as usize).min(listing.entries.len());
        let end = want.min(listing.entries.len());
        Ok(listing.entries[start..end]
            .iter()
            .enumerate()
            .map(|(i, e)| ((start + i + 1) as u64, e.clone()))
            .collect())
    }

    pub fn releasedir(&self, fh: Fh) {
        lock(&self.handles).remove(&fh);
    }

    pub async fn statfs(&self) -> VfsResult<crate::meta::StatFs> {
        Ok(self.meta.statfs().await?)
    }

    fn xattrs_enabled(&self) -> VfsResult<()> {
        if !self.options.xattr {
            return Err(VfsError::errno(libc::ENOTSUP));
        }
        Ok(())
    }

    pub async fn getxattr(&self, ino: Ino, name: &[u8]) -> VfsResult<Vec<u8>> {
        self.xattrs_enabled()?;
        Ok(self.meta.getxattr(ino, name).await?)
    }

    pub async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<Vec<u8>>> {
        self.xattrs_enabled()?;
        Ok(self.meta.listxattr(ino).await?)
    }

    pub async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> VfsResult<()> {
        self.xattrs_enabled()?;
        self.writable()?;
        let set = self.meta.setxattr(ctx, ino, name, value, flags).await;
        self.dirs.forget(ino);
        Ok(set?)
    }

    pub async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> VfsResult<()> {
        self.xattrs_enabled()?;
        self.writable()?;
        let removed = self.meta.removexattr(ctx, ino, name).await;
        self.dirs.forget(ino);
        Ok(removed?)
    }

    /// F_GETLK: the first lock that would block `kind` on `[start, end)`.
    pub async fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> VfsResult<Option<PosixLock>> {
        Ok(self.meta.getlk(ino, owner, kind, start, end).await?)
    }

    /// F_SETLK / F_SETLKW on `[start, end)`, shared by every host.
    #[allow(clippy::too_many_arguments)]
    pub async fn setlk(
        &self,
        fh: Fh,
        owner: u64,
        pid: u32,
        kind: LockKind,
        start: u64,
        end: u64,
        block: bool,
    ) -> VfsResult<()> {
        let file = self.file(fh)?;
        if kind != LockKind::Unlock {
            file.mark_posix_locked();
        }
        Ok(self
            .meta
            .setlk(file.ino, owner, pid, kind, start..end, block)
            .await?)
    }

    pub async fn fallocate(&self, fh: Fh, mode: u32, offset: u64, len: u64) -> VfsResult<()> {
        self.writable()?;
        let file = self.file(fh)?;
        file.flush().await?;
        let attr = self.meta.fallocate(file.ino, mode, offset, len).await?;
        file.set_length(attr.length);
        Ok(())
    }

    pub async fn copy_file_range(
        &self,
        fh_in: Fh,
        offset_in: u64,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<u64> {
        self.writable()?;
        let (src, dst) = (self.file(fh_in)?, self.file(fh_out)?);
        src.flush().await?;
        dst.flush().await?;
        let copied = self
            .meta
            .copy_file_range(src.ino, offset_in, dst.ino, offset_out, len)
            .await?;
        let attr = self.meta.getattr(dst.ino).await?;
        dst.set_length(attr.length);
        dst.mark_written();
        Ok(copied)
    }

    /// Unmount: commits what open files still buffer and waits for the
    /// background uploads. Returns how many staged blocks remain.
    pub async fn shutdown(&self) -> usize {
        for _ in 0..100 {
            if lock(&self.closing).queue.is_empty() {
                break;
            }
            self.close_queued().await;
        }
        let files: Vec<Arc<OpenFile>> = lock(&self.files).values().cloned().collect();
        for file in files {
            if let Err(e) = file.flush().await {
                tracing::error!(ino = file.ino, error = %e, "data of an open file was not saved at unmount");
            }
        }
        self.data.wait_uploads().await;
        self.data.pending_uploads()
    }
}
