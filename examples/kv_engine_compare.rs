//! Compares candidate stores for the embedded default engine on a
//! metadata-like mix, through the whole KV layer (transactions, resolver,
//! retry runner): 70% point reads, 20% transactions writing 3 small keys,
//! 10% scans of 100 keys, at 1, 2 and 4 threads over 100,000 keys.
//!
//!     cargo run --release --features redb,sqlite --example kv_engine_compare
//!
//! Prints a Markdown table of operations per second and p99 latencies. A
//! measurement, not a test: nothing is asserted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jfs::kv::txn::ScanOpts;
use jfs::kv::{Db, DbOptions, Engine, KeyRange};

const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 100;
const OPS_PER_THREAD: u64 = 30_000;

fn key(i: u64) -> Vec<u8> {
    format!("k/{i:08}").into_bytes()
}

fn candidates() -> Vec<&'static str> {
    let mut list = vec!["fjall"];
    if cfg!(feature = "redb") {
        list.push("redb");
    }
    if cfg!(feature = "sqlite") {
        list.push("sqlite");
    }
    list
}

fn open(name: &str, dir: &Path) -> Arc<dyn Engine> {
    match name {
        #[cfg(feature = "redb")]
        "redb" => Arc::new(jfs::kv::local::redb::open_engine(dir).expect("open redb")),
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(jfs::kv::local::sqlite::open_engine(dir).expect("open sqlite")),
        _ => Arc::new(jfs::kv::local::fjall::open_engine(dir).expect("open fjall")),
    }
}

#[derive(Default)]
struct Latencies {
    read: Vec<Duration>,
    write: Vec<Duration>,
    scan: Vec<Duration>,
}

fn p99(v: &mut [Duration]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)].as_secs_f64() * 1e6
}

async fn worker(db: Db, seed: u64) -> Latencies {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lat = Latencies::default();
    for _ in 0..OPS_PER_THREAD {
        let dice = rng.u32(0..100);
        let start = Instant::now();
        if dice < 70 {
            let k = key(rng.u64(0..KEYS));
            db.run("read", |tx| {
                let k = k.clone();
                async move { tx.snapshot_get(&k).await }
            })
            .await
            .expect("read");
            lat.read.push(start.elapsed());
        } else if dice < 90 {
            let keys: Vec<Vec<u8>> = (0..3).map(|_| key(rng.u64(0..KEYS))).collect();
            let value = vec![rng.u8(..); VALUE_BYTES];
            db.run("write3", |tx| {
                let (keys, value) = (keys.clone(), value.clone());
                async move {
                    // As a metadata op does: check what it changes, then write.
                    tx.get(&keys[0]).await?;
                    for k in keys {
                        tx.put(k, value.clone())?;
                    }
                    Ok(())
                }
            })
            .await
            .expect("write");
            lat.write.push(start.elapsed());
        } else {
            let from = key(rng.u64(0..KEYS));
            db.run("scan100", |tx| {
                let range = KeyRange {
                    start: from.clone(),
                    end: Some(b"k0".to_vec()),
                };
                async move { tx.scan(&range, ScanOpts::limit(100).snapshot()).await }
            })
            .await
            .expect("scan");
            lat.scan.push(start.elapsed());
        }
    }
    lat
}

fn main() {
    println!("| store | threads | ops/s | read p99 µs | write p99 µs | scan p99 µs |");
    println!("|---|---|---|---|---|---|");
    for name in candidates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::new(open(name, dir.path()), DbOptions::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
                db.run("load", |tx| async move {
                    for &i in chunk {
                        tx.put(key(i), vec![7u8; VALUE_BYTES])?;
                    }
                    Ok(())
                })
                .await
                .expect("load");
            }
        });
        drop(rt);
        for threads in [1usize, 2, 4] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .expect("rt");
            let started = Instant::now();
            let mut all = Latencies::default();
            rt.block_on(async {
                let handles: Vec<_> = (0..threads)
                    .map(|t| tokio::spawn(worker(db.clone(), 1000 + t as u64)))
                    .collect();
                for h in handles {
                    let l = h.await.expect("worker");
                    all.read.extend(l.read);
                    all.write.extend(l.write);
                    all.scan.extend(l.scan);
                }
            });
            let secs = started.elapsed().as_secs_f64();
            let ops = (threads as u64 * OPS_PER_THREAD) as f64;
            println!(
                "| {name} | {threads} | {:.0} | {:.0} | {:.0} | {:.0} |",
                ops / secs,
                p99(&mut all.read),
                p99(&mut all.write),
                p99(&mut all.scan)
            );
        }
    }
}
