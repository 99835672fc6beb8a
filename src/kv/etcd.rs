//! The etcd engine: serializable transactions on etcd's MVCC.
//!
//! A transaction reads at one revision R (the cluster's revision when it
//! began).
//! Its commit is one etcd Txn whose compares make it fail if anything it
//! read changed after R: for every read-conflict range, "every key in the
//! range has mod_revision <= R" (catches updates and inserts), and for
//! every key it saw inside those ranges, "the key still exists" (catches
//! deletions, which leave no key to compare). Atomic add and max, which
//! etcd lacks, read the key's current value at commit and compare its
//! mod_revision, so a concurrent add makes the commit retry here without
//! surfacing a conflict. etcd applies a Txn atomically and durably (raft
//! and fsync) before it answers.
//!
//! Keys live under the URL's prefix (`etcd://h1:2379,h2:2379/PREFIX`), so
//! several volumes share a cluster. Limits are etcd's defaults: 128
//! operations and 128 compares per Txn (`--max-txn-ops`), 1.5 MiB per
//! request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget,
    Txn as EtcdTxnRequest, TxnOp,
};
use tokio::sync::OnceCell;

use super::types::prefix_end;
use super::url::{Credentials, Endpoint};
use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KvError, KvResult, Limits, Mutation, Value,
};

pub const ENGINE_NAME: &str = "etcd";

/// How often a commit re-reads its counters when a concurrent add changed
/// one (with a short random pause), before reporting a conflict to the
/// retry runner. Adds to one counter from many clients are rare (the
/// schema shards counters), so this is seldom more than one round.
const COUNTER_RETRIES: usize = 100;

/// etcd's defaults: `--max-txn-ops` 128, `--max-request-bytes` 1.5 MiB.
const LIMITS: Limits = Limits {
    max_key_bytes: 10_000,
    max_value_bytes: 1_000_000,
    max_txn_ops: 128,
    max_txn_bytes: 1536 * 1024,
    max_txn_duration: Duration::from_secs(60),
};

pub struct EtcdEngine {
    endpoints: Vec<String>,
    credentials: Credentials,
    prefix: Vec<u8>,
    /// One client per endpoint, connected on first use. A transaction uses
    /// the current one; a transport failure moves every later transaction
    /// to the next endpoint. (etcd-client's balanced channel kept sending
    /// to a killed member: 30 s of "tcp connect error" until EIO.)
    clients: Vec<OnceCell<Client>>,
    current: Arc<AtomicUsize>,
}

impl EtcdEngine {
    /// An engine for `endpoints`; it connects at the first transaction.
    pub fn new(
        endpoints: &[Endpoint],
        prefix: &str,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> KvResult<EtcdEngine> {
        if let Some((name, _)) = params.first() {
            return Err(KvError::Fatal(format!(
                "etcd URL option '{name}' is not supported by this jfs (TLS is not built in): use a plain etcd:// URL on a trusted network"
            )));
        }
        let mut prefix = prefix.trim_matches('/').as_bytes().to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        Ok(EtcdEngine {
            endpoints: endpoints.iter().map(|e| format!("http://{e}")).collect(),
            credentials: credentials.clone(),
            prefix,
            clients: endpoints.iter().map(|_| OnceCell::new()).collect(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The current endpoint's client, and its index (for [`Failover`]).
    async fn kv(&self) -> KvResult<(KvClient, Failover)> {
        let index = self.current.load(Ordering::Acquire) % self.clients.len().max(1);
        let failover = Failover {
            current: self.current.clone(),
            index,
        };
        let endpoint = self.endpoints[index].clone();
        let client = self.clients[index]
            .get_or_try_init(|| async {
                let mut options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(10))
                    .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
                if let (Some(user), Some(password)) =
                    (&self.credentials.user, &self.credentials.password)
                {
                    options = options.with_user(user.clone(), password.expose().to_string());
                }
                Client::connect([endpoint], Some(options))
                    .await
                    .map_err(|e| read_error(&e))
            })
            .await
            .map_err(|e| failover.note(e))?;
        Ok((client.kv_client(), failover))
    }
}

fn status_text(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("etcd: {}", s.message()),
        other => format!("etcd: {other}"),
    }
}

/// An error of a read: the server's limits and refusals are final; the
/// rest (unreachable, leader change, timeouts) pass.
fn read_error(e: &etcd_client::Error) -> KvError {
    use tonic::Code;
    let text = status_text(e);
    match e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted
                if text.contains("too many operations") || text.contains("too large") =>
            {
                KvError::TooLarge(text)
            }
            Code::OutOfRange if text.contains("compacted") => KvError::TooOld(text),
            Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
                KvError::Fatal(text)
            }
            _ => KvError::Transient(text),
        },
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            KvError::Fatal(text)
        }
        _ => KvError::Transient(text),
    }
}

