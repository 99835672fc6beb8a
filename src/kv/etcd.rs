//! The etcd engine: serializable transactions on etcd's MVCC.
//!
//! A transaction reads at one revision R: its first read is linearizable
//! and fixes R (the revision that read saw), later reads are serializable
//! reads at R on the same member, which has applied R. Keys read together
//! (`batch_get`) are read in one read-only Txn, one round trip.
//! Its commit is one etcd Txn whose compares make it fail if anything it
//! read changed after R: for every read-conflict range, "every key in the
//! range has mod_revision <= R" (catches updates and inserts), and for
//! every key it saw inside those ranges, "the key still exists" (catches
//! deletions, which leave no key to compare). Atomic add and max, which
//! etcd lacks, write the new value guarded by a compare of the key's
//! mod_revision; the engine remembers each counter's value and
//! mod_revision from its last commit (the schema shards counters by
//! client, so that is usually still current) and reads the ones it does not
//! know, all in one round trip. A concurrent change makes the commit re-read
//! and retry here without surfacing a conflict.
//!
//! Tracked reads may be answered from what the engine last saw of a key
//! (value and mod_revision, from earlier reads and its own commits): such
//! an answer costs no round trip, and the commit verifies it with a compare
//! "mod_revision is still the one seen" (a transaction that writes nothing
//! verifies in `finish`). A stale answer fails that compare: the
//! transaction retries and reads afresh. Snapshot reads are never answered
//! this way, since nothing verifies them. etcd applies a Txn atomically and durably (raft
//! and fsync) before it answers.
//!
//! Keys live under the URL's prefix (`etcd://h1:2379,h2:2379/PREFIX`), so
//! several volumes share a cluster. `user:password@` before the hosts logs
//! in (etcd auth); `?cacert=CA.pem` speaks TLS, verifying the members
//! against that CA, and `&cert=CLIENT.pem&key=CLIENT-KEY.pem` presents a
//! client certificate. Limits are etcd's defaults: 128
//! operations and 128 compares per Txn (`--max-txn-ops`), 1.5 MiB per
//! request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, KvClient, SortOrder,
    SortTarget, Txn as EtcdTxnRequest, TxnOp, TxnOpResponse, TxnResponse,
};
use tokio::sync::OnceCell;

use super::url::{Credentials, Endpoint};
use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, KvError, KvResult, Limits, Mutation,
    Value,
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
    tls: Option<etcd_client::TlsOptions>,
    credentials: Credentials,
    space: KeySpace,
    /// One client per endpoint, connected on first use. A transaction uses
    /// the current one; a transport failure moves every later transaction
    /// to the next endpoint. (etcd-client's balanced channel kept sending
    /// to a killed member: 30 s of "tcp connect error" until EIO.)
    clients: Vec<OnceCell<Client>>,
    current: Arc<AtomicUsize>,
    /// The highest revision any answer showed: a lower bound of the
    /// cluster's revision, the snapshot of a transaction that commits
    /// without having read.
    seen_revision: Arc<AtomicI64>,
    /// Counters (keys with prefix) this engine last wrote or read: value
    /// and mod_revision. A stale entry only fails its compare.
    counters: Arc<Mutex<HashMap<Key, (Value, i64)>>>,
    /// Keys (with prefix) as last seen: value (None: absent) and
    /// mod_revision (0 when absent). Answers tracked reads; verified at
    /// commit.
    known: Arc<Mutex<HashMap<Key, Known>>>,
    /// One turn per counter key: this process's commits that change it run
    /// one at a time (keys are taken in order, so no deadlock).
    counter_turns: Arc<Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>>,
}

type Known = (Option<Value>, i64);

/// Counters remembered at most; the cache starts over beyond.
const COUNTER_CACHE_ENTRIES: usize = 65_536;
/// Keys remembered at most; the memory starts over beyond.
const KNOWN_ENTRIES: usize = 100_000;

