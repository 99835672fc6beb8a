//! The local disk cache (`--cache-dir`, `--cache-size`,
//! `--free-space-ratio`): blocks as they are stored (encoded, with their
//! CRCs) under `DIR/UUID/raw/KEY`, so every hit is checked like a fetch and
//! a damaged entry is dropped and fetched again. Entries evict oldest-used
//! first past the size, or when the disk's free space falls below the
//! ratio. The cache outlives the mount: a remount finds its entries.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::pages::{PageBuf, PAGE};

/// The cache of one volume on this host.
pub struct DiskCache {
    root: PathBuf,
    capacity_bytes: u64,
    free_space_ratio: f64,
    index: Mutex<Index>,
}

/// What the cache holds, in order of use: every use moves an entry to the
/// back in O(log n), and memory stays one record per entry.
#[derive(Default)]
struct Index {
    /// Size and last use of each entry.
    entries: HashMap<String, Entry>,
    /// Keys by last use, least recent first.
    by_use: BTreeMap<u64, String>,
    /// The last use given out.
    clock: u64,
    bytes: u64,
}

struct Entry {
    size: u64,
    used: u64,
}

impl Index {
    fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn insert(&mut self, key: String, size: u64) {
        self.remove(&key);
        self.clock += 1;
        self.bytes += size;
        self.entries.insert(
            key.clone(),
            Entry {
                size,
                used: self.clock,
            },
        );
        self.by_use.insert(self.clock, key);
    }

    /// Marks `key` as just used.
    fn touch(&mut self, key: &str) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(name) = self.by_use.remove(&entry.used) {
            self.clock += 1;
            entry.used = self.clock;
            self.by_use.insert(self.clock, name);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.size;
            self.by_use.remove(&entry.used);
        }
    }

    /// The least recently used key.
    fn oldest(&self) -> Option<String> {
        self.by_use.first_key_value().map(|(_, key)| key.clone())
    }
}

