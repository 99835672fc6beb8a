//! Reading a file: the slice records of each chunk touched are overlaid
//! (newest on top, holes and gaps as zeros) and the blocks behind the
//! visible pieces fetched, checked and kept in a bounded memory cache.
//!
//! Sequential reading is detected per open file and read ahead: the window
//! of blocks fetched in the background doubles with each block read, up
//! to as many blocks as may upload at once (`--max-uploads`) and half the
//! memory cache shared by the streams (with the block each reads), and
//! resets on a jump; a stream drops each block it is done with. Blocks the
//! disk cache holds are read ahead into memory only as far as a smaller
//! window (see `memory_readahead`), beyond it into the kernel's page
//! cache. Concurrent requests for one block share one fetch. A small read
//! of an uncompressed block not in the cache fetches only the 64 KiB
//! pieces it needs (and their CRCs); so does any read of the block a
//! stream left behind.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

use super::block::{block_key, BlockDecoder, Codec, PieceCheck, RangeRead};
use super::disk_cache::DiskCache;
use super::{DataError, DataResult, DataStore, COMPACT_AFTER_RECORDS};
use crate::meta::overlay::overlay;
use crate::meta::{Ino, SliceRecord, CHUNK_SIZE};
use crate::object::Feed;

/// Decoded blocks by object key, evicted oldest first past a byte budget.
pub struct BlockCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

/// A fetch under way: the block, and whether its fetcher kept it in the
/// cache.
type Fetch = Arc<OnceCell<(Bytes, bool)>>;

#[derive(Default)]
struct CacheInner {
    blocks: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
    /// Fetches under way, shared by everyone who needs the block.
    fetching: HashMap<String, Fetch>,
}

