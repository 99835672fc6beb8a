//! Reading a file: the slice records of each chunk touched are overlaid
//! (newest on top, holes and gaps as zeros) and the blocks behind the
//! visible pieces fetched, checked and kept in a bounded memory cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::block::{block_key, decode};
use super::{DataError, DataResult, DataStore, COMPACT_AFTER_RECORDS};
use crate::meta::overlay::overlay;
use crate::meta::{Ino, SliceRecord, CHUNK_SIZE};

/// Decoded blocks by object key, evicted oldest first past a byte budget.
pub struct BlockCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    blocks: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl BlockCache {
    pub fn new(budget: usize) -> Self {
        BlockCache {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocks
            .get(key)
            .cloned()
    }

    fn insert(&self, key: String, block: Arc<Vec<u8>>) {
        if block.len() > self.budget {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
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
}

pub struct FileReader {
    store: Arc<DataStore>,
    ino: Ino,
}

impl FileReader {
    pub fn new(store: Arc<DataStore>, ino: Ino) -> FileReader {
        FileReader { store, ino }
    }

    /// Up to `len` bytes at `offset` of a file `file_len` bytes long.
    pub async fn read(&self, offset: u64, len: usize, file_len: u64) -> DataResult<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(file_len);
        if end <= offset {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        for chunk in offset / CHUNK_SIZE..=(end - 1) / CHUNK_SIZE {
            let chunk_start = chunk * CHUNK_SIZE;
            let (from, to) = (
                offset.max(chunk_start) - chunk_start,
                end.min(chunk_start + CHUNK_SIZE) - chunk_start,
            );
            let records = self.store.meta.read_chunk(self.ino, chunk as u32).await?;
            if records.len() > COMPACT_AFTER_RECORDS {
                let (store, ino) = (self.store.clone(), self.ino);
                tokio::spawn(async move {
                    if let Err(e) = store.compact_chunk(ino, chunk as u32).await {
                        tracing::warn!(ino, chunk, error = %e, "compaction failed");
                    }
                });
            }
            let dst_start = (chunk_start + from - offset) as usize;
            let dst = &mut out[dst_start..dst_start + (to - from) as usize];
            self.fill(&records, from, dst).await?;
        }
        Ok(out)
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
        let bs = self.store.block_size as u64;
        while !dst.is_empty() {
            let index = offset / bs;
            let block_len = (size as u64 - index * bs).min(bs);
            let block = self.block(id, index as u32, block_len as u32).await?;
            let within = (offset - index * bs) as usize;
            let n = dst.len().min(block.len().saturating_sub(within));
            if n == 0 {
                return Err(DataError::Corrupt {
                    key: block_key(id, index as u32, block_len as u32),
                    reason: "shorter than its slice".into(),
                });
            }
            dst[..n].copy_from_slice(&block[within..within + n]);
            dst = &mut dst[n..];
            offset += n as u64;
        }
        Ok(())
    }

    async fn block(&self, id: u64, index: u32, len: u32) -> DataResult<Arc<Vec<u8>>> {
        let key = block_key(id, index, len);
        if let Some(block) = self.store.cache.get(&key) {
            return Ok(block);
        }
        let object = self.store.objects.get(&key).await?;
        let data = tokio::task::spawn_blocking(move || decode(&object))
            .await
            .map_err(|e| DataError::Corrupt {
                key: key.clone(),
                reason: format!("decoder failed: {e}"),
            })?
            .map_err(|e| {
                tracing::error!(object = %key, error = %e, "damaged block");
                DataError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                }
            })?;
        if data.len() != len as usize {
            return Err(DataError::Corrupt {
                key,
                reason: format!("{} bytes, expected {len}", data.len()),
            });
        }
        let data = Arc::new(data);
        self.store.cache.insert(key, data.clone());
        Ok(data)
    }
}
