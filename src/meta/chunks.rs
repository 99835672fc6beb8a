//! File layout: a file is cut into 64 MiB chunks; each write sequence
//! appends one slice record to its chunk's value (`A ino C index`: the
//! records oldest first), so reading a chunk is one point read. Readers
//! overlay the records in order, newest on top; holes (slice id 0) read as
//! zeros. Compaction keeps the list short by replacing its oldest records
//! with one.
//!
//! (Schema 1 kept each record under its own key. On an LSM store every
//! compaction left tombstones inside the chunk's range, and each read
//! scanned all of them: fsx slowed quadratically, 20k operations took 54 s.
//! One value per chunk, as JuiceFS does on every transactional KV store,
//! makes the read a single get whatever the history.)

use super::attr::{Attr, FileKind, SliceRecord, Timestamp};
use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino};
use super::overlay::{cut, overlay};
use super::{load_attr, space_of, Ctx, Meta, W_OK};
use crate::kv::Txn;

pub const CHUNK_SIZE: u64 = 64 << 20;

/// Chunks a single truncate transaction may touch; a bigger shrink is done
/// in several transactions from the end, each within the strict limits.
const MAX_CHUNKS_PER_TXN: u64 = 64;

/// Records a chunk may hold before its writer waits for compaction: keeps
/// the value far below the smallest engine limit (FoundationDB's 100 KB).
pub const MAX_CHUNK_RECORDS: usize = 1000;

/// fallocate(2) modes jfs supports.
pub const FALLOC_FL_KEEP_SIZE: u32 = libc::FALLOC_FL_KEEP_SIZE as u32;
pub const FALLOC_FL_PUNCH_HOLE: u32 = libc::FALLOC_FL_PUNCH_HOLE as u32;
pub const FALLOC_FL_ZERO_RANGE: u32 = libc::FALLOC_FL_ZERO_RANGE as u32;

/// Source segments one copy_file_range transaction shares; a copy of a
/// more fragmented range is short (the caller continues), which keeps each
/// transaction within the strict limits (2 keys per segment).
const MAX_COPY_SEGMENTS: usize = 40;

impl Meta {
    /// Appends `slice` to chunk `index` of `ino` and extends the length to
    /// cover it; sets mtime and ctime. One transaction; a retry after an
    /// unknown outcome finds the record (slice ids are unique) and stops.
    pub async fn write_slice(&self, ino: Ino, index: u32, slice: SliceRecord) -> MetaResult<Attr> {
        Ok(self.append_slice(ino, index, slice).await?.0)
    }

    /// [`Meta::write_slice`], also returning how many records the chunk
    /// holds now (the writer compacts a long list).
    pub async fn append_slice(
        &self,
        ino: Ino,
        index: u32,
        slice: SliceRecord,
    ) -> MetaResult<(Attr, usize)> {
        if slice.pos as u64 + slice.len as u64 > CHUNK_SIZE
            || slice.offset as u64 + slice.len as u64 > slice.size as u64
        {
            return errno(libc::EINVAL);
        }
        let now = Timestamp::now();
        self.txn("write_slice", |tx| async move {
            let mut attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if attr.kind != FileKind::File {
                return errno(libc::EBADF);
            }
            let mut records = load_chunk(&tx, ino, index).await?;
            if tx.after_maybe_committed() && slice.id != 0 && records.contains(&slice) {
                return Ok((attr, records.len()));
            }
            let end = index as u64 * CHUNK_SIZE + slice.pos as u64 + slice.len as u64;
            let growth = space_of(end.max(attr.length)) - space_of(attr.length);
            if growth > 0 {
                self.check_quota(&tx, growth, 0).await?;
            }
            attr.slice_seq += 1;
            records.push(slice);
            tx.put(keys::chunk(ino, index), SliceRecord::encode_list(&records))?;
            if slice.id != 0 {
                tx.delete(super::reclaim::pending(slice.id))?;
            }
            attr.length = attr.length.max(end);
            attr.mtime = now;
            attr.ctime = now;
            tx.put(keys::attr(ino), attr.encode())?;
            self.charge_length(&tx, &attr, growth as i64)?;
            Ok((attr, records.len()))
        })
        .await
    }

