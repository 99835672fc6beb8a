//! Compaction: a chunk fragmented into many slice records is rewritten as
//! one slice holding what a reader sees, and the old records are replaced in
//! one transaction that first checks nothing changed meanwhile. The old
//! slices are released for reclaim. Runs on demand and, in the background,
//! when a read finds a chunk with more than `COMPACT_AFTER_RECORDS`
//! records.

use std::sync::Arc;

use super::block::block_key;
use super::reader::FileReader;
use super::{DataResult, DataStore, COMPACT_AFTER_RECORDS};
use crate::meta::overlay::overlay;
use crate::meta::{Ino, SliceRecord, CHUNK_SIZE};

impl DataStore {
    /// Compacts chunk `index` of `ino` if it has more than one record.
    /// Returns whether the chunk was rewritten.
    pub async fn compact_chunk(self: &Arc<Self>, ino: Ino, index: u32) -> DataResult<bool> {
        if !self
            .compacting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ino, index))
        {
            return Ok(false);
        }
        let result = self.compact_locked(ino, index).await;
        self.compacting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ino, index));
        result
    }

    async fn compact_locked(self: &Arc<Self>, ino: Ino, index: u32) -> DataResult<bool> {
        let mut records = self.meta.read_chunk(ino, index).await?;
        if records.len() < 2 {
            return Ok(false);
        }
        // One compaction handles the oldest records that fit a transaction;
        // the next one takes the rest.
        records.truncate(COMPACT_AFTER_RECORDS.min(40));
        let plain = records;
        let visible: Vec<SliceRecord> = overlay(&plain).into_iter().filter(|s| s.id != 0).collect();
        let length = self.meta.getattr(ino).await?.length;
        let chunk_start = index as u64 * CHUNK_SIZE;
        let limit = length.saturating_sub(chunk_start).min(CHUNK_SIZE);
        let start = visible.first().map_or(0, |s| s.pos as u64).min(limit);
        let end = visible
            .iter()
            .map(|s| s.pos as u64 + s.len as u64)
            .max()
            .unwrap_or(0)
            .min(limit);
        // What these records show, over [start, end): later records (not
        // replaced) keep overlaying it as before.
        let data = if end > start {
            self.read_records(&plain, start, end).await?
        } else {
            Vec::new()
        };
        let record = if data.is_empty() {
            SliceRecord {
                pos: 0,
                id: 0,
                size: 0,
                offset: 0,
                len: 0,
            }
        } else {
            let id = self.meta.upload_slice_id().await?;
            self.upload_slice(id, &data).await?;
            SliceRecord {
                pos: start as u32,
                id,
                size: data.len() as u32,
                offset: 0,
                len: data.len() as u32,
            }
        };
        // Holes among the replaced records must keep hiding older data only
        // inside [start, end); outside it nothing older remains.
        let replaced = self.meta.replace_chunk(ino, index, &plain, record).await?;
        // Not while its blocks still upload from the staging area: the
        // pending mark stays, and the abandoned-upload cleanup deletes
        // them once this session has ended.
        if !replaced
            && record.id != 0
            && self
                .delete_slice_objects(record.id, record.size)
                .await?
                .is_some()
        {
            self.meta.forget_pending(record.id).await?;
        }
        Ok(replaced)
    }

    /// The bytes `[start, end)` of a chunk as `records` alone show them.
    async fn read_records(
        self: &Arc<Self>,
        records: &[SliceRecord],
        start: u64,
        end: u64,
    ) -> DataResult<Vec<u8>> {
        let reader = FileReader::new(self.clone(), 0);
        reader.read_records(records, start, end).await
    }

    /// Deletes the objects of slice `id` (`size` bytes); returns how
    /// many, or None, deleting nothing, while a block of it is staged here
    /// (`--writeback`): its upload would store it again after the delete.
    pub(crate) async fn delete_slice_objects(&self, id: u64, size: u32) -> DataResult<Option<u64>> {
        let bs = self.block_size as u64;
        let blocks = (size as u64).div_ceil(bs);
        let key =
            |index: u64| block_key(id, index as u32, (size as u64 - index * bs).min(bs) as u32);
        if let Some(staging) = &self.staging {
            if (0..blocks).any(|index| staging.holds(&key(index))) {
                return Ok(None);
            }
        }
        for index in 0..blocks {
            self.objects.delete(&key(index)).await?;
        }
        Ok(Some(blocks))
    }
}
