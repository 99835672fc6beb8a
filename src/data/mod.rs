//! The data path: file bytes cut into 64 MiB chunks, written as slices
//! (one per sequence of contiguous writes), stored as blocks of the volume's
//! block size in object storage, and read back by overlaying the slice
//! records of each chunk.
//!
//! `data` knows nothing about directories: it asks `meta` only for slice
//! ids, slice records and chunk contents.

pub mod block;
mod compact;
mod disk_cache;
mod reader;
mod writeback;
mod writer;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use disk_cache::DiskCache;
pub use reader::{BlockCache, FileReader};
pub use writeback::Staging;
pub use writer::FileWriter;

use crate::meta::{Meta, MetaError};
use crate::object::{ObjectError, ObjectStore};
use block::Codec;

/// A chunk read with more records than this is compacted in the
/// background (the same number of records bounds one compaction).
pub const COMPACT_AFTER_RECORDS: usize = 32;

/// JuiceFS's default `--buffer-size`: 300 MiB of write buffer.
pub const DEFAULT_BUFFER_BYTES: u64 = 300 << 20;
pub(crate) const BUFFER_UNIT_BYTES: u64 = 64 << 10;

/// Default bound on concurrent block uploads (JuiceFS's `--max-uploads`).
pub const DEFAULT_MAX_UPLOADS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("object storage: {0}")]
    Object(#[from] ObjectError),
    /// A block failed its checksum: never returned as data.
    #[error("block {key} is damaged: {reason}")]
    Corrupt { key: String, reason: String },
}

impl DataError {
    pub fn errno(&self) -> i32 {
        match self {
            DataError::Meta(e) => e.errno(),
            DataError::Object(_) | DataError::Corrupt { .. } => libc::EIO,
        }
    }
}

pub type DataResult<T> = Result<T, DataError>;

fn units(bytes: u64) -> usize {
    bytes.div_ceil(BUFFER_UNIT_BYTES) as usize
}

/// What the writers and readers of one mounted volume share.
pub struct DataStore {
    pub(crate) meta: Arc<Meta>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) block_size: u32,
    pub(crate) codec: Codec,
    pub(crate) uploads: Arc<Semaphore>,
    pub(crate) max_uploads: usize,
    /// Buffer memory in units of `BUFFER_UNIT_BYTES`: a block being filled
    /// or uploaded holds a block's worth (`--buffer-size`).
    pub(crate) buffer: Arc<Semaphore>,
    pub(crate) cache: BlockCache,
    pub(crate) disk: Option<Arc<DiskCache>>,
    /// With `--writeback`: where blocks wait for their upload.
    pub(crate) staging: Option<Arc<Staging>>,
    /// Chunks being compacted, so a chunk is compacted once at a time.
    pub(crate) compacting: std::sync::Mutex<std::collections::HashSet<(crate::meta::Ino, u32)>>,
}

impl DataStore {
    pub fn new(
        meta: Arc<Meta>,
        objects: Arc<dyn ObjectStore>,
        max_uploads: usize,
        cache_bytes: usize,
    ) -> DataResult<Arc<DataStore>> {
        let volume = meta.volume();
        let codec = Codec::parse(&volume.compression).ok_or_else(|| {
            DataError::Meta(MetaError::Volume(format!(
                "unknown compression '{}' in the volume record",
                volume.compression
            )))
        })?;
        let buffer_units = units(DEFAULT_BUFFER_BYTES.max(volume.block_size_bytes as u64));
        Ok(Arc::new(DataStore {
            block_size: volume.block_size_bytes,
            codec,
            meta,
            objects,
            uploads: Arc::new(Semaphore::new(max_uploads.max(1))),
            max_uploads: max_uploads.max(1),
            buffer: Arc::new(Semaphore::new(buffer_units)),
            cache: BlockCache::new(cache_bytes),
            disk: None,
            staging: None,
            compacting: Default::default(),
        }))
    }

