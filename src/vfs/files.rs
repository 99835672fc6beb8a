//! Per-mount state of open files and open directories.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::data::{DataResult, FileReader, FileWriter};
use crate::meta::{DirEntry, FileKind, Ino};

pub(super) struct OpenState {
    /// Open handles of this inode on this mount.
    pub opens: u32,
    /// Set once the file is closed in the KV store; an open that finds it
    /// takes a new entry.
    pub closed: bool,
    /// This session's open marker for the inode is in the KV store. It
    /// stays a moment after the last release (closes go in batches), and
    /// an open in that time needs no write.
    pub marked: bool,
}

/// A file open on this mount: one writer and one reader shared by all its
/// handles, so every handle sees the others' writes.
pub(super) struct OpenFile {
    pub ino: Ino,
    pub state: tokio::sync::Mutex<OpenState>,
    writer: tokio::sync::Mutex<FileWriter>,
    pub reader: FileReader,
    /// Writes are buffered in the writer and not committed yet.
    dirty: AtomicBool,
    /// Written since opened (its mtime changed because of us).
    written: AtomicBool,
    /// The length as this mount knows it, buffered writes included.
    length: AtomicU64,
    posix_locked: AtomicBool,
}

impl OpenFile {
    pub fn new(ino: Ino, writer: FileWriter, reader: FileReader) -> OpenFile {
        OpenFile {
            ino,
            state: tokio::sync::Mutex::new(OpenState {
                opens: 0,
                closed: false,
                marked: false,
            }),
            writer: tokio::sync::Mutex::new(writer),
            reader,
            dirty: AtomicBool::new(false),
            written: AtomicBool::new(false),
            length: AtomicU64::new(0),
            posix_locked: AtomicBool::new(false),
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub fn was_written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }

    pub fn mark_written(&self) {
        self.written.store(true, Ordering::Release);
    }

    pub fn length(&self) -> u64 {
        self.length.load(Ordering::Acquire)
    }

    /// The length as the KV store has it, after an open or a change of
    /// the file's layout here: the reader's chunk records go too.
    pub fn set_length(&self, length: u64) {
        self.length.store(length, Ordering::Release);
        self.reader.forget_chunks();
    }

    /// The length an open just read; the reader's chunk records were
    /// dropped before it (and those it read with it kept).
    pub fn set_opened_length(&self, length: u64) {
        self.length.store(length, Ordering::Release);
    }

    pub fn posix_locked(&self) -> bool {
        self.posix_locked.load(Ordering::Acquire)
    }

    pub fn mark_posix_locked(&self) {
        self.posix_locked.store(true, Ordering::Release);
    }

    pub async fn write(&self, offset: u64, data: &[u8]) -> DataResult<()> {
        let mut writer = self.writer.lock().await;
        self.dirty.store(true, Ordering::Release);
        self.written.store(true, Ordering::Release);
        let result = writer.write(offset, data).await;
        if result.is_ok() {
            self.length
                .fetch_max(offset + data.len() as u64, Ordering::AcqRel);
        }
        result
    }

    /// Commits the buffered writes (nothing to do when there are none).
    pub async fn flush(&self) -> DataResult<()> {
        if !self.is_dirty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().await;
        if !self.is_dirty() {
            return Ok(());
        }
        // Even a failed flush leaves nothing buffered: the writer dropped
        // the slice, and the error goes to this close or fsync.
        let result = writer.flush().await;
        self.dirty.store(false, Ordering::Release);
        self.reader.forget_chunks();
        result
    }
}

/// Directory listing held by an open directory handle.
pub(super) struct Listing {
    pub entries: Vec<DirEntry>,
    /// Name of the last entry fetched from the KV store.
    pub cursor: Option<Vec<u8>>,
    pub done: bool,
}

impl Listing {
    pub fn reset(&mut self, ino: Ino, parent: Ino) {
        let dot = |name: &[u8], ino: Ino| DirEntry {
            name: name.to_vec(),
            ino,
            kind: FileKind::Directory,
            attr: None,
        };
        self.entries = vec![dot(b".", ino), dot(b"..", parent)];
        self.cursor = None;
        self.done = false;
    }
}

pub(super) struct DirHandle {
    pub ino: Ino,
    pub parent: Ino,
    pub listing: tokio::sync::Mutex<Listing>,
}

impl DirHandle {
    pub fn new(ino: Ino, parent: Ino) -> DirHandle {
        let mut listing = Listing {
            entries: Vec::new(),
            cursor: None,
            done: false,
        };
        listing.reset(ino, parent);
        DirHandle {
            ino,
            parent,
            listing: tokio::sync::Mutex::new(listing),
        }
    }
}
