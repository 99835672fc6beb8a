//! The MySQL / MariaDB engine (cargo feature `mysql`): the KV contract on
//! one InnoDB table, `jfs_kv (k VARBINARY PRIMARY KEY, v LONGBLOB)`, keys
//! under the URL's `prefix` so several volumes can share a database.
//!
//! As the PostgreSQL engine: a transaction reads in a consistent snapshot
//! (`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` under
//! REPEATABLE READ); its commit runs in a `SERIALIZABLE` transaction on a
//! second connection, whose reads lock what they read and the gaps between
//! (next-key locks: no insert into a range it read until it ends). That
//! transaction reads every read-conflict range, compares it with the same
//! ranges in the snapshot (any difference is a `Conflict`), reads the
//! counters it adds to `FOR UPDATE`, writes and commits. Deadlocks and lock
//! wait timeouts there are retried inside the engine, the comparison made
//! again, so atomic adds never conflict.
//!
//! Keys and values travel as hexadecimal literals (`X'..'`) in text
//! queries: binary-safe, nothing to escape.
//!
//! URL: `mysql://user:pass@(host:3306)/db[?prefix=P]`.

use std::collections::HashMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolOpts};

use super::sql::{beyond_all_keys, pause_before_retry, COMMIT_ATTEMPTS, LIMITS};
use super::url::{Credentials, Endpoint};
use super::{
    counter_value, CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, KvError, KvResult,
    Limits, Mutation, Value,
};

pub const ENGINE_NAME: &str = "mysql";

const SETUP: &str = "CREATE TABLE IF NOT EXISTS jfs_kv (\
     k VARBINARY(3072) NOT NULL PRIMARY KEY, v LONGBLOB NOT NULL) ENGINE=InnoDB";

/// Server error codes.
const ACCESS_DENIED: u16 = 1045;
const UNKNOWN_DATABASE: u16 = 1049;
const LOCK_WAIT_TIMEOUT: u16 = 1205;
const DEADLOCK: u16 = 1213;
const TABLE_ACCESS_DENIED: u16 = 1142;

pub struct MysqlEngine {
    pool: Pool,
    address: String,
    database: String,
    space: KeySpace,
    setup: tokio::sync::OnceCell<()>,
}

impl MysqlEngine {
    pub fn new(
        endpoint: &Endpoint,
        database: &str,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> KvResult<MysqlEngine> {
        let mut prefix = "";
        for (name, value) in params {
            match name.as_str() {
                "prefix" => prefix = value,
                // Parameters of JuiceFS's (Go driver's) URLs that change
                // nothing here.
                "charset" | "parseTime" | "loc" | "timeout" => {}
                other => {
                    return Err(KvError::Fatal(format!(
                        "unknown mysql URL parameter '{other}' (known: prefix)"
                    )))
                }
            }
        }
        let opts = OptsBuilder::default()
            .ip_or_hostname(endpoint.host.clone())
            .tcp_port(endpoint.port)
            .db_name(Some(database))
            .user(credentials.user.clone())
            .pass(
                credentials
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_string()),
            )
            .prefer_socket(false)
            .stmt_cache_size(0)
            .init(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "SET SESSION innodb_lock_wait_timeout = 10",
            ])
            .pool_opts(PoolOpts::default().with_reset_connection(false));
        Ok(MysqlEngine {
            pool: Pool::new(opts),
            address: endpoint.to_string(),
            database: database.to_string(),
            space: KeySpace::new(prefix),
            setup: tokio::sync::OnceCell::new(),
        })
    }

    async fn conn(&self) -> KvResult<Conn> {
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(|e| self.connect_error(&e))?;
        self.setup
            .get_or_try_init(|| async {
                conn.query_drop(SETUP)
                    .await
                    .map_err(|e| self.connect_error(&e))
            })
            .await?;
        Ok(conn)
    }

    fn connect_error(&self, e: &mysql_async::Error) -> KvError {
        let at = format!("mysql at {}/{}", self.address, self.database);
        match e {
            mysql_async::Error::Server(s) if s.code == ACCESS_DENIED => KvError::Fatal(format!(
                "{at}: authentication failed (wrong user name or password): give them in the URL (mysql://USER:PASSWORD@(host:3306)/db) or the password in META_PASSWORD"
            )),
            mysql_async::Error::Server(s) if s.code == UNKNOWN_DATABASE => KvError::Fatal(format!(
                "{at}: database '{}' does not exist: create it first (CREATE DATABASE {})",
                self.database, self.database
            )),
            mysql_async::Error::Server(s) if s.code == TABLE_ACCESS_DENIED => KvError::Fatal(
                format!("{at}: permission denied ({}): the user needs to create and write table jfs_kv", s.message),
            ),
            mysql_async::Error::Server(s) => KvError::Fatal(format!("{at}: {}", s.message)),
            other => KvError::Transient(format!(
                "{at} does not answer ({other}): check that MySQL/MariaDB runs there and the address and port are right"
            )),
        }
    }
}