    /// As [`DataStore::new`], with blocks also kept in `disk`.
    pub fn with_disk_cache(
        meta: Arc<Meta>,
        objects: Arc<dyn ObjectStore>,
        max_uploads: usize,
        cache_bytes: usize,
        disk: DiskCache,
    ) -> DataResult<Arc<DataStore>> {
        let store = DataStore::new(meta, objects, max_uploads, cache_bytes)?;
        let mut store = Arc::try_unwrap(store)
            .map_err(|_| DataError::Meta(MetaError::Volume("data store in use".into())))?;
        store.disk = Some(Arc::new(disk));
        Ok(Arc::new(store))
    }

    /// Bounds the write buffer to `bytes` (at least one block): writers
    /// wait when it is full.
    pub fn set_buffer_size(self: Arc<Self>, bytes: u64) -> DataResult<Arc<DataStore>> {
        let mut store = Arc::try_unwrap(self)
            .map_err(|_| DataError::Meta(MetaError::Volume("data store in use".into())))?;
        store.buffer = Arc::new(Semaphore::new(units(bytes.max(store.block_size as u64))));
        Ok(Arc::new(store))
    }

    /// Buffer memory in use now, in bytes.
    pub fn buffer_in_use(&self, limit_bytes: u64) -> u64 {
        limit_bytes.max(self.block_size as u64)
            - self.buffer.available_permits() as u64 * BUFFER_UNIT_BYTES
    }

    pub(crate) fn block_units(&self) -> u32 {
        units(self.block_size as u64) as u32
    }

    /// Turns on `--writeback` with `staging`, first uploading what a
    /// previous mount left there. Returns the store and that count.
    pub async fn with_writeback(
        self: Arc<Self>,
        staging: Staging,
    ) -> DataResult<(Arc<DataStore>, usize)> {
        let recovered = staging.upload_all(self.objects.as_ref()).await?;
        let mut store = Arc::try_unwrap(self)
            .map_err(|_| DataError::Meta(MetaError::Volume("data store in use".into())))?;
        store.staging = Some(Arc::new(staging));
        Ok((Arc::new(store), recovered))
    }

    /// Blocks staged by writeback and not uploaded yet.
    pub fn pending_uploads(&self) -> usize {
        self.staging.as_ref().map_or(0, |s| s.pending())
    }

    /// Waits for every writeback upload (unmount does).
    pub async fn wait_uploads(&self) {
        if let Some(staging) = &self.staging {
            staging.drain().await;
        }
    }

    /// The disk cache, if any.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.disk.as_deref()
    }

    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        self.objects.clone()
    }

    /// Deletes the blocks of uploads whose writer died before committing
    /// them (their session is gone); returns the objects deleted.
    pub async fn clean_abandoned_uploads(&self) -> DataResult<u64> {
        let mut deleted = 0;
        loop {
            let ids = self.meta.abandoned_uploads(100).await?;
            if ids.is_empty() {
                return Ok(deleted);
            }
            for id in ids {
                let prefix = format!("{}_", block::block_key(id, 0, 0).trim_end_matches("_0_0"));
                for object in self.objects.list(&prefix, None, 100_000).await? {
                    self.objects.delete(&object.key).await?;
                    deleted += 1;
                }
                self.meta.forget_pending(id).await?;
            }
        }
    }

    /// Deletes the data of deleted files: their slice records step by step,
    /// then the objects of every slice nothing references any more. Returns
    /// the objects deleted. Safe to run from several clients at once.
    pub async fn reclaim(&self) -> DataResult<u64> {
        while self.meta.reclaim_deleted_step().await? {}
        let mut deleted = 0;
        loop {
            let slices = self.meta.released_slices(100).await?;
            if slices.is_empty() {
                return Ok(deleted);
            }
            for (id, size) in slices {
                deleted += self.delete_slice_objects(id, size).await?;
                self.meta.forget_released_slice(id, size).await?;
            }
        }
    }
}
