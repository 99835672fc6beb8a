//! Conflict detection for in-process engines, in the manner of
//! FoundationDB's resolver: remember which keys each recent commit wrote, and
//! refuse a commit whose read-conflict ranges overlap a write committed after
//! its snapshot. History is kept exactly as long as a live transaction could
//! still conflict with it.

use std::collections::{BTreeMap, VecDeque};

use super::{Key, KeyRange};

/// Outcome of a conflict check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictCheck {
    Clear,
    /// The first key found written after the snapshot.
    Conflict(Key),
}

/// Commit versions are dense: each successful commit with writes is the
/// previous version plus one.
#[derive(Debug, Default)]
pub struct Resolver {
    version: u64,
    /// The newest commit version that wrote each key still in history.
    last_write: BTreeMap<Key, u64>,
    /// Commits still in history, oldest first.
    log: VecDeque<(u64, Vec<Key>)>,
    /// Read versions of live transactions, with counts.
    live: BTreeMap<u64, usize>,
}

impl Resolver {
    /// Starts a new history at `version` (the last committed version).
    pub fn new(version: u64) -> Self {
        Resolver {
            version,
            ..Default::default()
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Registers a transaction reading at the current version; it must be
    /// released with [`Resolver::release`].
    pub fn begin(&mut self) -> u64 {
        *self.live.entry(self.version).or_default() += 1;
        self.version
    }

    pub fn release(&mut self, read_version: u64) {
        if let Some(count) = self.live.get_mut(&read_version) {
            *count -= 1;
            if *count == 0 {
                self.live.remove(&read_version);
            }
        }
        self.prune();
    }

    /// Whether a transaction that read at `read_version` may commit.
    pub fn check(&self, read_version: u64, read_conflicts: &[KeyRange]) -> ConflictCheck {
        for range in read_conflicts {
            if let Some((key, _)) = self
                .last_write
                .range::<[u8], _>(range.bounds())
                .find(|(_, &written)| written > read_version)
            {
                return ConflictCheck::Conflict(key.clone());
            }
        }
        ConflictCheck::Clear
    }

    /// Records a commit's writes and returns its version.
    pub fn record(&mut self, written: Vec<Key>) -> u64 {
        self.version += 1;
        for key in &written {
            self.last_write.insert(key.clone(), self.version);
        }
        self.log.push_back((self.version, written));
        self.prune();
        self.version
    }

    /// The oldest read version of a live transaction.
    pub fn oldest_reader(&self) -> Option<u64> {
        self.live.keys().next().copied()
    }

    /// Number of commits still remembered.
    #[cfg(test)]
    pub fn history_len(&self) -> usize {
        self.log.len()
    }

    /// Forgets commits no live transaction can conflict with: those at or
    /// below the oldest live read version.
    fn prune(&mut self) {
        let horizon = self.live.keys().next().copied().unwrap_or(self.version);
        while let Some((version, _)) = self.log.front() {
            if *version > horizon {
                break;
            }
            let Some((version, keys)) = self.log.pop_front() else {
                break;
            };
            for key in keys {
                if self.last_write.get(&key) == Some(&version) {
                    self.last_write.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_after_snapshot_conflicts_and_history_is_pruned() {
        let mut r = Resolver::new(0);
        let reader = r.begin();
        r.record(vec![b"k".to_vec()]);
        assert_eq!(
            r.check(reader, &[KeyRange::prefix(b"k")]),
            ConflictCheck::Conflict(b"k".to_vec())
        );
        assert_eq!(
            r.check(reader, &[KeyRange::prefix(b"j")]),
            ConflictCheck::Clear
        );
        let later = r.begin();
        assert_eq!(
            r.check(later, &[KeyRange::prefix(b"k")]),
            ConflictCheck::Clear
        );
        r.release(reader);
        r.release(later);
        assert_eq!(r.history_len(), 0);
    }
}