impl EtcdEngine {
    /// An engine for `endpoints`; it connects at the first transaction.
    pub fn new(
        endpoints: &[Endpoint],
        prefix: &str,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> KvResult<EtcdEngine> {
        let tls = tls_options(params)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(EtcdEngine {
            endpoints: endpoints
                .iter()
                .map(|e| format!("{scheme}://{e}"))
                .collect(),
            tls,
            credentials: credentials.clone(),
            space: KeySpace::new(prefix),
            clients: endpoints.iter().map(|_| OnceCell::new()).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            seen_revision: Arc::new(AtomicI64::new(0)),
            counters: Arc::new(Mutex::new(HashMap::new())),
            known: Arc::new(Mutex::new(HashMap::new())),
            counter_turns: Arc::new(Mutex::new(HashMap::new())),
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
                if let Some(tls) = &self.tls {
                    options = options.with_tls(tls.clone());
                }
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

/// TLS settings from the URL's options (`cacert`, `cert`, `key`: PEM
/// files), or None for plain connections.
fn tls_options(params: &[(String, String)]) -> KvResult<Option<etcd_client::TlsOptions>> {
    let mut cacert = None;
    let mut cert = None;
    let mut key = None;
    for (name, value) in params {
        match name.as_str() {
            "cacert" => cacert = Some(value),
            "cert" => cert = Some(value),
            "key" => key = Some(value),
            other => {
                return Err(KvError::Fatal(format!(
                    "unknown etcd URL option '{other}': use cacert=CA.pem, cert=CLIENT.pem and key=CLIENT-KEY.pem for TLS"
                )))
            }
        }
    }
    let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|e| {
            KvError::Fatal(format!("cannot read the etcd TLS {what} file {path}: {e}"))
        })
    };
    let mut tls = match cacert {
        Some(path) => etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("CA", path)?)),
        None if cert.is_some() || key.is_some() => {
            return Err(KvError::Fatal(
                "etcd TLS needs cacert=CA.pem (the CA the members' certificates are signed by)"
                    .into(),
            ))
        }
        None => return Ok(None),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(etcd_client::Identity::from_pem(
                read("certificate", cert)?,
                read("key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(KvError::Fatal(
                "a client certificate needs both cert=CLIENT.pem and key=CLIENT-KEY.pem".into(),
            ))
        }
    }
    Ok(Some(tls))
}

fn status_text(e: &etcd_client::Error) -> String {
    const HINT: &str = " (is the member up, and does the URL's TLS match it: https members need cacert=, and cert= with key= when they check client certificates)";
    match e {
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown
            ) =>
        {
            format!("etcd: {}{HINT}", s.message())
        }
        etcd_client::Error::GRpcStatus(s) => format!("etcd: {}", s.message()),
        etcd_client::Error::TransportError(_) => format!("etcd: {e}{HINT}"),
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

    /// No round trip: the first read fixes the snapshot. A transaction
    /// that commits without reading uses the highest revision seen before
    /// it began, so what others commit after its start still conflicts
    /// (the engine's very first transaction asks the cluster).
    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let (mut kv, failover) = self.kv().await?;
        let mut floor = self.seen_revision.load(Ordering::Acquire);
        if floor == 0 {
            let now = kv
                .get(
                    self.space.prefix().to_vec(),
                    Some(GetOptions::new().with_count_only()),
                )
                .await
                .map_err(|e| failover.note(read_error(&e)))?;
            floor = header_revision(now.header())?;
            self.seen_revision.fetch_max(floor, Ordering::AcqRel);
        }
        Ok(Box::new(EtcdTxn {
            kv,
            failover,
            space: self.space.clone(),
            revision: None,
            floor,
            seen_revision: self.seen_revision.clone(),
            counters: self.counters.clone(),
            known: self.known.clone(),
            counter_turns: self.counter_turns.clone(),
            verified: Vec::new(),
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
    space: KeySpace,
    /// The snapshot, fixed by the first read.
    revision: Option<i64>,
    /// The snapshot if nothing is read: the engine's highest revision seen
    /// at begin.
    floor: i64,
    seen_revision: Arc<AtomicI64>,
    counters: Arc<Mutex<HashMap<Key, (Value, i64)>>>,
    known: Arc<Mutex<HashMap<Key, Known>>>,
    counter_turns: Arc<Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>>,
    /// Tracked reads answered from `known` (key with prefix, mod_revision):
    /// the commit checks each is unchanged.
    verified: Vec<(Key, i64)>,
    /// Keys read (without prefix) and their mod_revision.
    seen: BTreeMap<Key, i64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> KvResult<i64> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| KvError::Transient("etcd: answer without a revision".into()))
}

impl EtcdTxn {
    fn key(&self, key: &[u8]) -> Key {
        self.space.key(key)
    }

    fn strip<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        self.space.strip(key)
    }

    /// etcd's range end: "\0" means every key from the start on.
    fn range_end(&self, range: &KeyRange) -> Key {
        self.space.end(range).unwrap_or_else(|| vec![0])
    }

    /// `options` for a read of the snapshot: linearizable for the first
    /// read (it fixes the snapshot), then serializable at it: the member
    /// this transaction talks to has applied it, so such a read needs no
    /// raft round.
    fn at_snapshot(&self, options: GetOptions) -> GetOptions {
        match self.revision {
            Some(revision) => options.with_revision(revision).with_serializable(),
            None => options,
        }
    }

    /// Notes the revision an answer was given at.
    fn saw(&mut self, header: Option<&etcd_client::ResponseHeader>) -> KvResult<()> {
        let revision = header_revision(header)?;
        self.seen_revision.fetch_max(revision, Ordering::AcqRel);
        if self.revision.is_none() {
            self.revision = Some(revision);
        }
        Ok(())
    }

    /// The entries of one range answer, noted as seen.
    fn entries(&mut self, response: &GetResponse) -> Vec<(Key, Value)> {
        let mut out = Vec::with_capacity(response.kvs().len());
        let mut known = lock(&self.known);
        if known.len() + response.kvs().len() > KNOWN_ENTRIES {
            known.clear();
        }
        for kv in response.kvs() {
            let key = self.strip(kv.key()).to_vec();
            self.seen.insert(key.clone(), kv.mod_revision());
            known.insert(
                kv.key().to_vec(),
                (Some(kv.value().to_vec()), kv.mod_revision()),
            );
            out.push((key, kv.value().to_vec()));
        }
        out
    }

    /// Notes that `key` (with prefix) was absent.
    fn absent(&self, key: Key) {
        lock(&self.known).insert(key, (None, 0));
    }

    /// What the engine last saw of `key` (with prefix), if it may answer a
    /// tracked read: not newer than this transaction's snapshot, so the
    /// range compares of its commit still hold.
    fn recall(&mut self, key: &[u8]) -> Option<Option<Value>> {
        let limit = self.revision.unwrap_or(self.floor);
        let (value, revision) = lock(&self.known).get(key).cloned()?;
        if revision > limit {
            return None;
        }
        self.verified.push((key.to_vec(), revision));
        Some(value)
    }

    /// The compares that fail if an answer from `known` was stale.
    fn verify_compares(&self) -> Vec<Compare> {
        self.verified
            .iter()
            .map(|(key, revision)| Compare::mod_revision(key.clone(), CompareOp::Equal, *revision))
            .collect()
    }

    /// Forgets what this transaction answered from `known` (after a failed
    /// commit: some of it may be stale).
    fn forget_verified(&self) {
        let mut known = lock(&self.known);
        for (key, _) in &self.verified {
            known.remove(key);
        }
    }

    async fn range(&mut self, key: Key, options: GetOptions) -> KvResult<Vec<(Key, Value)>> {
        let options = self.at_snapshot(options);
        let response = self
            .kv
            .get(key, Some(options))
            .await
            .map_err(|e| self.failover.note(read_error(&e)))?;
        self.saw(response.header())?;
        Ok(self.entries(&response))
    }

    /// The compares that fail if anything in `ranges` changed after the
    /// snapshot.
    fn conflict_compares(&self, ranges: &[KeyRange]) -> Vec<Compare> {
        let revision = self.revision.unwrap_or(self.floor);
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

    /// Reads the latest value and mod_revision of `keys` (with prefix) into
    /// the counter cache, in one Txn guarded by `compares`: false (nothing
    /// read) if they fail.
    async fn refresh_counters(&mut self, keys: &[Key], compares: Vec<Compare>) -> KvResult<bool> {
        // Serializable: a stale answer only fails the mod_revision compare
        // and is read again.
        let gets: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::get(k.clone(), Some(GetOptions::new().with_serializable())))
            .collect();
        let response = self
            .kv
            .txn(EtcdTxnRequest::new().when(compares).and_then(gets))
            .await
            .map_err(|e| self.failover.note(read_error(&e)))?;
        self.seen_revision
            .fetch_max(header_revision(response.header())?, Ordering::AcqRel);
        if !response.succeeded() {
            return Ok(false);
        }
        let mut cache = lock(&self.counters);
        for (key, answer) in keys.iter().zip(response.op_responses()) {
            if let TxnOpResponse::Get(get) = answer {
                let found = get.kvs().first().map_or((Vec::new(), 0), |kv| {
                    (kv.value().to_vec(), kv.mod_revision())
                });
                cache.insert(key.clone(), found);
            }
        }
        Ok(true)
    }

    /// The operations and compares of one commit attempt; the counters'
    /// new values (key with prefix, value) to remember if it succeeds.
    /// None if a counter is not in the cache.
    #[allow(clippy::type_complexity)]
    fn commit_ops(
        &self,
        request: &CommitRequest,
        conflicts: &[Compare],
    ) -> Option<(Vec<Compare>, Vec<TxnOp>, Vec<(Key, Value)>)> {
        let cache = lock(&self.counters);
        let mut compares = conflicts.to_vec();
        let mut ops = Vec::with_capacity(request.mutations.len());
        let mut written = Vec::new();
        for (key, mutation) in &request.mutations {
            let k = self.key(key);
            match mutation {
                Mutation::Put(v) => ops.push(TxnOp::put(k, v.clone(), None)),
                Mutation::Delete => ops.push(TxnOp::delete(k, None)),
                Mutation::Add(_) | Mutation::Max(_) => {
                    let (current, mod_revision) = cache.get(&k)?;
                    if let Mutation::Max(at_least) = mutation {
                        // A maximum only grows: nothing to write if it is
                        // already there.
                        if *mod_revision != 0 && super::decode_max(current) >= *at_least {
                            continue;
                        }
                    }
                    let value = super::counter_value(mutation, current);
                    compares.push(Compare::mod_revision(
                        k.clone(),
                        CompareOp::Equal,
                        *mod_revision,
                    ));
                    ops.push(TxnOp::put(k.clone(), value.clone(), None));
                    written.push((k, value));
                }
            }
        }
        Some((compares, ops, written))
    }
}

/// The range answers of a read-only Txn, in order.
fn range_answers(response: &TxnResponse) -> Vec<GetResponse> {
    response
        .op_responses()
        .into_iter()
        .filter_map(|answer| match answer {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl EngineTxn for EtcdTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        let k = self.key(key);
        let found = self.range(k.clone(), GetOptions::new()).await?;
        let value = found.into_iter().next().map(|(_, v)| v);
        if value.is_none() {
            self.absent(k);
        }
        Ok(value)
    }

    async fn get_tracked(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        match self.recall(&self.key(key)) {
            Some(value) => Ok(value),
            None => self.get(key).await,
        }
    }

    async fn batch_get_tracked(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let mut answers: Vec<Option<Option<Value>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in keys {
            let recalled = self.recall(&self.key(key));
            if recalled.is_none() {
                missing.push(key.clone());
            }
            answers.push(recalled);
        }
        let mut fetched = if missing.is_empty() {
            Vec::new()
        } else {
            self.batch_get(&missing).await?
        }
        .into_iter();
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| fetched.next().flatten()))
            .collect())
    }

