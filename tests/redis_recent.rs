//! Recent-snapshot reads on Redis (`Db::run_recent`, what a mount's
//! lookups and getattrs use): answered from what the engine knows while
//! its change feed is subscribed; always one consistent state, never
//! older than an earlier answer, this host's own commits seen at once and
//! another host's as soon as their notice arrives (a little after the
//! commit returned: the reads are a recent snapshot, not the newest).
//! Two engines (two hosts) on one key space on the real server of
//! JFS_TEST_REDIS; ignored without it.

use jfs::kv::txn::ScanOpts;
use jfs::kv::{Db, DbOptions, KeyRange, MetaUrl};
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

/// Two engines (two hosts) on a key space of their own (`PREFIX`, made
/// from `label`) on the server, with the URL, and a plain connection.
async fn two_hosts(
    server: &str,
    label: &str,
) -> Result<(String, String, Db, Db, redis::aio::MultiplexedConnection), Failed> {
    let prefix = format!("{label}{:016x}", fastrand::u64(..));
    let sep = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{sep}prefix={prefix}");
    let (a, b) = (open(&url)?, open(&url)?);
    let client = redis::Client::open(server.split('?').next().unwrap_or(server))?;
    let conn = client.get_multiplexed_async_connection().await?;
    Ok((prefix, url, a, b, conn))
}

async fn recent_reads(server: String) -> Result<(), Failed> {
    let (prefix, url, a, b, mut conn) = two_hosts(&server, "recent").await?;

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

/// Recent reads of `keys` on `db` until ten in a row cost the server
/// nothing; returns their answers. Err after 5 s.
async fn answered_locally(
    db: &Db,
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &[&[u8]],
) -> Result<Vec<Option<Vec<u8>>>, Failed> {
    let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let before = script_calls(conn).await?;
        let mut got = Vec::new();
        for _ in 0..10 {
            let keys = keys.clone();
            got = db
                .run_recent("read keys", |tx| {
                    let keys = keys.clone();
                    async move { tx.snapshot_batch_get(&keys).await }
                })
                .await?;
        }
        if script_calls(conn).await? == before {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "recent reads of {:?} still go to the server after 5 s",
        keys.iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    )
    .into())
}

async fn recent_value(db: &Db, key: &[u8]) -> Result<Option<Vec<u8>>, Failed> {
    let key = key.to_vec();
    Ok(db
        .run_recent("read key", |tx| {
            let key = key.clone();
            async move { tx.snapshot_get(&key).await }
        })
        .await?)
}