impl DiskCache {
    /// Opens the cache of volume `uuid` in `dir`, indexing what a previous
    /// mount left there.
    pub fn open(
        dir: &Path,
        uuid: &str,
        capacity_bytes: u64,
        free_space_ratio: f64,
    ) -> std::io::Result<DiskCache> {
        let root = dir.join(uuid).join("raw");
        std::fs::create_dir_all(&root)?;
        let mut found = Vec::new();
        scan(&root, &root, &mut found)?;
        // Oldest first, by modification time (touched on every hit).
        found.sort_by_key(|(_, _, mtime)| *mtime);
        let mut index = Index::default();
        for (key, size, _) in found {
            index.insert(key, size);
        }
        let cache = DiskCache {
            root,
            capacity_bytes,
            free_space_ratio,
            index: Mutex::new(index),
        };
        cache.evict(0);
        Ok(cache)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes and entries held.
    pub fn usage(&self) -> (u64, usize) {
        let index = self.lock();
        (index.bytes, index.entries.len())
    }

    /// Whether block `key` is cached (as far as the index knows: a file
    /// removed behind the cache's back is found missing when read).
    pub fn contains(&self, key: &str) -> bool {
        self.lock().contains(key)
    }

    /// Starts reading block `key` into the kernel's page cache (callers
    /// check [`DiskCache::contains`] first; a missing file is no error),
    /// so that reads of its parts soon after find it there.
    pub fn prefetch(&self, key: &str) {
        use std::os::fd::AsRawFd;
        if let Ok(file) = std::fs::File::open(self.path(key)) {
            // SAFETY: a valid descriptor, owned by `file` for the call.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        }
    }

    /// The stored block `key`, if cached (unchecked: the caller decodes).
    pub fn get(&self, key: &str) -> Option<bytes::Bytes> {
        self.get_fed(key, None, false)
    }

    /// As [`DiskCache::get`], handing each part read to `feed` (offset,
    /// bytes) so the caller checks it while it is in the CPU's caches.
    /// With `kept` (the caller keeps the block in memory) the file's pages
    /// leave the kernel's page cache once read: they were a second copy,
    /// and the pages freed are the ones the next blocks read ahead into
    /// it take. Left there, every block read took pages the kernel had not
    /// used lately, which is dear on this VM (its free memory goes back to
    /// the host, and each such page is faulted in again): `jfs bench -p 4`
    /// three times on one S3 server read 699, 400 and 320 MiB/s with 11-23
    /// s of the mount's system time, and 1,262-1,339 MiB/s with about 6 s
    /// once the pages went (dev mount, runs alternated).
    pub fn get_fed(
        &self,
        key: &str,
        feed: Option<&crate::object::FeedFn>,
        kept: bool,
    ) -> Option<bytes::Bytes> {
        use std::os::fd::AsRawFd;
        if !self.lock().contains(key) {
            return None;
        }
        let read = std::fs::File::open(self.path(key)).and_then(|file| {
            let len = file.metadata()?.len() as usize;
            let data = super::read_file(&file, len, feed)?;
            if kept {
                // SAFETY: a valid descriptor, owned by `file` for the call.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
            // Marked used for the next mount's ordering; best effort.
            let _ = file.set_modified(std::time::SystemTime::now());
            Ok(data)
        });
        match read {
            Ok(data) => {
                self.lock().touch(key);
                Some(data)
            }
            Err(_) => {
                self.remove(key);
                None
            }
        }
    }

    /// Bytes `head` (read into the heap) and `body` (into a page buffer when
    /// large) of the stored block `key`, if cached (unchecked): a read of a
    /// part of a block takes its header and CRCs, and its pieces.
    pub fn get_parts(
        &self,
        key: &str,
        head: std::ops::Range<u64>,
        body: std::ops::Range<u64>,
    ) -> Option<(Vec<u8>, bytes::Bytes)> {
        use std::os::unix::fs::FileExt;
        if !self.lock().contains(key) {
            return None;
        }
        let file = std::fs::File::open(self.path(key)).ok()?;
        let mut first = vec![0u8; (head.end - head.start) as usize];
        file.read_exact_at(&mut first, head.start).ok()?;
        let len = (body.end - body.start) as usize;
        let second = super::pages::read_file_at(&file, body.start, len, None).ok()?;
        if second.len() != len {
            return None;
        }
        self.lock().touch(key);
        Some((first, second))
    }

    /// Keeps `data` (a stored block) under `key`, evicting as needed.
    /// Failures only mean the block is not cached.
    pub fn put(&self, key: &str, data: &[u8]) {
        let size = data.len() as u64;
        if size > self.capacity_bytes || self.lock().contains(key) {
            return;
        }
        self.evict(size);
        if !self.has_free_space() {
            return;
        }
        let path = self.path(key);
        let tmp = path.with_extension(format!("tmp{:08x}", fastrand::u32(..)));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| write_file(&tmp, data))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.lock().insert(key.to_string(), size);
    }

    /// Drops an entry (damaged, or evicted).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Evicts least recently used entries until `incoming` more bytes fit
    /// and the disk has its free space.
    fn evict(&self, incoming: u64) {
        loop {
            let victim = {
                let index = self.lock();
                let over = index.bytes + incoming > self.capacity_bytes;
                if !over && self.has_free_space() {
                    return;
                }
                let Some(key) = index.oldest() else {
                    return;
                };
                key
            };
            self.remove(&victim);
        }
    }

    /// Whether the disk has its free space, so a block put now would be
    /// kept: when not, a small read takes only the pieces it needs instead
    /// of a whole block the cache would not keep.
    pub fn has_free_space(&self) -> bool {
        if self.free_space_ratio <= 0.0 {
            return true;
        }
        free_ratio(&self.root).is_none_or(|free| free >= self.free_space_ratio)
    }
}

/// The free fraction of the file system holding `path`.
fn free_ratio(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and st a valid,
    // writable statvfs for the call to fill.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 || st.f_blocks == 0 {
        return None;
    }
    Some(st.f_bavail as f64 / st.f_blocks as f64)
}

fn scan(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, u64, std::time::SystemTime)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            scan(root, &path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.to_string_lossy().starts_with("tmp"))
        {
            let _ = std::fs::remove_file(&path);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((
                rel.to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            ));
        }
    }
    Ok(())
}

/// Writes a new cache file straight to the disk (`O_DIRECT`) from an
/// aligned copy of `data`, or with an ordinary write where the file system
/// refuses `O_DIRECT`. A buffered write copies into fresh page-cache pages,
/// which costs more than the whole rest of a block's way: a 1 GiB write
/// through a mount spent 64% of the mount's CPU there
/// (`copy_folio_from_iter_atomic`, perf), and dd on this 2-core VM writes
/// 451 MB/s buffered, 2.3 GB/s direct. The aligned copy is a plain memcpy
/// into a buffer kept for the next entry.
fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    match write_direct(path, data) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => std::fs::write(path, data),
        done => done,
    }
}

