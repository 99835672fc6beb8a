//! `mem`: objects in process memory, for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ObjectError, ObjectInfo, ObjectResult, ObjectStore};

#[derive(Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    fn describe(&self) -> String {
        "mem://".into()
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        self.objects().insert(key.to_string(), data.into());
        Ok(())
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        self.objects()
            .get(key)
            .map(|v| bytes::Bytes::copy_from_slice(v))
            .ok_or_else(|| ObjectError::NotFound(key.into()))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        let objects = self.objects();
        let data = objects
            .get(key)
            .ok_or_else(|| ObjectError::NotFound(key.into()))?;
        let start = (offset as usize).min(data.len());
        let end = (offset.saturating_add(len) as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        self.objects().remove(key);
        Ok(())
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        Ok(self.objects().get(key).map(|d| ObjectInfo {
            key: key.into(),
            size: d.len() as u64,
            modified_secs: None,
        }))
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        let objects = self.objects();
        Ok(objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .take(limit)
            .map(|(k, d)| ObjectInfo {
                key: k.clone(),
                size: d.len() as u64,
                modified_secs: None,
            })
            .collect())
    }
}