/// Ranges known empty (a commit's promise, a complete scan): keys absent
/// there are answered without the server; another host's key added there
/// shows as soon as its notice has come; and a tracked read answered
/// "absent" from a range makes the commit conflict when another host
/// wrote the key meanwhile (a create never overwrites a name it did not
/// see).
async fn known_ranges(server: String) -> Result<(), Failed> {
    let (_, _, a, b, mut conn) = two_hosts(&server, "ranges").await?;
    put_pair(&b, b"0").await?;
    read_pair(&a).await?;
    until_answered_locally(&a, &mut conn).await?;

    // A promise: nothing under d1/ once the commit is applied.
    a.run("promise", |tx| async move {
        tx.put(b"dir1".to_vec(), b"made".to_vec())?;
        tx.promise_empty(KeyRange::prefix(b"d1/"));
        Ok(())
    })
    .await?;
    let got = answered_locally(&a, &mut conn, &[b"d1/x", b"d1/y", b"dir1"]).await?;
    if got != vec![None, None, Some(b"made".to_vec())] {
        return Err(format!("reads in a promised range gave {got:?}").into());
    }
    // Outside the range nothing is known: a key never read asks.
    let before = script_calls(&mut conn).await?;
    recent_value(&a, b"d2/x").await?;
    if script_calls(&mut conn).await? == before {
        return Err("a key outside every known range was answered without the server".into());
    }

    // Another host adds a key in the range: seen once its notice came.
    b.run("add", |tx| async move {
        tx.put(b"d1/x".to_vec(), b"b".to_vec())
    })
    .await?;
    let started = Instant::now();
    while recent_value(&a, b"d1/x").await?.as_deref() != Some(b"b".as_slice()) {
        if started.elapsed() > Duration::from_secs(2) {
            return Err("another host's key in a known range unseen after 2 s".into());
        }
        tokio::task::yield_now().await;
    }
    // Its other keys are still absent, whether the range still vouches
    // for them (the key was read back before its notice came) or not.
    if recent_value(&a, b"d1/y").await?.is_some() {
        return Err("a key no one wrote read as present".into());
    }

    // This host's own keys in a range keep it known.
    a.run("promise", |tx| async move {
        tx.put(b"dir2".to_vec(), b"made".to_vec())?;
        tx.promise_empty(KeyRange::prefix(b"d2/"));
        Ok(())
    })
    .await?;
    a.run("own", |tx| async move {
        tx.put(b"d2/own".to_vec(), b"a".to_vec())
    })
    .await?;
    let got = answered_locally(&a, &mut conn, &[b"d2/own", b"d2/other"]).await?;
    if got != vec![Some(b"a".to_vec()), None] {
        return Err(format!("after this host's own key a range gave {got:?}").into());
    }

    // A tracked read answered "absent" by the range, then another host
    // writes the key before the commit: the commit conflicts, the retry
    // sees the other host's value and leaves it.
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let local_first_read = std::sync::atomic::AtomicBool::new(false);
    let conn_ref = tokio::sync::Mutex::new(conn.clone());
    a.run("create if absent", |tx| {
        let (attempts, local_first_read, conn_ref, b) =
            (&attempts, &local_first_read, &conn_ref, &b);
        async move {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut conn = conn_ref.lock().await;
            let before = script_calls(&mut conn)
                .await
                .map_err(|e| jfs::kv::KvError::Fatal(format!("{e:?}")))?;
            let found = tx.get(b"d2/race").await?;
            let after = script_calls(&mut conn)
                .await
                .map_err(|e| jfs::kv::KvError::Fatal(format!("{e:?}")))?;
            if attempt == 0 {
                local_first_read.store(before == after, std::sync::atomic::Ordering::SeqCst);
                b.run("race", |tx| async move {
                    tx.put(b"d2/race".to_vec(), b"b".to_vec())
                })
                .await?;
            }
            if found.is_none() {
                tx.put(b"d2/race".to_vec(), b"a".to_vec())?;
            }
            Ok(())
        }
    })
    .await?;
    if !local_first_read.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("the tracked read of an absent key in a known range asked the server".into());
    }
    let value = recent_value(&b, b"d2/race").await?;
    if value.as_deref() != Some(b"b".as_slice()) {
        return Err(format!(
            "a create over another host's key: value {value:?} after {} attempts",
            attempts.load(std::sync::atomic::Ordering::SeqCst)
        )
        .into());
    }

    // A complete scan: the range holds what it returned and nothing else.
    b.run("fill", |tx| async move {
        tx.put(b"d3/k".to_vec(), b"1".to_vec())
    })
    .await?;
    let listed = a
        .run("list", |tx| async move {
            Ok(tx
                .scan(&KeyRange::prefix(b"d3/"), ScanOpts::limit(100))
                .await?
                .entries
                .len())
        })
        .await?;
    if listed != 1 {
        return Err(format!("the scan listed {listed} keys, not 1").into());
    }
    let got = answered_locally(&a, &mut conn, &[b"d3/k", b"d3/zz"]).await?;
    if got != vec![Some(b"1".to_vec()), None] {
        return Err(format!("reads in a scanned range gave {got:?}").into());
    }
    Ok(())
}

