//! In-process engines: one ordered store on this host, with conflict
//! detection by a [`Resolver`] held in memory. Only one process opens a store
//! at a time, so the resolver sees every commit and transactions are
//! serializable.
//!
//! The store (see [`LocalStore`]) only has to give consistent snapshots and
//! atomic batches that survive a crash of the process; the resolver makes them
//! serializable. The embedded default is [`fjall`]; the others were measured
//! against it (README, "Choosing the embedded engine") and stay buildable for
//! that comparison.

pub mod fjall;
#[cfg(feature = "redb")]
pub mod redb;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::resolver::{ConflictCheck, Resolver};
use super::txn::show_key;
use super::types::{decode_counter, decode_max, encode_counter};
use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KvError, KvResult, Limits, Mutation, Value,
};

/// An ordered key-value store with snapshots, used by [`LocalEngine`].
/// `snapshot`, `get_latest` and `apply` are called under the engine's commit
/// lock, so the store never sees two of them at once.
pub trait LocalStore: Send + Sync + 'static {
    type Snapshot: LocalSnapshot;

    /// A consistent view of every batch applied so far, labelled `version`.
    fn snapshot(&self, version: u64) -> KvResult<Self::Snapshot>;

    /// The newest value of `key` (for atomic add at commit).
    fn get_latest(&self, key: &[u8]) -> KvResult<Option<Value>>;

    /// Applies `writes` (None = delete) atomically as commit `version`.
    /// When it returns, the batch must survive a crash of this process.
    /// `oldest_reader` is the oldest snapshot version still in use, if any.
    fn apply(
        &self,
        version: u64,
        oldest_reader: Option<u64>,
        writes: &[(Key, Option<Value>)],
    ) -> KvResult<()>;

    /// Makes every applied batch durable against power loss.
    fn sync(&self) -> KvResult<()>;
}

/// Reads at one snapshot of a [`LocalStore`].
pub trait LocalSnapshot: Send + 'static {
    fn get(&self, key: &[u8]) -> KvResult<Option<Value>>;
    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> KvResult<Vec<(Key, Value)>>;
}

/// A serializable engine over a [`LocalStore`].
pub struct LocalEngine<S: LocalStore> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    name: &'static str,
    store: S,
    resolver: Mutex<Resolver>,
}

impl<S: LocalStore> Shared<S> {
    fn resolver(&self) -> MutexGuard<'_, Resolver> {
        // The resolver is updated only after the store applied a batch, in
        // steps that cannot panic halfway; a poisoned lock holds a valid state.
        self.resolver.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: LocalStore> LocalEngine<S> {
    pub fn new(name: &'static str, store: S) -> Self {
        LocalEngine {
            shared: Arc::new(Shared {
                name,
                store,
                resolver: Mutex::new(Resolver::new(0)),
            }),
        }
    }
}

#[async_trait]
impl<S: LocalStore> Engine for LocalEngine<S> {
    fn name(&self) -> &'static str {
        self.shared.name
    }

    fn limits(&self) -> Limits {
        Limits::UNLIMITED
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let mut resolver = self.shared.resolver();
        let read_version = resolver.begin();
        match self.shared.store.snapshot(read_version) {
            Ok(snapshot) => Ok(Box::new(LocalTxn {
                shared: self.shared.clone(),
                read_version,
                snapshot,
                live: true,
            })),
            Err(e) => {
                resolver.release(read_version);
                Err(e)
            }
        }
    }

    async fn sync(&self) -> KvResult<()> {
        self.shared.store.sync()
    }
}

struct LocalTxn<S: LocalStore> {
    shared: Arc<Shared<S>>,
    read_version: u64,
    snapshot: S::Snapshot,
    /// Still registered with the resolver.
    live: bool,
}

#[async_trait]
impl<S: LocalStore> EngineTxn for LocalTxn<S> {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        self.snapshot.get(key)
    }

    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Key, Value)>> {
        self.snapshot.scan(range, limit, reverse)
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        let shared = self.shared.clone();
        let mut resolver = shared.resolver();
        if let ConflictCheck::Conflict(key) =
            resolver.check(self.read_version, &request.read_conflicts)
        {
            return Err(KvError::Conflict(format!(
                "key {} was written after this transaction's snapshot",
                show_key(&key)
            )));
        }
        // This transaction no longer needs its snapshot's history.
        resolver.release(self.read_version);
        self.live = false;
        let mut writes = Vec::with_capacity(request.mutations.len());
        for (key, mutation) in request.mutations {
            let value = match mutation {
                Mutation::Put(v) => Some(v),
                Mutation::Delete => None,
                Mutation::Add(delta) => {
                    let base = shared.store.get_latest(&key)?;
                    Some(encode_counter(
                        base.as_deref()
                            .map_or(0, decode_counter)
                            .wrapping_add(delta),
                    ))
                }
                Mutation::Max(value) => {
                    let base = shared.store.get_latest(&key)?;
                    Some(encode_counter(
                        base.as_deref().map_or(0, decode_max).max(value) as i64,
                    ))
                }
            };
            writes.push((key, value));
        }
        let version = resolver.version() + 1;
        shared
            .store
            .apply(version, resolver.oldest_reader(), &writes)?;
        resolver.record(writes.into_iter().map(|(k, _)| k).collect());
        Ok(())
    }
}

impl<S: LocalStore> Drop for LocalTxn<S> {
    fn drop(&mut self) {
        if self.live {
            self.shared.resolver().release(self.read_version);
        }
    }
}
