//! The etcd and Redis engines answer tracked reads from what they last saw
//! of a key and verify the answer at commit: two engines (two hosts) on one
//! key space, one changing a key the other remembers. The stale answer must
//! never decide anything: a writing transaction and a read-only one both
//! retry and see the new value. Also the Redis engine's bookkeeping
//! invariants, which its commit script relies on. Ignored without
//! JFS_TEST_ETCD / JFS_TEST_REDIS.

use std::sync::atomic::{AtomicU32, Ordering};

use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, Meta, MetaError, SessionInfo, SliceRecord, Volume, ROOT_INO, R_OK, W_OK};
use libtest_mimic::{Arguments, Failed, Trial};

fn open(url: &str) -> Result<Db, Failed> {
    let engine = jfs::kv::url::open_engine(&MetaUrl::parse(url)?)?;
    Ok(Db::new(engine, DbOptions::default()))
}

/// `server` with a fresh key space of its own, named after `what`.
fn fresh_key_space(server: &str, what: &str) -> String {
    let tag = format!("{what}-{:016x}", fastrand::u64(..));
    if server.starts_with("etcd://") {
        format!("{}/{tag}", server.trim_end_matches('/'))
    } else {
        let sep = if server.contains('?') { '&' } else { '?' };
        format!("{server}{sep}prefix={tag}")
    }
}

async fn stale_answers_never_decide(server: String) -> Result<(), Failed> {
    let url = fresh_key_space(&server, "knowledge");
    let (a, b) = (open(&url)?, open(&url)?);
    // A sees the key absent, then B creates it.
    let seen = a
        .run("look", |tx| async move { tx.get(b"k").await })
        .await?;
    if seen.is_some() {
        return Err("a fresh key space has the key".into());
    }
    b.run("create", |tx| async move {
        tx.put(b"k".to_vec(), b"from b".to_vec())
    })
    .await?;
    // A creates it only if absent: its remembered "absent" is stale.
    let attempts = AtomicU32::new(0);
    let created = a
        .run("create if absent", |tx| {
            let attempts = &attempts;
            async move {
                attempts.fetch_add(1, Ordering::Relaxed);
                if tx.get(b"k").await?.is_some() {
                    return Ok(false);
                }
                tx.put(b"k".to_vec(), b"from a".to_vec())?;
                Ok(true)
            }
        })
        .await?;
    if created {
        return Err("A overwrote B's key on a stale 'absent'".into());
    }
    eprintln!(
        "writing transaction: {} attempts",
        attempts.load(Ordering::Relaxed)
    );
    // A now remembers "from b"; B changes it; a read-only transaction of A
    // must return the new value.
    b.run("change", |tx| async move {
        tx.put(b"k".to_vec(), b"again b".to_vec())
    })
    .await?;
    let read = a
        .run("read", |tx| async move { tx.get(b"k").await })
        .await?;
    if read.as_deref() != Some(b"again b".as_slice()) {
        return Err(format!("read-only transaction returned {read:?}").into());
    }
    Ok(())
}

/// A host opening a file answers its attributes and first chunk from what
/// its engine remembers, verified by the open's commit: when another host
/// changed the file (or removed it) since this one last read it, the open
/// still returns what is current (close-to-open across hosts).
async fn an_open_sees_another_hosts_change(server: String) -> Result<(), Failed> {
    let url = fresh_key_space(&server, "open");
    let (da, db) = (open(&url)?, open(&url)?);
    let volume = Volume {
        trash_days: 0,
        ..Volume::new("open", "file", "/tmp/none")
    };
    Meta::format(&da, &volume, false).await?;
    let (a, b) = (Meta::load(da).await?, Meta::load(db).await?);
    for (meta, host) in [(&a, "a"), (&b, "b")] {
        let info = SessionInfo {
            host: host.into(),
            pid: 1,
            mount_point: "/mnt".into(),
            version: "test".into(),
        };
        meta.new_session(&info, 60).await?;
    }
    let ctx = Ctx::root();
    let slice = |id: u64, len: u32| SliceRecord {
        pos: 0,
        id,
        size: len,
        offset: 0,
        len,
    };
    let (ino, _) = a.create_open(&ctx, ROOT_INO, b"f", 0o644).await?;
    a.write_slice(ino, 0, slice(1, 100)).await?;
    a.close(ino).await?;

    // B reads the file: its engine now remembers the record and chunk.
    b.lookup(&ctx, ROOT_INO, b"f").await?;
    let (attr, records) = b.open_reading(&ctx, ino, R_OK).await?;
    if attr.length != 100 || records.as_ref().map(Vec::len) != Some(1) {
        return Err(format!("first open: length {}, records {records:?}", attr.length).into());
    }
    b.close(ino).await?;

    // A writes again; B opens without looking the file up again.
    a.open(&ctx, ino, W_OK).await?;
    a.write_slice(ino, 0, slice(2, 300)).await?;
    a.close(ino).await?;
    let (attr, records) = b.open_reading(&ctx, ino, R_OK).await?;
    let ids: Vec<u64> = records.unwrap_or_default().iter().map(|r| r.id).collect();
    if attr.length != 300 || ids != [1, 2] {
        return Err(format!(
            "open after A's write: length {}, slices {ids:?}",
            attr.length
        )
        .into());
    }
    b.close(ino).await?;

    // A removes it; B's open must not find it.
    a.unlink(&ctx, ROOT_INO, b"f").await?;
    match b.open_reading(&ctx, ino, R_OK).await {
        Err(MetaError::Errno(libc::ENOENT)) => Ok(()),
        other => Err(format!("open after A's unlink: {:?}", other.map(|(a, _)| a.length)).into()),
    }
}