/// An error of a commit: once the request may have reached the server, its
/// outcome is unknown.
fn commit_error(e: &etcd_client::Error) -> KvError {
    match read_error(e) {
        KvError::Transient(text) => KvError::MaybeCommitted(text),
        other => other,
    }
}

#[async_trait]
impl Engine for EtcdEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    /// The snapshot is the cluster's revision now (a linearizable read), so
    /// that a transaction that only declares conflicts, without reading,
    /// still conflicts with what others commit after it began.
    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let (mut kv, failover) = self.kv().await?;
        let now = kv
            .get(
                self.prefix.clone(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| failover.note(read_error(&e)))?;
        let revision = now
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| KvError::Transient("etcd: answer without a revision".into()))?;
        Ok(Box::new(EtcdTxn {
            kv,
            failover,
            engine_prefix: self.prefix.clone(),
            range_end_all: prefix_end(&self.prefix).unwrap_or_else(|| vec![0]),
            revision,
            seen: BTreeMap::new(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        // etcd answers a commit only once a quorum has it on disk.
        Ok(())
    }
}

/// Moves later transactions to the next endpoint when this one's fails.
struct Failover {
    current: Arc<AtomicUsize>,
    index: usize,
}

impl Failover {
    /// Passes `e` on; a transport-level failure (the endpoint is down or
    /// cut off) first moves the engine to the next endpoint, once.
    fn note(&self, e: KvError) -> KvError {
        if matches!(e, KvError::Transient(_) | KvError::MaybeCommitted(_)) {
            let _ = self.current.compare_exchange(
                self.index,
                self.index + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        e
    }
}

struct EtcdTxn {
    kv: KvClient,
    failover: Failover,
    engine_prefix: Vec<u8>,
    range_end_all: Key,
    /// The snapshot: the cluster's revision at begin.
    revision: i64,
    /// Keys read (without prefix) and their mod_revision.
    seen: BTreeMap<Key, i64>,
}

impl EtcdTxn {
    fn key(&self, key: &[u8]) -> Key {
        let mut k = self.engine_prefix.clone();
        k.extend_from_slice(key);
        k
    }

    fn strip<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        &key[self.engine_prefix.len().min(key.len())..]
    }

    fn range_end(&self, range: &KeyRange) -> Key {
        match &range.end {
            Some(end) => self.key(end),
            None => self.range_end_all.clone(),
        }
    }

    async fn range(&mut self, key: Key, options: GetOptions) -> KvResult<Vec<(Key, Value)>> {
        // Serializable: the member this transaction talks to gave it R
        // (a linearizable read at begin), so it has applied R, and a read
        // at R needs no further raft round.
        let options = options.with_revision(self.revision).with_serializable();
        let response = self
            .kv
            .get(key, Some(options))
            .await
            .map_err(|e| self.failover.note(read_error(&e)))?;
        let mut out = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            let key = self.strip(kv.key()).to_vec();
            self.seen.insert(key.clone(), kv.mod_revision());
            out.push((key, kv.value().to_vec()));
        }
        Ok(out)
    }

    /// The compares that fail if anything in `ranges` changed after the
    /// snapshot.
    fn conflict_compares(&self, ranges: &[KeyRange]) -> Vec<Compare> {
        let revision = self.revision;
        let mut compares = Vec::new();
        for range in ranges {
            compares.push(
                Compare::mod_revision(self.key(&range.start), CompareOp::Less, revision + 1)
                    .with_range(self.range_end(range)),
            );
            let upper = range.end.as_deref();
            for key in self
                .seen
                .range::<[u8], _>((
                    std::ops::Bound::Included(range.start.as_slice()),
                    match upper {
                        Some(end) => std::ops::Bound::Excluded(end),
                        None => std::ops::Bound::Unbounded,
                    },
                ))
                .map(|(k, _)| k)
            {
                compares.push(Compare::version(self.key(key), CompareOp::Greater, 0));
            }
        }
        compares
    }
}

#[async_trait]
impl EngineTxn for EtcdTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        let found = self.range(self.key(key), GetOptions::new()).await?;
        Ok(found.into_iter().next().map(|(_, v)| v))
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
        let mut options = GetOptions::new()
            .with_range(self.range_end(range))
            .with_limit(limit.min(i64::MAX as usize) as i64);
        if reverse {
            options = options.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        self.range(self.key(&range.start), options).await
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            return Ok(());
        }
        let conflicts = self.conflict_compares(&request.read_conflicts);
        for _ in 0..COUNTER_RETRIES {
            let mut compares = conflicts.clone();
            let mut ops = Vec::with_capacity(request.mutations.len());
            for (key, mutation) in &request.mutations {
                let k = self.key(key);
                match mutation {
                    Mutation::Put(v) => ops.push(TxnOp::put(k, v.clone(), None)),
                    Mutation::Delete => ops.push(TxnOp::delete(k, None)),
                    Mutation::Add(_) | Mutation::Max(_) => {
                        // Read-modify-write at the latest revision, guarded
                        // by the key's mod_revision.
                        let latest = self
                            .kv
                            // Serializable: a stale answer only fails the
                            // mod_revision compare and is read again.
                            .get(k.clone(), Some(GetOptions::new().with_serializable()))
                            .await
                            .map_err(|e| self.failover.note(read_error(&e)))?;
                        let (current, mod_revision) =
                            latest.kvs().first().map_or((Vec::new(), 0), |kv| {
                                (kv.value().to_vec(), kv.mod_revision())
                            });
                        let value = counter_value(mutation, &current);
                        compares.push(Compare::mod_revision(
                            k.clone(),
                            CompareOp::Equal,
                            mod_revision,
                        ));
                        ops.push(TxnOp::put(k, value, None));
                    }
                }
            }
            let txn = EtcdTxnRequest::new().when(compares).and_then(ops);
            let response = self
                .kv
                .txn(txn)
                .await
                .map_err(|e| self.failover.note(commit_error(&e)))?;
            if response.succeeded() {
                return Ok(());
            }
            let pause = std::time::Duration::from_micros(fastrand::u64(200..3000));
            tokio::time::sleep(pause).await;
            if !conflicts.is_empty() {
                // Was it what we read, or only a counter someone added to?
                let check = EtcdTxnRequest::new().when(conflicts.clone());
                let checked = self
                    .kv
                    .txn(check)
                    .await
                    .map_err(|e| self.failover.note(read_error(&e)))?;
                if !checked.succeeded() {
                    return Err(KvError::Conflict(
                        "etcd: a key this transaction read changed".into(),
                    ));
                }
            }
        }
        Err(KvError::Conflict(
            "etcd: counters kept changing under the commit".into(),
        ))
    }
}

/// The new value of a counter key given its current one.
fn counter_value(mutation: &Mutation, current: &[u8]) -> Value {
    match mutation {
        Mutation::Add(delta) => {
            super::encode_counter(super::decode_counter(current).wrapping_add(*delta))
        }
        Mutation::Max(at_least) => {
            super::encode_counter(super::decode_max(current).max(*at_least) as i64)
        }
        Mutation::Put(value) => value.clone(),
        Mutation::Delete => Vec::new(),
    }
}
