//! Object storage conformance: one set of behaviours run against every
//! backend available here (`file`, `mem`, and each of them behind the
//! retrying wrapper with injected faults). Backends not available are
//! reported as ignored.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jfs::object::{
    FaultyStore, FileStore, MemStore, ObjectError, ObjectRetry, ObjectStore, Retrying,
};
use libtest_mimic::{Arguments, Failed, Trial};

type Store = Arc<dyn ObjectStore>;
type Check = fn(Store) -> Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;

struct Backend {
    label: &'static str,
    open: fn(&std::path::Path) -> Store,
}

fn backends() -> Vec<Backend> {
    vec![
        Backend {
            label: "file",
            open: |dir| Arc::new(FileStore::open(dir).expect("file store")),
        },
        Backend {
            label: "mem",
            open: |_| Arc::new(MemStore::default()),
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
        },
    ]
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), (|s| Box::pin($name(s))) as Check)),*] };
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for backend in backends() {
        let checks: Vec<(&str, Check)> = checks![
            put_get_overwrite_delete,
            ranged_reads,
            listing_pages_by_prefix,
            bad_keys_are_refused
        ];
        for (name, check) in checks {
            let open = backend.open;
            trials.push(Trial::test(
                format!("object_conformance::{}::{name}", backend.label),
                move || {
                    let dir = tempfile::tempdir()?;
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()?;
                    rt.block_on(check(open(dir.path())))
                },
            ));
        }
    }
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

async fn put_get_overwrite_delete(s: Store) -> Result<(), Failed> {
    s.put("a/b/c", b"hello".to_vec()).await.map_err(fail)?;
    ensure(
        s.get("a/b/c").await.map_err(fail)? == b"hello",
        "get after put",
    )?;
    s.put("a/b/c", b"bye".to_vec()).await.map_err(fail)?;
    ensure(s.get("a/b/c").await.map_err(fail)? == b"bye", "overwrite")?;
    let head = s.head("a/b/c").await.map_err(fail)?.ok_or("head")?;
    ensure(head.size == 3, "head size")?;
    ensure(
        s.head("a/b/missing").await.map_err(fail)?.is_none(),
        "head of missing",
    )?;
    ensure(
        matches!(s.get("nope").await, Err(ObjectError::NotFound(_))),
        "get of missing is NotFound",
    )?;
    s.put("empty", Vec::new()).await.map_err(fail)?;
    ensure(
        s.get("empty").await.map_err(fail)?.is_empty(),
        "empty object",
    )?;
    s.delete("a/b/c").await.map_err(fail)?;
    s.delete("a/b/c").await.map_err(fail)?;
    ensure(
        matches!(s.get("a/b/c").await, Err(ObjectError::NotFound(_))),
        "deleted",
    )
}

async fn ranged_reads(s: Store) -> Result<(), Failed> {
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    s.put("r", data.clone()).await.map_err(fail)?;
    ensure(
        s.get_range("r", 0, 10).await.map_err(fail)? == data[..10],
        "start",
    )?;
    ensure(
        s.get_range("r", 99_990, 100).await.map_err(fail)? == data[99_990..],
        "short at the end",
    )?;
    ensure(
        s.get_range("r", 500, 4096).await.map_err(fail)? == data[500..4596],
        "middle",
    )?;
    ensure(
        s.get_range("r", 200_000, 10)
            .await
            .map_err(fail)?
            .is_empty(),
        "past the end",
    )
}

async fn listing_pages_by_prefix(s: Store) -> Result<(), Failed> {
    let mut want = Vec::new();
    for i in 0..57 {
        let key = format!("chunks/{}/{}/{i}_0_100", i / 20, i / 5);
        s.put(&key, vec![1; i]).await.map_err(fail)?;
        want.push(key);
    }
    s.put("other/x", Vec::new()).await.map_err(fail)?;
    s.put("chunksx", Vec::new()).await.map_err(fail)?;
    want.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .list("chunks/", after.as_deref(), 10)
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
    let all = s.list("", None, 1000).await.map_err(fail)?;
    ensure(all.len() == want.len() + 2, "whole listing")
}

async fn bad_keys_are_refused(s: Store) -> Result<(), Failed> {
    if !s.describe().starts_with("file://") {
        return Ok(());
    }
    for key in ["", "../escape", "/abs", "a/../../b"] {
        ensure(
            s.put(key, b"x".to_vec()).await.is_err(),
            format!("key {key:?} accepted"),
        )?;
    }
    Ok(())
}