    async fn finish(self: Box<Self>) -> KvResult<()> {
        if self.verified.is_empty() {
            return Ok(());
        }
        let check = EtcdTxnRequest::new().when(self.verify_compares());
        let mut kv = self.kv.clone();
        let response = kv
            .txn(check)
            .await
            .map_err(|e| self.failover.note(read_error(&e)))?;
        if response.succeeded() {
            return Ok(());
        }
        self.forget_verified();
        Err(KvError::Conflict(
            "etcd: a key this transaction read changed".into(),
        ))
    }

    /// One read-only Txn per 128 keys (etcd's operation limit).
    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let mut values = Vec::with_capacity(keys.len());
        for part in keys.chunks(LIMITS.max_txn_ops) {
            if part.len() == 1 {
                values.push(self.get(&part[0]).await?);
                continue;
            }
            let gets: Vec<TxnOp> = part
                .iter()
                .map(|k| TxnOp::get(self.key(k), Some(self.at_snapshot(GetOptions::new()))))
                .collect();
            let response = self
                .kv
                .txn(EtcdTxnRequest::new().and_then(gets))
                .await
                .map_err(|e| self.failover.note(read_error(&e)))?;
            self.saw(response.header())?;
            let answers = range_answers(&response);
            if answers.len() != part.len() {
                return Err(KvError::Transient(
                    "etcd: a read-only Txn answered the wrong number of reads".into(),
                ));
            }
            for (key, answer) in part.iter().zip(&answers) {
                let value = self.entries(answer).into_iter().next().map(|(_, v)| v);
                if value.is_none() {
                    self.absent(self.key(key));
                }
                values.push(value);
            }
        }
        Ok(values)
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
            return self.finish().await;
        }
        let result = self.commit_writes(&request).await;
        match &result {
            Ok(revision) => {
                let mut known = lock(&self.known);
                for (key, mutation) in &request.mutations {
                    let k = self.key(key);
                    match mutation {
                        Mutation::Put(v) => known.insert(k, (Some(v.clone()), *revision)),
                        Mutation::Delete => known.insert(k, (None, 0)),
                        Mutation::Add(_) | Mutation::Max(_) => known.remove(&k),
                    };
                }
            }
            Err(_) => self.forget_verified(),
        }
        result.map(|_| ())
    }
}

