//! The transaction every caller uses: buffers writes (read-your-writes),
//! records read-conflict ranges, enforces the engine's declared limits and
//! hands one [`CommitRequest`] to the engine. Shared by all engines, so their
//! semantics cannot drift apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Instant;

use tokio::sync::Mutex;

use super::types::{decode_counter, decode_max, encode_counter, key_after};
use super::{
    CommitRequest, EngineTxn, Key, KeyRange, KvError, KvResult, Limits, Mutation, Page, Value,
};

/// Options of a range scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanOpts {
    pub limit: usize,
    pub reverse: bool,
    /// Snapshot reads are not tracked: a concurrent write to the range does
    /// not make this transaction conflict.
    pub snapshot: bool,
}

impl ScanOpts {
    pub fn limit(limit: usize) -> Self {
        ScanOpts {
            limit,
            reverse: false,
            snapshot: false,
        }
    }

    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    pub fn snapshot(mut self) -> Self {
        self.snapshot = true;
        self
    }
}

/// A transaction handle. Cheap to clone (all clones are the same
/// transaction), so a retried closure can take it by value.
#[derive(Clone)]
pub struct Txn {
    inner: Arc<TxnInner>,
}

struct TxnInner {
    engine_name: &'static str,
    limits: Limits,
    started: Instant,
    after_maybe_committed: bool,
    /// Begun with [`Engine::begin_recent`](super::Engine::begin_recent):
    /// may not write.
    recent: bool,
    reader: Mutex<Option<Box<dyn EngineTxn>>>,
    buffer: SyncMutex<WriteBuffer>,
}

#[derive(Default)]
struct WriteBuffer {
    writes: BTreeMap<Key, Mutation>,
    read_conflicts: Vec<KeyRange>,
    empty_after: Vec<KeyRange>,
}

impl Txn {
    pub(crate) fn new(
        engine_txn: Box<dyn EngineTxn>,
        engine_name: &'static str,
        limits: Limits,
        after_maybe_committed: bool,
        recent: bool,
    ) -> Txn {
        Txn {
            inner: Arc::new(TxnInner {
                engine_name,
                limits,
                started: Instant::now(),
                after_maybe_committed,
                recent,
                reader: Mutex::new(Some(engine_txn)),
                buffer: SyncMutex::new(WriteBuffer::default()),
            }),
        }
    }

    /// True when the previous attempt of this logical transaction ended in
    /// `MaybeCommitted`: its writes may already be in place.
    pub fn after_maybe_committed(&self) -> bool {
        self.inner.after_maybe_committed
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Tracked read: the commit conflicts if another transaction writes `key`
    /// after this transaction's snapshot.
    pub async fn get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        self.read_one(key, true).await
    }

