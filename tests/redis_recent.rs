//! Recent-snapshot reads on Redis (`Db::run_recent`, what a mount's
//! lookups and getattrs use): answered from what the engine knows while
//! its change feed is subscribed; always one consistent state, never
//! older than an earlier answer, this host's own commits seen at once and
//! another host's as soon as their notice arrives (a little after the
//! commit returned: the reads are a recent snapshot, not the newest).
//! Two engines (two hosts) on one key space on the real server of
//! JFS_TEST_REDIS; ignored without it.

use jfs::kv::{Db, DbOptions, MetaUrl};
use libtest_mimic::{Arguments, Failed, Trial};
use std::time::{Duration, Instant};

fn open(url: &str) -> Result<Db, Failed> {
    let engine = jfs::kv::url::open_engine(&MetaUrl::parse(url)?)?;
    Ok(Db::new(engine, DbOptions::default()))
}

/// Script calls the server has run so far (every engine read is one).
async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64, Failed> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

async fn read_pair(db: &Db) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Failed> {
    Ok(db
        .run_recent("read pair", |tx| async move {
            let mut got = tx
                .snapshot_batch_get(&[b"k1".to_vec(), b"k2".to_vec()])
                .await?;
            let second = got.pop().flatten();
            Ok((got.pop().flatten(), second))
        })
        .await?)
}

async fn put_pair(db: &Db, value: &[u8]) -> Result<(), Failed> {
    let value = value.to_vec();
    db.run("put pair", |tx| {
        let value = value.clone();
        async move {
            tx.put(b"k1".to_vec(), value.clone())?;
            tx.put(b"k2".to_vec(), value)
        }
    })
    .await?;
    Ok(())
}

/// Reads the pair until ten reads in a row cost the server nothing: the
/// feed is subscribed and vouches for both keys. Err after 5 s.
async fn until_answered_locally(
    db: &Db,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), Failed> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let before = script_calls(conn).await?;
        for _ in 0..10 {
            read_pair(db).await?;
        }
        if script_calls(conn).await? == before {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("recent reads of unchanged keys still go to the server after 5 s".into())
}