fn is_retryable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == DEADLOCK || s.code == LOCK_WAIT_TIMEOUT)
}

fn is_connection_error(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
}

fn query_error(e: &mysql_async::Error) -> KvError {
    match e {
        _ if is_retryable(e) => KvError::Conflict(format!("mysql: {e}")),
        mysql_async::Error::Server(s) => KvError::Fatal(format!("mysql: {}", s.message)),
        other => KvError::Transient(format!("mysql: {other}")),
    }
}

/// `X'...'`: a binary literal.
fn hex(out: &mut String, bytes: &[u8]) {
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
}

fn lit(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 3);
    hex(&mut s, bytes);
    s
}

/// One query reading every range: (range index, key, value) in order.
fn ranges_query(ranges: &[(Key, Key)]) -> String {
    let mut sql = String::new();
    for (i, (start, end)) in ranges.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        let _ = write!(
            sql,
            "(SELECT {i} AS i, k, v FROM jfs_kv WHERE k >= {} AND k < {})",
            lit(start),
            lit(end)
        );
    }
    sql.push_str(" ORDER BY i, k");
    sql
}

#[async_trait]
impl Engine for MysqlEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let mut conn = self.conn().await?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(|e| query_error(&e))?;
        Ok(Box::new(MysqlTxn {
            reader: Some(conn),
            pool: self.pool.clone(),
            space: self.space.clone(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        // With innodb_flush_log_at_trx_commit=1 (the default) a commit is
        // flushed before it returns.
        Ok(())
    }
}

struct MysqlTxn {
    reader: Option<Conn>,
    pool: Pool,
    space: KeySpace,
}

impl MysqlTxn {
    fn reader(&mut self) -> KvResult<&mut Conn> {
        self.reader
            .as_mut()
            .ok_or_else(|| KvError::Fatal("mysql: transaction already ended".into()))
    }

    async fn end_reader(&mut self) {
        if let Some(mut conn) = self.reader.take() {
            // Back to the pool only if the snapshot ended cleanly.
            if conn.query_drop("COMMIT").await.is_err() {
                let _ = conn.disconnect().await;
            }
        }
    }

    /// One attempt of the commit transaction on `writer`; left open.
    async fn write_attempt(
        writer: &mut Conn,
        check: &Option<String>,
        counters: &[(Key, Mutation)],
        writes: &[(Key, Mutation)],
    ) -> Result<Vec<(u64, Key, Value)>, mysql_async::Error> {
        writer
            .query_drop("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await?;
        writer.query_drop("START TRANSACTION").await?;
        // SERIALIZABLE: these plain reads take shared next-key locks.
        let rows = match check {
            Some(sql) => writer.query(sql).await?,
            None => Vec::new(),
        };
        let mut puts: Vec<(Key, Value)> = Vec::new();
        let mut deletes: Vec<&Key> = Vec::new();
        if !counters.is_empty() {
            let mut sql = String::from("SELECT k, v FROM jfs_kv WHERE k IN (");
            for (i, (key, _)) in counters.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                hex(&mut sql, key);
            }
            sql.push_str(") FOR UPDATE");
            let current: HashMap<Key, Value> = writer
                .query::<(Key, Value), _>(sql)
                .await?
                .into_iter()
                .collect();
            for (key, mutation) in counters {
                let now = current.get(key).map(Vec::as_slice).unwrap_or_default();
                puts.push((key.clone(), counter_value(mutation, now)));
            }
        }
        for (key, mutation) in writes {
            match mutation {
                Mutation::Put(value) => puts.push((key.clone(), value.clone())),
                Mutation::Delete => deletes.push(key),
                _ => {}
            }
        }
        let mut sql = String::new();
        if !puts.is_empty() {
            sql.push_str("INSERT INTO jfs_kv (k, v) VALUES ");
            for (i, (key, value)) in puts.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                hex(&mut sql, key);
                sql.push(',');
                hex(&mut sql, value);
                sql.push(')');
            }
            sql.push_str(" ON DUPLICATE KEY UPDATE v = VALUES(v);");
        }
        if !deletes.is_empty() {
            sql.push_str("DELETE FROM jfs_kv WHERE k IN (");
            for (i, key) in deletes.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                hex(&mut sql, key);
            }
            sql.push_str(");");
        }
        if !sql.is_empty() {
            writer.query_drop(sql).await?;
        }
        Ok(rows)
    }
}

