//! Reclaiming the data of deleted files, in bounded steps. A deleted file
//! waits in the deleted-file queue (`R ino length`) with its slice records.
//! Each step removes up to a page of its records; a slice no other record
//! shares (its reference count, `K id size`, is zero) moves to the
//! released-slice queue (`Q id size`), whose objects the data layer deletes
//! before dropping the entry. Metadata therefore never points at a deleted
//! object, and a crash between the steps leaves every object still known.

use super::attr::SliceRecord;
use super::error::{MetaError, MetaResult};
use super::keys::{self, Ino};
use super::Meta;
use crate::kv::txn::ScanOpts;
use crate::kv::{decode_counter, encode_counter, KeyRange};

/// Slice records removed per transaction: two keys each, inside the strict
/// 128-operation limit.
const RECORDS_PER_STEP: usize = 50;

const RELEASED: u8 = b'Q';
const PENDING: u8 = b'W';
/// Slice ids a writer reserves, marked pending, in one transaction.
const RESERVED_SLICES: usize = 16;

/// `W id` → the session uploading slice `id` (u64be), before its record is
/// committed.
pub(crate) fn pending(id: u64) -> Vec<u8> {
    let mut k = vec![PENDING];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn released(id: u64, size: u32) -> Vec<u8> {
    let mut k = vec![RELEASED];
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&size.to_be_bytes());
    k
}

/// Where a pass over the deleted-file queue stands: the entry reclaimed
/// last and the chunk of it reached. Each step goes on from there, not from
/// the front of the queue: in an LSM engine a deleted key stays (a
/// tombstone) until compaction drops it, and a step that scanned from the
/// front walked every entry and chunk reclaimed before it, so a pass over
/// n files cost n² (the embedded engine, `jfs bench -p 4` with 1,000 small
/// files per thread three times on one volume: the third run's upkeep
/// took 229 s of CPU and the bench wrote 17 files/s instead of 285). A
/// file queued behind the cursor while a pass runs waits for the next
/// pass.
#[derive(Debug, Default)]
pub struct ReclaimCursor {
    queue: Option<crate::kv::Key>,
    chunk: Option<crate::kv::Key>,
}

impl Meta {
    /// One step of reclaiming the deleted files from `at` on (the front of
    /// the queue, with a fresh cursor): returns false when no file is left
    /// there.
    pub async fn reclaim_deleted_step(&self, at: &mut ReclaimCursor) -> MetaResult<bool> {
        let (queue_from, chunk_from) = (&at.queue, &at.chunk);
        let reached = self
            .txn("reclaim_step", |tx| async move {
                let queue = tx
                    .scan(
                        &keys::deleted_files().resumed(queue_from.as_ref()),
                        ScanOpts::limit(1),
                    )
                    .await?;
                let Some((queue_key, _)) = queue.entries.first() else {
                    return Ok(None);
                };
                let ino: Ino = u64::from_be_bytes(
                    queue_key[1..9]
                        .try_into()
                        .map_err(|_| MetaError::Errno(libc::EIO))?,
                );
                // The first chunk left (from where this pass left the
                // file): up to RECORDS_PER_STEP of its records are released
                // per step, the rest written back for the next step.
                let same_file = queue_from.as_ref() == Some(queue_key);
                let chunks = keys::chunks(ino).resumed(chunk_from.as_ref().filter(|_| same_file));
                let page = tx.scan(&chunks, ScanOpts::limit(1)).await?;
                let Some((key, value)) = page.entries.first() else {
                    tx.delete(queue_key.clone())?;
                    return Ok(Some((queue_key.clone(), None)));
                };
                let records = SliceRecord::decode_list(value).ok_or(MetaError::Errno(libc::EIO))?;
                let now = records.len().min(RECORDS_PER_STEP);
                for record in &records[..now] {
                    if record.id != 0 {
                        self.release_slice(&tx, record.id, record.size).await?;
                    }
                }
                if now == records.len() {
                    tx.delete(key.clone())?;
                } else {
                    tx.put(key.clone(), SliceRecord::encode_list(&records[now..]))?;
                }
                Ok(Some((queue_key.clone(), Some(key.clone()))))
            })
            .await?;
        let Some((queue, chunk)) = reached else {
            return Ok(false);
        };
        *at = ReclaimCursor {
            queue: Some(queue),
            chunk,
        };
        Ok(true)
    }

    /// Drops one reference to slice `id` inside `tx`; the last one queues
    /// its objects for deletion.
    pub(crate) async fn release_slice(
        &self,
        tx: &crate::kv::Txn,
        id: u64,
        size: u32,
    ) -> MetaResult<()> {
        let refs_key = keys::slice_refs(id, size);
        let extra = tx.get(&refs_key).await?.map_or(0, |v| decode_counter(&v));
        if extra > 1 {
            tx.put(refs_key, encode_counter(extra - 1))?;
        } else if extra == 1 {
            tx.delete(refs_key)?;
        } else {
            tx.put(released(id, size), Vec::new())?;
            self.reclaim_work.notify_one();
        }
        Ok(())
    }

    /// Returns once this client has queued data to reclaim since the last
    /// call returned (at once if it did meanwhile). The queueing
    /// transaction may not have committed yet when it returns: a reclaimer
    /// waits a moment before its pass.
    pub async fn reclaim_queued(&self) {
        self.reclaim_work.notified().await
    }

    /// Records that this session is about to upload the blocks of slice
    /// `id`, so that an upload that fails before the slice is committed
    /// leaves nothing untracked. `write_slice` clears it.
    pub async fn mark_pending(&self, id: u64) -> MetaResult<()> {
        self.mark_pending_all(&[id]).await
    }

