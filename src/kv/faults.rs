//! Fault injection around any engine, for tests: commits fail at a chosen
//! rate with each kind of error the contract allows, including
//! `MaybeCommitted` after the commit really was applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::{CommitRequest, Engine, EngineTxn, Key, KeyRange, KvError, KvResult, Limits, Value};

/// Probabilities (0.0 to 1.0) of each injected fault, per commit or read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Commit refused with `Conflict`; nothing applied.
    pub conflict: f64,
    /// Commit refused with `Transient`; nothing applied.
    pub transient: f64,
    /// Commit applied, then `MaybeCommitted` returned.
    pub maybe_committed_applied: f64,
    /// Commit not applied, then `MaybeCommitted` returned.
    pub maybe_committed_lost: f64,
    /// A read fails with `Transient`.
    pub read_transient: f64,
    /// Every read and commit first yields to other tasks, so concurrent
    /// transactions interleave as they would over a network.
    pub yield_on_io: bool,
}

impl FaultConfig {
    /// Every fault kind at `rate` each.
    pub fn uniform(rate: f64) -> Self {
        FaultConfig {
            conflict: rate,
            transient: rate,
            maybe_committed_applied: rate,
            maybe_committed_lost: rate,
            read_transient: rate,
            yield_on_io: false,
        }
    }
}

/// Counts of injected faults, for tests to check that faults happened.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub injected: AtomicU64,
}

pub struct FaultyEngine {
    inner: Arc<dyn Engine>,
    config: FaultConfig,
    counts: Arc<FaultCounts>,
}

impl FaultyEngine {
    pub fn new(inner: Arc<dyn Engine>, config: FaultConfig) -> Self {
        FaultyEngine {
            inner,
            config,
            counts: Arc::default(),
        }
    }

    pub fn injected(&self) -> u64 {
        self.counts.injected.load(Ordering::Relaxed)
    }
}

async fn pause(yield_now: bool) {
    if yield_now {
        tokio::task::yield_now().await;
    }
}

fn roll(p: f64) -> bool {
    p > 0.0 && fastrand::f64() < p
}

#[async_trait]
impl Engine for FaultyEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        Ok(Box::new(FaultyTxn {
            inner: self.inner.begin().await?,
            config: self.config,
            counts: self.counts.clone(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        self.inner.sync().await
    }
}

struct FaultyTxn {
    inner: Box<dyn EngineTxn>,
    config: FaultConfig,
    counts: Arc<FaultCounts>,
}

impl FaultyTxn {
    fn inject(&self, p: f64) -> bool {
        let hit = roll(p);
        if hit {
            self.counts.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

#[async_trait]
impl EngineTxn for FaultyTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        pause(self.config.yield_on_io).await;
        if self.inject(self.config.read_transient) {
            return Err(KvError::Transient("injected read fault".into()));
        }
        self.inner.get(key).await
    }

    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Key, Value)>> {
        pause(self.config.yield_on_io).await;
        if self.inject(self.config.read_transient) {
            return Err(KvError::Transient("injected scan fault".into()));
        }
        self.inner.scan(range, limit, reverse).await
    }

    async fn finish(self: Box<Self>) -> KvResult<()> {
        self.inner.finish().await
    }

    async fn commit(self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        pause(self.config.yield_on_io).await;
        let c = self.config;
        if self.inject(c.conflict) {
            return Err(KvError::Conflict("injected conflict".into()));
        }
        if self.inject(c.transient) {
            return Err(KvError::Transient("injected commit fault".into()));
        }
        if self.inject(c.maybe_committed_lost) {
            return Err(KvError::MaybeCommitted("injected: commit lost".into()));
        }
        let applied = self.inject(c.maybe_committed_applied);
        self.inner.commit(request).await?;
        if applied {
            return Err(KvError::MaybeCommitted(
                "injected: commit applied, reply lost".into(),
            ));
        }
        Ok(())
    }
}
