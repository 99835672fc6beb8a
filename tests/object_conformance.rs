//! Object storage conformance: one set of behaviours run against every
//! backend available here (`file`, `mem`, and each of them behind the
//! retrying wrapper with injected faults). Backends not available are
//! reported as ignored.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jfs::object::{
    FaultyStore, FileStore, MemStore, ObjectError, ObjectRetry, ObjectStore, Retrying, S3Store,
};
use libtest_mimic::{Arguments, Failed, Trial};

type Store = Arc<dyn ObjectStore>;
type Check = fn(Store, String) -> Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;

struct Backend {
    label: &'static str,
    open: fn(&std::path::Path) -> Store,
    /// Why it is not available here, if it is not.
    skip: Option<String>,
}

/// The S3-compatible server of the test run (ci/test.sh starts one):
/// `JFS_TEST_S3=http://127.0.0.1:PORT/BUCKET`, keys in ACCESS_KEY and
/// SECRET_KEY.
fn s3_url() -> Option<String> {
    std::env::var("JFS_TEST_S3").ok().filter(|v| !v.is_empty())
}

fn backends() -> Vec<Backend> {
    vec![
        Backend {
            label: "file",
            open: |dir| Arc::new(FileStore::open(dir).expect("file store")),
            skip: None,
        },
        Backend {
            label: "mem",
            open: |_| Arc::new(MemStore::default()),
            skip: None,
        },
        Backend {
            label: "file_faults_retried",
            open: |dir| {
                let faulty = FaultyStore::new(FileStore::open(dir).expect("file store"), 0.2);
                Arc::new(Retrying::new(
                    faulty,
                    ObjectRetry {
                        attempts: 30,
                        ..Default::default()
                    },
                ))
            },
            skip: None,
        },
        Backend {
            label: "s3",
            open: |_| {
                let url = s3_url().unwrap_or_default();
                Arc::new(Retrying::new(
                    S3Store::new(&url, None, None).expect("s3 store"),
                    ObjectRetry::default(),
                ))
            },
            skip: s3_url()
                .is_none()
                .then(|| "JFS_TEST_S3 is not set".to_string()),
        },
    ]
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), (|s, p| Box::pin($name(s, p))) as Check)),*] };
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for backend in backends() {
        if let Some(why) = &backend.skip {
            eprintln!("skipping object store {}: {why}", backend.label);
        }
        let checks: Vec<(&str, Check)> = checks![
            put_get_overwrite_delete,
            ranged_reads,
            listing_pages_by_prefix
        ];
        for (name, check) in checks {
            let open = backend.open;
            // Each check in its own key space, so that a shared bucket works.
            let prefix = format!("t{:016x}/", fastrand::u64(..));
            let trial = Trial::test(
                format!("object_conformance::{}::{name}", backend.label),
                move || {
                    let dir = tempfile::tempdir()?;
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()?;
                    rt.block_on(check(open(dir.path()), prefix))
                },
            );
            trials.push(trial.with_ignored_flag(backend.skip.is_some()));
        }
    }
    for (label, open) in [("file", backends()[0].open), ("mem", backends()[1].open)] {
        trials.push(Trial::test(
            format!("object_conformance::{label}::format_check_refuses_another_volume"),
            move || {
                let dir = tempfile::tempdir()?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(format_check_refuses_another_volume(
                    open(dir.path()),
                    String::new(),
                ))
            },
        ));
    }
    trials.push(Trial::test(
        "object_conformance::file::bad_keys_are_refused",
        || {
            let dir = tempfile::tempdir()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(bad_keys_are_refused(
                Arc::new(FileStore::open(dir.path())?),
                String::new(),
            ))
        },
    ));
    trials.push(Trial::test(
        "object_conformance::s3::unreachable_endpoint_is_a_clear_error",
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(s3_unreachable())
        },
    ));
    trials.push(
        Trial::test(
            "object_conformance::s3::missing_bucket_is_a_clear_error",
            || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(s3_missing_bucket())
            },
        )
        .with_ignored_flag(s3_url().is_none()),
    );
    libtest_mimic::run(&args, trials).exit();
}