    async fn mark_pending_all(&self, ids: &[u64]) -> MetaResult<()> {
        let sid = self.session_id().unwrap_or(0);
        self.txn("mark_pending", |tx| async move {
            for &id in ids {
                tx.put(pending(id), sid.to_be_bytes().to_vec())?;
            }
            Ok(())
        })
        .await
    }

    /// A new slice id for blocks about to be uploaded, already marked
    /// pending ([`Meta::mark_pending`]). Ids are reserved
    /// `RESERVED_SLICES` at a time and marked in one transaction, so a
    /// writer of small files pays one transaction per that many slices, not
    /// one per slice. Reserved ids never used are released when the
    /// session closes, or cleaned up as abandoned uploads (nothing to
    /// delete) once it is gone. A client without a session (a tool
    /// compacting chunks) has nothing to release them at, and marks each
    /// slice alone.
    pub async fn upload_slice_id(&self) -> MetaResult<u64> {
        if self.session_id().is_none() {
            let id = self.new_slice_id().await?;
            self.mark_pending(id).await?;
            return Ok(id);
        }
        let mut reserved = self.reserved_slices.lock().await;
        if let Some(id) = reserved.pop() {
            return Ok(id);
        }
        let mut ids = Vec::with_capacity(RESERVED_SLICES);
        for _ in 0..RESERVED_SLICES {
            ids.push(self.new_slice_id().await?);
        }
        self.mark_pending_all(&ids).await?;
        // Handed out in the order allocated.
        ids.reverse();
        let id = ids.pop().ok_or(MetaError::Errno(libc::EIO))?;
        *reserved = ids;
        Ok(id)
    }

    /// Forgets the slice ids this session reserved and did not use.
    pub(crate) async fn release_reserved_slices(&self) -> MetaResult<()> {
        let ids = std::mem::take(&mut *self.reserved_slices.lock().await);
        if ids.is_empty() {
            return Ok(());
        }
        self.forget_pending_all(&ids).await
    }

    /// Pending uploads whose session is gone (or that had none): their
    /// blocks were never committed and may be deleted. Looks at up to
    /// `limit` entries after upload `after`, and returns the abandoned ones
    /// and the last one looked at (none at the end of the queue), where the
    /// next page starts: a page of live uploads does not end the pass (one
    /// full of them hid every abandoned upload behind it), nor does a
    /// page start at the front (see [`ReclaimCursor`]).
    pub async fn abandoned_uploads(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> MetaResult<(Vec<u64>, Option<u64>)> {
        let own = self.session_id();
        let start = &after.map(|id| crate::kv::key_after(&pending(id)));
        self.txn("abandoned_uploads", |tx| async move {
            let page = tx
                .scan(
                    &KeyRange::prefix(&[PENDING]).resumed(start.as_ref()),
                    ScanOpts::limit(limit).snapshot(),
                )
                .await?;
            let (mut out, mut last) = (Vec::new(), None);
            for (key, value) in &page.entries {
                let id = u64::from_be_bytes(
                    key.get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(MetaError::Errno(libc::EIO))?,
                );
                let sid = u64::from_be_bytes(
                    value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(MetaError::Errno(libc::EIO))?,
                );
                let alive = Some(sid) == own
                    || (sid != 0 && tx.snapshot_get(&keys::session(sid)).await?.is_some());
                if !alive {
                    out.push(id);
                }
                last = Some(id);
            }
            Ok((
                out,
                if page.entries.len() < limit {
                    None
                } else {
                    last
                },
            ))
        })
        .await
    }

    /// Forgets a pending upload once its blocks are deleted.
    pub async fn forget_pending(&self, id: u64) -> MetaResult<()> {
        self.forget_pending_all(&[id]).await
    }

    async fn forget_pending_all(&self, ids: &[u64]) -> MetaResult<()> {
        self.txn("forget_pending", |tx| async move {
            for &id in ids {
                tx.delete(pending(id))?;
            }
            Ok(())
        })
        .await
    }

    /// Up to `limit` slices whose objects may be deleted: (id, size), the
    /// first after `after` (the last one of the page before, whose entry is
    /// gone: see [`ReclaimCursor`]).
    pub async fn released_slices(
        &self,
        after: Option<(u64, u32)>,
        limit: usize,
    ) -> MetaResult<Vec<(u64, u32)>> {
        let start = &after.map(|(id, size)| crate::kv::key_after(&released(id, size)));
        self.txn("released_slices", |tx| async move {
            let page = tx
                .scan(
                    &KeyRange::prefix(&[RELEASED]).resumed(start.as_ref()),
                    ScanOpts::limit(limit).snapshot(),
                )
                .await?;
            page.entries
                .iter()
                .map(|(k, _)| {
                    let id = u64::from_be_bytes(
                        k.get(1..9)
                            .and_then(|b| b.try_into().ok())
                            .ok_or(MetaError::Errno(libc::EIO))?,
                    );
                    let size = u32::from_be_bytes(
                        k.get(9..13)
                            .and_then(|b| b.try_into().ok())
                            .ok_or(MetaError::Errno(libc::EIO))?,
                    );
                    Ok((id, size))
                })
                .collect()
        })
        .await
    }

    /// Forgets a released slice once its objects are deleted.
    pub async fn forget_released_slice(&self, id: u64, size: u32) -> MetaResult<()> {
        self.txn("forget_slice", |tx| async move {
            tx.delete(released(id, size))?;
            Ok(())
        })
        .await
    }
}
