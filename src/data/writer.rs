//! Writing a file: each run of contiguous writes within a chunk becomes one
//! slice. Full blocks upload as soon as they fill, at most `max_uploads` at
//! a time across the volume (a writer waits for a slot: back-pressure).
//! `flush` returns only when every block is stored and the slice record is
//! committed, so what a close or fsync acknowledged is readable by anyone.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use super::block::{block_key, BlockBuf};
use super::{DataError, DataResult, DataStore, COMPACT_AFTER_RECORDS};
use crate::meta::{Ino, SliceRecord, CHUNK_SIZE, MAX_CHUNK_RECORDS};
use crate::object::{ObjectError, ObjectResult};

/// The slice being written.
struct OpenSlice {
    id: u64,
    chunk: u32,
    /// Where the slice starts in its chunk.
    pos: u32,
    /// Bytes written to the slice so far.
    len: u32,
    /// The block being filled.
    pending: Option<BlockBuf>,
    blocks_sent: u32,
    uploads: Vec<JoinHandle<ObjectResult<()>>>,
    /// Buffer memory held for the block being filled.
    reserved: Option<OwnedSemaphorePermit>,
}

pub struct FileWriter {
    store: Arc<DataStore>,
    ino: Ino,
    open: Option<OpenSlice>,
    /// Slices left at a chunk boundary, waiting for their uploads and
    /// committing in the background (chunk, task), oldest first: a
    /// sequential writer does not stop every 64 MiB. `flush` waits for
    /// them, and so does a new slice in a chunk one of them is in (records
    /// of a chunk are appended in the order they were written).
    finishing: Vec<(u32, JoinHandle<DataResult<()>>)>,
}

impl FileWriter {
    pub fn new(store: Arc<DataStore>, ino: Ino) -> FileWriter {
        FileWriter {
            store,
            ino,
            open: None,
            finishing: Vec::new(),
        }
    }

    /// Writes `data` at `offset`. Contiguous writes extend the current
    /// slice; any other write first finishes it.
    pub async fn write(&mut self, offset: u64, mut data: &[u8]) -> DataResult<()> {
        let mut offset = offset;
        while !data.is_empty() {
            let chunk = (offset / CHUNK_SIZE) as u32;
            let in_chunk = (offset % CHUNK_SIZE) as u32;
            let n = data.len().min((CHUNK_SIZE - in_chunk as u64) as usize);
            let continues = self.open.as_ref().is_some_and(|s| {
                s.chunk == chunk && s.pos as u64 + s.len as u64 == in_chunk as u64
            });
            if !continues {
                self.finish_open(chunk).await?;
                let id = self.store.meta.upload_slice_id().await?;
                self.open = Some(OpenSlice {
                    id,
                    chunk,
                    pos: in_chunk,
                    len: 0,
                    pending: None,
                    blocks_sent: 0,
                    uploads: Vec::new(),
                    reserved: None,
                });
            }
            let (piece, rest) = data.split_at(n);
            self.append(piece).await;
            data = rest;
            offset += n as u64;
        }
        Ok(())
    }

    async fn append(&mut self, mut piece: &[u8]) {
        let block_size = self.store.block_size as usize;
        while !piece.is_empty() {
            let Some(slice) = self.open.as_mut() else {
                return;
            };
            if slice.reserved.is_none() {
                // Waiting here is the back-pressure of --buffer-size.
                slice.reserved = self
                    .store
                    .buffer
                    .clone()
                    .acquire_many_owned(self.store.block_units())
                    .await
                    .ok();
            }
            let pending = slice
                .pending
                .get_or_insert_with(|| BlockBuf::new(block_size));
            let take = (block_size - pending.len()).min(piece.len());
            pending.extend(&piece[..take]);
            slice.len += take as u32;
            piece = &piece[take..];
            if pending.len() == block_size {
                self.send_block().await;
            }
        }
    }

    /// Starts storing the pending block (see [`DataStore::store_block`]).
    async fn send_block(&mut self) {
        let Some(slice) = self.open.as_mut() else {
            return;
        };
        let Some(data) = slice.pending.take().filter(|p| !p.is_empty()) else {
            return;
        };
        let reserved = slice.reserved.take();
        let key = block_key(slice.id, slice.blocks_sent, data.len() as u32);
        slice.blocks_sent += 1;
        slice
            .uploads
            .push(self.store.store_block(key, data, reserved).await);
    }

    /// Stores everything written so far and commits it: when this returns,
    /// any reader on any host sees the data.
    pub async fn flush(&mut self) -> DataResult<()> {
        self.send_block().await;
        let open = self.open.take();
        let mut result = self.drain().await;
        if let Some(slice) = open {
            let committed = commit(self.store.clone(), self.ino, slice).await;
            result = result.and(committed);
        }
        result
    }

    /// Ends the open slice before one in chunk `next` starts: committed in
    /// the background unless a slice of chunk `next` is still committing
    /// (then everything is committed first, in order).
    async fn finish_open(&mut self, next: u32) -> DataResult<()> {
        let in_next = |chunk: u32| chunk == next;
        let open_chunk = self.open.as_ref().map(|s| s.chunk);
        if open_chunk.is_some_and(in_next) || self.finishing.iter().any(|(c, _)| in_next(*c)) {
            return self.flush().await;
        }
        self.send_block().await;
        if let Some(slice) = self.open.take() {
            let chunk = slice.chunk;
            let task = tokio::spawn(commit(self.store.clone(), self.ino, slice));
            self.finishing.push((chunk, task));
        }
        Ok(())
    }