/// Two hosts (two engines, each with its own feed) race to create the
/// same names in directories that one made and the other listed, so both
/// know the directories' ranges: every name is created exactly once (the
/// loser gets EEXIST), and afterwards both hosts' lookups find every name
/// and nothing else, while renames and unlinks by either go on.
async fn racing_hosts(server: String) -> Result<(), Failed> {
    use jfs::meta::{Ctx, FileKind, Meta, Volume, ROOT_INO};
    use std::sync::Arc;
    let (_, _, da, db, _) = two_hosts(&server, "race").await?;
    Meta::format(&da, &Volume::new("race", "mem", ""), false).await?;
    let a = Arc::new(Meta::load(da).await?);
    let b = Arc::new(Meta::load(db).await?);
    let ctx = Ctx::root();
    let names: Vec<Vec<u8>> = (0..150).map(|i| format!("n{i}").into_bytes()).collect();
    for round in 0..4 {
        let (dir, _) = a
            .mkdir(&ctx, ROOT_INO, format!("d{round}").as_bytes(), 0o755)
            .await?;
        // The other host lists it (a complete scan), and both ask for
        // names that are not there yet (what the kernel does before a
        // create) until the feed answers them.
        b.readdir(&ctx, dir, None, 1000, false).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for host in [&a, &b] {
            for name in &names {
                if host.lookup_recent(&ctx, dir, name).await.is_ok() {
                    return Err("a name no one made was found".into());
                }
            }
        }
        let race = |host: Arc<Meta>, order: Vec<Vec<u8>>| async move {
            let mut made = Vec::new();
            for name in order {
                let _ = host.lookup_recent(&Ctx::root(), dir, &name).await;
                match host
                    .mknod(&Ctx::root(), dir, &name, FileKind::File, 0o644, 0)
                    .await
                {
                    Ok(_) => made.push(name),
                    Err(jfs::meta::MetaError::Errno(libc::EEXIST)) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(made)
        };
        let mut reversed = names.clone();
        if round % 2 == 1 {
            reversed.reverse();
        }
        let (made_a, made_b) = tokio::join!(
            tokio::spawn(race(a.clone(), names.clone())),
            tokio::spawn(race(b.clone(), reversed))
        );
        let (made_a, made_b) = (made_a??, made_b??);
        let mut all: Vec<Vec<u8>> = made_a.iter().chain(made_b.iter()).cloned().collect();
        all.sort();
        let mut want = names.clone();
        want.sort();
        if all != want {
            return Err(format!(
                "round {round}: {} creates succeeded for {} names (host a {}, host b {})",
                all.len(),
                names.len(),
                made_a.len(),
                made_b.len()
            )
            .into());
        }
        // Each host renames and unlinks what it made; both then see the
        // same directory through ordinary lookups.
        for (host, made) in [(&a, &made_a), (&b, &made_b)] {
            for (i, name) in made.iter().enumerate() {
                if i % 2 == 0 {
                    host.unlink(&ctx, dir, name).await?;
                } else {
                    let mut to = name.clone();
                    to.extend_from_slice(b".moved");
                    host.rename(&ctx, dir, name, dir, &to, 0).await?;
                }
            }
        }
        let listed = a.readdir(&ctx, dir, None, 1000, false).await?.len();
        let expected = made_a.len() / 2 + made_b.len() / 2;
        for host in [&a, &b] {
            let mut found = 0;
            for name in &names {
                let mut moved = name.clone();
                moved.extend_from_slice(b".moved");
                if host.lookup(&ctx, dir, name).await.is_ok() {
                    return Err(format!("round {round}: an unlinked or moved name is found").into());
                }
                found += usize::from(host.lookup(&ctx, dir, &moved).await.is_ok());
            }
            if found != expected || listed != expected {
                return Err(format!(
                    "round {round}: {found} names found, {listed} listed, {expected} expected"
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The trials count the server's script calls, which every client adds
/// to: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn main() {
    let args = Arguments::from_args();
    let server = std::env::var("JFS_TEST_REDIS")
        .ok()
        .filter(|v| !v.is_empty());
    let trials = vec![
        trial(
            "redis_recent_reads_are_current_and_local",
            &server,
            recent_reads,
        ),
        trial(
            "redis_known_ranges_answer_absent_keys_and_never_hide_a_write",
            &server,
            known_ranges,
        ),
        trial(
            "redis_hosts_racing_to_create_make_each_name_once",
            &server,
            racing_hosts,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A trial of `body` on the server, one at a time; ignored without one.
fn trial<F, Fut>(name: &str, server: &Option<String>, body: F) -> Trial
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Failed>>,
{
    let skip = server.is_none();
    let server = server.clone().unwrap_or_default();
    Trial::test(name, move || {
        let _one = one_at_a_time();
        tokio::runtime::Runtime::new()?.block_on(body(server))
    })
    .with_ignored_flag(skip)
}
