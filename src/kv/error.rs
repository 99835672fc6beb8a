//! The normalised error of the KV contract. Every engine maps its own failures
//! onto these kinds, so the retry runner and the layers above decide once.

use std::time::Duration;

/// What went wrong in a KV transaction, and therefore what may be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Another transaction changed something this one read. Safe to retry.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// A passing fault (network, busy server, leader change). Safe to retry.
    #[error("transient error: {0}")]
    Transient(String),
    /// The commit may or may not have been applied. Retry only if idempotent.
    #[error("commit outcome unknown: {0}")]
    MaybeCommitted(String),
    /// A key, value or the transaction is over the engine's declared limits.
    /// Nothing was committed.
    #[error("transaction too large: {0}")]
    TooLarge(String),
    /// The transaction ran longer than the engine keeps its snapshot.
    #[error("transaction too old: {0}")]
    TooOld(String),
    /// Not retryable: bad configuration, corruption, an engine refusing us.
    #[error("{0}")]
    Fatal(String),
    /// The retry runner stopped at its deadline or attempt limit.
    #[error("gave up after {attempts} attempts in {:.1} s (deadline {:.1} s); last error: {last}",
        elapsed.as_secs_f64(), deadline.as_secs_f64())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        deadline: Duration,
        last: Box<KvError>,
    },
}

impl KvError {
    /// Whether a fresh attempt of the same transaction may succeed.
    /// `MaybeCommitted` is retryable only for idempotent transactions, which
    /// the retry runner decides.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::Conflict(_) | KvError::Transient(_) | KvError::TooOld(_)
        )
    }
}

pub type KvResult<T> = Result<T, KvError>;
