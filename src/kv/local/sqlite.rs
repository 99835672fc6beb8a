//! SQLite (rusqlite, bundled) in WAL mode with `synchronous=NORMAL`: a
//! commit is in the WAL before it is acknowledged (survives `kill -9`),
//! fsynced at checkpoints and by `sync`. It serves `sqlite3://PATH`
//! volumes and is a candidate of the engine comparison (feature `sqlite`).
//! Transactions are ordered by this process's resolver, so one process at
//! a time uses a database: a lock file beside it keeps others out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{LocalEngine, LocalSnapshot, LocalStore};
use crate::kv::{Key, KeyRange, KvError, KvResult, Value};

pub struct SqliteStore {
    path: PathBuf,
    /// Held (flock) while the store is open, for `sqlite3://` databases.
    _lock: Option<std::fs::File>,
    writer: Mutex<Connection>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn error(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Fatal(format!("sqlite: {what}: {e}"))
}

fn connect(path: &Path) -> KvResult<Connection> {
    let conn = Connection::open(path).map_err(|e| error("open", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    .map_err(|e| error("configure", e))?;
    Ok(conn)
}

/// The candidate store in directory `path` (the engine comparison).
pub fn open_engine(path: &Path) -> KvResult<LocalEngine<SqliteStore>> {
    std::fs::create_dir_all(path).map_err(|e| error("create directory", e))?;
    open_store(path.join("meta.sqlite"), None)
}

/// The database file `path` of a `sqlite3://PATH` URL, locked for this
/// process.
pub fn open_file(path: &Path) -> KvResult<LocalEngine<SqliteStore>> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| error("create directory", e))?;
    }
    let lock_path = PathBuf::from(format!("{}.jfs-lock", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| error(&format!("open {}", lock_path.display()), e))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(KvError::Fatal(format!(
            "sqlite3://{} is in use by another jfs process (a SQLite volume is used by one process at a time: unmount it there first)",
            path.display()
        )));
    }
    open_store(path.to_path_buf(), Some(lock))
}

fn open_store(path: PathBuf, lock: Option<std::fs::File>) -> KvResult<LocalEngine<SqliteStore>> {
    let writer = connect(&path)?;
    writer
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
        )
        .map_err(|e| error("create table", e))?;
    Ok(LocalEngine::new(
        "sqlite",
        SqliteStore {
            path,
            _lock: lock,
            writer: Mutex::new(writer),
            readers: Arc::default(),
        },
    ))
}

impl LocalStore for SqliteStore {
    type Snapshot = SqliteSnapshot;

    fn snapshot(&self, _version: u64) -> KvResult<SqliteSnapshot> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        // A read transaction takes its snapshot at its first read.
        conn.execute_batch("BEGIN DEFERRED; SELECT count(*) FROM sqlite_schema;")
            .map_err(|e| error("begin", e))?;
        Ok(SqliteSnapshot {
            conn: Some(conn),
            pool: self.readers.clone(),
        })
    }

    fn get_latest(&self, key: &[u8]) -> KvResult<Option<Value>> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        get(&writer, key)
    }

    fn apply(
        &self,
        _version: u64,
        _oldest_reader: Option<u64>,
        writes: &[(Key, Option<Value>)],
    ) -> KvResult<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = writer.transaction().map_err(|e| error("begin", e))?;
        {
            let mut put = txn
                .prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
                .map_err(|e| error("prepare", e))?;
            let mut del = txn
                .prepare_cached("DELETE FROM kv WHERE k = ?1")
                .map_err(|e| error("prepare", e))?;
            for (key, value) in writes {
                match value {
                    Some(v) => put.execute(params![key, v]),
                    None => del.execute(params![key]),
                }
                .map_err(|e| error("write", e))?;
            }
        }
        txn.commit().map_err(|e| error("commit", e))
    }

    fn sync(&self) -> KvResult<()> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .execute_batch("PRAGMA wal_checkpoint(FULL);")
            .map_err(|e| error("checkpoint", e))
    }
}

fn get(conn: &Connection, key: &[u8]) -> KvResult<Option<Value>> {
    conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")
        .and_then(|mut s| s.query_row(params![key], |row| row.get(0)).optional())
        .map_err(|e| error("get", e))
}

pub struct SqliteSnapshot {
    conn: Option<Connection>,
    pool: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteSnapshot {
    fn conn(&self) -> KvResult<&Connection> {
        self.conn
            .as_ref()
            .ok_or_else(|| error("snapshot", "closed"))
    }
}

impl LocalSnapshot for SqliteSnapshot {
    fn get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        get(self.conn()?, key)
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> KvResult<Vec<(Key, Value)>> {
        let order = if reverse { "DESC" } else { "ASC" };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn()?;
        let rows = match &range.end {
            Some(end) => {
                let sql = format!(
                    "SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k {order} LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(|e| error("prepare", e))?;
                let rows = stmt
                    .query_map(params![range.start, end, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(|e| error("scan", e))?;
                rows.collect::<Result<Vec<_>, _>>()
            }
            None => {
                let sql = format!("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k {order} LIMIT ?2");
                let mut stmt = conn.prepare_cached(&sql).map_err(|e| error("prepare", e))?;
                let rows = stmt
                    .query_map(params![range.start, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| error("scan", e))?;
                rows.collect::<Result<Vec<_>, _>>()
            }
        };
        rows.map_err(|e| error("scan", e))
    }
}

impl Drop for SqliteSnapshot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.execute_batch("COMMIT").is_ok() {
                self.pool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
        }
    }
}
