//! Fault injection around any object store, for tests: requests fail with
//! `Transient` at a chosen rate, before (put, delete) or instead of doing
//! anything.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{ObjectError, ObjectInfo, ObjectResult, ObjectStore};

pub struct FaultyStore<S> {
    inner: S,
    rate: f64,
    injected: AtomicU64,
}

impl<S: ObjectStore> FaultyStore<S> {
    pub fn new(inner: S, rate: f64) -> Self {
        FaultyStore {
            inner,
            rate,
            injected: AtomicU64::new(0),
        }
    }

    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn fault(&self, what: &str) -> ObjectResult<()> {
        if self.rate > 0.0 && fastrand::f64() < self.rate {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(ObjectError::Transient(format!("injected {what} fault")));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        self.fault("put")?;
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        self.fault("get")?;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        self.fault("get")?;
        self.inner.get_range(key, offset, len).await
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        self.fault("delete")?;
        self.inner.delete(key).await
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        self.fault("head")?;
        self.inner.head(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        self.fault("list")?;
        self.inner.list(prefix, after, limit).await
    }
}