fn write_direct(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    // Whole aligned pages are written; the length is cut back after. An
    // object in a page mapping of its own (a block the writer encoded in
    // place, an S3 body) starts on a page: its whole pages go as they are,
    // and only the last partial page is copied into an aligned buffer.
    let whole = if (data.as_ptr() as usize).is_multiple_of(PAGE) {
        data.len() / PAGE * PAGE
    } else {
        0
    };
    file.write_all(&data[..whole])?;
    let rest = &data[whole..];
    if !rest.is_empty() {
        let padded = rest.len().next_multiple_of(PAGE);
        let mut buf = PageBuf::new(padded)?;
        buf[..rest.len()].copy_from_slice(rest);
        buf[rest.len()..padded].fill(0);
        file.write_all(&buf[..padded])?;
    }
    file.set_len(data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_keep_one_record_per_entry_and_the_least_recently_used_goes_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), "vol", 30, 0.0).expect("open");
        for key in ["a", "b", "c"] {
            cache.put(key, &[0u8; 10]);
        }
        for _ in 0..1000 {
            assert!(cache.get("a").is_some());
            assert!(cache.get_parts("c", 0..4, 6..8).is_some());
        }
        {
            let index = cache.lock();
            assert_eq!(index.entries.len(), 3);
            assert_eq!(index.by_use.len(), 3, "hits must not add records");
        }
        cache.put("d", &[0u8; 10]);
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        cache.put("e", &[0u8; 10]);
        assert!(cache.get("d").is_none(), "then d");
        assert_eq!(cache.usage(), (30, 3));
    }

    #[test]
    fn entries_read_back_exactly_whatever_their_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), "vol", 64 << 20, 0.0).expect("open");
        for len in [1, 4095, 4096, 4097, (4 << 20) + 4 * 64 + 9] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            // From the heap, and from a page-aligned mapping (written from
            // its own pages), the same bytes.
            let mut mapped = PageBuf::new(len).expect("map");
            mapped[..len].copy_from_slice(&data);
            for (key, from) in [
                (format!("k{len}"), &data[..]),
                (format!("m{len}"), &mapped[..len]),
            ] {
                cache.put(&key, from);
                assert_eq!(cache.get(&key).as_deref(), Some(data.as_slice()), "{key}");
                let file = dir.path().join("vol/raw").join(&key);
                assert_eq!(std::fs::metadata(file).expect("entry").len(), len as u64);
            }
        }
        // A remount indexes them at their exact sizes.
        drop(cache);
        let cache = DiskCache::open(dir.path(), "vol", 64 << 20, 0.0).expect("reopen");
        let want: u64 = [1u64, 4095, 4096, 4097, (4 << 20) + 4 * 64 + 9]
            .iter()
            .sum();
        assert_eq!(cache.usage(), (2 * want, 10));
    }

    #[test]
    fn a_remount_evicts_the_entries_hit_least_recently_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), "vol", 20, 0.0).expect("open");
        cache.put("a", &[1u8; 10]);
        cache.put("b", &[2u8; 10]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(cache.get("a").is_some());
        drop(cache);
        let cache = DiskCache::open(dir.path(), "vol", 20, 0.0).expect("reopen");
        cache.put("c", &[3u8; 10]);
        assert!(cache.get("b").is_none(), "b was hit least recently");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
    }

    /// How many of the pages of the file at `path` the page cache holds.
    fn resident_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).expect("open entry");
        let len = file.metadata().expect("stat").len() as usize;
        // SAFETY: a shared read-only mapping of `len` bytes of an open
        // file, unmapped below; mincore only reads the page tables into
        // `vec`, which has one byte per page.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut vec = vec![0u8; len.div_ceil(PAGE)];
            assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0);
            libc::munmap(map, len);
            vec.iter().filter(|&&v| v & 1 == 1).count()
        }
    }

    #[test]
    fn a_block_kept_in_memory_leaves_the_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        // SAFETY: statfs is plain data, for which all zeros is a valid value.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let c_dir = std::ffi::CString::new(dir.path().to_str().expect("utf-8")).expect("path");
        // SAFETY: a valid path and a writable statfs for the call.
        assert_eq!(unsafe { libc::statfs(c_dir.as_ptr(), &mut fs) }, 0);
        if fs.f_type == libc::TMPFS_MAGIC {
            eprintln!("skipped: tmpfs pages cannot leave the page cache");
            return;
        }
        let cache = DiskCache::open(dir.path(), "vol", 64 << 20, 0.0).expect("open");
        let data = vec![7u8; 1 << 20];
        cache.put("k", &data);
        let path = cache.path("k");
        assert_eq!(cache.get_fed("k", None, false).as_deref(), Some(&data[..]));
        assert_eq!(
            resident_pages(&path),
            256,
            "a read the caller does not keep stays cached"
        );
        assert_eq!(cache.get_fed("k", None, true).as_deref(), Some(&data[..]));
        assert_eq!(
            resident_pages(&path),
            0,
            "a block kept in memory has no second copy"
        );
    }
}