fn ensure(cond: bool, what: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

fn fail(e: ObjectError) -> Failed {
    e.to_string().into()
}

async fn put_get_overwrite_delete(s: Store, p: String) -> Result<(), Failed> {
    s.put(&format!("{p}a/b/c"), bytes::Bytes::from(b"hello".to_vec()))
        .await
        .map_err(fail)?;
    ensure(
        s.get(&format!("{p}a/b/c")).await.map_err(fail)? == b"hello"[..],
        "get after put",
    )?;
    s.put(&format!("{p}a/b/c"), bytes::Bytes::from(b"bye".to_vec()))
        .await
        .map_err(fail)?;
    ensure(
        s.get(&format!("{p}a/b/c")).await.map_err(fail)? == b"bye"[..],
        "overwrite",
    )?;
    let head = s
        .head(&format!("{p}a/b/c"))
        .await
        .map_err(fail)?
        .ok_or("head")?;
    ensure(head.size == 3, "head size")?;
    ensure(
        s.head(&format!("{p}a/b/missing"))
            .await
            .map_err(fail)?
            .is_none(),
        "head of missing",
    )?;
    ensure(
        matches!(
            s.get(&format!("{p}nope")).await,
            Err(ObjectError::NotFound(_))
        ),
        "get of missing is NotFound",
    )?;
    s.put(&format!("{p}empty"), bytes::Bytes::from(Vec::new()))
        .await
        .map_err(fail)?;
    ensure(
        s.get(&format!("{p}empty")).await.map_err(fail)?.is_empty(),
        "empty object",
    )?;
    s.delete(&format!("{p}a/b/c")).await.map_err(fail)?;
    s.delete(&format!("{p}a/b/c")).await.map_err(fail)?;
    ensure(
        matches!(
            s.get(&format!("{p}a/b/c")).await,
            Err(ObjectError::NotFound(_))
        ),
        "deleted",
    )
}

async fn ranged_reads(s: Store, p: String) -> Result<(), Failed> {
    // A block-sized object reads back whole, byte for byte (S3 bodies of a
    // known length from 1 MiB up are read into page mappings).
    let big: Vec<u8> = (0..(4 << 20) + 4096 + 272)
        .map(|i: usize| (i * 7 + i / 4099) as u8)
        .collect();
    s.put(&format!("{p}big"), bytes::Bytes::from(big.clone()))
        .await
        .map_err(fail)?;
    ensure(
        s.get(&format!("{p}big")).await.map_err(fail)? == big,
        "a 4 MiB object read back different bytes",
    )?;
    // A fed get hands over the object's bytes in order, each part once
    // (a retried read starts again from 0), and returns the same bytes.
    s.put(
        &format!("{p}small"),
        bytes::Bytes::copy_from_slice(&big[..100]),
    )
    .await
    .map_err(fail)?;
    for (key, want) in [
        (format!("{p}big"), &big[..]),
        (format!("{p}small"), &big[..100]),
    ] {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = seen.clone();
        let feed: jfs::object::Feed = Arc::new(move |offset, part| {
            let mut seen = sink.lock().unwrap();
            assert!(
                offset <= seen.len(),
                "part at {offset} after {} bytes",
                seen.len()
            );
            seen.truncate(offset);
            seen.extend_from_slice(part);
        });
        let got = s.get_fed(&key, feed).await.map_err(fail)?;
        ensure(got == want, "a fed get returned different bytes")?;
        ensure(
            *seen.lock().unwrap() == want,
            "a fed get's parts are not the object's bytes",
        )?;
    }
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    s.put(&format!("{p}r"), bytes::Bytes::from(data.clone()))
        .await
        .map_err(fail)?;
    ensure(
        s.get_range(&format!("{p}r"), 0, 10).await.map_err(fail)? == data[..10],
        "start",
    )?;
    ensure(
        s.get_range(&format!("{p}r"), 99_990, 100)
            .await
            .map_err(fail)?
            == data[99_990..],
        "short at the end",
    )?;
    ensure(
        s.get_range(&format!("{p}r"), 500, 4096)
            .await
            .map_err(fail)?
            == data[500..4596],
        "middle",
    )?;
    ensure(
        s.get_range(&format!("{p}r"), 200_000, 10)
            .await
            .map_err(fail)?
            .is_empty(),
        "past the end",
    )
}

async fn listing_pages_by_prefix(s: Store, p: String) -> Result<(), Failed> {
    let mut want = Vec::new();
    for i in 0..57 {
        let key = format!("{p}chunks/{}/{}/{i}_0_100", i / 20, i / 5);
        s.put(&key, bytes::Bytes::from(vec![1; i]))
            .await
            .map_err(fail)?;
        want.push(key);
    }
    s.put(&format!("{p}other/x"), bytes::Bytes::from(Vec::new()))
        .await
        .map_err(fail)?;
    s.put(&format!("{p}chunksx"), bytes::Bytes::from(Vec::new()))
        .await
        .map_err(fail)?;
    want.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .list(&format!("{p}chunks/"), after.as_deref(), 10)
            .await
            .map_err(fail)?;
        ensure(page.len() <= 10, "page over its limit")?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        seen.extend(page.into_iter().map(|o| o.key));
    }
    ensure(
        seen == want,
        format!("listed {} of {}", seen.len(), want.len()),
    )?;
    let all = s.list(&p, None, 1000).await.map_err(fail)?;
    ensure(all.len() == want.len() + 2, "whole listing")
}

