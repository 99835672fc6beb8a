//! Types of the KV contract and the two traits an engine implements.

use std::time::Duration;

use async_trait::async_trait;

use super::KvResult;

pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// A half-open key range `[start, end)`; `end: None` means "to the end of the
/// key space". Keys compare as unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRange {
    pub start: Key,
    pub end: Option<Key>,
}

impl KeyRange {
    pub fn new(start: impl Into<Key>, end: impl Into<Key>) -> Self {
        KeyRange {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    /// The range holding exactly `key`.
    pub fn point(key: &[u8]) -> Self {
        KeyRange {
            start: key.to_vec(),
            end: Some(key_after(key)),
        }
    }

    /// All keys from `start` to the end of the key space.
    pub fn from(start: impl Into<Key>) -> Self {
        KeyRange {
            start: start.into(),
            end: None,
        }
    }

    /// This range from `at` on (inclusive), where a pass over it stands;
    /// all of it without one. Passes that delete what they go over go on
    /// from where they stand, not from the start: in an LSM engine each
    /// deleted key stays (a tombstone) until compaction, and a scan from
    /// the start walks them all again.
    pub fn resumed(self, at: Option<&Key>) -> Self {
        match at {
            Some(at) => KeyRange {
                start: at.clone(),
                end: self.end,
            },
            None => self,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|end| end <= self.start.as_slice())
    }

    /// As `std::ops::Bound`s, for `BTreeMap::range` and friends.
    pub fn bounds(&self) -> (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) {
        use std::ops::Bound;
        let end = match &self.end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        (Bound::Included(self.start.as_slice()), end)
    }
}

/// The smallest key greater than `key`.
pub fn key_after(key: &[u8]) -> Key {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The first key after every key starting with `prefix`; `None` if there is
/// none (the prefix is empty or all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Key> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One page of a range scan. `next` is the rest of the range when the page
/// stopped at its limit: scanning it continues exactly where this page ended,
/// in the same or a later transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<(Key, Value)>,
    pub next: Option<KeyRange>,
}

/// A buffered write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put(Value),
    Delete,
    /// Add a signed delta to a counter (8-byte little-endian i64, missing = 0).
    /// Does not read the key, so it never conflicts.
    Add(i64),
    /// Raise a value to at least this one (8-byte little-endian unsigned
    /// compare, missing = 0), as FoundationDB's MAX. Never conflicts.
    Max(u64),
}

/// Counters are 8-byte little-endian two's complement, as FoundationDB's
/// atomic ADD expects.
pub fn encode_counter(value: i64) -> Value {
    value.to_le_bytes().to_vec()
}

/// Decodes the operand of [`Mutation::Max`] (same layout as a counter,
/// compared unsigned).
pub fn decode_max(bytes: &[u8]) -> u64 {
    decode_counter(bytes) as u64
}

/// A volume's key space inside a store shared by several volumes: its
/// keys are stored under `PREFIX/` (an empty prefix adds nothing).
#[derive(Debug, Clone)]
pub struct KeySpace(Vec<u8>);

impl KeySpace {
    pub fn new(prefix: &str) -> KeySpace {
        let mut bytes = prefix.trim_matches('/').as_bytes().to_vec();
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        KeySpace(bytes)
    }

    pub fn prefix(&self) -> &[u8] {
        &self.0
    }

    /// The stored key of `key`.
    pub fn key(&self, key: &[u8]) -> Key {
        let mut k = Vec::with_capacity(self.0.len() + key.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(key);
        k
    }

    /// `stored` without the prefix.
    pub fn strip<'a>(&self, stored: &'a [u8]) -> &'a [u8] {
        &stored[self.0.len().min(stored.len())..]
    }

    /// The stored end of `range` (its own end, or the end of the key
    /// space); None when the key space runs to the end of the store.
    pub fn end(&self, range: &KeyRange) -> Option<Key> {
        match &range.end {
            Some(end) => Some(self.key(end)),
            None => prefix_end(&self.0),
        }
    }
}

/// The new value of a key after `mutation`, given its current value (for
/// engines that apply add and max themselves).
pub fn counter_value(mutation: &Mutation, current: &[u8]) -> Value {
    match mutation {
        Mutation::Add(delta) => encode_counter(decode_counter(current).wrapping_add(*delta)),
        Mutation::Max(at_least) => encode_counter(decode_max(current).max(*at_least) as i64),
        Mutation::Put(value) => value.clone(),
        Mutation::Delete => Vec::new(),
    }
}

/// Decodes a counter; shorter values are zero-extended (as FoundationDB does).
pub fn decode_counter(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    i64::from_le_bytes(buf)
}

/// What a transaction asks an engine to commit: its writes, applied
/// atomically, only if no key in `read_conflicts` was written by another
/// transaction since this one's snapshot.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// Sorted by key, one mutation per key.
    pub mutations: Vec<(Key, Mutation)>,
    /// Sorted, non-overlapping.
    pub read_conflicts: Vec<KeyRange>,
    /// Ranges the caller promises hold no key once the commit is applied
    /// but those it writes there (see [`crate::kv::Txn::promise_empty`]):
    /// knowledge an engine may keep, never something it must check.
    pub empty_after: Vec<KeyRange>,
}

/// Limits an engine declares. The transaction layer enforces them before
/// anything is sent, so a transaction over a limit fails whole with
/// `TooLarge` and is never split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Mutations in one commit; read-conflict entries count separately
    /// against the same number (etcd limits compares and ops alike).
    pub max_txn_ops: usize,
    /// Keys and values written plus conflict keys, in bytes.
    pub max_txn_bytes: usize,
    pub max_txn_duration: Duration,
}