impl Drop for MysqlTxn {
    fn drop(&mut self) {
        if let Some(mut conn) = self.reader.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if conn.query_drop("ROLLBACK").await.is_err() {
                        let _ = conn.disconnect().await;
                    }
                });
            }
        }
    }
}

#[async_trait]
impl EngineTxn for MysqlTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .batch_get(&[key.to_vec()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<Key> = keys.iter().map(|k| self.space.key(k)).collect();
        let mut sql = String::from("SELECT k, v FROM jfs_kv WHERE k IN (");
        for (i, key) in stored.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            hex(&mut sql, key);
        }
        sql.push(')');
        let found: HashMap<Key, Value> = self
            .reader()?
            .query::<(Key, Value), _>(sql)
            .await
            .map_err(|e| query_error(&e))?
            .into_iter()
            .collect();
        Ok(stored.iter().map(|k| found.get(k).cloned()).collect())
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
        let start = self.space.key(&range.start);
        let end = self.space.end(range).unwrap_or_else(beyond_all_keys);
        let sql = format!(
            "SELECT k, v FROM jfs_kv WHERE k >= {} AND k < {} ORDER BY k{} LIMIT {}",
            lit(&start),
            lit(&end),
            if reverse { " DESC" } else { "" },
            limit.min(u64::MAX as usize)
        );
        let rows = self
            .reader()?
            .query::<(Key, Value), _>(sql)
            .await
            .map_err(|e| query_error(&e))?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (self.space.strip(&k).to_vec(), v))
            .collect())
    }

    async fn finish(mut self: Box<Self>) -> KvResult<()> {
        self.end_reader().await;
        Ok(())
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            self.end_reader().await;
            return Ok(());
        }
        let space = self.space.clone();
        let ranges: Vec<(Key, Key)> = request
            .read_conflicts
            .iter()
            .map(|r| {
                (
                    space.key(&r.start),
                    space.end(r).unwrap_or_else(beyond_all_keys),
                )
            })
            .collect();
        // One query for both sides: the snapshot reads it plainly, the
        // SERIALIZABLE commit transaction with shared next-key locks.
        let check = (!ranges.is_empty()).then(|| ranges_query(&ranges));
        let (counters, writes): (Vec<(Key, Mutation)>, Vec<(Key, Mutation)>) = request
            .mutations
            .iter()
            .map(|(k, m)| (space.key(k), m.clone()))
            .partition(|(_, m)| matches!(m, Mutation::Add(_) | Mutation::Max(_)));
        // What the snapshot holds in the conflict ranges.
        let expected: Vec<(u64, Key, Value)> = match &check {
            Some(sql) => self
                .reader()?
                .query(sql.as_str())
                .await
                .map_err(|e| query_error(&e))?,
            None => Vec::new(),
        };
        self.end_reader().await;
        let mut writer = self.pool.get_conn().await.map_err(|e| query_error(&e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match Self::write_attempt(&mut writer, &check, &counters, &writes).await {
                Ok(rows) if rows != expected => Err(KvError::Conflict(
                    "mysql: a range this transaction read changed after its snapshot".into(),
                )),
                Ok(_) => match writer.query_drop("COMMIT").await {
                    Ok(()) => return Ok(()),
                    Err(e) if is_connection_error(&e) => {
                        return Err(KvError::MaybeCommitted(format!(
                            "mysql: connection lost during commit: {e}"
                        )))
                    }
                    Err(e) => Err(query_error(&e)),
                },
                Err(e) if is_connection_error(&e) => return Err(query_error(&e)),
                Err(e) => Err(query_error(&e)),
            };
            let retry =
                matches!(&result, Err(KvError::Conflict(m)) if !m.contains("changed after"));
            if writer.query_drop("ROLLBACK").await.is_err() {
                return result;
            }
            if !retry || attempt >= COMMIT_ATTEMPTS {
                return result;
            }
            pause_before_retry(attempt, 500).await;
        }
    }
}