/// After puts, overwrites, deletes, re-creates and counter updates, the
/// Redis engine's own structures keep the invariants its commit script
/// relies on: a key with a value has no tombstone, a deleted key has one,
/// and the keys with a version are exactly the index.
async fn redis_bookkeeping_invariants(server: String) -> Result<(), Failed> {
    use std::collections::BTreeSet;

    let prefix = format!("layout{:016x}", fastrand::u64(..));
    let sep = if server.contains('?') { '&' } else { '?' };
    let db = open(&format!("{server}{sep}prefix={prefix}"))?;
    // (what, key, value to put or None to delete)
    type Step = (&'static str, &'static [u8], Option<&'static [u8]>);
    let steps: [Step; 9] = [
        ("create", b"a", Some(b"1")),
        ("overwrite", b"a", Some(b"2")),
        ("create", b"b", Some(b"1")),
        ("delete", b"a", None),
        ("re-create", b"a", Some(b"3")),
        ("delete", b"b", None),
        ("delete never written", b"z", None),
        ("delete", b"a", None),
        ("re-create", b"a", Some(b"4")),
    ];
    for (what, key, value) in steps {
        let (key, value) = (key.to_vec(), value.map(<[u8]>::to_vec));
        db.run(what, |tx| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                match value {
                    Some(v) => tx.put(key, v),
                    None => tx.delete(key),
                }
            }
        })
        .await?;
    }
    for delta in [5, -2] {
        db.run("count", |tx| async move { tx.add(b"c".to_vec(), delta) })
            .await?;
    }
    db.run(
        "delete counter",
        |tx| async move { tx.delete(b"c".to_vec()) },
    )
    .await?;
    db.run("count again", |tx| async move { tx.add(b"c".to_vec(), 1) })
        .await?;

    let client = redis::Client::open(server.split('?').next().unwrap_or(&server))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = |part: &str| format!("{prefix}:{part}");
    let values = members(&mut conn, &["HKEYS", &key("v")]).await?;
    let versioned = members(&mut conn, &["HKEYS", &key("n")]).await?;
    let index = members(&mut conn, &["ZRANGE", &key("i"), "0", "-1"]).await?;
    let tombstones = members(&mut conn, &["ZRANGE", &key("t"), "0", "-1"]).await?;
    let keys = |names: &[&[u8]]| names.iter().map(|k| k.to_vec()).collect::<BTreeSet<_>>();
    if values != keys(&[b"a", b"c"]) {
        return Err(format!("keys with a value: {values:?}").into());
    }
    if tombstones != keys(&[b"b"]) {
        return Err(format!("tombstones: {tombstones:?} (want b only)").into());
    }
    if versioned != index || index != keys(&[b"a", b"b", b"c"]) {
        return Err(format!("versioned keys {versioned:?}, index {index:?}").into());
    }
    let got = db
        .run("read", |tx| async move { tx.get(b"a").await })
        .await?;
    if got.as_deref() != Some(b"4".as_slice()) {
        return Err(format!("a reads {got:?}").into());
    }
    Ok(())
}

/// The keys a Redis command lists (HKEYS of a hash, ZRANGE of a sorted
/// set), as a set.
async fn members(
    conn: &mut redis::aio::MultiplexedConnection,
    command: &[&str],
) -> Result<std::collections::BTreeSet<Vec<u8>>, Failed> {
    let keys: Vec<Vec<u8>> = redis::cmd(command[0])
        .arg(&command[1..])
        .query_async(conn)
        .await?;
    Ok(keys.into_iter().collect())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (engine, var) in [("etcd", "JFS_TEST_ETCD"), ("redis", "JFS_TEST_REDIS")] {
        let server = std::env::var(var).ok().filter(|v| !v.is_empty());
        let skip = server.is_none();
        let server = server.unwrap_or_default();
        trials.push(
            Trial::test(
                format!("{engine}_stale_knowledge_never_decides"),
                move || {
                    tokio::runtime::Runtime::new()?.block_on(stale_answers_never_decide(server))
                },
            )
            .with_ignored_flag(skip),
        );
        let server = std::env::var(var).unwrap_or_default();
        trials.push(
            Trial::test(
                format!("{engine}_an_open_sees_another_hosts_change"),
                move || {
                    tokio::runtime::Runtime::new()?
                        .block_on(an_open_sees_another_hosts_change(server))
                },
            )
            .with_ignored_flag(skip),
        );
    }
    let redis = std::env::var("JFS_TEST_REDIS")
        .ok()
        .filter(|v| !v.is_empty());
    let skip = redis.is_none();
    let redis = redis.unwrap_or_default();
    trials.push(
        Trial::test("redis_bookkeeping_invariants", move || {
            tokio::runtime::Runtime::new()?.block_on(redis_bookkeeping_invariants(redis))
        })
        .with_ignored_flag(skip),
    );
    libtest_mimic::run(&args, trials).exit();
}