impl Limits {
    /// No practical limit (in-process engines).
    pub const UNLIMITED: Limits = Limits {
        max_key_bytes: usize::MAX,
        max_value_bytes: usize::MAX,
        max_txn_ops: usize::MAX,
        max_txn_bytes: usize::MAX,
        max_txn_duration: Duration::from_secs(3600),
    };

    /// The tightest limits of all engines we support, so tests on one machine
    /// catch what would fail on a cluster: FoundationDB's 10,000-byte keys,
    /// 100,000-byte values, 10 MB and 5 s per transaction; etcd's default
    /// `--max-txn-ops` of 128 and its 1.5 MiB request limit.
    pub const STRICT: Limits = Limits {
        max_key_bytes: 10_000,
        max_value_bytes: 100_000,
        max_txn_ops: 128,
        max_txn_bytes: 1536 * 1024,
        max_txn_duration: Duration::from_secs(5),
    };

    /// The tighter of two sets of limits, field by field.
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            max_key_bytes: self.max_key_bytes.min(other.max_key_bytes),
            max_value_bytes: self.max_value_bytes.min(other.max_value_bytes),
            max_txn_ops: self.max_txn_ops.min(other.max_txn_ops),
            max_txn_bytes: self.max_txn_bytes.min(other.max_txn_bytes),
            max_txn_duration: self.max_txn_duration.min(other.max_txn_duration),
        }
    }
}

/// A metadata engine: begins transactions at a snapshot.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Short engine name for logs and errors (`mem`, `fjall`, `etcd`, ...).
    fn name(&self) -> &'static str;
    fn limits(&self) -> Limits;
    /// Starts a transaction reading at a consistent snapshot.
    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>>;

    /// Starts a read-only transaction whose snapshot may be a recent past
    /// one instead of the newest: still one consistent state of the
    /// store, but possibly missing commits whose change notices have not
    /// reached this process yet. An engine that is told of changes (Redis)
    /// answers such reads from what it knows without a round trip; the
    /// others begin an ordinary transaction.
    async fn begin_recent(&self) -> KvResult<Box<dyn EngineTxn>> {
        self.begin().await
    }
    /// Makes every acknowledged commit durable against power loss.
    async fn sync(&self) -> KvResult<()>;

    /// What a user should know about the server before trusting it with a
    /// volume (latency, risky settings), one line each; shown by `jfs
    /// format` and `jfs mount`.
    async fn notes(&self) -> KvResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// One engine transaction: snapshot reads, then at most one commit.
/// Reads see only what was committed before the snapshot; conflict tracking
/// is declared wholesale at commit time.
#[async_trait]
pub trait EngineTxn: Send {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>>;

    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Reads the caller tracks (makes read conflicts). An engine may answer
    /// them from what it already knows if its commit then verifies that
    /// each answer is still current (and [`EngineTxn::finish`] does, for a
    /// transaction that writes nothing).
    async fn get_tracked(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        self.get(key).await
    }

    async fn batch_get_tracked(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        self.batch_get(keys).await
    }

    /// Ends a transaction that writes nothing. Conflict if an answer given
    /// from what the engine knew was not current.
    async fn finish(self: Box<Self>) -> KvResult<()> {
        Ok(())
    }

    /// Up to `limit` entries of `range` in key order (descending if
    /// `reverse`).
    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Key, Value)>>;

    /// Applies `request.mutations` atomically if nothing in
    /// `request.read_conflicts` changed since the snapshot; otherwise
    /// `Conflict` and nothing is applied.
    async fn commit(self: Box<Self>, request: CommitRequest) -> KvResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_range_keeps_its_end() {
        let at = b"ab".to_vec();
        let resumed = KeyRange::prefix(b"a").resumed(Some(&at));
        assert_eq!((resumed.start, resumed.end), (at, Some(b"b".to_vec())));
        assert_eq!(KeyRange::prefix(b"a").resumed(None), KeyRange::prefix(b"a"));
    }

    #[test]
    fn key_space_prefixes_strips_and_bounds() {
        let space = KeySpace::new("/vol/");
        assert_eq!(space.key(b"k"), b"vol/k".to_vec());
        assert_eq!(space.strip(b"vol/k"), b"k");
        assert_eq!(space.end(&KeyRange::prefix(b"a")), Some(b"vol/b".to_vec()));
        assert_eq!(
            space.end(&KeyRange {
                start: b"a".to_vec(),
                end: None
            }),
            Some(b"vol0".to_vec())
        );
        let all = KeySpace::new("");
        assert_eq!(all.key(b"k"), b"k".to_vec());
        assert_eq!(
            all.end(&KeyRange {
                start: b"a".to_vec(),
                end: None
            }),
            None
        );
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[0x01, 0xFF]), Some(vec![0x02]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn counters_round_trip_and_zero_extend() {
        assert_eq!(decode_counter(&encode_counter(-5)), -5);
        assert_eq!(decode_counter(&[1]), 1);
        assert_eq!(decode_counter(&[]), 0);
    }

    #[test]
    fn range_contains_respects_half_open_bounds() {
        let r = KeyRange::new(b"b".to_vec(), b"d".to_vec());
        assert!(r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d") && !r.contains(b"a"));
        assert!(KeyRange::from(vec![0xFF]).contains(&[0xFF, 0xFF]));
    }
}
