//! Page-aligned buffers for blocks: the writer's block buffers and the disk
//! cache's `O_DIRECT` writes. Each is an anonymous mapping of its own, not
//! heap memory: a process moving 4 MiB blocks through several threads
//! fragmented the allocator's arenas (`jfs bench -p 4`: about 100 MiB of
//! blocks alive, 240 MiB resident), while a mapping goes back to the kernel
//! when it is dropped. Mappings are kept for reuse, since a fresh mapping
//! costs a page fault and a zeroing per page on first use: as many as were
//! in use at once lately (at least [`KEPT`]), so a steady stream of blocks
//! through a cache (one dropped, one read) maps nothing new, and memory
//! stays at what the busiest moment needed, not more.

use std::ptr::NonNull;
use std::sync::Mutex;

/// Page size, and the alignment `O_DIRECT` wants of buffers and lengths.
pub const PAGE: usize = 4096;

/// Mappings kept for reuse when few are in use (the largest are kept, so
/// blocks keep finding room after a run of small ones). With 8, four
/// streams reading through the disk cache (a block each) kept 32 MiB of
/// buffers: what the write before them had left.
const KEPT: usize = 4;
/// How long the largest number of buffers in use at once is remembered.
const BUSY_MEMORY: std::time::Duration = std::time::Duration::from_secs(2);

/// A mapping no buffer owns now.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a kept mapping is owned by the pool alone.
unsafe impl Send for Mapping {}

