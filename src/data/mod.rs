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
mod limit;
mod pages;
pub use pages::{read_file, Filled, PageBuf};
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

/// Written blocks copied into the disk cache at once, at most.
const CACHE_WRITES: usize = 8;

/// What the writers and readers of one mounted volume share.
pub struct DataStore {
    pub(crate) meta: Arc<Meta>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) block_size: u32,
    pub(crate) codec: Codec,
    pub(crate) uploads: Arc<limit::UploadLimit>,
    pub(crate) max_uploads: usize,
    /// Buffer memory in units of `BUFFER_UNIT_BYTES`: a block being filled
    /// or uploaded holds a block's worth (`--buffer-size`).
    pub(crate) buffer: Arc<Semaphore>,
    pub(crate) buffer_bytes: u64,
    pub(crate) cache: BlockCache,
    pub(crate) disk: Option<Arc<DiskCache>>,
    /// Written blocks being copied into the disk cache, off the upload's
    /// path; a block finding none free is not cached (the disk is behind).
    pub(crate) cache_writes: Arc<Semaphore>,
    /// With `--writeback`: where blocks wait for their upload.
    pub(crate) staging: Option<Arc<Staging>>,
    /// A volume migrated from JuiceFS: slices below this id are JuiceFS's
    /// objects, decoded with the second field.
    pub(crate) juicefs_blocks: Option<(u64, block::JuiceFsCodec)>,
    /// Chunks being compacted, so a chunk is compacted once at a time.
    pub(crate) compacting: std::sync::Mutex<std::collections::HashSet<(crate::meta::Ino, u32)>>,
    /// Files being read sequentially (read-ahead on): they share the
    /// memory cache's read-ahead half.
    pub(crate) streams: std::sync::atomic::AtomicUsize,
    /// CRC tables of blocks read in pieces from object storage, by (slice
    /// id, block index): a block never changes, so its next ranged reads
    /// need one GET instead of two.
    pub(crate) crc_tables: std::sync::Mutex<CrcTables>,
}

/// CRC tables by (slice id, block index).
pub(crate) type CrcTables = std::collections::HashMap<(u64, u32), Arc<[u8]>>;

/// CRC tables kept (256 bytes each for 4 MiB blocks) before they start over.
pub(crate) const CRC_TABLES_KEPT: usize = 16_384;

/// How a mount's data path is set up (the `jfs mount` flags).
pub struct DataOptions {
    /// `--max-uploads`: blocks uploading at once.
    pub max_uploads: usize,
    /// `--buffer-size`: bytes of blocks being filled or uploaded.
    pub buffer_bytes: u64,
    /// Decoded blocks kept in memory.
    pub memory_cache_bytes: usize,
    /// `--cache-dir` / `--cache-size` / `--free-space-ratio`.
    pub disk_cache: Option<DiskCache>,
    /// `--writeback`: where blocks wait for their upload. Call
    /// [`DataStore::upload_staged`] at start to upload what a crashed mount
    /// left there.
    pub writeback: Option<Staging>,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            max_uploads: DEFAULT_MAX_UPLOADS,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            memory_cache_bytes: 64 << 20,
            disk_cache: None,
            writeback: None,
        }
    }
}

impl DataStore {
    /// A data store with `max_uploads` and a memory cache of `cache_bytes`,
    /// other options at their defaults.
    pub fn new(
        meta: Arc<Meta>,
        objects: Arc<dyn ObjectStore>,
        max_uploads: usize,
        cache_bytes: usize,
    ) -> DataResult<Arc<DataStore>> {
        let options = DataOptions {
            max_uploads,
            memory_cache_bytes: cache_bytes,
            ..Default::default()
        };
        DataStore::with_options(meta, objects, options)
    }

