//! Metadata operations per second on the embedded engine, through the whole
//! metadata layer (no FUSE): create, lookup, getattr, rename, unlink, and a
//! listing of a 10,000-entry directory, with 1 and 4 clients (each its own
//! `Meta`, as separate mounts are, working in its own directory).
//!
//!     cargo run --release --example meta_bench [META_URL]
//!
//! With META_URL (a redis://, postgres:// or mysql:// server) each run
//! formats a volume of its own there (`prefix=` added to the URL).
//!
//! A measurement, not a test: nothing is asserted.

use std::sync::Arc;
use std::time::Instant;

use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, FileKind, Ino, Meta, Volume, ROOT_INO};

const FILES_PER_CLIENT: usize = 2_000;
const LISTING: usize = 10_000;

fn volume() -> Volume {
    Volume {
        trash_days: 0,
        ..Volume::new("bench", "file", "/tmp/none")
    }
}

fn name(i: usize) -> Vec<u8> {
    format!("file-{i:06}").into_bytes()
}

/// Runs `op` for every file index on each client at once; returns ops/s.
async fn phase<F, Fut>(clients: &[(Arc<Meta>, Ino)], op: F) -> f64
where
    F: Fn(Arc<Meta>, Ino, usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = clients
        .iter()
        .map(|(meta, dir)| {
            let (meta, dir) = (meta.clone(), *dir);
            tokio::spawn(async move {
                for i in 0..FILES_PER_CLIENT {
                    op(meta.clone(), dir, i).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("client");
    }
    (clients.len() * FILES_PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

async fn run(clients_n: usize, server: Option<&str>) -> Vec<(&'static str, f64)> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = match server {
        Some(server) => {
            let sep = if server.contains('?') { '&' } else { '?' };
            MetaUrl::parse(&format!(
                "{server}{sep}prefix=mb{clients_n}x{:08x}",
                fastrand::u32(..)
            ))
            .expect("url")
        }
        None => MetaUrl::parse(tmp.path().join("meta").to_str().expect("utf-8")).expect("url"),
    };
    let db = Db::open(&url, DbOptions::default()).expect("open");
    Meta::format(&db, &volume(), false).await.expect("format");
    let ctx = Ctx::root();
    let mut clients = Vec::new();
    for c in 0..clients_n {
        let meta = Arc::new(Meta::load(db.clone()).await.expect("load"));
        let (dir, _) = meta
            .mkdir(&ctx, ROOT_INO, format!("c{c}").as_bytes(), 0o755)
            .await
            .expect("mkdir");
        clients.push((meta, dir));
    }
    let mut out = Vec::new();
    out.push((
        "create",
        phase(&clients, |m, d, i| async move {
            m.mknod(&Ctx::root(), d, &name(i), FileKind::File, 0o644, 0)
                .await
                .expect("create");
        })
        .await,
    ));
    out.push((
        "lookup",
        phase(&clients, |m, d, i| async move {
            m.lookup(&Ctx::root(), d, &name(i)).await.expect("lookup");
        })
        .await,
    ));
    let inos: Vec<Vec<Ino>> = {
        let mut all = Vec::new();
        for (m, d) in &clients {
            let mut v = Vec::new();
            for i in 0..FILES_PER_CLIENT {
                v.push(m.lookup(&ctx, *d, &name(i)).await.expect("lookup").0);
            }
            all.push(v);
        }
        all
    };
    let start = Instant::now();
    let handles: Vec<_> = clients
        .iter()
        .zip(inos)
        .map(|((m, _), inos)| {
            let m = m.clone();
            tokio::spawn(async move {
                for ino in inos {
                    m.getattr(ino).await.expect("getattr");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("client");
    }
    out.push((
        "getattr",
        (clients_n * FILES_PER_CLIENT) as f64 / start.elapsed().as_secs_f64(),
    ));
    out.push((
        "rename",
        phase(&clients, |m, d, i| async move {
            let mut to = name(i);
            to.extend_from_slice(b".renamed");
            m.rename(&Ctx::root(), d, &name(i), d, &to, 0)
                .await
                .expect("rename");
        })
        .await,
    ));
    out.push((
        "unlink",
        phase(&clients, |m, d, i| async move {
            let mut n = name(i);
            n.extend_from_slice(b".renamed");
            m.unlink(&Ctx::root(), d, &n).await.expect("unlink");
        })
        .await,
    ));
    // Listing: one directory of 10,000 entries, listed by every client.
    let (list_dir, _) = clients[0]
        .0
        .mkdir(&ctx, ROOT_INO, b"listing", 0o755)
        .await
        .expect("mkdir");
    for i in 0..LISTING {
        clients[0]
            .0
            .mknod(&ctx, list_dir, &name(i), FileKind::File, 0o644, 0)
            .await
            .expect("create");
    }
    let start = Instant::now();
    let handles: Vec<_> = clients
        .iter()
        .map(|(m, _)| {
            let m = m.clone();
            tokio::spawn(async move {
                let mut after: Option<Vec<u8>> = None;
                let mut n = 0;
                loop {
                    let page = m
                        .readdir(&Ctx::root(), list_dir, after.as_deref(), 1000, true)
                        .await
                        .expect("readdir");
                    let Some(last) = page.last() else { break };
                    after = Some(last.name.clone());
                    n += page.len();
                }
                assert_eq!(n, LISTING);
            })
        })
        .collect();
    for h in handles {
        h.await.expect("client");
    }
    out.push((
        "readdirplus 10k (entries/s)",
        (clients_n * LISTING) as f64 / start.elapsed().as_secs_f64(),
    ));
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let server = std::env::args().nth(1);
    let one = rt.block_on(run(1, server.as_deref()));
    let four = rt.block_on(run(4, server.as_deref()));
    println!("| operation | 1 client ops/s | 4 clients ops/s |");
    println!("|---|---|---|");
    for ((op, a), (_, b)) in one.iter().zip(&four) {
        println!("| {op} | {a:.0} | {b:.0} |");
    }
}
