//! [`Db`]: an opened metadata engine with its limits and retry policy; the
//! handle the metadata layer holds.

use std::future::Future;
use std::sync::Arc;

use super::url::MetaUrl;
use super::{retry, Engine, FaultConfig, FaultyEngine, KvResult, Limits, RetryPolicy, Txn};

/// How to open a [`Db`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DbOptions {
    /// Enforce the tightest limits of every engine (see [`Limits::STRICT`]),
    /// so that a test here fails the way a cluster would.
    pub strict_limits: bool,
    pub retry: RetryPolicy,
    /// Inject faults at commit and read (tests only).
    pub faults: Option<FaultConfig>,
}

#[derive(Clone)]
pub struct Db {
    engine: Arc<dyn Engine>,
    limits: Limits,
    retry: RetryPolicy,
}

impl Db {
    pub fn new(engine: Arc<dyn Engine>, options: DbOptions) -> Db {
        let engine: Arc<dyn Engine> = match options.faults {
            Some(faults) => Arc::new(FaultyEngine::new(engine, faults)),
            None => engine,
        };
        let limits = if options.strict_limits {
            engine.limits().min(Limits::STRICT)
        } else {
            engine.limits()
        };
        Db {
            engine,
            limits,
            retry: options.retry,
        }
    }

    /// Opens the engine a metadata URL names.
    pub fn open(url: &MetaUrl, options: DbOptions) -> KvResult<Db> {
        Ok(Db::new(super::url::open_engine(url)?, options))
    }

    /// The engine's notes for the user (see [`Engine::notes`]).
    pub async fn notes(&self) -> KvResult<Vec<String>> {
        self.engine.notes().await
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The limits in force (the engine's, or the strict ones).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// A single transaction attempt, without retries.
    pub async fn begin(&self) -> KvResult<Txn> {
        self.begin_attempt(false, false).await
    }

    pub(crate) async fn begin_attempt(
        &self,
        after_maybe_committed: bool,
        recent: bool,
    ) -> KvResult<Txn> {
        let engine_txn = if recent {
            self.engine.begin_recent().await?
        } else {
            self.engine.begin().await?
        };
        Ok(Txn::new(
            engine_txn,
            self.engine.name(),
            self.limits,
            after_maybe_committed,
            recent,
        ))
    }

    /// Runs `body` as one transaction, retried on conflicts and transient
    /// errors until the policy's deadline. `MaybeCommitted` is returned, not
    /// retried: use [`Db::run_idempotent`] when applying twice is harmless,
    /// or check [`Txn::after_maybe_committed`].
    pub async fn run<T, F, Fut>(&self, name: &str, body: F) -> KvResult<T>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = KvResult<T>>,
    {
        retry::run(self, name, false, false, body).await
    }

    /// As [`Db::run`], and also retried after `MaybeCommitted`.
    pub async fn run_idempotent<T, F, Fut>(&self, name: &str, body: F) -> KvResult<T>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = KvResult<T>>,
    {
        retry::run(self, name, true, false, body).await
    }

    /// Runs `body` as a read-only transaction that may read a recent past
    /// snapshot (see [`Engine::begin_recent`](super::Engine::begin_recent)):
    /// for answers that may be that old anyway, such as those the kernel
    /// caches. A retry reads the newest snapshot; a write is an error.
    pub async fn run_recent<T, F, Fut>(&self, name: &str, body: F) -> KvResult<T>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = KvResult<T>>,
    {
        retry::run(self, name, true, true, body).await
    }

    /// Up to `limit` entries of `range` read in a transaction of their own
    /// (a snapshot read): the step of a long job that pages through the
    /// store with [`Page::next`](super::Page) as its cursor.
    pub async fn scan_page(&self, range: &super::KeyRange, limit: usize) -> KvResult<super::Page> {
        self.run("scan_page", |tx| async move {
            tx.scan(range, super::txn::ScanOpts::limit(limit).snapshot())
                .await
        })
        .await
    }

    /// Every entry of `range`, read a page (`page_size` keys) per
    /// transaction: a small family read by a long job, which must not
    /// hold one transaction open (or past the engine's limits) for all of
    /// it. Not a snapshot across pages.
    pub async fn scan_pages(
        &self,
        range: &super::KeyRange,
        page_size: usize,
    ) -> KvResult<Vec<(super::Key, super::Value)>> {
        let mut all = Vec::new();
        let mut next = Some(range.clone());
        while let Some(range) = next {
            let page = self.scan_page(&range, page_size).await?;
            next = page.next;
            all.extend(page.entries);
        }
        Ok(all)
    }

    /// Makes every acknowledged commit durable against power loss.
    pub async fn sync(&self) -> KvResult<()> {
        self.engine.sync().await
    }
}
