//! The KV conformance suite: one set of behaviours every engine must show,
//! run against each engine of `common::engines()`. Engines that are not
//! available here are reported as ignored, never as passed.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{engines, runtime, Opened};
use jfs::kv::txn::ScanOpts;
use jfs::kv::{
    decode_counter, encode_counter, Db, DbOptions, KeyRange, KvError, KvResult, RetryPolicy,
};
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(Opened) -> Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|o| Box::pin($name(o))) as Check)),*]
    };
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for engine in engines() {
        let engine = Arc::new(engine);
        let checks: Vec<(&str, Check)> = checks![
            read_your_writes,
            snapshot_reads_never_conflict,
            tracked_read_conflicts,
            conflicting_commit_applies_nothing,
            lost_update_prevented,
            atomic_add_never_conflicts,
            atomic_max_keeps_the_largest,
            counters_carry_borrow_and_wrap,
            batch_reads_of_thousands_of_keys,
            write_skew_prevented,
            phantom_prevented,
            insert_if_empty_races_to_one_winner,
            range_order_and_paging_with_edge_bytes,
            scan_pages_merge_own_writes,
            paging_across_transactions_sees_each_key_once,
            limits_give_too_large_and_commit_nothing,
            transaction_over_duration_is_too_old,
            maybe_committed_is_surfaced_or_retried_idempotently,
            retry_runner_stops_at_deadline,
        ];
        for (name, check) in checks {
            let skip = engine_skip(&engine);
            let label = format!("conformance::{}::{name}", engine.label);
            let engine = engine.clone();
            let trial = Trial::test(label, move || runtime().block_on(check(engine.open())));
            trials.push(trial.with_ignored_flag(skip));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn engine_skip(engine: &common::EngineUnderTest) -> bool {
    if let Some(why) = &engine.skip {
        eprintln!("skipping engine {}: {why}", engine.label);
        return true;
    }
    false
}

fn ensure(cond: bool, what: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

fn fail(e: KvError) -> Failed {
    format!("unexpected KV error: {e}").into()
}

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn put_all(db: &Db, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Failed> {
    for chunk in pairs.chunks(100) {
        db.run_idempotent("put_all", |tx| async move {
            for (key, value) in chunk {
                tx.put(key.clone(), value.clone())?;
            }
            Ok(())
        })
        .await
        .map_err(fail)?;
    }
    Ok(())
}

async fn read_your_writes(o: Opened) -> Result<(), Failed> {
    put_all(
        &o.clean,
        &[(k("a"), k("1")), (k("b"), k("2")), (k("c"), k("3"))],
    )
    .await?;
    let tx = o.clean.begin().await.map_err(fail)?;
    tx.put(k("b"), k("two")).map_err(fail)?;
    tx.delete(k("c")).map_err(fail)?;
    tx.put(k("d"), k("4")).map_err(fail)?;
    tx.add(k("n"), 5).map_err(fail)?;
    tx.add(k("n"), -2).map_err(fail)?;
    ensure(
        tx.get(b"b").await.map_err(fail)? == Some(k("two")),
        "own put not visible",
    )?;
    ensure(
        tx.get(b"c").await.map_err(fail)?.is_none(),
        "own delete not visible",
    )?;
    ensure(
        tx.get(b"a").await.map_err(fail)? == Some(k("1")),
        "committed value not visible",
    )?;
    ensure(
        tx.get(b"n")
            .await
            .map_err(fail)?
            .map(|v| decode_counter(&v))
            == Some(3),
        "own add not visible",
    )?;
    let page = tx
        .scan(&KeyRange::prefix(b""), ScanOpts::limit(100))
        .await
        .map_err(fail)?;
    let got: Vec<(Vec<u8>, Vec<u8>)> = page.entries;
    let want = vec![
        (k("a"), k("1")),
        (k("b"), k("two")),
        (k("d"), k("4")),
        (k("n"), encode_counter(3)),
    ];
    ensure(got == want, format!("scan with own writes: got {got:?}"))?;
    let reverse = tx
        .scan(&KeyRange::prefix(b""), ScanOpts::limit(2).reverse())
        .await
        .map_err(fail)?;
    ensure(
        reverse.entries == vec![(k("n"), encode_counter(3)), (k("d"), k("4"))],
        format!("reverse scan with own writes: got {:?}", reverse.entries),
    )?;
    tx.commit().await.map_err(fail)?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let all = tx
        .scan_all(&KeyRange::prefix(b""), 10, true)
        .await
        .map_err(fail)?;
    ensure(all == want, format!("after commit: got {all:?}"))
}

async fn snapshot_reads_never_conflict(o: Opened) -> Result<(), Failed> {
    put_all(&o.clean, &[(k("x"), k("1"))]).await?;
    let t1 = o.clean.begin().await.map_err(fail)?;
    ensure(
        t1.snapshot_get(b"x").await.map_err(fail)? == Some(k("1")),
        "snapshot value",
    )?;
    t1.scan(&KeyRange::prefix(b"p/"), ScanOpts::limit(10).snapshot())
        .await
        .map_err(fail)?;
    put_all(&o.clean, &[(k("x"), k("2")), (k("p/new"), k("v"))]).await?;
    // t1 still reads its snapshot, and its commit does not conflict.
    ensure(
        t1.snapshot_get(b"x").await.map_err(fail)? == Some(k("1")),
        "snapshot moved",
    )?;
    t1.put(k("y"), k("from t1")).map_err(fail)?;
    t1.commit().await.map_err(fail)
}

async fn tracked_read_conflicts(o: Opened) -> Result<(), Failed> {
    put_all(&o.clean, &[(k("x"), k("1"))]).await?;
    let t1 = o.clean.begin().await.map_err(fail)?;
    t1.get(b"x").await.map_err(fail)?;
    put_all(&o.clean, &[(k("x"), k("2"))]).await?;
    t1.put(k("y"), k("1")).map_err(fail)?;
    match t1.commit().await {
        Err(KvError::Conflict(_)) => {}
        other => return Err(format!("expected Conflict, got {other:?}").into()),
    }
    // An explicit read-conflict key behaves like a tracked read.
    let t2 = o.clean.begin().await.map_err(fail)?;
    t2.add_read_conflict_key(b"z");
    put_all(&o.clean, &[(k("z"), k("1"))]).await?;
    t2.put(k("w"), k("1")).map_err(fail)?;
    ensure(
        matches!(t2.commit().await, Err(KvError::Conflict(_))),
        "explicit conflict key ignored",
    )
}

async fn conflicting_commit_applies_nothing(o: Opened) -> Result<(), Failed> {
    let t1 = o.clean.begin().await.map_err(fail)?;
    t1.add_read_conflict_range(KeyRange::prefix(b"r/"));
    put_all(&o.clean, &[(k("r/1"), k("1"))]).await?;
    for i in 0..10 {
        t1.put(format!("out/{i}").into_bytes(), k("v"))
            .map_err(fail)?;
    }
    t1.add(k("count"), 1).map_err(fail)?;
    ensure(t1.commit().await.is_err(), "commit should conflict")?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let leaked = tx
        .scan_all(&KeyRange::prefix(b"out/"), 100, true)
        .await
        .map_err(fail)?;
    ensure(
        leaked.is_empty() && tx.get(b"count").await.map_err(fail)?.is_none(),
        "partial commit",
    )
}

/// N tasks x M read-modify-write increments of one key end at exactly N x M,
/// through faults (made idempotent with a marker per increment).
async fn lost_update_prevented(o: Opened) -> Result<(), Failed> {
    const TASKS: u64 = 8;
    const EACH: u64 = 40;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let db = o.db.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let marker = format!("marker/{t}/{i}").into_bytes();
                db.run_idempotent("increment", |tx| {
                    let marker = marker.clone();
                    async move {
                        if tx.after_maybe_committed() && tx.get(&marker).await?.is_some() {
                            return Ok(());
                        }
                        let n = tx.get(b"counter").await?.map_or(0, |v| decode_counter(&v));
                        tx.put(k("counter"), encode_counter(n + 1))?;
                        tx.put(marker, Vec::new())?;
                        Ok(())
                    }
                })
                .await?;
            }
            KvResult::Ok(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| Failed::from(e.to_string()))?
            .map_err(fail)?;
    }
    let tx = o.clean.begin().await.map_err(fail)?;
    let n = tx
        .get(b"counter")
        .await
        .map_err(fail)?
        .map_or(0, |v| decode_counter(&v));
    ensure(
        n == (TASKS * EACH) as i64,
        format!("counter is {n}, want {}", TASKS * EACH),
    )
}

async fn atomic_add_never_conflicts(o: Opened) -> Result<(), Failed> {
    const TASKS: u64 = 4;
    const EACH: u64 = 50;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let db = o.clean.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..EACH {
                loop {
                    let tx = db.begin().await?;
                    tx.add(k("adds"), 2)?;
                    match tx.commit().await {
                        Ok(()) => break,
                        Err(KvError::Conflict(_)) => conflicts += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(conflicts)
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h
            .await
            .map_err(|e| Failed::from(e.to_string()))?
            .map_err(fail)?;
    }
    let tx = o.clean.begin().await.map_err(fail)?;
    let n = tx
        .get(b"adds")
        .await
        .map_err(fail)?
        .map_or(0, |v| decode_counter(&v));
    ensure(n == (2 * TASKS * EACH) as i64, format!("sum is {n}"))?;
    ensure(
        conflicts == 0,
        format!("{conflicts} conflicts on blind adds"),
    )
}

async fn atomic_max_keeps_the_largest(o: Opened) -> Result<(), Failed> {
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let db = o.clean.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let tx = db.begin().await?;
                // Values go up and down; the stored one may only go up.
                tx.max(k("max"), (i * 7919 + t * 104_729) % 10_007)?;
                tx.commit().await?;
            }
            KvResult::Ok(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| Failed::from(e.to_string()))?
            .map_err(fail)?;
    }
    let want = (0..4u64)
        .flat_map(|t| (0..50u64).map(move |i| (i * 7919 + t * 104_729) % 10_007))
        .max()
        .unwrap_or(0);
    let tx = o.clean.begin().await.map_err(fail)?;
    tx.max(k("max"), 3).map_err(fail)?;
    let seen = tx
        .get(b"max")
        .await
        .map_err(fail)?
        .map(|v| jfs::kv::decode_max(&v));
    ensure(seen == Some(want), format!("max is {seen:?}, want {want}"))?;
    // Values above 2^63 compare unsigned.
    tx.max(k("big"), u64::MAX - 1).map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    let tx = o.clean.begin().await.map_err(fail)?;
    tx.max(k("big"), 5).map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let big = tx
        .get(b"big")
        .await
        .map_err(fail)?
        .map(|v| jfs::kv::decode_max(&v));
    ensure(big == Some(u64::MAX - 1), format!("unsigned max: {big:?}"))
}

/// Adds carry and borrow across every byte and wrap at the ends of i64;
/// maxes compare all 64 bits unsigned. Each step commits on its own, so
/// an engine that applies counters on the server is checked there.
async fn counters_carry_borrow_and_wrap(o: Opened) -> Result<(), Failed> {
    let adds: [(&str, &[i64], i64); 4] = [
        ("carry", &[0xFFFF_FFFF, 1], 1 << 32),
        ("borrow", &[1 << 32, -(1 << 32) - 1], -1),
        ("wrap", &[i64::MAX, 1], i64::MIN),
        ("negative", &[-5, 3, -0x1_0000_0000], -0x1_0000_0002),
    ];
    for (name, deltas, want) in adds {
        for &delta in deltas {
            let tx = o.clean.begin().await.map_err(fail)?;
            tx.add(k(name), delta).map_err(fail)?;
            tx.commit().await.map_err(fail)?;
        }
        let tx = o.clean.begin().await.map_err(fail)?;
        let got = tx.get(name.as_bytes()).await.map_err(fail)?;
        let got = got.map(|v| decode_counter(&v));
        ensure(got == Some(want), format!("{name}: {got:?}, want {want}"))?;
    }
    let maxes: [(&str, &[u64], u64); 3] = [
        (
            "max low word",
            &[0x1_0000_0005, 0x1_0000_0003],
            0x1_0000_0005,
        ),
        (
            "max high word",
            &[0x1_FFFF_FFFF, 0x2_0000_0000, 7],
            0x2_0000_0000,
        ),
        ("max top bit", &[1 << 63, (1 << 63) - 1], 1 << 63),
    ];
    for (name, values, want) in maxes {
        for &value in values {
            let tx = o.clean.begin().await.map_err(fail)?;
            tx.max(k(name), value).map_err(fail)?;
            tx.commit().await.map_err(fail)?;
        }
        let tx = o.clean.begin().await.map_err(fail)?;
        let got = tx.get(name.as_bytes()).await.map_err(fail)?;
        let got = got.map(|v| jfs::kv::decode_max(&v));
        ensure(got == Some(want), format!("{name}: {got:?}, want {want}"))?;
    }
    Ok(())
}

/// One read of 2,500 keys, a third of them absent, with and without
/// tracking, answers each key in order (engines split or batch such reads
/// as they must: etcd's operation limit, the Redis script's argument
/// unpacking).
async fn batch_reads_of_thousands_of_keys(o: Opened) -> Result<(), Failed> {
    let key = |i: usize| format!("many/{i:05}").into_bytes();
    let pairs: Vec<_> = (0..2_500)
        .filter(|i| i % 3 != 0)
        .map(|i| (key(i), format!("v{i}").into_bytes()))
        .collect();
    put_all(&o.clean, &pairs).await?;
    // Out of order, so the answer's order is the request's, not the keys'.
    let wanted: Vec<Vec<u8>> = (0..2_500).rev().map(key).collect();
    let expect: Vec<Option<Vec<u8>>> = (0..2_500)
        .rev()
        .map(|i| (i % 3 != 0).then(|| format!("v{i}").into_bytes()))
        .collect();
    let tx = o.clean.begin().await.map_err(fail)?;
    let got = tx.snapshot_batch_get(&wanted).await.map_err(fail)?;
    ensure(got == expect, "snapshot batch read answered other values")?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let got = tx.batch_get(&wanted).await.map_err(fail)?;
    ensure(got == expect, "tracked batch read answered other values")
}

async fn write_skew_prevented(o: Opened) -> Result<(), Failed> {
    // Invariant: x + y >= 1. Each transaction checks it and zeroes one key.
    put_all(
        &o.clean,
        &[(k("x"), encode_counter(1)), (k("y"), encode_counter(1))],
    )
    .await?;
    let t1 = o.clean.begin().await.map_err(fail)?;
    let t2 = o.clean.begin().await.map_err(fail)?;
    for tx in [&t1, &t2] {
        let x = decode_counter(&tx.get(b"x").await.map_err(fail)?.unwrap_or_default());
        let y = decode_counter(&tx.get(b"y").await.map_err(fail)?.unwrap_or_default());
        ensure(x + y == 2, "setup")?;
    }
    t1.put(k("x"), encode_counter(0)).map_err(fail)?;
    t2.put(k("y"), encode_counter(0)).map_err(fail)?;
    t1.commit().await.map_err(fail)?;
    match t2.commit().await {
        Err(KvError::Conflict(_)) => Ok(()),
        other => Err(format!("write skew allowed: second commit gave {other:?}").into()),
    }
}

async fn phantom_prevented(o: Opened) -> Result<(), Failed> {
    let t1 = o.clean.begin().await.map_err(fail)?;
    let page = t1
        .scan(&KeyRange::prefix(b"dir/"), ScanOpts::limit(10))
        .await
        .map_err(fail)?;
    ensure(page.entries.is_empty(), "prefix should start empty")?;
    put_all(&o.clean, &[(k("dir/a"), k("1"))]).await?;
    t1.put(k("dir/b"), k("1")).map_err(fail)?;
    ensure(
        matches!(t1.commit().await, Err(KvError::Conflict(_))),
        "phantom insert not detected",
    )?;
    // A limited scan covers only what it returned: inserts after it do not conflict.
    put_all(&o.clean, &[(k("lim/a"), k("1")), (k("lim/c"), k("1"))]).await?;
    let t2 = o.clean.begin().await.map_err(fail)?;
    let page = t2
        .scan(&KeyRange::prefix(b"lim/"), ScanOpts::limit(1))
        .await
        .map_err(fail)?;
    ensure(
        page.entries.len() == 1 && page.next.is_some(),
        "limited page",
    )?;
    put_all(&o.clean, &[(k("lim/d"), k("1"))]).await?;
    t2.put(k("other"), k("1")).map_err(fail)?;
    t2.commit().await.map_err(fail)?;
    // ...but an insert inside the covered part does.
    let t3 = o.clean.begin().await.map_err(fail)?;
    t3.scan(&KeyRange::prefix(b"lim/"), ScanOpts::limit(2))
        .await
        .map_err(fail)?;
    put_all(&o.clean, &[(k("lim/b"), k("1"))]).await?;
    t3.put(k("other"), k("2")).map_err(fail)?;
    ensure(
        matches!(t3.commit().await, Err(KvError::Conflict(_))),
        "insert into scanned part not detected",
    )
}

/// Many tasks each insert into a prefix only if it is empty: exactly one wins.
async fn insert_if_empty_races_to_one_winner(o: Opened) -> Result<(), Failed> {
    let wins = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..8u32 {
        let (db, wins) = (o.db.clone(), wins.clone());
        handles.push(tokio::spawn(async move {
            let won = db
                .run_idempotent("claim", |tx| async move {
                    let page = tx
                        .scan(&KeyRange::prefix(b"claim/"), ScanOpts::limit(1))
                        .await?;
                    if let Some((key, _)) = page.entries.first() {
                        // After MaybeCommitted, our own earlier claim counts as a win.
                        return Ok(*key == format!("claim/{t}").into_bytes());
                    }
                    tx.put(format!("claim/{t}").into_bytes(), Vec::new())?;
                    Ok(true)
                })
                .await?;
            if won {
                wins.fetch_add(1, Ordering::Relaxed);
            }
            KvResult::Ok(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| Failed::from(e.to_string()))?
            .map_err(fail)?;
    }
    let tx = o.clean.begin().await.map_err(fail)?;
    let claims = tx
        .scan_all(&KeyRange::prefix(b"claim/"), 10, true)
        .await
        .map_err(fail)?;
    ensure(claims.len() == 1, format!("{} claims", claims.len()))?;
    ensure(
        wins.load(Ordering::Relaxed) == 1,
        format!("{} winners", wins.load(Ordering::Relaxed)),
    )
}

fn edge_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xFF],
        vec![0x01],
        vec![0x7F, 0x80],
        vec![0xFE, 0xFF],
        vec![0xFF],
        vec![0xFF, 0x00],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0xFF],
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..590 {
        let len = rng.usize(1..12);
        keys.push((0..len).map(|_| rng.u8(..)).collect());
    }
    keys.sort();
    keys.dedup();
    keys
}

async fn range_order_and_paging_with_edge_bytes(o: Opened) -> Result<(), Failed> {
    let keys = edge_keys();
    let mut shuffled = keys.clone();
    fastrand::Rng::with_seed(3).shuffle(&mut shuffled);
    let pairs: Vec<_> = shuffled
        .iter()
        .map(|key| (key.clone(), key.iter().rev().copied().collect()))
        .collect();
    put_all(&o.db, &pairs).await?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let all = tx
        .scan_all(&KeyRange::prefix(b""), 1000, true)
        .await
        .map_err(fail)?;
    let got: Vec<Vec<u8>> = all.iter().map(|(key, _)| key.clone()).collect();
    ensure(got == keys, "full scan is not in unsigned byte order")?;
    ensure(
        all.iter()
            .all(|(key, v)| key.iter().rev().copied().collect::<Vec<u8>>() == *v),
        "values",
    )?;
    for page_size in [1, 7, 64] {
        for reverse in [false, true] {
            let mut seen = Vec::new();
            let mut next = Some(KeyRange::prefix(b""));
            while let Some(range) = next {
                let mut opts = ScanOpts::limit(page_size).snapshot();
                opts.reverse = reverse;
                let page = tx.scan(&range, opts).await.map_err(fail)?;
                ensure(page.entries.len() <= page_size, "page over limit")?;
                seen.extend(page.entries.into_iter().map(|(key, _)| key));
                next = page.next;
            }
            let mut want = keys.clone();
            if reverse {
                want.reverse();
            }
            ensure(
                seen == want,
                format!("paging by {page_size}, reverse {reverse}"),
            )?;
        }
    }
    // Prefixes at the top of the key space have no upper bound.
    let top = tx
        .scan_all(&KeyRange::prefix(&[0xFF]), 7, true)
        .await
        .map_err(fail)?;
    let want_top: Vec<_> = keys.iter().filter(|key| key[0] == 0xFF).cloned().collect();
    ensure(
        top.into_iter().map(|(key, _)| key).collect::<Vec<_>>() == want_top,
        "0xFF prefix",
    )?;
    let zero = tx
        .scan_all(&KeyRange::prefix(&[0x00]), 3, true)
        .await
        .map_err(fail)?;
    let want_zero: Vec<_> = keys.iter().filter(|key| key[0] == 0x00).cloned().collect();
    ensure(
        zero.into_iter().map(|(key, _)| key).collect::<Vec<_>>() == want_zero,
        "0x00 prefix",
    )
}

/// Pages of a scan mix committed keys with the transaction's own puts and
/// deletes without skipping or repeating any.
async fn scan_pages_merge_own_writes(o: Opened) -> Result<(), Failed> {
    let committed: Vec<_> = (0..200)
        .map(|i| (format!("m/{i:04}").into_bytes(), k("c")))
        .collect();
    put_all(&o.clean, &committed).await?;
    let tx = o.clean.begin().await.map_err(fail)?;
    let mut model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..100 {
        let key = format!("m/{:04}", rng.u32(0..260)).into_bytes();
        if rng.bool() {
            tx.delete(key.clone()).map_err(fail)?;
            model.remove(&key);
        } else {
            tx.put(key.clone(), k("own")).map_err(fail)?;
            model.insert(key, k("own"));
        }
    }
    for reverse in [false, true] {
        for page_size in [1, 5, 33] {
            let mut seen = Vec::new();
            let mut next = Some(KeyRange::prefix(b"m/"));
            while let Some(range) = next {
                let mut opts = ScanOpts::limit(page_size);
                opts.reverse = reverse;
                let page = tx.scan(&range, opts).await.map_err(fail)?;
                seen.extend(page.entries);
                next = page.next;
            }
            let mut want: Vec<_> = model.clone().into_iter().collect();
            if reverse {
                want.reverse();
            }
            ensure(
                seen == want,
                format!("merged paging by {page_size}, reverse {reverse}"),
            )?;
        }
    }
    Ok(())
}

/// A long listing paged over many transactions, while other keys come and
/// go, returns every key present throughout exactly once.
async fn paging_across_transactions_sees_each_key_once(o: Opened) -> Result<(), Failed> {
    let stable: Vec<_> = (0..300)
        .map(|i| (format!("l/{:05}", i * 2).into_bytes(), k("s")))
        .collect();
    put_all(&o.clean, &stable).await?;
    let mut seen = Vec::new();
    let mut next = Some(KeyRange::prefix(b"l/"));
    let mut churn = 0u32;
    while let Some(range) = next {
        let tx = o.clean.begin().await.map_err(fail)?;
        let page = tx
            .scan(&range, ScanOpts::limit(16).snapshot())
            .await
            .map_err(fail)?;
        next = page.next;
        seen.extend(
            page.entries
                .into_iter()
                .filter(|(_, v)| *v == k("s"))
                .map(|(key, _)| key),
        );
        // Odd keys appear and disappear between pages.
        churn += 1;
        let odd = format!("l/{:05}", (churn * 37 % 600) | 1).into_bytes();
        put_all(&o.clean, &[(odd.clone(), k("t"))]).await?;
        o.clean
            .run("churn", |tx| {
                let odd = odd.clone();
                async move { tx.delete(odd) }
            })
            .await
            .map_err(fail)?;
    }
    let want: Vec<_> = stable.into_iter().map(|(key, _)| key).collect();
    ensure(
        seen == want,
        format!("saw {} stable keys of {}", seen.len(), want.len()),
    )
}

async fn limits_give_too_large_and_commit_nothing(o: Opened) -> Result<(), Failed> {
    let limits = o.clean.limits();
    let tx = o.clean.begin().await.map_err(fail)?;
    if limits.max_key_bytes < usize::MAX {
        let r = tx.put(vec![b'k'; limits.max_key_bytes + 1], k("v"));
        ensure(
            matches!(r, Err(KvError::TooLarge(_))),
            format!("oversize key: {r:?}"),
        )?;
        tx.put(vec![b'k'; limits.max_key_bytes], k("v"))
            .map_err(fail)?;
    }
    if limits.max_value_bytes < usize::MAX {
        let r = tx.put(k("big"), vec![0; limits.max_value_bytes + 1]);
        ensure(
            matches!(r, Err(KvError::TooLarge(_))),
            format!("oversize value: {r:?}"),
        )?;
        tx.put(k("big"), vec![0; limits.max_value_bytes])
            .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    if limits.max_txn_ops < usize::MAX {
        let tx = o.clean.begin().await.map_err(fail)?;
        for i in 0..=limits.max_txn_ops {
            tx.put(format!("ops/{i:05}").into_bytes(), k("v"))
                .map_err(fail)?;
        }
        let r = tx.commit().await;
        ensure(
            matches!(r, Err(KvError::TooLarge(_))),
            format!("too many ops: {r:?}"),
        )?;
        let check = o.clean.begin().await.map_err(fail)?;
        let written = check
            .scan_all(&KeyRange::prefix(b"ops/"), 1000, true)
            .await
            .map_err(fail)?;
        ensure(
            written.is_empty(),
            format!("{} keys of a refused transaction committed", written.len()),
        )?;
        // Exactly at the limit is fine.
        let tx = o.clean.begin().await.map_err(fail)?;
        for i in 0..limits.max_txn_ops {
            tx.put(format!("ops/{i:05}").into_bytes(), k("v"))
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
    }
    if limits.max_txn_bytes < usize::MAX && limits.max_value_bytes < usize::MAX {
        let tx = o.clean.begin().await.map_err(fail)?;
        let per_value = limits.max_value_bytes;
        for i in 0..=(limits.max_txn_bytes / per_value) {
            tx.put(format!("bytes/{i:03}").into_bytes(), vec![1; per_value])
                .map_err(fail)?;
        }
        let r = tx.commit().await;
        ensure(
            matches!(r, Err(KvError::TooLarge(_))),
            format!("too many bytes: {r:?}"),
        )?;
        let check = o.clean.begin().await.map_err(fail)?;
        ensure(
            check.get(b"bytes/000").await.map_err(fail)?.is_none(),
            "partial commit of oversize txn",
        )?;
    }
    Ok(())
}

async fn transaction_over_duration_is_too_old(o: Opened) -> Result<(), Failed> {
    let limit = o.clean.limits().max_txn_duration;
    if limit > Duration::from_secs(10) {
        return Ok(()); // Only strict limits are short enough to wait out here.
    }
    let tx = o.clean.begin().await.map_err(fail)?;
    tx.put(k("late"), k("v")).map_err(fail)?;
    tokio::time::sleep(limit + Duration::from_millis(200)).await;
    ensure(
        matches!(tx.get(b"x").await, Err(KvError::TooOld(_))),
        "read after the limit",
    )?;
    ensure(
        matches!(tx.commit().await, Err(KvError::TooOld(_))),
        "commit after the limit",
    )
}

async fn maybe_committed_is_surfaced_or_retried_idempotently(o: Opened) -> Result<(), Failed> {
    // A non-idempotent body is never retried after MaybeCommitted: the
    // caller sees the error. (Only observable when faults are injected.)
    let mut surfaced = 0;
    for i in 0..300 {
        let r =
            o.db.run("plain", |tx| async move {
                tx.put(format!("plain/{i}").into_bytes(), k("v"))
            })
            .await;
        match r {
            Ok(()) => {}
            Err(KvError::MaybeCommitted(_)) => surfaced += 1,
            Err(e) => return Err(fail(e)),
        }
    }
    if o.faults_on {
        ensure(
            surfaced > 0,
            "no MaybeCommitted reached the caller in 300 faulty commits",
        )?;
    } else {
        ensure(surfaced == 0, "MaybeCommitted without faults")?;
    }
    Ok(())
}

async fn retry_runner_stops_at_deadline(o: Opened) -> Result<(), Failed> {
    let deadline = Duration::from_millis(300);
    let db = Db::new(
        jfs::kv::url::open_engine(&jfs::kv::MetaUrl::Mem {
            name: String::new(),
        })
        .map_err(fail)?,
        DbOptions {
            retry: RetryPolicy {
                deadline,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    drop(o);
    let started = Instant::now();
    let r: KvResult<()> = db
        .run("always_conflicts", |_tx| async {
            Err(KvError::Conflict("test".into()))
        })
        .await;
    let elapsed = started.elapsed();
    match r {
        Err(KvError::GaveUp {
            attempts,
            deadline: d,
            last,
            ..
        }) => {
            ensure(
                attempts > 1 && d == deadline,
                format!("attempts {attempts}"),
            )?;
            ensure(matches!(*last, KvError::Conflict(_)), "last error kept")?;
        }
        other => return Err(format!("expected GaveUp, got {other:?}").into()),
    }
    // Generous bound: this checks that it stops, not how fast.
    ensure(
        elapsed < Duration::from_secs(20),
        "retry runner did not stop",
    )?;
    // Errors that are not retryable come back at once.
    let mut calls = 0;
    let r: KvResult<()> = db
        .run("fatal", |_tx| {
            calls += 1;
            async { Err(KvError::Fatal("broken".into())) }
        })
        .await;
    ensure(
        matches!(r, Err(KvError::Fatal(_))) && calls == 1,
        "fatal error retried",
    )
}
