//! The etcd and Redis engines answer tracked reads from what they last saw
//! of a key and verify the answer at commit: two engines (two hosts) on one
//! key space, one changing a key the other remembers. The stale answer must
//! never decide anything: a writing transaction and a read-only one both
//! retry and see the new value. Ignored without JFS_TEST_ETCD /
//! JFS_TEST_REDIS.

use std::sync::atomic::{AtomicU32, Ordering};

use jfs::kv::{Db, DbOptions, MetaUrl};
use libtest_mimic::{Arguments, Failed, Trial};

fn open(url: &str) -> Result<Db, Failed> {
    let engine = jfs::kv::url::open_engine(&MetaUrl::parse(url)?)?;
    Ok(Db::new(engine, DbOptions::default()))
}

async fn stale_answers_never_decide(server: String) -> Result<(), Failed> {
    let tag = format!("knowledge-{:016x}", fastrand::u64(..));
    let url = if server.starts_with("etcd://") {
        format!("{}/{tag}", server.trim_end_matches('/'))
    } else {
        let sep = if server.contains('?') { '&' } else { '?' };
        format!("{server}{sep}prefix={tag}")
    };
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
    }
    libtest_mimic::run(&args, trials).exit();
}