    /// Snapshot read: never causes a conflict.
    pub async fn snapshot_get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        self.read_one(key, false).await
    }

    /// Tracked reads of several keys in one round trip where the engine can.
    pub async fn batch_get(&self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        self.read_many(keys, true).await
    }

    pub async fn snapshot_batch_get(&self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        self.read_many(keys, false).await
    }

    /// Up to `opts.limit` entries of `range`, in key order (or reverse),
    /// including this transaction's own writes. A tracked scan conflicts with
    /// any write into the part of the range it covered, including inserts of
    /// keys it did not see (phantoms).
    pub async fn scan(&self, range: &KeyRange, opts: ScanOpts) -> KvResult<Page> {
        self.check_age()?;
        if opts.limit == 0 || range.is_empty() {
            return Ok(Page {
                entries: Vec::new(),
                next: (opts.limit == 0 && !range.is_empty()).then(|| range.clone()),
            });
        }
        let mut entries: Vec<(Key, Value)> = Vec::new();
        let mut rest = range.clone();
        let mut reader = self.inner.reader.lock().await;
        let reader = reader.as_mut().ok_or_else(finished)?;
        let truncated = loop {
            let need = opts.limit - entries.len();
            let fetched = reader.scan(&rest, need, opts.reverse).await?;
            let full = fetched.len() == need;
            // The part of `rest` in which the engine returned everything.
            let covered = match (full, fetched.last()) {
                (true, Some((last, _))) if opts.reverse => KeyRange {
                    start: last.clone(),
                    end: rest.end.clone(),
                },
                (true, Some((last, _))) => KeyRange {
                    start: rest.start.clone(),
                    end: Some(key_after(last)),
                },
                _ => rest.clone(),
            };
            let merged = self.overlay(fetched, &covered, opts.reverse);
            if merged.len() >= need {
                entries.extend(merged.into_iter().take(need));
                break true;
            }
            entries.extend(merged);
            if !full {
                break false;
            }
            rest = if opts.reverse {
                KeyRange {
                    start: rest.start,
                    end: Some(covered.start),
                }
            } else {
                KeyRange {
                    start: covered.end.unwrap_or_default(),
                    end: rest.end,
                }
            };
            if rest.is_empty() {
                break false;
            }
        };
        let (seen, next) = match (truncated, entries.last()) {
            (true, Some((last, _))) if opts.reverse => (
                KeyRange {
                    start: last.clone(),
                    end: range.end.clone(),
                },
                Some(KeyRange {
                    start: range.start.clone(),
                    end: Some(last.clone()),
                }),
            ),
            (true, Some((last, _))) => (
                KeyRange {
                    start: range.start.clone(),
                    end: Some(key_after(last)),
                },
                Some(KeyRange {
                    start: key_after(last),
                    end: range.end.clone(),
                }),
            ),
            _ => (range.clone(), None),
        };
        if !opts.snapshot {
            self.lock_buffer().read_conflicts.push(seen);
        }
        Ok(Page { entries, next })
    }

    /// Every entry of `range`, fetched in pages of `page_size` inside this
    /// one transaction. For long jobs, page across transactions with
    /// [`Page::next`] instead.
    pub async fn scan_all(
        &self,
        range: &KeyRange,
        page_size: usize,
        snapshot: bool,
    ) -> KvResult<Vec<(Key, Value)>> {
        let mut all = Vec::new();
        let mut next = Some(range.clone());
        while let Some(range) = next {
            let mut opts = ScanOpts::limit(page_size);
            opts.snapshot = snapshot;
            let page = self.scan(&range, opts).await?;
            all.extend(page.entries);
            next = page.next;
        }
        Ok(all)
    }

    pub fn put(&self, key: impl Into<Key>, value: impl Into<Value>) -> KvResult<()> {
        let (key, value) = (key.into(), value.into());
        self.check_key(&key)?;
        if value.len() > self.inner.limits.max_value_bytes {
            return Err(KvError::TooLarge(format!(
                "value of {} bytes for key {} is over the {} limit of {} bytes",
                value.len(),
                show_key(&key),
                self.inner.engine_name,
                self.inner.limits.max_value_bytes
            )));
        }
        self.lock_buffer().writes.insert(key, Mutation::Put(value));
        Ok(())
    }

    pub fn delete(&self, key: impl Into<Key>) -> KvResult<()> {
        let key = key.into();
        self.check_key(&key)?;
        self.lock_buffer().writes.insert(key, Mutation::Delete);
        Ok(())
    }

    /// Atomically adds `delta` to the counter at `key` at commit time,
    /// without reading it (no conflict).
    pub fn add(&self, key: impl Into<Key>, delta: i64) -> KvResult<()> {
        let key = key.into();
        self.check_key(&key)?;
        let mut buffer = self.lock_buffer();
        let merged = match buffer.writes.remove(&key) {
            None => Mutation::Add(delta),
            Some(Mutation::Add(d)) => Mutation::Add(d.wrapping_add(delta)),
            Some(Mutation::Put(v)) => {
                Mutation::Put(encode_counter(decode_counter(&v).wrapping_add(delta)))
            }
            Some(Mutation::Delete) => Mutation::Put(encode_counter(delta)),
            Some(Mutation::Max(m)) => {
                buffer.writes.insert(key.clone(), Mutation::Max(m));
                return Err(KvError::Fatal(format!(
                    "add and max on the same key {} in one transaction",
                    show_key(&key)
                )));
            }
        };
        buffer.writes.insert(key, merged);
        Ok(())
    }

    /// Atomically raises the value at `key` to at least `value` at commit
    /// time (unsigned 8-byte little-endian), without reading it (no
    /// conflict). Used for times that only move forward, such as a
    /// directory's mtime on entry changes.
    pub fn max(&self, key: impl Into<Key>, value: u64) -> KvResult<()> {
        let key = key.into();
        self.check_key(&key)?;
        let mut buffer = self.lock_buffer();
        let merged = match buffer.writes.remove(&key) {
            None => Mutation::Max(value),
            Some(Mutation::Max(v)) => Mutation::Max(v.max(value)),
            Some(Mutation::Put(v)) => {
                Mutation::Put(encode_counter(decode_max(&v).max(value) as i64))
            }
            Some(Mutation::Delete) => Mutation::Put(encode_counter(value as i64)),
            Some(Mutation::Add(d)) => {
                buffer.writes.insert(key.clone(), Mutation::Add(d));
                return Err(KvError::Fatal(format!(
                    "add and max on the same key {} in one transaction",
                    show_key(&key)
                )));
            }
        };
        buffer.writes.insert(key, merged);
        Ok(())
    }

    /// Makes the commit conflict if `key` is written concurrently, as if it
    /// had been read.
    pub fn add_read_conflict_key(&self, key: &[u8]) {
        self.lock_buffer().read_conflicts.push(KeyRange::point(key));
    }

    pub fn add_read_conflict_range(&self, range: KeyRange) {
        if !range.is_empty() {
            self.lock_buffer().read_conflicts.push(range);
        }
    }

    /// Tells the engine that once this transaction commits, `range` holds
    /// no key but those the transaction writes there: the caller knows it
    /// (the entries of an inode it has just allocated). An engine may keep
    /// that knowledge to answer later reads of absent keys there without
    /// asking its server (Redis with change notices does); nothing is
    /// checked or written.
    pub fn promise_empty(&self, range: KeyRange) {
        if !range.is_empty() {
            self.lock_buffer().empty_after.push(range);
        }
    }

    /// Drops every buffered write (the reads stay), so that a commit
    /// changes nothing: for a body that found it must fail after writing.
    pub fn discard_writes(&self) {
        let mut buffer = self.lock_buffer();
        buffer.writes.clear();
        buffer.empty_after.clear();
    }

    /// Commits the buffered writes. A read-only transaction commits without
    /// asking the engine anything: its snapshot was consistent.
    pub async fn commit(&self) -> KvResult<()> {
        let engine_txn = self.inner.reader.lock().await.take().ok_or_else(finished)?;
        let buffer = std::mem::take(&mut *self.lock_buffer());
        if buffer.writes.is_empty() {
            return engine_txn.finish().await;
        }
        if self.inner.recent {
            return Err(KvError::Fatal(format!(
                "{}: a transaction reading a recent snapshot tried to write (a bug: use an ordinary transaction)",
                self.inner.engine_name
            )));
        }
        self.check_age()?;
        let request = CommitRequest {
            mutations: buffer.writes.into_iter().collect(),
            read_conflicts: coalesce(buffer.read_conflicts),
            empty_after: buffer.empty_after,
        };
        self.check_size(&request)?;
        engine_txn.commit(request).await
    }

    async fn read_one(&self, key: &[u8], tracked: bool) -> KvResult<Option<Value>> {
        let values = self
            .read_many(std::slice::from_ref(&key.to_vec()), tracked)
            .await?;
        Ok(values.into_iter().next().flatten())
    }

    async fn read_many(&self, keys: &[Key], tracked: bool) -> KvResult<Vec<Option<Value>>> {
        self.check_age()?;
        // Keys this transaction wrote are answered from the buffer; counters
        // it only added to still need their base value.
        let mut answers: Vec<Option<Option<Value>>> = Vec::with_capacity(keys.len());
        let mut to_fetch: Vec<Key> = Vec::new();
        {
            let buffer = self.lock_buffer();
            for key in keys {
                match buffer.writes.get(key) {
                    Some(Mutation::Put(v)) => answers.push(Some(Some(v.clone()))),
                    Some(Mutation::Delete) => answers.push(Some(None)),
                    Some(Mutation::Add(_)) | Some(Mutation::Max(_)) | None => {
                        answers.push(None);
                        to_fetch.push(key.clone());
                    }
                }
            }
        }
        let fetched = if to_fetch.is_empty() {
            Vec::new()
        } else {
            let mut reader = self.inner.reader.lock().await;
            let reader = reader.as_mut().ok_or_else(finished)?;
            match (tracked, to_fetch.len()) {
                (true, 1) => vec![reader.get_tracked(&to_fetch[0]).await?],
                (true, _) => reader.batch_get_tracked(&to_fetch).await?,
                (false, 1) => vec![reader.get(&to_fetch[0]).await?],
                (false, _) => reader.batch_get(&to_fetch).await?,
            }
        };
        let mut buffer = self.lock_buffer();
        if tracked {
            for key in &to_fetch {
                buffer.read_conflicts.push(KeyRange::point(key));
            }
        }
        let mut fetched = fetched.into_iter();
        Ok(keys
            .iter()
            .zip(answers)
            .map(|(key, answer)| match answer {
                Some(value) => value,
                None => {
                    let base = fetched.next().flatten();
                    match buffer.writes.get(key) {
                        Some(m @ (Mutation::Add(_) | Mutation::Max(_))) => apply(m, base.as_ref()),
                        _ => base,
                    }
                }
            })
            .collect())
    }

    /// Merges engine entries with this transaction's writes inside `covered`,
    /// where the engine returned every key it has.
    fn overlay(
        &self,
        fetched: Vec<(Key, Value)>,
        covered: &KeyRange,
        reverse: bool,
    ) -> Vec<(Key, Value)> {
        let buffer = self.lock_buffer();
        let mut own: Vec<(&Key, &Mutation)> =
            buffer.writes.range::<[u8], _>(covered.bounds()).collect();
        if own.is_empty() {
            return fetched;
        }
        if reverse {
            own.reverse();
        }
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut out = Vec::with_capacity(fetched.len() + own.len());
        let mut own = own.into_iter().peekable();
        for (key, value) in fetched {
            while let Some((k, m)) = own.next_if(|(k, _)| before(k, &key)) {
                if let Some(v) = apply(m, None) {
                    out.push((k.clone(), v));
                }
            }
            match own.next_if(|(k, _)| **k == key) {
                Some((_, m)) => {
                    if let Some(v) = apply(m, Some(&value)) {
                        out.push((key, v));
                    }
                }
                None => out.push((key, value)),
            }
        }
        for (k, m) in own {
            if let Some(v) = apply(m, None) {
                out.push((k.clone(), v));
            }
        }
        out
    }

    fn check_age(&self) -> KvResult<()> {
        let age = self.inner.started.elapsed();
        if age > self.inner.limits.max_txn_duration {
            return Err(KvError::TooOld(format!(
                "transaction open for {:.1} s, over the {} limit of {:.1} s",
                age.as_secs_f64(),
                self.inner.engine_name,
                self.inner.limits.max_txn_duration.as_secs_f64()
            )));
        }
        Ok(())
    }

    fn check_key(&self, key: &[u8]) -> KvResult<()> {
        if key.len() > self.inner.limits.max_key_bytes {
            return Err(KvError::TooLarge(format!(
                "key of {} bytes ({}) is over the {} limit of {} bytes",
                key.len(),
                show_key(key),
                self.inner.engine_name,
                self.inner.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_size(&self, request: &CommitRequest) -> KvResult<()> {
        let limits = &self.inner.limits;
        let ops = request.mutations.len();
        let conflicts = request.read_conflicts.len();
        let bytes: usize = request
            .mutations
            .iter()
            .map(|(k, m)| {
                k.len()
                    + match m {
                        Mutation::Put(v) => v.len(),
                        Mutation::Add(_) | Mutation::Max(_) => 8,
                        Mutation::Delete => 0,
                    }
            })
            .chain(
                request
                    .read_conflicts
                    .iter()
                    .map(|r| r.start.len() + r.end.as_ref().map_or(0, Vec::len)),
            )
            .sum();
        let over = if ops > limits.max_txn_ops {
            Some(format!(
                "{ops} writes, over the limit of {}",
                limits.max_txn_ops
            ))
        } else if conflicts > limits.max_txn_ops {
            Some(format!(
                "{conflicts} read-conflict ranges, over the limit of {}",
                limits.max_txn_ops
            ))
        } else if bytes > limits.max_txn_bytes {
            Some(format!(
                "{bytes} bytes, over the limit of {} bytes",
                limits.max_txn_bytes
            ))
        } else {
            None
        };
        match over {
            Some(what) => Err(KvError::TooLarge(format!(
                "{} transaction of {what}; nothing was committed",
                self.inner.engine_name
            ))),
            None => Ok(()),
        }
    }

    fn lock_buffer(&self) -> std::sync::MutexGuard<'_, WriteBuffer> {
        // A panic while holding this lock cannot leave the buffer half
        // updated in a way later calls could misread, so poisoning is ignored.
        self.inner.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The value a buffered mutation leaves, given the engine's value.
fn apply(mutation: &Mutation, base: Option<&Value>) -> Option<Value> {
    match mutation {
        Mutation::Put(v) => Some(v.clone()),
        Mutation::Delete => None,
        Mutation::Add(delta) => Some(encode_counter(
            base.map_or(0, |b| decode_counter(b)).wrapping_add(*delta),
        )),
        Mutation::Max(value) => Some(encode_counter(
            base.map_or(0, |b| decode_max(b)).max(*value) as i64,
        )),
    }
}

/// Sorts ranges and merges overlapping or touching ones.
fn coalesce(mut ranges: Vec<KeyRange>) -> Vec<KeyRange> {
    ranges.sort();
    let mut out: Vec<KeyRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        if let Some(last) = out.last_mut() {
            let touches = match &last.end {
                None => true,
                Some(end) => range.start <= *end,
            };
            if touches {
                last.end = match (&last.end, range.end) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(if *a >= b { a.clone() } else { b }),
                };
                continue;
            }
        }
        out.push(range);
    }
    out
}

fn finished() -> KvError {
    KvError::Fatal("transaction already committed".into())
}

/// A key for messages: printable ASCII as is, the rest as hex escapes,
/// truncated.
pub(crate) fn show_key(key: &[u8]) -> String {
    let mut s = String::new();
    for &b in key.iter().take(64) {
        if b.is_ascii_graphic() {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if key.len() > 64 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_touching_and_overlapping_ranges() {
        let ranges = vec![
            KeyRange::new(b"c".to_vec(), b"e".to_vec()),
            KeyRange::new(b"a".to_vec(), b"b".to_vec()),
            KeyRange::new(b"b".to_vec(), b"c".to_vec()),
            KeyRange::new(b"x".to_vec(), b"y".to_vec()),
            KeyRange::new(b"d".to_vec(), b"f".to_vec()),
        ];
        assert_eq!(
            coalesce(ranges),
            vec![
                KeyRange::new(b"a".to_vec(), b"f".to_vec()),
                KeyRange::new(b"x".to_vec(), b"y".to_vec())
            ]
        );
        let unbounded = coalesce(vec![
            KeyRange::from(b"m".to_vec()),
            KeyRange::new(b"n".to_vec(), b"z".to_vec()),
        ]);
        assert_eq!(unbounded, vec![KeyRange::from(b"m".to_vec())]);
    }
}
