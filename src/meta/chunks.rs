//! File layout: a file is cut into 64 MiB chunks; each write sequence adds
//! one slice record to a chunk as its own key (`A ino C index seq`), never
//! rewriting an ever-growing value. Readers overlay the records in sequence
//! order, newest on top; holes (slice id 0) read as zeros.

use super::attr::{Attr, FileKind, SliceRecord, Timestamp};
use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino};
use super::{load_attr, space_of, Ctx, Meta, W_OK};
use crate::kv::txn::ScanOpts;
use crate::kv::Txn;

pub const CHUNK_SIZE: u64 = 64 << 20;

/// Chunks a single truncate transaction may touch; a bigger shrink is done
/// in several transactions from the end, each within the strict limits.
const MAX_CHUNKS_PER_TXN: u64 = 64;

/// Records read per scan page.
const SLICE_PAGE: usize = 1024;

impl Meta {
    /// Appends `slice` to chunk `index` of `ino` and extends the length to
    /// cover it; sets mtime and ctime. One transaction; a retry after an
    /// unknown outcome finds the record (slice ids are unique) and stops.
    pub async fn write_slice(&self, ino: Ino, index: u32, slice: SliceRecord) -> MetaResult<Attr> {
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
            if tx.after_maybe_committed() && slice.id != 0 {
                let tail = tx
                    .scan(
                        &keys::chunk(ino, index),
                        ScanOpts::limit(16).reverse().snapshot(),
                    )
                    .await?;
                if tail
                    .entries
                    .iter()
                    .any(|(_, v)| SliceRecord::decode(v) == Some(slice))
                {
                    return Ok(attr);
                }
            }
            let end = index as u64 * CHUNK_SIZE + slice.pos as u64 + slice.len as u64;
            let growth = space_of(end.max(attr.length)) - space_of(attr.length);
            if growth > 0 {
                self.check_quota(&tx, growth, 0).await?;
            }
            attr.slice_seq += 1;
            tx.put(keys::slice(ino, index, attr.slice_seq), slice.encode())?;
            attr.length = attr.length.max(end);
            attr.mtime = now;
            attr.ctime = now;
            tx.put(keys::attr(ino), attr.encode())?;
            self.charge(&tx, growth as i64, 0)?;
            Ok(attr)
        })
        .await
    }

    /// The slice records of chunk `index`, oldest first (later ones overlay
    /// earlier ones).
    pub async fn read_chunk(&self, ino: Ino, index: u32) -> MetaResult<Vec<SliceRecord>> {
        self.txn("read_chunk", |tx| async move {
            let records = tx
                .scan_all(&keys::chunk(ino, index), SLICE_PAGE, true)
                .await?;
            records
                .iter()
                .map(|(_, v)| SliceRecord::decode(v).ok_or(MetaError::Errno(libc::EIO)))
                .collect()
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
            self.charge(tx, growth as i64, 0)?;
        } else if size < attr.length {
            let first = size / CHUNK_SIZE;
            let last = (attr.length - 1) / CHUNK_SIZE;
            for index in first..=last {
                let chunk_start = index * CHUNK_SIZE;
                let from = size.max(chunk_start) - chunk_start;
                let to = attr.length.min(chunk_start + CHUNK_SIZE) - chunk_start;
                if to > from {
                    attr.slice_seq += 1;
                    let hole = SliceRecord {
                        pos: from as u32,
                        id: 0,
                        size: (to - from) as u32,
                        offset: 0,
                        len: (to - from) as u32,
                    };
                    tx.put(
                        keys::slice(ino, index as u32, attr.slice_seq),
                        hole.encode(),
                    )?;
                }
            }
            let freed = space_of(attr.length) - space_of(size);
            self.charge(tx, -(freed as i64), 0)?;
        }
        attr.length = size;
        attr.mtime = now;
        attr.ctime = now;
        Ok(())
    }
}

fn chunks_between(from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    (to - 1) / CHUNK_SIZE - from / CHUNK_SIZE + 1
}
