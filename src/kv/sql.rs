//! What the PostgreSQL and MySQL engines share: one table of keys and
//! values, and a commit transaction retried in place when the server
//! reports a serialization failure, deadlock or lock timeout.

use std::time::Duration;

use super::{Key, Limits};

/// Index entries must stay small (PostgreSQL B-tree entries under about
/// 2,700 bytes, InnoDB keys at most 3,072), with room for the prefix.
pub(super) const LIMITS: Limits = Limits {
    max_key_bytes: 2048,
    max_value_bytes: 1 << 20,
    max_txn_ops: 10_000,
    max_txn_bytes: 8 << 20,
    max_txn_duration: Duration::from_secs(60),
};

/// Attempts of a commit transaction the server refused to serialize.
pub(super) const COMMIT_ATTEMPTS: usize = 50;

/// Bigger than any stored key: the end of a range that runs to the end.
pub(super) fn beyond_all_keys() -> Key {
    vec![0xFF; LIMITS.max_key_bytes + 64]
}

/// Waits before attempt `attempt + 1`: growing with the attempts (capped),
/// jittered so that transactions that collided do not collide again.
pub(super) async fn pause_before_retry(attempt: usize, step_micros: u64) {
    let pause = step_micros * attempt.min(20) as u64;
    tokio::time::sleep(Duration::from_micros(pause + fastrand::u64(..=pause))).await;
}
