//! The TiKV engine (cargo feature `tikv`): optimistic transactions of
//! tikv-client, made serializable for the contract.
//!
//! TiKV's optimistic transactions detect write-write conflicts only. So
//! that what a transaction read also conflicts, its commit locks
//! (`lock_keys`) every key of its read-conflict set: a point read locks
//! its key; a scanned range locks every key the scan saw and the range's
//! first key. A concurrent write to any of them after our start makes one
//! of the two fail with a write conflict (retried by the runner): write
//! skew and lost updates cannot happen. A key inserted into a scanned range
//! by a transaction that neither reads nor writes a key we locked is not
//! detected (TiKV has no range locks); the schema does not rely on it:
//! every change of a directory's entries also writes the directory's time
//! keys, which an emptiness check deletes or reads.
//!
//! Atomic add and max read the key at the start timestamp and write the
//! result: concurrent adds to one counter conflict and retry (the schema
//! shards counters by client). Commits try one-phase commit, which TiKV
//! uses when every key is in one region and which keeps the same
//! guarantees. An undetermined commit outcome becomes `MaybeCommitted`.
//!
//! URL: `tikv://pd1:2379,pd2:2379/prefix` (PD endpoints).

use std::collections::BTreeSet;

use async_trait::async_trait;
use tikv_client::{
    BoundRange, CheckLevel, Error as TikvError, TransactionClient, TransactionOptions,
};
use tokio::sync::OnceCell;

use super::url::Endpoint;
use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, KvError, KvResult, Limits, Mutation,
    Value,
};

pub const ENGINE_NAME: &str = "tikv";

/// TiKV's defaults leave room (an 8 MiB raft entry, 6 MiB per entry); the
/// schema stays far below.
const LIMITS: Limits = Limits {
    max_key_bytes: 4096,
    max_value_bytes: 1_000_000,
    max_txn_ops: 10_000,
    max_txn_bytes: 8 << 20,
    max_txn_duration: std::time::Duration::from_secs(60),
};

pub struct TikvEngine {
    endpoints: Vec<String>,
    space: KeySpace,
    client: OnceCell<TransactionClient>,
}

