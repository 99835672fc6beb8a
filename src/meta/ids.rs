//! Inode and slice ids from batched, sharded allocators. A client takes a
//! batch of ids from one of `SHARDS` counters chosen at random, so clients
//! creating files at once almost never touch the same counter, and touch one
//! only once per `BATCH` ids.

use std::sync::Mutex;

use super::keys;
use crate::kv::{decode_counter, encode_counter, Db, KvResult};

/// Counters per id kind.
pub const SHARDS: u64 = 16;
/// Ids per batch.
pub const BATCH: u64 = 1024;

/// Hands out unique ids of one kind (`ino`, `slice`, `session`).
pub struct IdAllocator {
    name: &'static str,
    range: Mutex<(u64, u64)>,
}

impl IdAllocator {
    pub fn new(name: &'static str) -> Self {
        IdAllocator {
            name,
            range: Mutex::new((0, 0)),
        }
    }

    pub async fn next(&self, db: &Db) -> KvResult<u64> {
        {
            let mut r = self.range.lock().unwrap_or_else(|p| p.into_inner());
            if r.0 < r.1 {
                r.0 += 1;
                return Ok(r.0 - 1);
            }
        }
        let (first, end) = allocate_batch(db, self.name).await?;
        let mut r = self.range.lock().unwrap_or_else(|p| p.into_inner());
        *r = (first + 1, end);
        Ok(first)
    }
}

/// Takes the next batch of a random shard: ids
/// `[(b * SHARDS + s) * BATCH, ... + BATCH)` for the shard's b-th batch.
/// Batch 0 of shard 0 is reserved (id 0 is "none", 1 is the root, the rest
/// of the first 1024 ids are kept for special inodes), so shard 0 starts
/// at batch 1. One transaction; idempotent in effect (a batch taken twice
/// after an unknown commit outcome only wastes ids).
async fn allocate_batch(db: &Db, name: &'static str) -> KvResult<(u64, u64)> {
    let shard = fastrand::u64(..SHARDS);
    let key = keys::counter(name, shard as u16);
    let batch = db
        .run_idempotent("allocate_ids", |tx| {
            let key = key.clone();
            async move {
                let taken = tx.get(&key).await?.map_or(0, |v| decode_counter(&v)) as u64;
                let batch = if shard == 0 { taken.max(1) } else { taken };
                tx.put(key, encode_counter(batch as i64 + 1))?;
                Ok(batch)
            }
        })
        .await?;
    let first = (batch * SHARDS + shard) * BATCH;
    Ok((first, first + BATCH))
}
