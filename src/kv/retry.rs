//! The one retry runner: every logical transaction runs through it,
//! whatever the engine. Exponential backoff with full jitter, bounded by a
//! deadline; gives up with an error that says how long it tried and why.

use std::future::Future;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Instrument;

/// Transaction counts of this process (`jfs stats` shows a mount's).
#[derive(Debug, Default)]
pub struct TxnStats {
    /// Transactions run (each counted once, however many attempts).
    pub transactions: AtomicU64,
    /// Attempts after the first, for any retryable error.
    pub retries: AtomicU64,
    /// Attempts that failed because a key read changed.
    pub conflicts: AtomicU64,
    /// Commits an engine repeated itself because a counter changed under
    /// it (etcd), without a conflict reaching the transaction.
    pub counter_rereads: AtomicU64,
}

pub static STATS: TxnStats = TxnStats {
    transactions: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    conflicts: AtomicU64::new(0),
    counter_rereads: AtomicU64::new(0),
};

impl TxnStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "transactions": self.transactions.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "conflicts": self.conflicts.load(Ordering::Relaxed),
            "counter_rereads": self.counter_rereads.load(Ordering::Relaxed),
        })
    }
}

use super::{Db, KvError, KvResult, Txn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total time a logical transaction may take, retries included.
    pub deadline: Duration,
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 30 s: longer than an etcd leader election or a Redis failover, short
    /// enough that a stuck FUSE request comes back with an error.
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(30),
            max_attempts: 10_000,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    /// Random wait before attempt `attempt + 1` ("full jitter").
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Runs `body` in a fresh transaction and commits, retrying on retryable
/// errors. `MaybeCommitted` is retried only when `idempotent`; otherwise it
/// is returned to the caller, who alone knows whether applying twice is safe.
/// A `recent` transaction's first attempt may read a recent snapshot; its
/// retries read the newest, so a change notice still on its way cannot
/// make them conflict again.
pub(crate) async fn run<T, F, Fut>(
    db: &Db,
    name: &str,
    idempotent: bool,
    recent: bool,
    mut body: F,
) -> KvResult<T>
where
    F: FnMut(Txn) -> Fut,
    Fut: Future<Output = KvResult<T>>,
{
    let policy = db.retry_policy();
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut after_maybe_committed = false;
    STATS.transactions.fetch_add(1, Ordering::Relaxed);
    loop {
        attempts += 1;
        if attempts > 1 {
            STATS.retries.fetch_add(1, Ordering::Relaxed);
        }
        let span = tracing::debug_span!("txn", name, attempt = attempts);
        tracing::trace!(txn = name, attempt = attempts, "transaction");
        let result = async {
            let txn = db
                .begin_attempt(after_maybe_committed, recent && attempts == 1)
                .await?;
            let value = body(txn.clone()).await?;
            txn.commit().await?;
            Ok(value)
        }
        .instrument(span)
        .await;
        let error = match result {
            Ok(value) => return Ok(value),
            Err(KvError::MaybeCommitted(msg)) if idempotent => {
                after_maybe_committed = true;
                KvError::MaybeCommitted(msg)
            }
            Err(e) if e.is_retryable() => e,
            Err(e) => return Err(e),
        };
        if matches!(error, KvError::Conflict(_)) {
            STATS.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        let wait = policy.backoff(attempts);
        if attempts >= policy.max_attempts || started.elapsed() + wait >= policy.deadline {
            tracing::warn!(txn = name, attempts, error = %error, "giving up on transaction");
            return Err(KvError::GaveUp {
                attempts,
                elapsed: started.elapsed(),
                deadline: policy.deadline,
                last: Box::new(error),
            });
        }
        tracing::debug!(txn = name, attempts, error = %error, wait_us = wait.as_micros() as u64, "retrying transaction");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(policy.backoff(attempt) <= policy.max_backoff);
        }
        assert!(policy.backoff(1) <= policy.initial_backoff);
    }
}