async fn bad_keys_are_refused(s: Store, _p: String) -> Result<(), Failed> {
    for key in ["", "../escape", "/abs", "a/../../b"] {
        ensure(
            s.put(key, bytes::Bytes::from(b"x".to_vec())).await.is_err(),
            format!("key {key:?} accepted"),
        )?;
    }
    Ok(())
}

/// The storage check of `jfs format`: passes on a working store, records the
/// volume, and refuses a bucket holding another volume unless forced. Run on
/// the private stores only: it claims the bucket root, and the test S3
/// bucket is shared.
async fn format_check_refuses_another_volume(s: Store, _p: String) -> Result<(), Failed> {
    jfs::object::check_storage(s.as_ref(), "uuid-one", false)
        .await
        .map_err(fail)?;
    jfs::object::check_storage(s.as_ref(), "uuid-one", false)
        .await
        .map_err(fail)?;
    let refused = jfs::object::check_storage(s.as_ref(), "uuid-two", false).await;
    match refused {
        Err(ObjectError::Fatal(m))
            if m.contains("already holds volume uuid-one") && m.contains("--force") => {}
        other => return Err(format!("second volume not refused: {other:?}").into()),
    }
    jfs::object::check_storage(s.as_ref(), "uuid-two", true)
        .await
        .map_err(fail)?;
    ensure(
        s.get(jfs::object::UUID_OBJECT).await.map_err(fail)? == b"uuid-two"[..],
        "uuid recorded",
    )
}

/// Nothing listens on port 1: every attempt fails at once, and after the
/// retries the error says the endpoint cannot be reached, without the keys.
async fn s3_unreachable() -> Result<(), Failed> {
    let store = S3Store::new(
        "http://127.0.0.1:1/bucket",
        Some("AKIDEXAMPLE"),
        Some("topsecretkey"),
    )?;
    let quick = ObjectRetry {
        attempts: 2,
        first_backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let store = Retrying::new(store, quick);
    match store.put("k", bytes::Bytes::from(b"v".to_vec())).await {
        Err(ObjectError::Transient(m)) => {
            ensure(
                m.contains("cannot reach") && m.contains("failed 2 times"),
                format!("unclear: {m}"),
            )?;
            ensure(
                !m.contains("topsecretkey") && !m.contains("AKIDEXAMPLE"),
                "credentials in the message",
            )
        }
        other => Err(format!("unreachable endpoint gave {other:?}").into()),
    }
}

/// A bucket that does not exist is named, with what to do, not retried.
async fn s3_missing_bucket() -> Result<(), Failed> {
    let url = s3_url().ok_or("JFS_TEST_S3")?;
    let (base, _) = url.rsplit_once('/').ok_or("bucket URL")?;
    let store = Retrying::new(
        S3Store::new(&format!("{base}/no-such-bucket-here"), None, None)?,
        ObjectRetry::default(),
    );
    match store.put("k", bytes::Bytes::from(b"v".to_vec())).await {
        Err(ObjectError::Fatal(m)) => ensure(
            m.contains("does not exist") && m.contains("--bucket"),
            format!("unclear: {m}"),
        ),
        other => Err(format!("missing bucket gave {other:?}").into()),
    }
}