impl BlockCache {
    pub fn new(budget: usize) -> Self {
        BlockCache {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        self.lock().blocks.get(key).cloned()
    }

    fn insert(&self, key: String, block: Bytes) {
        if block.len() > self.budget {
            return;
        }
        let mut inner = self.lock();
        inner.bytes += block.len();
        if let Some(old) = inner.blocks.insert(key.clone(), block) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(key);
        }
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.blocks.remove(&oldest) {
                inner.bytes -= gone.len();
            }
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops `key`'s block, if kept.
    fn remove(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(gone) = inner.blocks.remove(key) {
            inner.bytes -= gone.len();
            inner.order.retain(|k| k != key);
        }
    }

    /// The shared fetch of `key`, made if none is under way.
    fn fetch_slot(&self, key: &str) -> Fetch {
        self.lock()
            .fetching
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    fn fetch_done(&self, key: &str) {
        self.lock().fetching.remove(key);
    }
}

impl DataStore {
    /// The largest read-ahead window of a file: the blocks that may be
    /// fetched at once, as long as half the memory cache holds them and
    /// the block each stream reads, for all files read sequentially now
    /// (more, and blocks read ahead for one file would evict another's
    /// before they are read, and memory grows with the streams); at least
    /// one block.
    fn readahead_limit(&self) -> u64 {
        let block = self.block_size as u64;
        let parallel = self.max_uploads as u64 * block;
        let streams = self.streams.load(Ordering::Relaxed).max(1) as u64;
        parallel
            .min((self.cache.budget as u64 / 2 / streams).saturating_sub(block))
            .max(block)
    }

    /// How far a stream reads ahead into memory the blocks the disk cache
    /// holds, in whole blocks: its share of half the memory cache, divided
    /// again by the number of streams, less the block it reads. A lone
    /// stream waits on each read and needs a deep window (7 blocks with
    /// the default cache: a single warm fio read was 20% slower with 3);
    /// several streams keep several reads in flight between them (2
    /// streams: 1 block each; 4: none). Blocks further ahead go into the
    /// kernel's page cache only, which costs this process no memory (`jfs
    /// bench -p 4` read phase on a dev mount: peak RSS 65-77 MiB against
    /// 83-91 with every block read ahead into memory).
    fn memory_readahead(&self) -> u64 {
        let block = self.block_size as u64;
        let streams = self.streams.load(Ordering::Relaxed).max(1) as u64;
        (self.cache.budget as u64 / 2 / streams / streams).saturating_sub(block) / block * block
    }

    /// Whether the disk cache holds block `key`.
    fn on_disk(&self, key: &str) -> bool {
        self.disk.as_ref().is_some_and(|d| d.contains(key))
    }

    /// The data of block `index` of slice `id` (`len` bytes): from the
    /// cache, from a fetch already under way, or fetched and checked now,
    /// and then kept in the memory cache if `keep`.
    pub(crate) async fn block(
        self: &Arc<Self>,
        id: u64,
        index: u32,
        len: u32,
        keep: bool,
    ) -> DataResult<Bytes> {
        let key = block_key(id, index, len);
        if let Some(block) = self.cache.get(&key) {
            crate::metrics::memory_cache(true);
            return Ok(block);
        }
        crate::metrics::memory_cache(false);
        let slot = self.cache.fetch_slot(&key);
        // The fetch that keeps its block puts it in the cache before anyone
        // waiting on it wakes: a reader that then reads on and drops the
        // block (a stream done with it) drops it for good.
        let result: DataResult<(Bytes, bool)> = slot
            .get_or_try_init(|| async {
                let block = self.fetch_block(id, key.clone(), len, keep).await?;
                if keep {
                    self.cache.insert(key.clone(), block.clone());
                }
                Ok((block, keep))
            })
            .await
            .cloned();
        self.cache.fetch_done(&key);
        let (block, kept) = result?;
        if keep && !kept {
            // Joined a fetch that did not keep the block.
            self.cache.insert(key, block.clone());
        }
        Ok(block)
    }

    async fn fetch_block(&self, id: u64, key: String, len: u32, keep: bool) -> DataResult<Bytes> {
        let decoder = self.decoder(id);
        // A block written with writeback may not be uploaded yet.
        if let Some(staging) = self.staging.clone() {
            let k = key.clone();
            let staged = tokio::task::spawn_blocking(move || {
                staging.get(&k).map(|o| decoder.decode(o, len))
            })
            .await
            .ok()
            .flatten();
            if let Some(decoded) = staged {
                let data = decoded.map_err(|e| corrupt(&key, e.to_string()))?;
                return Ok(data);
            }
        }
        // Disk cache first; its file I/O and all decoding run off the
        // async workers.
        if let Some(disk) = self.disk.clone() {
            let k = key.clone();
            let hit = tokio::task::spawn_blocking(move || {
                let (check, feed) = piece_check(decoder);
                let stored = disk.get_fed(&k, feed.as_deref(), keep)?;
                let decoded = decoder.decode_checked(stored, len, check.map(taken));
                checked_or_dropped(&disk, &k, decoded)
            })
            .await
            .ok()
            .flatten();
            crate::metrics::disk_cache(hit.is_some());
            if let Some(data) = hit {
                return Ok(data);
            }
        }
        let (check, feed) = piece_check(decoder);
        let object = match feed {
            Some(feed) => self.objects.get_fed(&key, feed).await?,
            None => self.objects.get(&key).await?,
        };
        let (disk, k) = (self.disk.clone(), key.clone());
        let data = tokio::task::spawn_blocking(move || {
            // The disk cache keeps the object as stored, so put it first.
            if let Some(disk) = disk {
                disk.put(&k, &object);
            }
            decoder.decode_checked(object, len, check.map(taken))
        })
        .await
        .map_err(|e| DataError::Corrupt {
            key: key.clone(),
            reason: format!("decoder failed: {e}"),
        })?
        .map_err(|e| corrupt(&key, e.to_string()))?;
        Ok(data)
    }

    /// `n` bytes at `within` of block `index` of slice `id` from the disk
    /// cache, reading and checking only the pieces needed; None when the
    /// block is not there uncompressed (or its pieces fail their check:
    /// the entry is dropped and the block fetched again).
    async fn disk_block_range(
        &self,
        id: u64,
        index: u32,
        len: u32,
        within: u64,
        n: u64,
    ) -> Option<Bytes> {
        let disk = self.disk.clone()?;
        let key = block_key(id, index, len);
        let plan = RangeRead::plan(len as u64, within, n);
        tokio::task::spawn_blocking(move || {
            // The header and the CRCs wanted are one read, the pieces one
            // (into a page buffer when large); the part wanted is a view of
            // them, not a copy.
            let (head, data) =
                disk.get_parts(&key, 0..plan.crc_bytes.end, plan.data_bytes.clone())?;
            if &head[..4] != super::block::MAGIC || head[5] != Codec::None as u8 {
                return None; // compressed: read whole
            }
            let crcs = &head[plan.crc_bytes.start as usize..];
            let wanted = checked_or_dropped(&disk, &key, plan.check(crcs, &data))?;
            Some(data.slice(wanted))
        })
        .await
        .ok()
        .flatten()
    }

    /// `n` bytes at `within` of an uncompressed block, fetching only the
    /// pieces needed.
    async fn block_range(
        &self,
        id: u64,
        index: u32,
        len: u32,
        within: u64,
        n: u64,
    ) -> DataResult<Vec<u8>> {
        let key = block_key(id, index, len);
        let plan = RangeRead::plan(len as u64, within, n);
        let data_range = || {
            self.objects.get_range(
                &key,
                plan.data_bytes.start,
                plan.data_bytes.end - plan.data_bytes.start,
            )
        };
        let known = self
            .crc_tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(id, index))
            .cloned();
        let (table, data) = match known {
            Some(table) => (table, data_range().await?),
            None => {
                let (table, data) = tokio::join!(
                    self.objects.get_range(
                        &key,
                        plan.table_bytes.start,
                        plan.table_bytes.end - plan.table_bytes.start
                    ),
                    data_range()
                );
                (Arc::from(table?), data?)
            }
        };
        let part = plan
            .extract_with_table(&table, &data)
            .map_err(|e| corrupt(&key, e.to_string()));
        let mut tables = self.crc_tables.lock().unwrap_or_else(|p| p.into_inner());
        if part.is_err() {
            // The table may be what was damaged: the next read fetches it.
            tables.remove(&(id, index));
        } else if !tables.contains_key(&(id, index)) {
            if tables.len() >= super::CRC_TABLES_KEPT {
                tables.clear();
            }
            tables.insert((id, index), table);
        }
        part
    }
}

/// A check of a jfs block's pieces as they are read, and the feed that
/// hands it the parts (none for JuiceFS's blocks, which carry no CRCs).
fn piece_check(decoder: BlockDecoder) -> (Option<Arc<Mutex<PieceCheck>>>, Option<Feed>) {
    if decoder != BlockDecoder::Jfs {
        return (None, None);
    }
    let check = Arc::new(Mutex::new(PieceCheck::new()));
    let fed = check.clone();
    let feed: Feed = Arc::new(move |offset, part| {
        fed.lock()
            .unwrap_or_else(|p| p.into_inner())
            .feed(offset, part)
    });
    (Some(check), Some(feed))
}

/// The check once the read is over.
fn taken(check: Arc<Mutex<PieceCheck>>) -> PieceCheck {
    std::mem::take(&mut *check.lock().unwrap_or_else(|p| p.into_inner()))
}

/// What a disk cache entry held, if it passed its check; a damaged entry
/// is dropped (and the block fetched again by the caller).
fn checked_or_dropped<T>(
    disk: &DiskCache,
    key: &str,
    checked: Result<T, super::block::BlockError>,
) -> Option<T> {
    match checked {
        Ok(data) => Some(data),
        Err(_) => {
            tracing::warn!(object = %key, "damaged disk cache entry dropped; fetching again");
            disk.remove(key);
            None
        }
    }
}

fn corrupt(key: &str, reason: String) -> DataError {
    tracing::error!(object = %key, error = %reason, "damaged block");
    DataError::Corrupt {
        key: key.to_string(),
        reason,
    }
}

/// Where the next sequential read would start, the read-ahead window, and
/// how far read-ahead has already been asked for (so each read asks only
/// for the new tail of the window).
#[derive(Default)]
struct ReadPattern {
    next: u64,
    /// Bytes read in sequence up to `next`.
    run: u64,
    window: u64,
    requested_to: u64,
    /// The block being read, and the one read before it (see
    /// `FileReader::done_behind`).
    reading: Option<String>,
    behind: Option<String>,
}

/// How far from where a stream's requests reached a request may start
/// and still be in sequence. The kernel reads ahead up to `MAX_IO_BYTES`
/// (1 MiB) beside the request that made it, so two or three requests of a
/// stream are under way at once, on different threads, and arrive in any
/// order; taken for jumps, they stopped the stream's read-ahead and left
/// the blocks it had read in memory until the cache was full.
const OUT_OF_ORDER: u64 = 4 << 20;

/// Bytes a file must be read in sequence before read-ahead starts: the
/// kernel's own read-ahead turns random reads into short sequential bursts
/// (two or three requests of up to 256 KiB), which must not fetch blocks.
const STREAM_AFTER: u64 = 1 << 20;

/// Where a block is to a file's sequential stream.
enum Place {
    /// The file is not read sequentially.
    Off,
    /// The block the stream read before the one it reads now.
    Behind,
    /// The block the stream reads, or one ahead.
    On,
}

/// Reads one file; keep one per open file so that read-ahead can follow
/// sequential reads.
pub struct FileReader {
    store: Arc<DataStore>,
    ino: Ino,
    pattern: Mutex<ReadPattern>,
    chunks: Arc<ChunkRecords>,
    /// The end of the last read: a read-ahead fetch that starts only once
    /// the reader has reached its block (a busy runtime runs it late)
    /// leaves the block alone, or it would bring back into the memory
    /// cache a block the stream already dropped behind it.
    read_to: Arc<AtomicU64>,
}

/// How long an open file's chunk records are used without asking the KV
/// store again: as the kernel's attribute cache, a second. Opens, this
/// mount's writes and truncates drop them at once (close-to-open); a
/// block gone because another client compacted the chunk makes the read
/// fetch the records again.
const CHUNK_RECORDS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Chunk records of an open file, so that every read request does not ask
/// the KV store again (a round trip per 128 KiB read on etcd).
#[derive(Default)]
struct ChunkRecords {
    by_chunk: Mutex<HashMap<u32, FetchedRecords>>,
    /// Times the records were forgotten (the file changed here): records
    /// read before a change are not kept after it.
    changes: AtomicU64,
}

/// A chunk's records and when they were read.
type FetchedRecords = (std::time::Instant, Arc<Vec<SliceRecord>>);

/// Chunks whose records one open file keeps (64 chunks: 4 GiB of file).
const CHUNK_RECORDS_KEPT: usize = 64;

impl ChunkRecords {
    async fn get(
        &self,
        store: &DataStore,
        ino: Ino,
        chunk: u32,
    ) -> DataResult<Arc<Vec<SliceRecord>>> {
        if let Some((at, records)) = self.lock().get(&chunk) {
            if at.elapsed() < CHUNK_RECORDS_TTL {
                return Ok(records.clone());
            }
        }
        let before = self.changes();
        let records = Arc::new(store.meta.read_chunk(ino, chunk).await?);
        self.put(chunk, records.clone(), before);
        Ok(records)
    }

    fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Keeps `records`, read when [`ChunkRecords::changes`] was `before`,
    /// unless the file changed here since.
    fn put(&self, chunk: u32, records: Arc<Vec<SliceRecord>>, before: u64) {
        let mut map = self.lock();
        if self.changes() != before {
            return;
        }
        if map.len() >= CHUNK_RECORDS_KEPT {
            map.clear();
        }
        map.insert(chunk, (std::time::Instant::now(), records));
    }

    fn forget(&self) {
        let mut map = self.lock();
        self.changes.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, FetchedRecords>> {
        self.by_chunk.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FileReader {
    /// A stream's blocks go with it: the block it was reading when the
    /// file was closed stayed in the memory cache until the cache was full
    /// (four streams of `jfs bench -p 4`: 20 MiB held through the next
    /// writes, the files already deleted).
    fn drop(&mut self) {
        let p = self.pattern.get_mut().unwrap_or_else(|p| p.into_inner());
        if p.window > 0 {
            self.store.streams.fetch_sub(1, Ordering::Relaxed);
        }
        for key in [p.reading.take(), p.behind.take()].into_iter().flatten() {
            self.store.cache.remove(&key);
        }
    }
}

impl FileReader {
    pub fn new(store: Arc<DataStore>, ino: Ino) -> FileReader {
        FileReader {
            store,
            ino,
            pattern: Mutex::new(ReadPattern {
                next: u64::MAX,
                ..Default::default()
            }),
            chunks: Arc::default(),
            read_to: Arc::default(),
        }
    }

    /// Where block `key` is to this file's stream: no stream, the block
    /// the stream left behind, or on its way.
    fn stream_place(&self, key: &str) -> Place {
        let p = self.pattern.lock().unwrap_or_else(|p| p.into_inner());
        if p.window == 0 {
            Place::Off
        } else if p.behind.as_deref() == Some(key) {
            Place::Behind
        } else {
            Place::On
        }
    }

    /// A stream that reached a block is done with the block it read
    /// before (of the same slice or not): the kernel's page cache keeps its
    /// pages, the disk cache its object, and the memory cache is left to
    /// the block read and those read ahead, instead of holding what was
    /// read until it is full. A late request for the block behind (the
    /// kernel's reads arrive a little out of order) changes nothing: it
    /// reads the part it wants from the disk cache, as random reads do.
    fn done_behind(&self, key: String) {
        let mut p = self.pattern.lock().unwrap_or_else(|p| p.into_inner());
        if p.window == 0 {
            p.reading = None;
            p.behind = None;
            return;
        }
        if p.behind.as_ref() == Some(&key) || p.reading.as_ref() == Some(&key) {
            return;
        }
        p.behind = p.reading.replace(key);
        if let Some(done) = p.behind.clone() {
            drop(p);
            self.store.cache.remove(&done);
        }
    }

    /// Drops the chunk records this reader keeps: the file changed.
    pub fn forget_chunks(&self) {
        self.chunks.forget();
    }

    /// Where the file's changes here stand, for [`FileReader::know_chunk`].
    pub fn changes(&self) -> u64 {
        self.chunks.changes()
    }

    /// Keeps `records` as chunk `chunk`'s, read (with the open) when
    /// [`FileReader::changes`] was `before`, so the first read does not ask
    /// for them again; not if the file changed here since.
    pub fn know_chunk(&self, chunk: u32, records: Vec<SliceRecord>, before: u64) {
        self.chunks.put(chunk, Arc::new(records), before);
    }

    /// Up to `len` bytes at `offset` of a file `file_len` bytes long. A
    /// block missing from object storage is read again with fresh records
    /// once (the chunk was compacted and its old slices deleted).
    pub async fn read(&self, offset: u64, len: usize, file_len: u64) -> DataResult<Bytes> {
        match self.read_once(offset, len, file_len).await {
            Err(DataError::Object(crate::object::ObjectError::NotFound(_))) => {
                self.forget_chunks();
                self.read_once(offset, len, file_len).await
            }
            other => other,
        }
    }

    async fn read_once(&self, offset: u64, len: usize, file_len: u64) -> DataResult<Bytes> {
        let end = offset.saturating_add(len as u64).min(file_len);
        if end <= offset {
            return Ok(Bytes::new());
        }
        let ahead = {
            let mut p = self.pattern.lock().unwrap_or_else(|p| p.into_inner());
            let block = self.store.block_size as u64;
            // The kernel sends a stream's requests from several threads
            // (its read-ahead runs beside the reader's own request), so
            // they arrive a little out of order: near where the stream
            // reads is in sequence.
            let sequential = offset.abs_diff(p.next) <= OUT_OF_ORDER;
            p.run = if sequential {
                p.run + (end - offset)
            } else {
                end - offset
            };
            let was_streaming = p.window > 0;
            // The window doubles with each block the stream reaches, not
            // with each request: streams that start together (`-p 4`) are
            // all counted before one of them asks for a whole window.
            let next_block = end > p.next && (end - 1) / block > p.next.saturating_sub(1) / block;
            p.window = if sequential && p.run >= STREAM_AFTER {
                let grown = if next_block { p.window * 2 } else { p.window };
                grown.clamp(block, self.store.readahead_limit())
            } else {
                0
            };
            match (was_streaming, p.window > 0) {
                (false, true) => self.store.streams.fetch_add(1, Ordering::Relaxed),
                (true, false) => self.store.streams.fetch_sub(1, Ordering::Relaxed),
                _ => 0,
            };
            p.next = if sequential { p.next.max(end) } else { end };
            self.read_to.store(p.next, Ordering::Relaxed);
            let from = if sequential {
                p.requested_to.max(end)
            } else {
                end
            };
            // Whole blocks past the one being read: a window reaching
            // into a block part way fetched all of it, one block more per
            // stream than the window (4 streams of a 1-block window held
            // 12 blocks, not 8).
            let reading_end = (end - 1) / block * block + block;
            let to = (reading_end + p.window).min(file_len);
            p.requested_to = to.max(from);
            let in_memory = reading_end + self.store.memory_readahead().min(p.window);
            (p.window > 0 && to > from).then_some((from, to, in_memory))
        };
        if let Some((from, to, in_memory)) = ahead {
            self.read_ahead(from, to, in_memory);
        }
        let (first, last) = (offset / CHUNK_SIZE, (end - 1) / CHUNK_SIZE);
        if first == last {
            // The usual request, inside one block of one slice: a view of
            // the cached block, no copy.
            let chunk_start = first * CHUNK_SIZE;
            let (from, to) = (offset - chunk_start, end - chunk_start);
            let records = self.records(first).await?;
            let covering = overlay(&records)
                .into_iter()
                .find(|s| s.id != 0 && s.pos as u64 <= from && to <= s.pos as u64 + s.len as u64);
            if let Some(seg) = covering {
                let at = seg.offset as u64 + from - seg.pos as u64;
                let part = self.block_part(seg.id, seg.size, at, to - from).await?;
                if part.len() as u64 == to - from {
                    return Ok(part);
                }
            }
        }
        let mut out = vec![0u8; (end - offset) as usize];
        for chunk in first..=last {
            let chunk_start = chunk * CHUNK_SIZE;
            let (from, to) = (
                offset.max(chunk_start) - chunk_start,
                end.min(chunk_start + CHUNK_SIZE) - chunk_start,
            );
            let records = self.records(chunk).await?;
            let at = (chunk_start + from - offset) as usize;
            self.fill(&records, from, &mut out[at..at + (to - from) as usize])
                .await?;
        }
        Ok(out.into())
    }

    /// The slice records of chunk `chunk`; one with too many records is
    /// compacted in the background.
    async fn records(&self, chunk: u64) -> DataResult<Arc<Vec<SliceRecord>>> {
        let records = self.chunks.get(&self.store, self.ino, chunk as u32).await?;
        if records.len() > COMPACT_AFTER_RECORDS {
            let (store, ino) = (self.store.clone(), self.ino);
            tokio::spawn(async move {
                if let Err(e) = store.compact_chunk(ino, chunk as u32).await {
                    tracing::warn!(ino, chunk, error = %e, "compaction failed");
                }
            });
        }
        Ok(records)
    }

    /// Fetches into the cache, in the background, the blocks behind file
    /// bytes `[from, to)`; of those the disk cache holds, only the ones
    /// starting before `in_memory` are read into the memory cache, the
    /// others into the kernel's page cache.
    fn read_ahead(&self, from: u64, to: u64, in_memory: u64) {
        let (store, ino, chunks) = (self.store.clone(), self.ino, self.chunks.clone());
        let read_to = self.read_to.clone();
        tokio::spawn(async move {
            let bs = store.block_size as u64;
            for chunk in from / CHUNK_SIZE..=(to - 1) / CHUNK_SIZE {
                let chunk_start = chunk * CHUNK_SIZE;
                let (c_from, c_to) = (
                    from.max(chunk_start) - chunk_start,
                    to.min(chunk_start + CHUNK_SIZE) - chunk_start,
                );
                let Ok(records) = chunks.get(&store, ino, chunk as u32).await else {
                    return;
                };
                for seg in overlay(&records).into_iter().filter(|s| s.id != 0) {
                    let (s_from, s_to) = (
                        (seg.pos as u64).max(c_from),
                        (seg.pos as u64 + seg.len as u64).min(c_to),
                    );
                    if s_from >= s_to {
                        continue;
                    }
                    let first = (seg.offset as u64 + s_from - seg.pos as u64) / bs;
                    let last = (seg.offset as u64 + s_to - seg.pos as u64 - 1) / bs;
                    for index in first..=last {
                        let len = (seg.size as u64 - index * bs).min(bs) as u32;
                        // Where the block's bytes start in the file.
                        let block_from = chunk_start
                            + seg.pos as u64
                            + (index * bs).saturating_sub(seg.offset as u64);
                        if block_from < from {
                            // Asked for with the range before this one (or
                            // the block being read, which the read fetches).
                            continue;
                        }
                        let key = block_key(seg.id, index as u32, len);
                        let to_pages = store
                            .disk
                            .clone()
                            .filter(|d| block_from >= in_memory && d.contains(&key));
                        if let Some(disk) = to_pages {
                            tokio::task::spawn_blocking(move || disk.prefetch(&key));
                            continue;
                        }
                        let (store, read_to) = (store.clone(), read_to.clone());
                        tokio::spawn(async move {
                            if read_to.load(Ordering::Relaxed) > block_from {
                                return;
                            }
                            let _ = store.block(seg.id, index as u32, len, true).await;
                            // A stream that read past the block while it was
                            // fetched (its requests took the parts from the
                            // disk cache) dropped it before it was in the
                            // memory cache: it goes now, or it stays until
                            // the cache is full.
                            if read_to.load(Ordering::Relaxed) >= block_from + len as u64 {
                                store.cache.remove(&key);
                            }
                        });
                    }
                }
            }
        });
    }

    /// The bytes `[start, end)` of a chunk as `records` show them.
    pub(crate) async fn read_records(
        &self,
        records: &[SliceRecord],
        start: u64,
        end: u64,
    ) -> DataResult<Vec<u8>> {
        let mut out = vec![0u8; (end - start) as usize];
        self.fill(records, start, &mut out).await?;
        Ok(out)
    }

    /// Fills `dst` with the chunk bytes from `from` that `records` show.
    async fn fill(&self, records: &[SliceRecord], from: u64, dst: &mut [u8]) -> DataResult<()> {
        let to = from + dst.len() as u64;
        for seg in overlay(records).into_iter().filter(|s| s.id != 0) {
            let (s_from, s_to) = (
                (seg.pos as u64).max(from),
                (seg.pos as u64 + seg.len as u64).min(to),
            );
            if s_from >= s_to {
                continue;
            }
            let slice_offset = seg.offset as u64 + (s_from - seg.pos as u64);
            let at = (s_from - from) as usize;
            self.read_slice(
                seg.id,
                seg.size,
                slice_offset,
                &mut dst[at..at + (s_to - s_from) as usize],
            )
            .await?;
        }
        Ok(())
    }

    /// Fills `dst` from slice `id` (of `size` bytes) starting at `offset`.
    async fn read_slice(
        &self,
        id: u64,
        size: u32,
        mut offset: u64,
        mut dst: &mut [u8],
    ) -> DataResult<()> {
        while !dst.is_empty() {
            let part = self.block_part(id, size, offset, dst.len() as u64).await?;
            dst[..part.len()].copy_from_slice(&part);
            dst = &mut dst[part.len()..];
            offset += part.len() as u64;
        }
        Ok(())
    }

    /// Up to `max` bytes of slice `id` (of `size` bytes) from `offset`, as
    /// far as the end of the block holding `offset`: a view into the cached
    /// block when there is one, never empty.
    async fn block_part(&self, id: u64, size: u32, offset: u64, max: u64) -> DataResult<Bytes> {
        let bs = self.store.block_size as u64;
        let index = offset / bs;
        let block_len = (size as u64).saturating_sub(index * bs).min(bs) as u32;
        let within = offset - index * bs;
        let n = max.min((block_len as u64).saturating_sub(within));
        let key = block_key(id, index as u32, block_len);
        if n == 0 {
            return Err(corrupt(&key, "shorter than its slice".into()));
        }
        let cached = self.store.cache.get(&key);
        // A small read, or any read off the sequential stream, of a block
        // not in memory takes only the pieces it needs: from the disk
        // cache, or (without one, or with one that keeps nothing more: the
        // disk is full) from object storage; otherwise the whole block is
        // fetched, for the disk cache, which serves the next such reads of
        // it. The memory cache is left to sequential reads: random ones
        // (and the kernel's read-ahead among them) would only churn it. A
        // stream reads the blocks on its way whole, a small request too
        // when the disk cache holds the block (the next requests read on
        // in it); a late request for the block it left behind takes its
        // part, or the block would come back into memory to stay.
        let small = cached.is_none()
            && self.store.decoder(id) == super::block::BlockDecoder::Jfs
            && match self.stream_place(&key) {
                Place::Off | Place::Behind => true,
                Place::On => n * 4 < block_len as u64 && !self.store.on_disk(&key),
            };
        let mut keep = true;
        if small {
            let from_disk = self
                .store
                .disk_block_range(id, index as u32, block_len, within, n)
                .await;
            if let Some(part) = from_disk {
                crate::metrics::disk_cache(true);
                return Ok(part);
            }
            // Asked only here: it is a statvfs call.
            let disk_keeps = self.store.disk.as_ref().is_some_and(|d| d.has_free_space());
            let on_disk = disk_keeps || self.store.staging.is_some();
            if !on_disk && self.store.codec == Codec::None {
                let part = self
                    .store
                    .block_range(id, index as u32, block_len, within, n)
                    .await?;
                return Ok(part.into());
            }
            keep = !disk_keeps;
        }
        let block = match cached {
            Some(block) => block,
            None => self.store.block(id, index as u32, block_len, keep).await?,
        };
        self.done_behind(key);
        Ok(block.slice(within as usize..(within + n) as usize))
    }
}
