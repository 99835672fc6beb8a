//! The PostgreSQL engine (cargo feature `postgres`): the KV contract on one
//! table, `jfs_kv (k bytea PRIMARY KEY, v bytea)`, keys under the URL's
//! `prefix` so several volumes can share a database.
//!
//! A transaction reads in a `REPEATABLE READ, READ ONLY` transaction (a
//! snapshot, taken when the engine transaction begins).
//! Its commit runs in a second, `SERIALIZABLE` transaction on another
//! connection that first reads every read-conflict range and compares it
//! with what the snapshot holds there (the same query on the snapshot
//! transaction, sent at the same time): any difference is a `Conflict`.
//! Otherwise it writes and commits; PostgreSQL's serializable isolation
//! orders it against other commits, and a serialization failure there is
//! retried inside the engine, since the comparison is made again. A commit
//! that read nothing (blind writes and adds) runs READ COMMITTED: its
//! updates wait for row locks instead of failing. So a
//! commit succeeds only if what it read still holds, phantoms included,
//! and atomic adds never conflict.
//!
//! URL: `postgres://user:pass@host:5432/db?sslmode=disable&prefix=P`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use super::sql::{beyond_all_keys, pause_before_retry, COMMIT_ATTEMPTS, LIMITS};
use super::url::{Credentials, Endpoint};
use super::{
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, KvError, KvResult, Limits, Mutation,
    Value,
};

pub const ENGINE_NAME: &str = "postgres";

