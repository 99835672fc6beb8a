//! `--writeback`: a block is staged on local disk (under the cache
//! directory, `DIR/UUID/rawstaging/KEY`) and the slice committed at once;
//! the upload happens in the background. Staged blocks survive a crash of
//! the mount: the next mount uploads them before serving. Until a block is
//! uploaded, only this host can read it (from the staging area): the
//! close-to-open guarantee across hosts waits for the upload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use super::limit::UploadLimit;

use crate::object::{ObjectError, ObjectResult, ObjectStore};

pub struct Staging {
    root: PathBuf,
    /// Blocks staged by this mount and not uploaded yet, by key (each
    /// block's key is its own: slice ids are never reused).
    uploading: std::sync::Mutex<std::collections::HashSet<String>>,
    drained: Notify,
}

impl Staging {
    pub fn open(dir: &Path, uuid: &str) -> std::io::Result<Staging> {
        let root = dir.join(uuid).join("rawstaging");
        std::fs::create_dir_all(&root)?;
        Ok(Staging {
            root,
            uploading: Default::default(),
            drained: Notify::new(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Keeps a stored block on local disk (tmp + rename: never partial).
    pub fn stage(&self, key: &str, object: &[u8]) -> ObjectResult<()> {
        let path = self.path(key);
        let io = |e: std::io::Error| {
            ObjectError::Fatal(format!(
                "cannot stage block {key} in {}: {e}",
                self.root.display()
            ))
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = path.with_extension("staging-tmp");
        std::fs::write(&tmp, object).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// A staged block not uploaded yet, if any.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }

    /// Whether block `key` is staged here, or being uploaded from here: a
    /// delete of its object now would be undone by the upload.
    pub fn holds(&self, key: &str) -> bool {
        self.lock_uploading().contains(key) || self.path(key).exists()
    }

    fn lock_uploading(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.uploading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks staged and not yet uploaded (by this mount).
    pub fn pending(&self) -> usize {
        self.lock_uploading().len()
    }

    /// Waits until every block this mount staged is uploaded.
    pub async fn drain(&self) {
        loop {
            let notified = self.drained.notified();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Uploads staged block `key` in the background, at most `uploads` at
    /// a time; the staged file goes once the object is stored.
    pub(crate) fn upload_later(
        self: &Arc<Self>,
        key: String,
        objects: Arc<dyn ObjectStore>,
        uploads: Arc<UploadLimit>,
    ) {
        self.lock_uploading().insert(key.clone());
        let staging = self.clone();
        tokio::spawn(async move {
            let permit = uploads.acquire().await;
            match staging.upload_one(&key, objects.as_ref()).await {
                Ok((bytes, started)) => permit.done(bytes, started),
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "staged block not uploaded; it will be retried at the next mount");
                }
            }
            staging.lock_uploading().remove(&key);
            staging.drained.notify_waiters();
        });
    }

    /// Uploads staged block `key` and removes it; returns its size and
    /// when its upload started.
    async fn upload_one(
        &self,
        key: &str,
        objects: &dyn ObjectStore,
    ) -> ObjectResult<(usize, std::time::Instant)> {
        let path = self.path(key);
        let data = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| ObjectError::Fatal(e.to_string()))?
            .map_err(|e| ObjectError::Fatal(format!("staged block {key} unreadable: {e}")))?;
        let (bytes, started) = (data.len(), std::time::Instant::now());
        objects.put(key, data.into()).await?;
        let _ = std::fs::remove_file(self.path(key));
        Ok((bytes, started))
    }

    /// Uploads every block a previous mount left staged (after a crash);
    /// returns how many.
    pub async fn upload_all(&self, objects: &dyn ObjectStore) -> ObjectResult<usize> {
        let root = self.root.clone();
        let keys = tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            collect(&root, &root, &mut keys);
            keys
        })
        .await
        .map_err(|e| ObjectError::Fatal(e.to_string()))?;
        for key in &keys {
            self.upload_one(key, objects).await?;
        }
        Ok(keys.len())
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "staging-tmp") {
            let _ = std::fs::remove_file(&path);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}
