//! A volume's share of a bucket: every key under `NAME/`, as JuiceFS lays
//! out its objects, so one bucket can hold several volumes.

use std::sync::Arc;

use super::{ObjectInfo, ObjectResult, ObjectStore};

pub struct Prefixed {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Prefixed {
    /// Keys of `inner` under `prefix` (a trailing `/` is added if missing).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str) -> Prefixed {
        let mut prefix = prefix.trim_end_matches('/').to_string();
        prefix.push('/');
        Prefixed { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Prefixed {
    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.inner.describe(),
            self.prefix.trim_end_matches('/')
        )
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        self.inner.put(&self.key(key), data).await
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        self.inner.get(&self.key(key)).await
    }

    async fn get_fed(&self, key: &str, feed: super::Feed) -> ObjectResult<bytes::Bytes> {
        self.inner.get_fed(&self.key(key), feed).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        self.inner.get_range(&self.key(key), offset, len).await
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        self.inner.delete(&self.key(key)).await
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        self.inner.head(&self.key(key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        let after = after.map(|a| self.key(a));
        let found = self
            .inner
            .list(&self.key(prefix), after.as_deref(), limit)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|o| {
                let key = o.key.strip_prefix(&self.prefix)?.to_string();
                Some(ObjectInfo { key, ..o })
            })
            .collect())
    }
}
