//! `file`: objects as files under a local directory, `ROOT/KEY`. A put
//! writes a temporary file and renames it into place, so readers never see
//! a partial object. Files are handed to the kernel, not fsynced: like the
//! embedded metadata engine, a put survives a crash of the process; power
//! loss is covered by `fsync(2)` on the file system, which syncs both.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::{ObjectError, ObjectInfo, ObjectResult, ObjectStore};

/// Marks temporary files of unfinished puts; never listed.
const TMP_MARK: &str = ".jfs-tmp-";

pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store in directory `root`, created if missing.
    pub fn open(root: &Path) -> ObjectResult<Self> {
        std::fs::create_dir_all(root).map_err(|e| {
            ObjectError::Fatal(format!(
                "cannot create storage directory {}: {e}",
                root.display()
            ))
        })?;
        Ok(FileStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> ObjectResult<PathBuf> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe || key.contains(TMP_MARK) {
            return Err(ObjectError::Fatal(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(rel))
    }

    /// The whole object, read in parts (each part handed to `feed`).
    async fn read(&self, key: &str, feed: Option<super::Feed>) -> ObjectResult<bytes::Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let failed = |what: &str, e: std::io::Error| match io_error(what, &path, e) {
                ObjectError::NotFound(_) => ObjectError::NotFound(key.clone()),
                other => other,
            };
            let file = std::fs::File::open(&path).map_err(|e| failed("open", e))?;
            let len = file.metadata().map_err(|e| failed("stat", e))?.len() as usize;
            crate::data::read_file(&file, len, feed.as_deref()).map_err(|e| failed("read", e))
        })
        .await
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ObjectError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ObjectError::NotFound(path.display().to_string()),
        std::io::ErrorKind::PermissionDenied => {
            ObjectError::Fatal(format!("{what} {}: permission denied", path.display()))
        }
        _ => ObjectError::Transient(format!("{what} {}: {e}", path.display())),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ObjectResult<T> + Send + 'static,
) -> ObjectResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ObjectError::Fatal(format!("storage worker failed: {e}")))?
}

#[async_trait]
impl ObjectStore for FileStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        let path = self.path(key)?;
        blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|e| io_error("create directory", &dir, e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!("{name}{TMP_MARK}{:016x}", fastrand::u64(..)));
            let mut file = std::fs::File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
            file.write_all(&data)
                .map_err(|e| io_error("write", &tmp, e))?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_error("rename", &path, e)
            })
        })
        .await
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        self.read(key, None).await
    }

    async fn get_fed(&self, key: &str, feed: super::Feed) -> ObjectResult<bytes::Bytes> {
        self.read(key, Some(feed)).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let mut file =
                std::fs::File::open(&path).map_err(|e| match io_error("open", &path, e) {
                    ObjectError::NotFound(_) => ObjectError::NotFound(key),
                    other => other,
                })?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| io_error("seek", &path, e))?;
            let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
            file.take(len)
                .read_to_end(&mut out)
                .map_err(|e| io_error("read", &path, e))?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", &path, e)),
        })
        .await
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key,
                size: m.len(),
                modified_secs: modified_secs(&m),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("stat", &path, e)),
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let after = after.map(str::to_string);
        blocking(move || {
            let mut found = Vec::new();
            walk(&root, &root, &prefix, &mut found)?;
            found.sort_by(|a: &ObjectInfo, b| a.key.cmp(&b.key));
            Ok(found
                .into_iter()
                .filter(|o| after.as_deref().is_none_or(|a| o.key.as_str() > a))
                .take(limit)
                .collect())
        })
        .await
    }
}

/// Collects the objects under `dir` whose keys start with `prefix`,
/// descending only into directories that can hold such keys.
fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> ObjectResult<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key = rel.to_string_lossy().into_owned();
        let meta = entry.metadata().map_err(|e| io_error("stat", &path, e))?;
        if meta.is_dir() {
            let as_dir = format!("{key}/");
            if prefix.starts_with(&as_dir) || as_dir.starts_with(prefix) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) && !key.contains(TMP_MARK) {
            out.push(ObjectInfo {
                key,
                size: meta.len(),
                modified_secs: modified_secs(&meta),
            });
        }
    }
    Ok(())
}

fn modified_secs(m: &std::fs::Metadata) -> Option<i64> {
    let t = m.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}