    pub fn with_options(
        meta: Arc<Meta>,
        objects: Arc<dyn ObjectStore>,
        options: DataOptions,
    ) -> DataResult<Arc<DataStore>> {
        let volume = meta.volume();
        let codec = Codec::parse(&volume.compression).ok_or_else(|| {
            DataError::Meta(MetaError::Volume(format!(
                "unknown compression '{}' in the volume record",
                volume.compression
            )))
        })?;
        let juicefs_blocks = match &volume.juicefs_blocks {
            None => None,
            Some(legacy) => Some((
                legacy.slice_ids_below,
                block::JuiceFsCodec::parse(&legacy.compression).ok_or_else(|| {
                    DataError::Meta(MetaError::Volume(format!(
                        "unknown JuiceFS compression '{}' in the volume record",
                        legacy.compression
                    )))
                })?,
            )),
        };
        let block_size = volume.block_size_bytes;
        // The buffer holds at least one block, or no writer could proceed.
        let buffer_units = units(options.buffer_bytes.max(block_size as u64));
        let max_uploads = options.max_uploads.max(1);
        Ok(Arc::new(DataStore {
            block_size,
            codec,
            meta,
            objects,
            uploads: limit::UploadLimit::new(max_uploads, block_size as usize),
            max_uploads,
            buffer: Arc::new(Semaphore::new(buffer_units)),
            buffer_bytes: buffer_units as u64 * BUFFER_UNIT_BYTES,
            cache: BlockCache::new(options.memory_cache_bytes),
            disk: options.disk_cache.map(Arc::new),
            cache_writes: Arc::new(Semaphore::new(CACHE_WRITES)),
            staging: options.writeback.map(Arc::new),
            juicefs_blocks,
            compacting: Default::default(),
            streams: Default::default(),
            crc_tables: Default::default(),
        }))
    }

    /// How the objects of slice `id` are encoded.
    pub(crate) fn decoder(&self, id: u64) -> block::BlockDecoder {
        match self.juicefs_blocks {
            Some((below, codec)) if id < below => block::BlockDecoder::JuiceFs(codec),
            _ => block::BlockDecoder::Jfs,
        }
    }

    /// The write buffer's size (`--buffer-size`), in bytes.
    pub fn buffer_limit(&self) -> u64 {
        self.buffer_bytes
    }

    /// What the metrics report of this store now.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let (page_bytes, page_kept_bytes) = pages::usage();
        crate::metrics::Gauges {
            buffer_bytes: self.buffer_in_use(),
            buffer_limit_bytes: self.buffer_bytes,
            pending_uploads: self.pending_uploads() as u64,
            upload_limit: self.uploads.current() as u64,
            memory_cache_bytes: self.memory_cache_bytes() as u64,
            page_bytes: page_bytes as u64,
            page_kept_bytes: page_kept_bytes as u64,
        }
    }

    /// Bytes of decoded blocks in the memory cache now.
    pub fn memory_cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Buffer memory in use now, in bytes.
    pub fn buffer_in_use(&self) -> u64 {
        self.buffer_bytes - self.buffer.available_permits() as u64 * BUFFER_UNIT_BYTES
    }

    pub(crate) fn block_units(&self) -> u32 {
        units(self.block_size as u64) as u32
    }

    /// With writeback: uploads the blocks a previous mount left staged
    /// (after a crash) and returns how many. Run before serving.
    pub async fn upload_staged(&self) -> DataResult<usize> {
        match &self.staging {
            Some(staging) => Ok(staging.upload_all(self.objects.as_ref()).await?),
            None => Ok(0),
        }
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
        let (mut deleted, mut after) = (0, None);
        loop {
            let (ids, last) = self.meta.abandoned_uploads(after, 100).await?;
            for id in ids {
                let prefix = block::slice_key_prefix(id);
                for object in self.objects.list(&prefix, None, 100_000).await? {
                    self.objects.delete(&object.key).await?;
                    deleted += 1;
                }
                self.meta.forget_pending(id).await?;
            }
            match last {
                Some(id) => after = Some(id),
                None => return Ok(deleted),
            }
        }
    }

    /// Deletes the data of deleted files: their slice records step by step,
    /// then the objects of every slice nothing references any more. Returns
    /// the objects deleted. Safe to run from several clients at once.
    pub async fn reclaim(&self) -> DataResult<u64> {
        let mut at = crate::meta::ReclaimCursor::default();
        while self.meta.reclaim_deleted_step(&mut at).await? {}
        let (mut deleted, mut after) = (0, None);
        loop {
            let slices = self.meta.released_slices(after, 100).await?;
            if slices.is_empty() {
                return Ok(deleted);
            }
            for &(id, size) in &slices {
                // A slice still uploading from this host's staging area
                // waits for a later pass.
                if let Some(n) = self.delete_slice_objects(id, size).await? {
                    deleted += n;
                    self.meta.forget_released_slice(id, size).await?;
                }
            }
            after = slices.last().copied();
        }
    }
}
