//! The FoundationDB engine (cargo feature `fdb`): the contract maps onto
//! FoundationDB's transactions directly, since it was modelled on them.
//!
//! Reads are snapshot reads; what a transaction must not see change is
//! declared with read-conflict ranges at commit, which FoundationDB's
//! resolvers check against every commit after the read version. Add and
//! max are FoundationDB's atomic operations (little-endian, as the schema
//! encodes counters), so concurrent adds never conflict. The read version
//! is taken at begin, so a transaction that only declares conflicts
//! conflicts with what others commit after it began. The retry runner
//! above the trait keeps transactions inside FoundationDB's 5 seconds and
//! 10 MB (long jobs are paged).
//!
//! URL: `fdb://path/to/fdb.cluster?prefix=vol`. The client library
//! (`libfdb_c`, API 7.3) must be installed to link.

use std::path::Path;
use std::sync::OnceLock;

use async_trait::async_trait;
use foundationdb::options::{ConflictRangeType, MutationType, StreamingMode};
use foundationdb::{Database, FdbError, RangeOption, Transaction};

use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, KvError, KvResult, Limits, Mutation,
    Value,
};

pub const ENGINE_NAME: &str = "fdb";

/// FoundationDB's documented limits.
const LIMITS: Limits = Limits {
    max_key_bytes: 10_000,
    max_value_bytes: 100_000,
    max_txn_ops: 100_000,
    max_txn_bytes: 10_000_000,
    max_txn_duration: std::time::Duration::from_secs(5),
};

/// The client network thread, started once per process and kept running
/// until it exits.
static NETWORK: OnceLock<Result<(), String>> = OnceLock::new();

fn start_network() -> KvResult<()> {
    NETWORK
        .get_or_init(|| {
            let builder = foundationdb::api::FdbApiBuilder::default()
                .build()
                .map_err(|e| format!("cannot start the FoundationDB client: {e}"))?;
            // SAFETY: called once per process (the OnceLock), before any
            // other FoundationDB call; the network is never stopped.
            let guard = unsafe { builder.boot() }
                .map_err(|e| format!("cannot start the FoundationDB client: {e}"))?;
            std::mem::forget(guard);
            Ok(())
        })
        .clone()
        .map_err(KvError::Fatal)
}

pub struct FdbEngine {
    db: Database,
    space: KeySpace,
}

impl FdbEngine {
    pub fn new(cluster_file: &Path, prefix: &str) -> KvResult<FdbEngine> {
        start_network()?;
        let path = cluster_file.to_str().ok_or_else(|| {
            KvError::Fatal(format!(
                "FoundationDB cluster file path is not UTF-8: {}",
                cluster_file.display()
            ))
        })?;
        let db = Database::from_path(path).map_err(|e| {
            KvError::Fatal(format!("cannot open FoundationDB cluster file {path}: {e}"))
        })?;
        Ok(FdbEngine {
            db,
            space: KeySpace::new(prefix),
        })
    }
}

/// FoundationDB error codes the contract distinguishes.
const NOT_COMMITTED: i32 = 1020;
const TRANSACTION_TOO_OLD: i32 = 1007;
const TRANSACTION_TOO_LARGE: i32 = 2101;
const KEY_TOO_LARGE: i32 = 2102;
const VALUE_TOO_LARGE: i32 = 2103;

fn error(e: FdbError) -> KvError {
    let text = format!("fdb: {} (code {})", e.message(), e.code());
    match e.code() {
        NOT_COMMITTED => KvError::Conflict(text),
        TRANSACTION_TOO_OLD => KvError::TooOld(text),
        TRANSACTION_TOO_LARGE | KEY_TOO_LARGE | VALUE_TOO_LARGE => KvError::TooLarge(text),
        _ if e.is_maybe_committed() => KvError::MaybeCommitted(text),
        _ if e.is_retryable() => KvError::Transient(text),
        _ => KvError::Fatal(text),
    }
}

#[async_trait]
impl Engine for FdbEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let txn = self.db.create_trx().map_err(error)?;
        txn.get_read_version().await.map_err(error)?;
        Ok(Box::new(FdbTxn {
            txn,
            space: self.space.clone(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        // A commit is durable on the transaction logs before it returns.
        Ok(())
    }
}

struct FdbTxn {
    txn: Transaction,
    space: KeySpace,
}

impl FdbTxn {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        self.space.key(key)
    }

    /// The end of `range`, of the key space, or of the user keys.
    fn end(&self, range: &KeyRange) -> Vec<u8> {
        self.space.end(range).unwrap_or_else(|| vec![0xFF])
    }
}

#[async_trait]
impl EngineTxn for FdbTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        let value = self.txn.get(&self.key(key), true).await.map_err(error)?;
        Ok(value.map(|v| v.to_vec()))
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
        let mut option = RangeOption::from((self.key(&range.start), self.end(range)));
        option.limit = Some(limit);
        option.reverse = reverse;
        option.mode = StreamingMode::WantAll;
        let mut out = Vec::new();
        let mut iteration = 1;
        loop {
            let values = self
                .txn
                .get_range(&option, iteration, true)
                .await
                .map_err(error)?;
            for kv in values.iter() {
                let key = self.space.strip(kv.key()).to_vec();
                out.push((key, kv.value().to_vec()));
            }
            if out.len() >= limit || !values.more() {
                break;
            }
            match option.next_range(&values) {
                Some(next) => option = next,
                None => break,
            }
            option.limit = Some(limit - out.len());
            iteration += 1;
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn commit(self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            return Ok(());
        }
        for range in &request.read_conflicts {
            self.txn
                .add_conflict_range(
                    &self.key(&range.start),
                    &self.end(range),
                    ConflictRangeType::Read,
                )
                .map_err(error)?;
        }
        for (key, mutation) in &request.mutations {
            let k = self.key(key);
            match mutation {
                Mutation::Put(v) => self.txn.set(&k, v),
                Mutation::Delete => self.txn.clear(&k),
                Mutation::Add(delta) => {
                    self.txn
                        .atomic_op(&k, &super::encode_counter(*delta), MutationType::Add)
                }
                Mutation::Max(at_least) => self.txn.atomic_op(
                    &k,
                    &super::encode_counter(*at_least as i64),
                    MutationType::Max,
                ),
            }
        }
        self.txn
            .commit()
            .await
            .map(|_| ())
            .map_err(|e| error(FdbError::from(e)))
    }
}
