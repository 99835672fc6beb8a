//! Object storage: the small trait every backend implements (put, get
//! whole or ranged, delete, head, paged list), and what is shared above it
//! once: retries with backoff on transient errors.
//!
//! Backends: `file` (a local directory), `s3` (S3 and S3-compatible
//! servers), `mem` (tests), and a fault-injecting
//! wrapper for tests. Keys are `/`-separated UTF-8 strings.

mod check;
mod faults;
mod file;
mod mem;
mod prefixed;
pub mod s3;

use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use check::{check_storage, UUID_OBJECT};
pub use faults::FaultyStore;
pub use file::FileStore;
pub use mem::MemStore;
pub use prefixed::Prefixed;
pub use s3::S3Store;

/// An object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Last modified, Unix seconds, where the backend says.
    pub modified_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("object {0} not found")]
    NotFound(String),
    /// Worth retrying: a timeout, a throttle, a server restarting.
    #[error("transient object storage error: {0}")]
    Transient(String),
    /// Credentials refused; retrying will not help.
    #[error("object storage refused the credentials: {0}")]
    Auth(String),
    #[error("{0}")]
    Fatal(String),
}

pub type ObjectResult<T> = Result<T, ObjectError>;

/// Sees the parts of an object as a get reads them: `(offset, part)`, in
/// order from offset 0 (again from 0 if the read is retried).
pub type Feed = std::sync::Arc<FeedFn>;
pub type FeedFn = dyn Fn(usize, &[u8]) + Send + Sync;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Where the objects are, for messages (never with credentials).
    fn describe(&self) -> String;
    /// Stores `data` under `key`, replacing any object there; atomic (a
    /// reader sees the old or the new object, never part of one).
    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()>;
    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes>;
    /// As [`ObjectStore::get`], handing each part of the object to `feed`
    /// as soon as it is read, so a check of the bytes runs while they are
    /// in the CPU's caches. Backends that read in parts override it.
    async fn get_fed(&self, key: &str, feed: Feed) -> ObjectResult<bytes::Bytes> {
        let object = self.get(key).await?;
        feed(0, &object);
        Ok(object)
    }
    /// `len` bytes from `offset`; shorter at the end of the object.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>>;
    /// Deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> ObjectResult<()>;
    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>>;
    /// Up to `limit` objects whose keys start with `prefix`, after `after`,
    /// in key order.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>>;
}

/// How [`Retrying`] retries transient errors.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRetry {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ObjectRetry {
    /// 10 attempts over 3.3-6.5 s: rides out a server restart.
    fn default() -> Self {
        ObjectRetry {
            attempts: 10,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Any store, with transient errors retried (full-jitter backoff). Every
/// operation of the trait is idempotent, so all of them may be retried.
pub struct Retrying<S> {
    inner: S,
    policy: ObjectRetry,
}

impl<S: ObjectStore> Retrying<S> {
    pub fn new(inner: S, policy: ObjectRetry) -> Self {
        Retrying { inner, policy }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn retry<T, F, Fut>(&self, what: &str, key: &str, op: F) -> ObjectResult<T>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = ObjectResult<T>> + Send,
        T: Send,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Err(ObjectError::Transient(msg)) if attempt < self.policy.attempts => {
                    let ceiling = self
                        .policy
                        .first_backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(self.policy.max_backoff);
                    tracing::debug!(what, key, attempt, error = %msg, "retrying object request");
                    // Half the ceiling, plus up to the other half at random:
                    // spread out, yet the attempts always span at least half
                    // the policy's window (with a wait anywhere in 0..ceiling
                    // ten attempts sometimes ended within 1.5 s and did not
                    // ride out a short outage).
                    let half = ceiling / 2;
                    tokio::time::sleep(half + half.mul_f64(fastrand::f64())).await;
                }
                Err(ObjectError::Transient(msg)) => {
                    return Err(ObjectError::Transient(format!(
                        "{what} {key} on {} failed {attempt} times, last: {msg}",
                        self.inner.describe()
                    )))
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Retrying<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        let (started, bytes) = (Instant::now(), data.len());
        let result = self
            .retry("put", key, || self.inner.put(key, data.clone()))
            .await;
        crate::metrics::object_request("put", started.elapsed(), result.is_ok());
        if result.is_ok() {
            crate::metrics::object_bytes(false, bytes);
        }
        result
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        let started = Instant::now();
        let result = self.retry("get", key, || self.inner.get(key)).await;
        counted_get(started, &result);
        result
    }

    async fn get_fed(&self, key: &str, feed: Feed) -> ObjectResult<bytes::Bytes> {
        let started = Instant::now();
        let result = self
            .retry("get", key, || self.inner.get_fed(key, feed.clone()))
            .await;
        counted_get(started, &result);
        result
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        let started = Instant::now();
        let result = self
            .retry("get", key, || self.inner.get_range(key, offset, len))
            .await;
        counted_get(started, &result);
        result
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        let started = Instant::now();
        let result = self.retry("delete", key, || self.inner.delete(key)).await;
        crate::metrics::object_request("delete", started.elapsed(), result.is_ok());
        result
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        let started = Instant::now();
        let result = self.retry("head", key, || self.inner.head(key)).await;
        crate::metrics::object_request("head", started.elapsed(), result.is_ok());
        result
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        let started = Instant::now();
        let result = self
            .retry("list", prefix, || self.inner.list(prefix, after, limit))
            .await;
        crate::metrics::object_request("list", started.elapsed(), result.is_ok());
        result
    }
}

/// Counts a GET (whole or ranged) and the bytes it brought; a missing
/// object is an answer, not an error.
fn counted_get<T: AsRef<[u8]>>(started: Instant, result: &ObjectResult<T>) {
    let ok = matches!(result, Ok(_) | Err(ObjectError::NotFound(_)));
    crate::metrics::object_request("get", started.elapsed(), ok);
    if let Ok(data) = result {
        crate::metrics::object_bytes(true, data.as_ref().len());
    }
}