impl TikvEngine {
    /// An engine for the PD `endpoints`; it connects at the first
    /// transaction.
    pub fn new(endpoints: &[Endpoint], prefix: &str) -> TikvEngine {
        TikvEngine {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            space: KeySpace::new(prefix),
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> KvResult<&TransactionClient> {
        self.client
            .get_or_try_init(|| async {
                TransactionClient::new(self.endpoints.clone())
                    .await
                    .map_err(|e| read_error(&e))
            })
            .await
    }
}

/// Whether `e` says another transaction wrote what this one touched.
fn is_conflict(e: &TikvError) -> bool {
    match e {
        TikvError::KeyError(k) => {
            k.conflict.is_some() || !k.retryable.is_empty() || k.deadlock.is_some()
        }
        TikvError::MultipleKeyErrors(all) | TikvError::ExtractedErrors(all) => {
            all.iter().any(is_conflict)
        }
        TikvError::PessimisticLockError { inner, .. } => is_conflict(inner),
        _ => false,
    }
}

fn read_error(e: &TikvError) -> KvError {
    let text = format!("tikv: {e}");
    if is_conflict(e) {
        return KvError::Conflict(text);
    }
    match e {
        TikvError::MaxScanLimitExceeded { .. } => KvError::TooLarge(text),
        TikvError::Url(_)
        | TikvError::InvalidSemver(_)
        | TikvError::UnsupportedMode
        | TikvError::KeyspaceNotFound(_) => KvError::Fatal(text),
        TikvError::StringError(s) if s.contains("too large") => KvError::TooLarge(text),
        _ => KvError::Transient(text),
    }
}

fn commit_error(e: &TikvError) -> KvError {
    match e {
        TikvError::UndeterminedError(_) => KvError::MaybeCommitted(format!("tikv: {e}")),
        other => read_error(other),
    }
}

#[async_trait]
impl Engine for TikvEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let options = TransactionOptions::new_optimistic()
            .try_one_pc()
            // Read-only transactions end without commit or rollback.
            .drop_check(CheckLevel::None);
        let txn = self
            .client()
            .await?
            .begin_with_options(options)
            .await
            .map_err(|e| read_error(&e))?;
        Ok(Box::new(TikvTxn {
            txn,
            space: self.space.clone(),
            seen: BTreeSet::new(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        // A TiKV commit is replicated by raft before it is acknowledged.
        Ok(())
    }
}

struct TikvTxn {
    txn: tikv_client::Transaction,
    space: KeySpace,
    /// Keys (without prefix) seen by scans: locked at commit if inside a
    /// read-conflict range.
    seen: BTreeSet<Key>,
}

impl TikvTxn {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        self.space.key(key)
    }

    fn bound(&self, range: &KeyRange) -> BoundRange {
        let start = self.key(&range.start);
        match self.space.end(range) {
            Some(end) => (start..end).into(),
            None => (start..).into(),
        }
    }

    /// The keys (with prefix) to lock so that `ranges` conflict.
    fn locks(&self, ranges: &[KeyRange], written: &BTreeSet<&[u8]>) -> Vec<Vec<u8>> {
        let mut keys = BTreeSet::new();
        for range in ranges {
            keys.insert(range.start.clone());
            let upper = match &range.end {
                Some(end) => std::ops::Bound::Excluded(end.as_slice()),
                None => std::ops::Bound::Unbounded,
            };
            for key in self
                .seen
                .range::<[u8], _>((std::ops::Bound::Included(range.start.as_slice()), upper))
            {
                keys.insert(key.clone());
            }
        }
        keys.into_iter()
            .filter(|k| !written.contains(k.as_slice()))
            .map(|k| self.key(&k))
            .collect()
    }
}

#[async_trait]
impl EngineTxn for TikvTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        let k = self.key(key);
        self.txn.get(k).await.map_err(|e| read_error(&e))
    }

    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let found: std::collections::HashMap<Vec<u8>, Value> = self
            .txn
            .batch_get(wanted.clone())
            .await
            .map_err(|e| read_error(&e))?
            .map(|pair| (Vec::from(pair.0), pair.1))
            .collect();
        Ok(wanted.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Key, Value)>> {
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        let bound = self.bound(range);
        let limit = limit.min(u32::MAX as usize) as u32;
        let pairs: Vec<_> = if reverse {
            self.txn
                .scan_reverse(bound, limit)
                .await
                .map_err(|e| read_error(&e))?
                .collect()
        } else {
            self.txn
                .scan(bound, limit)
                .await
                .map_err(|e| read_error(&e))?
                .collect()
        };
        let mut out = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let key = self.space.strip(&Vec::from(pair.0)).to_vec();
            self.seen.insert(key.clone());
            out.push((key, pair.1));
        }
        Ok(out)
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            return Ok(());
        }
        for (key, mutation) in &request.mutations {
            let k = self.key(key);
            match mutation {
                Mutation::Put(v) => self.txn.put(k, v.clone()).await,
                Mutation::Delete => self.txn.delete(k).await,
                Mutation::Add(_) | Mutation::Max(_) => {
                    let current = self
                        .txn
                        .get(k.clone())
                        .await
                        .map_err(|e| read_error(&e))?
                        .unwrap_or_default();
                    let value = super::counter_value(mutation, &current);
                    self.txn.put(k, value).await
                }
            }
            .map_err(|e| read_error(&e))?;
        }
        let written: BTreeSet<&[u8]> = request
            .mutations
            .iter()
            .map(|(k, _)| k.as_slice())
            .collect();
        let locks = self.locks(&request.read_conflicts, &written);
        if !locks.is_empty() {
            self.txn
                .lock_keys(locks)
                .await
                .map_err(|e| read_error(&e))?;
        }
        match self.txn.commit().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = commit_error(&e);
                if !matches!(error, KvError::MaybeCommitted(_)) {
                    let _ = self.txn.rollback().await;
                }
                Err(error)
            }
        }
    }
}