    /// Waits for the slices committing in the background; the first
    /// failure is the result.
    async fn drain(&mut self) -> DataResult<()> {
        let mut result = Ok(());
        for (_, task) in self.finishing.drain(..) {
            let done = task.await.unwrap_or_else(|e| {
                Err(DataError::Object(ObjectError::Fatal(format!(
                    "commit task failed: {e}"
                ))))
            });
            result = result.and(done);
        }
        result
    }
}

/// Waits for the uploads of `slice` and appends its record: from then on
/// any reader on any host sees its data. A failed upload commits nothing
/// (the slice's blocks are unreferenced, and deleted as pending).
async fn commit(store: Arc<DataStore>, ino: Ino, slice: OpenSlice) -> DataResult<()> {
    let mut failure = None;
    for upload in slice.uploads {
        match upload.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(DataError::Object(e)),
            Err(e) => {
                failure = Some(DataError::Object(ObjectError::Fatal(format!(
                    "upload task failed: {e}"
                ))))
            }
        }
    }
    if let Some(e) = failure {
        tracing::error!(ino, slice = slice.id, error = %e, "write failed");
        return Err(e);
    }
    if slice.len == 0 {
        return Ok(());
    }
    let record = SliceRecord {
        pos: slice.pos,
        id: slice.id,
        size: slice.len,
        offset: 0,
        len: slice.len,
    };
    let (_, records) = store.meta.append_slice(ino, slice.chunk, record).await?;
    if records > WRITER_COMPACT_AFTER_RECORDS {
        let job = compact_until_short(store.clone(), ino, slice.chunk);
        if records >= MAX_CHUNK_RECORDS {
            // Back-pressure: this writer outpaces compaction.
            job.await;
        } else {
            tokio::spawn(job);
        }
    }
    Ok(())
}

/// A writer's append that leaves more records than this starts a
/// compaction (readers start one sooner, at `COMPACT_AFTER_RECORDS`: a
/// long list costs them on every read, a writer only once per append).
const WRITER_COMPACT_AFTER_RECORDS: usize = 128;

/// Compacts chunk `index` until it is short again (each compaction takes
/// the oldest records that fit one transaction).
async fn compact_until_short(store: Arc<DataStore>, ino: Ino, index: u32) {
    loop {
        match store.compact_chunk(ino, index).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(ino, chunk = index, error = %e, "compaction failed");
                return;
            }
        }
        match store.meta.read_chunk(ino, index).await {
            Ok(records) if records.len() > COMPACT_AFTER_RECORDS => {}
            _ => return,
        }
    }
}

impl DataStore {
    /// Stores `data` as the blocks of slice `id` and waits for them.
    pub(crate) async fn upload_slice(&self, id: u64, data: &[u8]) -> DataResult<()> {
        let mut stores = Vec::new();
        for (index, block) in data.chunks(self.block_size as usize).enumerate() {
            let key = block_key(id, index as u32, block.len() as u32);
            stores.push(
                self.store_block(key, BlockBuf::from_data(block), None)
                    .await,
            );
        }
        for stored in stores {
            stored
                .await
                .map_err(|e| ObjectError::Fatal(format!("upload task failed: {e}")))??;
        }
        Ok(())
    }

    /// Starts storing one block: with writeback, staged on local disk (the
    /// task ends there; the upload follows in the background); otherwise
    /// uploaded once one of the `--max-uploads` slots is free (waiting for
    /// it is the back-pressure on writers). Encoding runs off the async
    /// workers. `reserved` (write-buffer memory) is held until the task
    /// ends.
    pub(crate) async fn store_block(
        &self,
        key: String,
        data: BlockBuf,
        reserved: Option<OwnedSemaphorePermit>,
    ) -> JoinHandle<ObjectResult<()>> {
        let (objects, codec) = (self.objects.clone(), self.codec);
        if let Some(staging) = self.staging.clone() {
            let uploads = self.uploads.clone();
            return tokio::spawn(async move {
                let _reserved = reserved;
                let (stage, staged_key) = (staging.clone(), key.clone());
                tokio::task::spawn_blocking(move || stage.stage(&staged_key, &data.encode(codec)))
                    .await
                    .map_err(|e| ObjectError::Fatal(format!("staging failed: {e}")))??;
                staging.upload_later(key, objects, uploads);
                Ok(())
            });
        }
        let permit = self.uploads.acquire().await;
        let (disk, cache_writes) = (self.disk.clone(), self.cache_writes.clone());
        tokio::spawn(async move {
            let _reserved = reserved;
            let object = tokio::task::spawn_blocking(move || data.encode(codec))
                .await
                .map_err(|e| ObjectError::Fatal(format!("encoder failed: {e}")))?;
            // What was just written is what is read next: it goes into the
            // disk cache beside the upload, which does not wait for it; a
            // block is left out when the disk is behind.
            let slot = disk.zip(cache_writes.try_acquire_owned().ok());
            if let Some((disk, slot)) = slot {
                let (key, object) = (key.clone(), object.clone());
                tokio::task::spawn_blocking(move || {
                    disk.put(&key, &object);
                    drop(slot);
                });
            }
            let (bytes, started) = (object.len(), std::time::Instant::now());
            objects.put(&key, object).await?;
            permit.done(bytes, started);
            Ok(())
        })
    }
}