impl EtcdTxn {
    /// Commits `request` (with writes); the revision it was applied at.
    async fn commit_writes(&mut self, request: &CommitRequest) -> KvResult<i64> {
        let mut conflicts = self.conflict_compares(&request.read_conflicts);
        conflicts.extend(self.verify_compares());
        let counter_keys: Vec<Key> = request
            .mutations
            .iter()
            .filter(|(_, m)| matches!(m, Mutation::Add(_) | Mutation::Max(_)))
            .map(|(k, _)| self.key(k))
            .collect();
        // Commits of this process that change one counter go one after the
        // other, each from the value the previous one left: racing, all
        // but one would fail their compare and read again.
        let mut turns = Vec::with_capacity(counter_keys.len());
        for key in &counter_keys {
            let turn = {
                let mut locks = lock(&self.counter_turns);
                if locks.len() > COUNTER_CACHE_ENTRIES {
                    locks.retain(|_, l| Arc::strong_count(l) > 1);
                }
                locks.entry(key.clone()).or_default().clone()
            };
            turns.push(turn.lock_owned().await);
        }
        for _ in 0..COUNTER_RETRIES {
            let (compares, ops, written) = match self.commit_ops(request, &conflicts) {
                Some(attempt) => attempt,
                None => {
                    let missing: Vec<Key> = {
                        let cache = lock(&self.counters);
                        counter_keys
                            .iter()
                            .filter(|k| !cache.contains_key(*k))
                            .cloned()
                            .collect()
                    };
                    if !self.refresh_counters(&missing, Vec::new()).await? {
                        return Err(KvError::Transient("etcd: a plain read failed".into()));
                    }
                    continue;
                }
            };
            let txn = EtcdTxnRequest::new().when(compares).and_then(ops);
            let response = self.kv.txn(txn).await.map_err(|e| {
                lock(&self.counters).retain(|k, _| !counter_keys.contains(k));
                self.failover.note(commit_error(&e))
            })?;
            let revision = header_revision(response.header())?;
            self.seen_revision.fetch_max(revision, Ordering::AcqRel);
            if response.succeeded() {
                let mut cache = lock(&self.counters);
                if cache.len() + written.len() > COUNTER_CACHE_ENTRIES {
                    cache.clear();
                }
                for (key, value) in written {
                    cache.insert(key, (value, revision));
                }
                return Ok(revision);
            }
            if counter_keys.is_empty() {
                return Err(KvError::Conflict(
                    "etcd: a key this transaction read changed".into(),
                ));
            }
            // Was it what we read, or only a counter someone changed? One
            // Txn checks the first and re-reads the counters.
            super::STATS.counter_rereads.fetch_add(1, Ordering::Relaxed);
            let pause = std::time::Duration::from_micros(fastrand::u64(200..3000));
            tokio::time::sleep(pause).await;
            if !self
                .refresh_counters(&counter_keys, conflicts.clone())
                .await?
            {
                return Err(KvError::Conflict(
                    "etcd: a key this transaction read changed".into(),
                ));
            }
        }
        Err(KvError::Conflict(
            "etcd: counters kept changing under the commit".into(),
        ))
    }
}