const SETUP: &str = r#"
CREATE TABLE IF NOT EXISTS jfs_kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE OR REPLACE FUNCTION jfs_le_add(cur bytea, delta bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
  result bytea := '\x0000000000000000'::bytea;
  carry int := 0;
  s int;
BEGIN
  FOR i IN 0..7 LOOP
    s := get_byte(delta, i) + carry;
    IF cur IS NOT NULL AND i < length(cur) THEN s := s + get_byte(cur, i); END IF;
    result := set_byte(result, i, s % 256);
    carry := s / 256;
  END LOOP;
  RETURN result;
END
$f$;
CREATE OR REPLACE FUNCTION jfs_le_max(cur bytea, other bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
  padded bytea := '\x0000000000000000'::bytea;
BEGIN
  IF cur IS NOT NULL THEN
    FOR i IN 0..least(length(cur), 8) - 1 LOOP
      padded := set_byte(padded, i, get_byte(cur, i));
    END LOOP;
  END IF;
  FOR i IN REVERSE 7..0 LOOP
    IF get_byte(padded, i) <> get_byte(other, i) THEN
      IF get_byte(padded, i) > get_byte(other, i) THEN RETURN padded; END IF;
      RETURN other;
    END IF;
  END LOOP;
  RETURN padded;
END
$f$;
"#;

const GET: &str = "SELECT k, v FROM jfs_kv WHERE k = ANY($1)";
const SCAN: &str = "SELECT k, v FROM jfs_kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3";
const SCAN_REV: &str = "SELECT k, v FROM jfs_kv WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT $3";
const CHECK: &str =
    "SELECT r.i, t.k, t.v FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS r(s, e, i), \
     LATERAL (SELECT k, v FROM jfs_kv WHERE k >= r.s AND k < r.e ORDER BY k) t ORDER BY r.i, t.k";
const PUT: &str = "INSERT INTO jfs_kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
const DELETE: &str = "DELETE FROM jfs_kv WHERE k = ANY($1)";
const ADD: &str = "INSERT INTO jfs_kv (k, v) SELECT k, jfs_le_add(NULL, d) FROM unnest($1::bytea[], $2::bytea[]) AS t(k, d) \
     ON CONFLICT (k) DO UPDATE SET v = jfs_le_add(jfs_kv.v, EXCLUDED.v)";
const MAX: &str = "INSERT INTO jfs_kv (k, v) SELECT k, jfs_le_max(NULL, d) FROM unnest($1::bytea[], $2::bytea[]) AS t(k, d) \
     ON CONFLICT (k) DO UPDATE SET v = jfs_le_max(jfs_kv.v, EXCLUDED.v)";

struct Statements {
    get: Statement,
    scan: Statement,
    scan_rev: Statement,
    check: Statement,
    put: Statement,
    delete: Statement,
    add: Statement,
    max: Statement,
}

/// One server connection and its prepared statements.
struct Conn {
    client: Arc<Client>,
    st: Arc<Statements>,
}

pub struct PostgresEngine(Arc<Inner>);

struct Inner {
    config: tokio_postgres::Config,
    address: String,
    database: String,
    space: KeySpace,
    /// Idle connections.
    pool: Mutex<Vec<Conn>>,
    setup: tokio::sync::OnceCell<()>,
}

impl PostgresEngine {
    pub fn new(
        endpoint: &Endpoint,
        database: &str,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> KvResult<PostgresEngine> {
        let mut prefix = "";
        for (name, value) in params {
            match name.as_str() {
                "prefix" => prefix = value,
                "sslmode" if matches!(value.as_str(), "disable" | "allow" | "prefer") => {}
                "sslmode" => {
                    return Err(KvError::Fatal(format!(
                        "postgres: sslmode={value} is not supported (this jfs connects without TLS): use sslmode=disable on a trusted network"
                    )))
                }
                other => {
                    return Err(KvError::Fatal(format!(
                        "unknown postgres URL parameter '{other}' (known: sslmode, prefix)"
                    )))
                }
            }
        }
        let mut config = tokio_postgres::Config::new();
        config
            .host(&endpoint.host)
            .port(endpoint.port)
            .dbname(database)
            .application_name("jfs")
            .connect_timeout(Duration::from_secs(5));
        if let Some(user) = &credentials.user {
            config.user(user);
        }
        if let Some(password) = &credentials.password {
            config.password(password.expose());
        }
        Ok(PostgresEngine(Arc::new(Inner {
            config,
            address: endpoint.to_string(),
            database: database.to_string(),
            space: KeySpace::new(prefix),
            pool: Mutex::default(),
            setup: tokio::sync::OnceCell::new(),
        })))
    }
}

impl Inner {
    async fn connect(&self) -> KvResult<Conn> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        self.setup
            .get_or_try_init(|| async {
                // Several processes may set up at once: creating what
                // exists already can fail with a unique violation.
                let mut attempt = 0;
                loop {
                    match client.batch_execute(SETUP).await {
                        Ok(()) => return Ok(()),
                        Err(_) if attempt < 5 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        Err(e) => return Err(self.connect_error(&e)),
                    }
                }
            })
            .await?;
        let prepare = |sql: &'static str| client.prepare(sql);
        let (get, scan, scan_rev, check, put, delete, add, max) = tokio::try_join!(
            prepare(GET),
            prepare(SCAN),
            prepare(SCAN_REV),
            prepare(CHECK),
            prepare(PUT),
            prepare(DELETE),
            prepare(ADD),
            prepare(MAX)
        )
        .map_err(|e| self.connect_error(&e))?;
        Ok(Conn {
            client: Arc::new(client),
            st: Arc::new(Statements {
                get,
                scan,
                scan_rev,
                check,
                put,
                delete,
                add,
                max,
            }),
        })
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> KvError {
        let at = format!("postgres at {}/{}", self.address, self.database);
        match e.code() {
            Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                KvError::Fatal(format!(
                    "{at}: authentication failed (wrong user name or password): give them in the URL (postgres://USER:PASSWORD@host/db) or the password in META_PASSWORD"
                ))
            }
            Some(c) if *c == SqlState::INVALID_CATALOG_NAME => KvError::Fatal(format!(
                "{at}: database '{}' does not exist: create it first (createdb {})",
                self.database, self.database
            )),
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => KvError::Fatal(format!(
                "{at}: permission denied ({}): the user needs to create and write table jfs_kv",
                db_message(e)
            )),
            Some(_) => KvError::Fatal(format!("{at}: {}", db_message(e))),
            None => KvError::Transient(format!(
                "{at} does not answer ({e}): check that PostgreSQL runs there and the address and port are right"
            )),
        }
    }

    async fn take(&self) -> KvResult<Conn> {
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match pooled {
                Some(conn) if conn.client.is_closed() => continue,
                Some(conn) => return Ok(conn),
                None => return self.connect().await,
            }
        }
    }

    /// Ends the open transaction of `conn` with `sql` (COMMIT or
    /// ROLLBACK) without waiting, and pools the connection: whatever uses
    /// it next is queued behind.
    async fn release(&self, conn: Conn, sql: &'static str) {
        let client = conn.client.clone();
        drop(Sent::now(async move { client.batch_execute(sql).await }).await);
        if !conn.client.is_closed() {
            self.pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

/// The server's own message of a database error.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn query_error(e: &tokio_postgres::Error) -> KvError {
    if is_retryable(e) {
        return KvError::Conflict(format!("postgres: {}", db_message(e)));
    }
    match e.code() {
        Some(c) if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => {
            KvError::TooLarge(format!("postgres: {}", db_message(e)))
        }
        Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::TOO_MANY_CONNECTIONS => {
            KvError::Transient(format!("postgres: {}", db_message(e)))
        }
        // The connection's transaction failed earlier (its error went
        // unseen): nothing of it commits, and the connection is not reused
        // (`begin` and `commit` drop a connection that answered an error
        // they could not clear). Retrying on another one is right.
        Some(c) if *c == SqlState::IN_FAILED_SQL_TRANSACTION => {
            KvError::Transient(format!("postgres: {}", db_message(e)))
        }
        Some(_) => KvError::Fatal(format!("postgres: {}", db_message(e))),
        None => KvError::Transient(format!("postgres: {e}")),
    }
}

/// A request already sent to the server whose answer is read later.
enum Sent<T> {
    Waiting(Pin<Box<dyn Future<Output = T> + Send>>),
    Done(Option<T>),
}

impl<T> Sent<T> {
    /// Polls `fut` once, which sends its request (tokio-postgres queues a
    /// request on the connection at the first poll).
    async fn now(fut: impl Future<Output = T> + Send + 'static) -> Sent<T> {
        let mut fut: Pin<Box<dyn Future<Output = T> + Send>> = Box::pin(fut);
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(v) => Sent::Done(Some(v)),
            Poll::Pending => Sent::Waiting(fut),
        }
    }

    async fn answer(&mut self) -> Option<T> {
        match self {
            Sent::Waiting(fut) => {
                let v = fut.as_mut().await;
                *self = Sent::Done(None);
                Some(v)
            }
            Sent::Done(v) => v.take(),
        }
    }
}

#[async_trait]
impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        let conn = self.0.take().await?;
        let client = conn.client.clone();
        // The snapshot is taken before begin returns: a commit that read
        // nothing still checks its declared conflicts from here. (Sending
        // BEGIN without waiting saved a round trip but let the snapshot
        // start after a write that followed begin, under load.)
        let mut begun = Sent::now(async move {
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT 1")
                .await
        })
        .await;
        if let Some(Err(e)) = begun.answer().await {
            return Err(query_error(&e));
        }
        Ok(Box::new(PostgresTxn {
            inner: self.0.clone(),
            reader: Some(conn),
            begun,
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        // A PostgreSQL commit is in its WAL, flushed, before it returns.
        Ok(())
    }
}

struct PostgresTxn {
    inner: Arc<Inner>,
    /// The snapshot transaction's connection (None once ended).
    reader: Option<Conn>,
    begun: Sent<Result<(), tokio_postgres::Error>>,
}

impl PostgresTxn {
    /// The snapshot connection, once its BEGIN has been answered.
    async fn reader(&mut self) -> KvResult<(Arc<Client>, Arc<Statements>)> {
        if let Some(Err(e)) = self.begun.answer().await {
            return Err(query_error(&e));
        }
        let conn = self
            .reader
            .as_ref()
            .ok_or_else(|| KvError::Fatal("postgres: transaction already ended".into()))?;
        Ok((conn.client.clone(), conn.st.clone()))
    }

    async fn end_reader(&mut self, sql: &'static str) {
        if let Some(conn) = self.reader.take() {
            self.inner.release(conn, sql).await;
        }
    }

    /// Each range's rows, as the reading or the committing transaction
    /// sees them.
    async fn check_rows(
        client: &Client,
        st: &Statements,
        starts: &[Key],
        ends: &[Key],
    ) -> Result<Vec<(i64, Key, Value)>, tokio_postgres::Error> {
        let rows = client.query(&st.check, &[&starts, &ends]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// One attempt of the commit transaction on `writer`: the conflict
    /// ranges as the writer sees them, then the writes; the transaction is
    /// left open.
    async fn write_attempt(
        writer: &Conn,
        starts: &[Key],
        ends: &[Key],
        writes: &Writes,
    ) -> Result<Vec<(i64, Key, Value)>, tokio_postgres::Error> {
        let (client, st) = (&writer.client, &writer.st);
        // All sent at once, in this order (`biased`), answered in order.
        // A commit that read nothing has nothing to compare: READ COMMITTED
        // makes its updates wait for a row's lock and apply to the newest
        // version, so blind adds never fail to serialize.
        let begin = client.batch_execute(if starts.is_empty() {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        } else {
            "BEGIN ISOLATION LEVEL SERIALIZABLE"
        });
        let check = async {
            if starts.is_empty() {
                Ok(Vec::new())
            } else {
                Self::check_rows(client, st, starts, ends).await
            }
        };
        let puts = async {
            if !writes.put_keys.is_empty() {
                client
                    .execute(&st.put, &[&writes.put_keys, &writes.put_values])
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        let deletes = async {
            if !writes.deletes.is_empty() {
                client.execute(&st.delete, &[&writes.deletes]).await?;
            }
            Ok(())
        };
        let adds = async {
            if !writes.add_keys.is_empty() {
                client
                    .execute(&st.add, &[&writes.add_keys, &writes.add_values])
                    .await?;
            }
            Ok(())
        };
        let maxes = async {
            if !writes.max_keys.is_empty() {
                client
                    .execute(&st.max, &[&writes.max_keys, &writes.max_values])
                    .await?;
            }
            Ok(())
        };
        let ((), rows, (), (), (), ()) =
            tokio::try_join!(biased; begin, check, puts, deletes, adds, maxes)?;
        Ok(rows)
    }
}

/// A commit's writes as the statements' array parameters.
#[derive(Default)]
struct Writes {
    put_keys: Vec<Key>,
    put_values: Vec<Value>,
    deletes: Vec<Key>,
    add_keys: Vec<Key>,
    add_values: Vec<Value>,
    max_keys: Vec<Key>,
    max_values: Vec<Value>,
}

impl Drop for PostgresTxn {
    fn drop(&mut self) {
        if let Some(conn) = self.reader.take() {
            // Dropped without commit: roll back off the caller's path.
            let inner = self.inner.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { inner.release(conn, "ROLLBACK").await });
            }
        }
    }
}

fn pairs(rows: Vec<tokio_postgres::Row>) -> KvResult<Vec<(Key, Value)>> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| query_error(&e))
}

#[async_trait]
impl EngineTxn for PostgresTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .batch_get(&[key.to_vec()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let (client, st) = self.reader().await?;
        let space = &self.inner.space;
        let stored: Vec<Key> = keys.iter().map(|k| space.key(k)).collect();
        let rows = client
            .query(&st.get, &[&stored])
            .await
            .map_err(|e| query_error(&e))?;
        let found: std::collections::HashMap<Key, Value> = pairs(rows)?.into_iter().collect();
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
        let (client, st) = self.reader().await?;
        let space = &self.inner.space;
        let start = space.key(&range.start);
        let end = space.end(range).unwrap_or_else(beyond_all_keys);
        let limit = limit.min(i64::MAX as usize) as i64;
        let statement = if reverse { &st.scan_rev } else { &st.scan };
        let rows = client
            .query(statement, &[&start, &end, &limit])
            .await
            .map_err(|e| query_error(&e))?;
        Ok(pairs(rows)?
            .into_iter()
            .map(|(k, v)| (space.strip(&k).to_vec(), v))
            .collect())
    }

    async fn finish(mut self: Box<Self>) -> KvResult<()> {
        self.end_reader("COMMIT").await;
        Ok(())
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            self.end_reader("COMMIT").await;
            return Ok(());
        }
        let space = self.inner.space.clone();
        let starts: Vec<Key> = request
            .read_conflicts
            .iter()
            .map(|r| space.key(&r.start))
            .collect();
        let ends: Vec<Key> = request
            .read_conflicts
            .iter()
            .map(|r| space.end(r).unwrap_or_else(beyond_all_keys))
            .collect();
        let mut writes = Writes::default();
        for (key, mutation) in &request.mutations {
            let key = space.key(key);
            match mutation {
                Mutation::Put(value) => {
                    writes.put_keys.push(key);
                    writes.put_values.push(value.clone());
                }
                Mutation::Delete => writes.deletes.push(key),
                Mutation::Add(delta) => {
                    writes.add_keys.push(key);
                    writes.add_values.push(delta.to_le_bytes().to_vec());
                }
                Mutation::Max(at_least) => {
                    writes.max_keys.push(key);
                    writes.max_values.push(at_least.to_le_bytes().to_vec());
                }
            }
        }
        // What the snapshot holds in the conflict ranges, asked while the
        // commit transaction runs.
        let reader = if starts.is_empty() {
            None
        } else {
            Some(self.reader().await?)
        };
        let snapshot_rows = async {
            match &reader {
                None => Ok(Vec::new()),
                Some((client, st)) => Self::check_rows(client, st, &starts, &ends)
                    .await
                    .map_err(|e| query_error(&e)),
            }
        };
        let writer = self.inner.take().await?;
        let mut attempt = 0;
        let mut snapshot_rows = Some(snapshot_rows);
        let mut expected: Option<Vec<(i64, Key, Value)>> = None;
        // Whether the connection is known to be outside a transaction
        // when the loop ends, so that the next user may begin one.
        let mut reusable = true;
        let outcome = loop {
            attempt += 1;
            let written = match snapshot_rows.take() {
                Some(snap) => {
                    let (snap, written) =
                        tokio::join!(snap, Self::write_attempt(&writer, &starts, &ends, &writes));
                    expected = Some(snap?);
                    written
                }
                None => Self::write_attempt(&writer, &starts, &ends, &writes).await,
            };
            let result = match written {
                Ok(rows) if Some(&rows) != expected.as_ref() => Err(KvError::Conflict(
                    "postgres: a range this transaction read changed after its snapshot".into(),
                )),
                Ok(_) => match writer.client.batch_execute("COMMIT").await {
                    Ok(()) => break Ok(()),
                    Err(e) if is_retryable(&e) => Err(query_error(&e)),
                    Err(e) if e.code().is_none() => {
                        reusable = false;
                        break Err(KvError::MaybeCommitted(format!(
                            "postgres: connection lost during commit: {e}"
                        )));
                    }
                    Err(e) => Err(query_error(&e)),
                },
                Err(e) => Err(query_error(&e)),
            };
            let retry =
                matches!(&result, Err(KvError::Conflict(m)) if !m.contains("changed after"));
            if writer.client.is_closed() {
                break result;
            }
            if writer.client.batch_execute("ROLLBACK").await.is_err() {
                reusable = false;
                break result;
            }
            if !retry || attempt >= COMMIT_ATTEMPTS {
                break result;
            }
            pause_before_retry(attempt, 200).await;
        };
        if reusable && !writer.client.is_closed() {
            self.inner
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(writer);
        }
        self.end_reader("COMMIT").await;
        outcome
    }
}
