//! Candidate embedded store: redb, a copy-on-write B-tree. Kept for the
//! engine comparison (feature `redb`). A redb commit survives a crash only
//! with `Durability::Immediate`, which fsyncs every commit.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

use super::{LocalEngine, LocalSnapshot, LocalStore};
use crate::kv::{Key, KeyRange, KvError, KvResult, Value};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jfs");

pub struct RedbStore {
    db: Database,
}

fn error(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Fatal(format!("redb: {what}: {e}"))
}

pub fn open_engine(path: &Path) -> KvResult<LocalEngine<RedbStore>> {
    std::fs::create_dir_all(path).map_err(|e| error("create directory", e))?;
    let db = Database::create(path.join("meta.redb")).map_err(|e| error("open", e))?;
    let txn = db.begin_write().map_err(|e| error("begin", e))?;
    txn.open_table(TABLE)
        .map_err(|e| error("create table", e))?;
    txn.commit().map_err(|e| error("commit", e))?;
    Ok(LocalEngine::new("redb", RedbStore { db }))
}

impl LocalStore for RedbStore {
    type Snapshot = RedbSnapshot;

    fn snapshot(&self, _version: u64) -> KvResult<RedbSnapshot> {
        let txn = self.db.begin_read().map_err(|e| error("begin read", e))?;
        Ok(RedbSnapshot {
            table: txn.open_table(TABLE).map_err(|e| error("open table", e))?,
        })
    }

    fn get_latest(&self, key: &[u8]) -> KvResult<Option<Value>> {
        self.snapshot(0)?.get(key)
    }

    fn apply(
        &self,
        _version: u64,
        _oldest_reader: Option<u64>,
        writes: &[(Key, Option<Value>)],
    ) -> KvResult<()> {
        let mut txn = self.db.begin_write().map_err(|e| error("begin write", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| error("durability", e))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| error("open table", e))?;
            for (key, value) in writes {
                match value {
                    Some(v) => {
                        table
                            .insert(key.as_slice(), v.as_slice())
                            .map_err(|e| error("insert", e))?;
                    }
                    None => {
                        table
                            .remove(key.as_slice())
                            .map_err(|e| error("remove", e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| error("commit", e))
    }

    fn sync(&self) -> KvResult<()> {
        Ok(()) // Every commit is already fsynced.
    }
}

/// A borrowed key or value from a redb read.
type Guard = redb::AccessGuard<'static, &'static [u8]>;

pub struct RedbSnapshot {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl LocalSnapshot for RedbSnapshot {
    fn get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .table
            .get(key)
            .map_err(|e| error("get", e))?
            .map(|v| v.value().to_vec()))
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> KvResult<Vec<(Key, Value)>> {
        let end = match &range.end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        let iter = self
            .table
            .range::<&[u8]>((Bound::Included(range.start.as_slice()), end))
            .map_err(|e| error("range", e))?;
        let entry = |item: Result<(Guard, Guard), redb::StorageError>| {
            item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(|e| error("range", e))
        };
        if reverse {
            iter.rev().take(limit).map(entry).collect()
        } else {
            iter.take(limit).map(entry).collect()
        }
    }
}