    /// The slice records of chunk `index`, oldest first (later ones overlay
    /// earlier ones). A snapshot read: one get.
    pub async fn read_chunk(&self, ino: Ino, index: u32) -> MetaResult<Vec<SliceRecord>> {
        self.txn("read_chunk", |tx| async move {
            match tx.snapshot_get(&keys::chunk(ino, index)).await? {
                Some(v) => decode_chunk(ino, index, &v),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    /// fallocate(2): reserve (extend the length unless KEEP_SIZE), punch a
    /// hole (with KEEP_SIZE) or zero a range. Ranges over many chunks are
    /// done in several transactions of at most 64 chunks, the length change
    /// last; holes are idempotent, so a retry or a partial run is harmless.
    pub async fn fallocate(&self, ino: Ino, mode: u32, offset: u64, len: u64) -> MetaResult<Attr> {
        let supported = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
        if mode & !supported != 0 {
            return errno(libc::EOPNOTSUPP);
        }
        let punch = mode & FALLOC_FL_PUNCH_HOLE != 0;
        let zero = mode & FALLOC_FL_ZERO_RANGE != 0;
        if len == 0 || (punch && mode & FALLOC_FL_KEEP_SIZE == 0) || (punch && zero) {
            return errno(libc::EINVAL);
        }
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or(MetaError::Errno(libc::EFBIG))?;
        let keep_size = mode & FALLOC_FL_KEEP_SIZE != 0;
        let step = MAX_CHUNKS_PER_TXN * CHUNK_SIZE;
        let mut from = offset;
        loop {
            let to = end.min((from / CHUNK_SIZE) * CHUNK_SIZE + step);
            let last = to == end;
            let now = Timestamp::now();
            let attr = self
                .txn("fallocate", |tx| async move {
                    let mut attr = load_attr(&tx, ino, true)
                        .await?
                        .ok_or(MetaError::Errno(libc::ENOENT))?;
                    match attr.kind {
                        FileKind::File => {}
                        FileKind::Directory => return errno(libc::EISDIR),
                        _ => return errno(libc::ENODEV),
                    }
                    if punch || zero {
                        // Beyond the end nothing shows; only zero-range extends.
                        let hole_end = if punch { to.min(attr.length) } else { to };
                        self.put_holes(&tx, ino, &mut attr, from, hole_end).await?;
                    }
                    if last && !keep_size && end > attr.length {
                        let growth = space_of(end) - space_of(attr.length);
                        self.check_quota(&tx, growth, 0).await?;
                        self.charge_length(&tx, &attr, growth as i64)?;
                        attr.length = end;
                    }
                    attr.mtime = now;
                    attr.ctime = now;
                    tx.put(keys::attr(ino), attr.encode())?;
                    Ok(attr)
                })
                .await?;
            if last {
                return Ok(attr);
            }
            from = to;
        }
    }

    /// copy_file_range(2) inside the volume: the destination gets records
    /// pointing at the source's slices (each shared slice's reference count
    /// goes up), no data is copied. Copies at most to the end of the current
    /// source and destination chunks and at most `MAX_COPY_SEGMENTS` pieces;
    /// returns the bytes copied (possibly fewer than asked, as the call
    /// allows; 0 at the end of the source).
    pub async fn copy_file_range(
        &self,
        src: Ino,
        src_offset: u64,
        dst: Ino,
        dst_offset: u64,
        len: u64,
    ) -> MetaResult<u64> {
        let to_chunk_end = |off: u64| CHUNK_SIZE - off % CHUNK_SIZE;
        let len = len
            .min(to_chunk_end(src_offset))
            .min(to_chunk_end(dst_offset));
        if len == 0 {
            return Ok(0);
        }
        if src == dst && src_offset < dst_offset + len && dst_offset < src_offset + len {
            return errno(libc::EINVAL);
        }
        let now = Timestamp::now();
        self.txn("copy_file_range", |tx| async move {
            let src_attr = load_attr(&tx, src, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            let mut dst_attr = if dst == src {
                src_attr.clone()
            } else {
                load_attr(&tx, dst, true)
                    .await?
                    .ok_or(MetaError::Errno(libc::ENOENT))?
            };
            if src_attr.is_dir() || dst_attr.is_dir() {
                return errno(libc::EISDIR);
            }
            if src_attr.kind != FileKind::File || dst_attr.kind != FileKind::File {
                return errno(libc::EINVAL);
            }
            let mut len = len.min(src_attr.length.saturating_sub(src_offset));
            if len == 0 {
                return Ok(0);
            }
            let (src_index, src_pos) = ((src_offset / CHUNK_SIZE) as u32, src_offset % CHUNK_SIZE);
            let records = load_chunk(&tx, src, src_index).await?;
            let mut pieces: Vec<SliceRecord> = overlay(&records)
                .into_iter()
                .filter(|s| (s.pos as u64) < src_pos + len && s.pos as u64 + s.len as u64 > src_pos)
                .map(|s| {
                    let from = (s.pos as u64).max(src_pos);
                    let to = (s.pos as u64 + s.len as u64).min(src_pos + len);
                    cut(&s, from, to)
                })
                .collect();
            if pieces.len() > MAX_COPY_SEGMENTS {
                pieces.truncate(MAX_COPY_SEGMENTS);
                let last = pieces[MAX_COPY_SEGMENTS - 1];
                len = last.pos as u64 + last.len as u64 - src_pos;
            }
            let dst_index = (dst_offset / CHUNK_SIZE) as u32;
            let dst_pos = dst_offset % CHUNK_SIZE;
            // Gaps in the source read as zeros in the copy too.
            self.put_holes(&tx, dst, &mut dst_attr, dst_offset, dst_offset + len)
                .await?;
            let mut dst_records = load_chunk(&tx, dst, dst_index).await?;
            for piece in pieces.iter().filter(|p| p.id != 0) {
                dst_attr.slice_seq += 1;
                dst_records.push(SliceRecord {
                    pos: (dst_pos + piece.pos as u64 - src_pos) as u32,
                    ..*piece
                });
                tx.add(keys::slice_refs(piece.id, piece.size), 1)?;
            }
            tx.put(
                keys::chunk(dst, dst_index),
                SliceRecord::encode_list(&dst_records),
            )?;
            let end = dst_offset + len;
            if end > dst_attr.length {
                let growth = space_of(end) - space_of(dst_attr.length);
                self.check_quota(&tx, growth, 0).await?;
                self.charge_length(&tx, &dst_attr, growth as i64)?;
                dst_attr.length = end;
            }
            dst_attr.mtime = now;
            dst_attr.ctime = now;
            tx.put(keys::attr(dst), dst_attr.encode())?;
            Ok(len)
        })
        .await
    }

    /// Shrinks a file by at most `MAX_CHUNKS_PER_TXN` chunks per transaction
    /// until the rest fits in one; the caller's transaction does the last
    /// step. Observers see the length fall in steps, never stale data.
    pub(crate) async fn shrink_in_steps(&self, ctx: &Ctx, ino: Ino, target: u64) -> MetaResult<()> {
        loop {
            let now = Timestamp::now();
            let done = self
                .txn("truncate_step", |tx| async move {
                    let Some(mut attr) = load_attr(&tx, ino, true).await? else {
                        return Ok(true);
                    };
                    if attr.kind != FileKind::File || attr.length <= target {
                        return Ok(true);
                    }
                    if !ctx.is_root() && ctx.uid != attr.uid && !ctx.can(&attr, W_OK) {
                        return errno(libc::EACCES);
                    }
                    let chunks = chunks_between(target, attr.length);
                    if chunks <= MAX_CHUNKS_PER_TXN {
                        return Ok(true);
                    }
                    let step = (attr.length - 1) / CHUNK_SIZE + 1 - MAX_CHUNKS_PER_TXN;
                    let intermediate = (step * CHUNK_SIZE).max(target);
                    self.resize_in_txn(&tx, ino, &mut attr, intermediate, now)
                        .await?;
                    tx.put(keys::attr(ino), attr.encode())?;
                    Ok(false)
                })
                .await?;
            if done {
                return Ok(());
            }
        }
    }

    /// Sets the length of `attr` to `size` inside `tx`. Shrinking covers
    /// `[size, old length)` of every chunk it touches with a hole record, so
    /// old data can never reappear if the file grows again. The caller writes
    /// `attr`.
    pub(crate) async fn resize_in_txn(
        &self,
        tx: &Txn,
        ino: Ino,
        attr: &mut Attr,
        size: u64,
        now: Timestamp,
    ) -> MetaResult<()> {
        if size > attr.length {
            let growth = space_of(size) - space_of(attr.length);
            self.check_quota(tx, growth, 0).await?;
            self.charge_length(tx, attr, growth as i64)?;
        } else if size < attr.length {
            let old = attr.length;
            self.put_holes(tx, ino, attr, size, old).await?;
            let freed = space_of(attr.length) - space_of(size);
            self.charge_length(tx, attr, -(freed as i64))?;
        }
        attr.length = size;
        attr.mtime = now;
        attr.ctime = now;
        Ok(())
    }
}

impl Meta {
    /// Covers the file bytes `[from, to)` with holes (the caller writes
    /// `attr`): a chunk covered whole is dropped and its slices released;
    /// a partly covered one gets a hole record appended.
    async fn put_holes(
        &self,
        tx: &Txn,
        ino: Ino,
        attr: &mut Attr,
        from: u64,
        to: u64,
    ) -> MetaResult<()> {
        if to <= from {
            return Ok(());
        }
        for index in from / CHUNK_SIZE..=(to - 1) / CHUNK_SIZE {
            let chunk_start = index * CHUNK_SIZE;
            let start = from.max(chunk_start) - chunk_start;
            let end = to.min(chunk_start + CHUNK_SIZE) - chunk_start;
            let mut records = load_chunk(tx, ino, index as u32).await?;
            if start == 0 && end == CHUNK_SIZE {
                for old in records {
                    if old.id != 0 {
                        self.release_slice(tx, old.id, old.size).await?;
                    }
                }
                tx.delete(keys::chunk(ino, index as u32))?;
                continue;
            }
            attr.slice_seq += 1;
            let len = (end - start) as u32;
            records.push(SliceRecord {
                pos: start as u32,
                id: 0,
                size: len,
                offset: 0,
                len,
            });
            tx.put(
                keys::chunk(ino, index as u32),
                SliceRecord::encode_list(&records),
            )?;
        }
        Ok(())
    }
}

/// The records of chunk `index` (tracked: the caller rewrites them).
pub(crate) async fn load_chunk(tx: &Txn, ino: Ino, index: u32) -> MetaResult<Vec<SliceRecord>> {
    match tx.get(&keys::chunk(ino, index)).await? {
        Some(v) => decode_chunk(ino, index, &v),
        None => Ok(Vec::new()),
    }
}

pub(crate) fn decode_chunk(ino: Ino, index: u32, value: &[u8]) -> MetaResult<Vec<SliceRecord>> {
    SliceRecord::decode_list(value).ok_or_else(|| {
        MetaError::Kv(crate::kv::KvError::Fatal(format!(
            "chunk {index} of inode {ino} is damaged"
        )))
    })
}

fn chunks_between(from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    (to - 1) / CHUNK_SIZE - from / CHUNK_SIZE + 1
}

impl Meta {
    /// Compaction's commit: if chunk `index` still starts with exactly the
    /// records `replaced`, puts `record` in their place (first, so that
    /// every newer record still overlays it) and releases their slices.
    /// Returns false, changing nothing, if they changed meanwhile (a
    /// truncate or another compaction); appends by writers do not disturb
    /// it. At most 40 records per call, inside the strict limits.
    pub async fn replace_chunk(
        &self,
        ino: Ino,
        index: u32,
        replaced: &[SliceRecord],
        record: SliceRecord,
    ) -> MetaResult<bool> {
        if replaced.is_empty() || replaced.len() > MAX_COPY_SEGMENTS {
            return errno(libc::EINVAL);
        }
        self.txn("replace_chunk", |tx| async move {
            let records = load_chunk(&tx, ino, index).await?;
            if !records.starts_with(replaced) {
                return Ok(false);
            }
            for old in replaced {
                if old.id != 0 {
                    self.release_slice(&tx, old.id, old.size).await?;
                }
            }
            let mut kept = Vec::with_capacity(records.len() - replaced.len() + 1);
            if record.len > 0 {
                kept.push(record);
                tx.delete(super::reclaim::pending(record.id))?;
            }
            kept.extend_from_slice(&records[replaced.len()..]);
            if kept.is_empty() {
                tx.delete(keys::chunk(ino, index))?;
            } else {
                tx.put(keys::chunk(ino, index), SliceRecord::encode_list(&kept))?;
            }
            Ok(true)
        })
        .await
    }
}
