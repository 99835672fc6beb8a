//! The embedded default store: fjall, a log-structured (LSM) store with a
//! write-ahead journal. Every commit is written to the journal and handed to
//! the OS before it is acknowledged, so it survives `kill -9`; `sync` fsyncs
//! the journal for power loss.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use super::{LocalEngine, LocalSnapshot, LocalStore};
use crate::kv::{Key, KeyRange, KvError, KvResult, Value};

/// Name of the embedded default in URLs (`fjall://PATH`) and messages.
pub const ENGINE_NAME: &str = "fjall";
const KEYSPACE: &str = "jfs";
/// Bytes of writes held in memory before they are flushed to a table file
/// (fjall's default is 64 MiB): the memtable is heap memory of the mount,
/// refilled from the journal at every start, and a mount's metadata
/// writes filled it (22 MiB of a 85 MiB peak while `fio` read a file).
const MEMTABLE_BYTES: u64 = 8 << 20;
/// Block cache of the table files (fjall's default is 32 MiB).
const CACHE_BYTES: u64 = 16 << 20;

pub struct FjallStore {
    db: Database,
    keyspace: Keyspace,
}

impl FjallStore {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> KvResult<Self> {
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
            fjall::Error::Locked => KvError::Fatal(format!(
                "metadata store {} is in use by another process (the embedded engine allows one process at a time; \
                 use etcd, Redis or SQL to share a volume)",
                path.display()
            )),
            e => KvError::Fatal(format!("cannot open metadata store {}: {e}", path.display())),
        })?;
        let keyspace = db
            .keyspace(KEYSPACE, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| io_error("open keyspace", e))?;
        Ok(FjallStore { db, keyspace })
    }
}

/// Opens the embedded default engine at `path`.
pub fn open_engine(path: &Path) -> KvResult<LocalEngine<FjallStore>> {
    Ok(LocalEngine::new(ENGINE_NAME, FjallStore::open(path)?))
}

fn io_error(what: &str, e: fjall::Error) -> KvError {
    KvError::Fatal(format!("{ENGINE_NAME}: {what}: {e}"))
}

impl LocalStore for FjallStore {
    type Snapshot = FjallSnapshot;

    fn snapshot(&self, _version: u64) -> KvResult<FjallSnapshot> {
        Ok(FjallSnapshot {
            snapshot: self.db.snapshot(),
            keyspace: self.keyspace.clone(),
        })
    }

    fn get_latest(&self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .keyspace
            .get(key)
            .map_err(|e| io_error("read", e))?
            .map(|v| v.to_vec()))
    }

    fn apply(
        &self,
        _version: u64,
        _oldest_reader: Option<u64>,
        writes: &[(Key, Option<Value>)],
    ) -> KvResult<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(&self.keyspace, key.as_slice(), value.as_slice()),
                None => batch.remove(&self.keyspace, key.as_slice()),
            }
        }
        batch.commit().map_err(|e| io_error("commit", e))
    }

    fn sync(&self) -> KvResult<()> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| io_error("sync", e))
    }
}

pub struct FjallSnapshot {
    snapshot: Snapshot,
    keyspace: Keyspace,
}

impl LocalSnapshot for FjallSnapshot {
    fn get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .snapshot
            .get(&self.keyspace, key)
            .map_err(|e| io_error("read", e))?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> KvResult<Vec<(Key, Value)>> {
        let iter = self
            .snapshot
            .range::<&[u8], _>(&self.keyspace, range.bounds());
        let mut out = Vec::new();
        let mut push = |guard: fjall::Guard| -> KvResult<bool> {
            let (k, v) = guard.into_inner().map_err(|e| io_error("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        };
        if reverse {
            for guard in iter.rev() {
                if !push(guard)? {
                    break;
                }
            }
        } else {
            for guard in iter {
                if !push(guard)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}