async fn recent_reads(server: String) -> Result<(), Failed> {
    let prefix = format!("recent{:016x}", fastrand::u64(..));
    let sep = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{sep}prefix={prefix}");
    let (a, b) = (open(&url)?, open(&url)?);
    let client = redis::Client::open(server.split('?').next().unwrap_or(&server))?;
    let mut conn = client.get_multiplexed_async_connection().await?;

    put_pair(&b, b"0").await?;
    if read_pair(&a).await? != (Some(b"0".to_vec()), Some(b"0".to_vec())) {
        return Err("the first recent read does not see the pair".into());
    }
    until_answered_locally(&a, &mut conn).await?;

    // Another host's commits: every read gives both keys from one
    // commit, never an older one than the read before, and each commit
    // is seen once its notice has come (within the feed's bound of 1 s).
    let number = |v: &Option<Vec<u8>>| -> u32 {
        v.as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut last, mut current_at_once) = (0u32, 0u32);
    for i in 1..=300u32 {
        put_pair(&b, i.to_string().as_bytes()).await?;
        let started = Instant::now();
        let mut first = true;
        loop {
            let got = read_pair(&a).await?;
            if got.0 != got.1 {
                return Err(format!("a recent read mixed two commits: {got:?}").into());
            }
            let seen = number(&got.0);
            if seen < last {
                return Err(format!("a recent read went back from {last} to {seen}").into());
            }
            last = seen;
            if seen == i {
                current_at_once += u32::from(first);
                break;
            }
            if started.elapsed() > Duration::from_secs(2) {
                return Err(format!(
                    "commit {i} of the other host not seen after 2 s (still {seen})"
                )
                .into());
            }
            first = false;
            tokio::task::yield_now().await;
        }
    }
    println!("recent reads current at once after another host's commit: {current_at_once} of 300");
    // This host's own commits: read back at once.
    for i in 1..=100u32 {
        let value = format!("own {i}").into_bytes();
        put_pair(&a, &value).await?;
        let got = read_pair(&a).await?;
        if got != (Some(value.clone()), Some(value)) {
            return Err(format!("own commit {i} read back as {got:?}").into());
        }
    }
    until_answered_locally(&a, &mut conn).await?;

    // A recent transaction may not write; nothing is applied.
    let wrote = a
        .run_recent("write", |tx| async move {
            tx.put(b"k1".to_vec(), b"no".to_vec())
        })
        .await;
    if wrote.is_ok() {
        return Err("a recent transaction committed a write".into());
    }
    if read_pair(&b).await?.0.as_deref() == Some(b"no".as_slice()) {
        return Err("a refused recent write was applied".into());
    }

    // The feed lost (the server drops every subscriber): what it vouched
    // for is not trusted, the next read sees a change made meanwhile, and
    // the feed comes back.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await?;
    if killed == 0 {
        return Err("no subscriber to kill: the engines have no change feed".into());
    }
    put_pair(&b, b"after the loss").await?;
    let got = read_pair(&a).await?;
    if got.0.as_deref() != Some(b"after the loss".as_slice()) || got.0 != got.1 {
        return Err(format!("after the feed was lost a recent read gave {got:?}").into());
    }
    until_answered_locally(&a, &mut conn).await?;
    put_pair(&b, b"after the return").await?;
    let started = Instant::now();
    loop {
        let got = read_pair(&a).await?;
        if got.0 != got.1 {
            return Err(format!("a recent read mixed two commits: {got:?}").into());
        }
        match got.0.as_deref() {
            Some(b"after the return") => break,
            Some(b"after the loss") if started.elapsed() < Duration::from_secs(2) => {}
            _ => return Err(format!("after the feed came back a recent read gave {got:?}").into()),
        }
        tokio::task::yield_now().await;
    }

    // `?notices=0`: no subscription, every recent read asks the server
    // (and sees the newest commit); a bad value is refused with the
    // choices.
    let unsubscribed = open(&format!("{url}&notices=0"))?;
    for i in 0..5u32 {
        let value = format!("unsubscribed {i}").into_bytes();
        put_pair(&b, &value).await?;
        let before = script_calls(&mut conn).await?;
        let got = read_pair(&unsubscribed).await?;
        if got != (Some(value.clone()), Some(value)) {
            return Err(format!("with notices=0 a recent read gave {got:?}").into());
        }
        if script_calls(&mut conn).await? == before {
            return Err("with notices=0 a recent read was answered without the server".into());
        }
    }
    match jfs::kv::url::open_engine(&MetaUrl::parse(&format!("{url}&notices=maybe"))?) {
        Err(e) if e.to_string().contains("notices=0") => {}
        Err(e) => return Err(format!("notices=maybe refused with: {e}").into()),
        Ok(_) => return Err("notices=maybe accepted".into()),
    }

    // A commit that publishes no notice, as a client of an older jfs (or
    // a user without channel rights) makes: written here by hand, the way
    // the commit script writes. The feed's check finds the counter ahead
    // of the notices and stops answering from what it knew: the change
    // shows within the feed's bound (1 s), never later.
    until_answered_locally(&a, &mut conn).await?;
    let key = |part: &str| format!("{prefix}:{part}");
    let version: u64 = redis::cmd("INCR")
        .arg(key("c"))
        .query_async(&mut conn)
        .await?;
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(key("v"))
        .arg("k1")
        .arg("silent")
        .arg("k2")
        .arg("silent")
        .cmd("HSET")
        .arg(key("n"))
        .arg("k1")
        .arg(version)
        .arg("k2")
        .arg(version)
        .query_async::<()>(&mut conn)
        .await?;
    let started = Instant::now();
    loop {
        let got = read_pair(&a).await?;
        if got.0.as_deref() == Some(b"silent".as_slice()) && got.1 == got.0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            return Err(
                format!("a commit without a notice still unseen after 3 s: {got:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let server = std::env::var("JFS_TEST_REDIS")
        .ok()
        .filter(|v| !v.is_empty());
    let skip = server.is_none();
    let server = server.unwrap_or_default();
    let trials = vec![
        Trial::test("redis_recent_reads_are_current_and_local", move || {
            tokio::runtime::Runtime::new()?.block_on(recent_reads(server))
        })
        .with_ignored_flag(skip),
    ];
    libtest_mimic::run(&args, trials).exit();
}