impl Mapping {
    fn unmap(self) {
        // SAFETY: the mapping was made by `PageBuf::new` with this length,
        // and it is unmapped once: `self` is consumed.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Kept mappings, and how many buffers are in use.
struct Pool {
    kept: Vec<Mapping>,
    live: usize,
    /// Bytes of the buffers in use.
    live_bytes: usize,
    /// The most buffers in use at once since `busy_since`.
    busy: usize,
    busy_since: Option<std::time::Instant>,
}

impl Pool {
    /// Mappings worth keeping now: what the busiest recent moment had in
    /// use, less what is in use.
    fn room(&mut self) -> usize {
        let now = std::time::Instant::now();
        if self
            .busy_since
            .is_none_or(|t| now.duration_since(t) > BUSY_MEMORY)
        {
            self.busy = self.live;
            self.busy_since = Some(now);
        }
        self.busy.max(KEPT).saturating_sub(self.live)
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    kept: Vec::new(),
    live: 0,
    live_bytes: 0,
    busy: 0,
    busy_since: None,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes of page buffers in use now, and of mappings kept for reuse.
pub fn usage() -> (usize, usize) {
    let pool = pool();
    (pool.live_bytes, pool.kept.iter().map(|m| m.len).sum())
}

/// A page-aligned buffer of a whole number of pages, readable and writable;
/// fresh ones read as zeros, reused ones hold what was written before.
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PageBuf owns its mapping as a Vec<u8> owns its allocation; shared
// references only read it.
unsafe impl Send for PageBuf {}
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A buffer of at least `len` bytes (a kept one if one is big enough
    /// and at most twice as big: a buffer kept in a cache holds all of
    /// its mapping's pages).
    pub fn new(len: usize) -> std::io::Result<PageBuf> {
        let len = len.max(1).next_multiple_of(PAGE);
        {
            let mut pool = pool();
            pool.live += 1;
            pool.busy = pool.busy.max(pool.live);
            let kept = &mut pool.kept;
            let fitting = (0..kept.len())
                .filter(|&i| kept[i].len >= len && kept[i].len / 2 <= len)
                .min_by_key(|&i| kept[i].len);
            if let Some(i) = fitting {
                let m = kept.swap_remove(i);
                pool.live_bytes += m.len;
                return Ok(PageBuf {
                    ptr: m.ptr,
                    len: m.len,
                });
            }
        }
        // SAFETY: a new private anonymous mapping; no existing memory is
        // touched. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let ptr = match NonNull::new(ptr.cast::<u8>()) {
            Some(p) if ptr != libc::MAP_FAILED => p,
            _ => {
                let e = std::io::Error::last_os_error();
                pool().live -= 1;
                return Err(e);
            }
        };
        pool().live_bytes += len;
        Ok(PageBuf { ptr, len })
    }

    /// As [`PageBuf::new`], where failing to map is running out of memory,
    /// handled as the heap's allocation failures are (the process ends).
    pub fn or_abort(len: usize) -> PageBuf {
        PageBuf::new(len).unwrap_or_else(|_| {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len.max(1), PAGE)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            )
        })
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` writable bytes owned by self; &mut
        // self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    /// Back to the pool, or to the kernel: when the pool is full, the
    /// smaller of this mapping and the smallest kept one is unmapped (and
    /// any kept beyond what recent use calls for).
    fn drop(&mut self) {
        let mine = Mapping {
            ptr: self.ptr,
            len: self.len,
        };
        let mut pool = pool();
        pool.live -= 1;
        pool.live_bytes -= self.len;
        let room = pool.room();
        let kept = &mut pool.kept;
        kept.push(mine);
        let mut unmapped = Vec::new();
        while kept.len() > room {
            let Some(smallest) = (0..kept.len()).min_by_key(|&i| kept[i].len) else {
                break;
            };
            unmapped.push(kept.swap_remove(smallest));
        }
        drop(pool);
        for m in unmapped {
            m.unmap();
        }
    }
}

/// The first `len` bytes of a buffer, as the owner of a `Bytes`.
pub struct Filled {
    pub buf: PageBuf,
    pub len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Bytes read from a file at a time by [`read_file`]: a part is checked
/// while it is still in the CPU's second-level cache.
const READ_PART: usize = 256 << 10;

/// Files of at least this many bytes are read into a page buffer, smaller
/// ones into the heap (a kept mapping would hold a whole block's pages
/// for them).
const MAPPED_READ: usize = 1 << 20;

/// The whole of `file` (`len` bytes as its size said; fewer if it ends
/// sooner), handing each part read to `feed` with its offset.
pub fn read_file(
    file: &std::fs::File,
    len: usize,
    feed: Option<&crate::object::FeedFn>,
) -> std::io::Result<bytes::Bytes> {
    read_file_at(file, 0, len, feed)
}

/// As [`read_file`], `len` bytes from `offset` on.
pub fn read_file_at(
    file: &std::fs::File,
    offset: u64,
    len: usize,
    feed: Option<&crate::object::FeedFn>,
) -> std::io::Result<bytes::Bytes> {
    if len < MAPPED_READ {
        let mut buf = vec![0u8; len];
        let filled = read_into(file, offset, &mut buf, feed)?;
        buf.truncate(filled);
        return Ok(bytes::Bytes::from(buf));
    }
    let mut buf = PageBuf::new(len)?;
    let filled = read_into(file, offset, &mut buf[..len], feed)?;
    Ok(bytes::Bytes::from_owner(Filled { buf, len: filled }))
}

fn read_into(
    file: &std::fs::File,
    offset: u64,
    buf: &mut [u8],
    feed: Option<&crate::object::FeedFn>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        let end = (filled + READ_PART).min(buf.len());
        let n = match file.read_at(&mut buf[filled..end], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(feed) = feed {
            feed(filled, &buf[filled..filled + n]);
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_whole_pages_and_reused() {
        let mut a = PageBuf::new(5000).expect("map");
        assert!(
            a.len() >= 5000 && a.len().is_multiple_of(PAGE),
            "{}",
            a.len()
        );
        assert_eq!(a.as_ptr() as usize % PAGE, 0);
        a[4999] = 7;
        let at = a.as_ptr();
        drop(a);
        // Another thread of the test binary may take it first; when this
        // one gets a mapping of that size back, it is the same, unchanged.
        let b = PageBuf::new(2 * PAGE).expect("map");
        if b.as_ptr() == at {
            assert_eq!(b[4999], 7);
        }
        let bytes = bytes::Bytes::from_owner(Filled { buf: b, len: 10 });
        assert_eq!(bytes.len(), 10);
    }
}
