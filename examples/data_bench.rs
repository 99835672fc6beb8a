//! Data path throughput through the vfs layer (what the FUSE adapter calls,
//! without the kernel), next to the raw object store with the same block
//! size and concurrency: sequential write and read of one file in 1 MiB
//! requests (the mount's FUSE request size), and random 4 KiB reads; then
//! the raw rate of 128 KiB PUTs with one and four writers (the ceiling of
//! small-file writes on that server).
//!
//!     cargo run --release --example data_bench -- file /tmp/bench-objects [MiB]
//!     cargo run --release --example data_bench -- s3 http://127.0.0.1:9000/bucket [MiB]
//!
//! S3 keys come from ACCESS_KEY / SECRET_KEY. A measurement: nothing is
//! asserted.

use std::sync::Arc;
use std::time::Instant;

use jfs::data::{DataOptions, DataStore, DEFAULT_MAX_UPLOADS};
use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, Meta, SessionInfo, Volume, ROOT_INO};
use jfs::object::{FileStore, ObjectRetry, ObjectStore, Retrying, S3Store};
use jfs::vfs::{Vfs, VfsOptions};

const BLOCK: usize = 4 << 20;
const IO: usize = 1 << 20;
/// Random reads per loop (`DATA_BENCH_RANDOM_READS` changes it, to
/// profile that loop).
fn random_reads() -> usize {
    std::env::var("DATA_BENCH_RANDOM_READS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}

/// Before a read phase: the kernel writes back what the write phase left
/// dirty (a `file` store's objects), so the reads do not race it for the
/// two cores. Both loops get the same.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

/// The raw loops: PUTs and GETs of whole blocks (`DEFAULT_MAX_UPLOADS` at
/// a time), then [`random_reads`] ranged GETs of 4 KiB one after another,
/// as the vfs's random reads go. Returns MiB/s, MiB/s and reads/s.
async fn raw(objects: Arc<dyn ObjectStore>, total: usize) -> (f64, f64, f64) {
    // As many distinct blocks as uploads in flight (80 MiB, more than the
    // L3 cache): one shared buffer would be PUT from cache-hot memory,
    // which no writer's blocks are.
    let blocks: Vec<bytes::Bytes> = (0..DEFAULT_MAX_UPLOADS)
        .map(|i| bytes::Bytes::from(vec![i as u8; BLOCK]))
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_UPLOADS));
    let count = total / BLOCK;
    settle();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        let (objects, block, permit) = (
            objects.clone(),
            blocks[i % blocks.len()].clone(),
            sem.clone().acquire_owned().await,
        );
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            objects.put(&format!("raw/{i}"), block).await.expect("put");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let put = mib_s(count * BLOCK, start.elapsed().as_secs_f64());
    settle();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        let (objects, permit) = (objects.clone(), sem.clone().acquire_owned().await);
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            objects.get(&format!("raw/{i}")).await.expect("get");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let get = mib_s(count * BLOCK, start.elapsed().as_secs_f64());
    let mut rng = fastrand::Rng::with_seed(1);
    let start = Instant::now();
    let reads = random_reads();
    for _ in 0..reads {
        let key = format!("raw/{}", rng.usize(0..count));
        let at = rng.u64(0..(BLOCK - 4096) as u64);
        objects.get_range(&key, at, 4096).await.expect("ranged get");
    }
    let random = reads as f64 / start.elapsed().as_secs_f64();
    for i in 0..count {
        objects.delete(&format!("raw/{i}")).await.expect("delete");
    }
    (put, get, random)
}

/// Small objects as `jfs bench` writes its small files: 128 KiB each,
/// `writers` writers with one PUT at a time each, `each` objects apiece.
/// Returns PUTs/s: what any client's small-file writes can reach on this
/// server, before any metadata.
async fn raw_small(objects: Arc<dyn ObjectStore>, writers: usize, each: usize) -> f64 {
    let data = bytes::Bytes::from(vec![7u8; 128 << 10]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (objects, data) = (objects.clone(), data.clone());
            tokio::spawn(async move {
                for i in 0..each {
                    let key = format!("small/{w}/{i}");
                    objects.put(&key, data.clone()).await.expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let rate = (writers * each) as f64 / start.elapsed().as_secs_f64();
    for w in 0..writers {
        for i in 0..each {
            objects
                .delete(&format!("small/{w}/{i}"))
                .await
                .expect("delete");
        }
    }
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    jfs::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let (kind, target) = (
        args.get(1).map(String::as_str).unwrap_or("file"),
        args.get(2)
            .cloned()
            .unwrap_or("/tmp/jfs-bench-objects".into()),
    );
    let total: usize = args.get(3).and_then(|m| m.parse().ok()).unwrap_or(1024) << 20;
    let objects: Arc<dyn ObjectStore> = match kind {
        "s3" => Arc::new(Retrying::new(
            S3Store::new(&target, None, None).expect("s3"),
            ObjectRetry::default(),
        )),
        _ => Arc::new(FileStore::open(std::path::Path::new(&target)).expect("file store")),
    };
    let (raw_put, raw_get, raw_random) = raw(objects.clone(), total).await;

    let meta_dir = tempfile::tempdir().expect("tempdir");
    let url = MetaUrl::parse(meta_dir.path().join("meta").to_str().expect("utf-8")).expect("url");
    let db = Db::open(&url, DbOptions::default()).expect("open");
    let volume = Volume {
        trash_days: 0,
        ..Volume::new("bench", kind, &target)
    };
    Meta::format(&db, &volume, false).await.expect("format");
    let ctx = Ctx::root();
    let writer = mount(&db, objects.clone(), 64 << 20).await;
    let (ino, _, h) = writer
        .create(&ctx, ROOT_INO, b"big", 0o644, 0, libc::O_RDWR)
        .await
        .expect("create");
    let buf = vec![3u8; IO];
    settle();
    let start = Instant::now();
    for i in 0..total / IO {
        writer
            .write(h.fh, (i * IO) as u64, &buf)
            .await
            .expect("write");
    }
    writer.flush(h.fh, None).await.expect("flush");
    writer.release(h.fh).await.expect("release");
    let write = mib_s(total, start.elapsed().as_secs_f64());

    // Reads by another client with empty caches.
    let cold = mount(&db, objects.clone(), 64 << 20).await;
    let h = cold.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    settle();
    let start = Instant::now();
    for i in 0..total / IO {
        cold.read(h.fh, (i * IO) as u64, IO as u32)
            .await
            .expect("read");
    }
    let read = mib_s(total, start.elapsed().as_secs_f64());
    cold.release(h.fh).await.expect("release");

    let cold = mount(&db, objects.clone(), 0).await;
    let h = cold.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    let mut rng = fastrand::Rng::with_seed(1);
    let start = Instant::now();
    let reads = random_reads();
    for _ in 0..reads {
        let at = rng.u64(0..(total - 4096) as u64);
        cold.read(h.fh, at, 4096).await.expect("read");
    }
    let random = reads as f64 / start.elapsed().as_secs_f64();
    cold.release(h.fh).await.expect("release");

    println!("| {kind}, {} MiB | jfs | raw | ratio |", total >> 20);
    println!("|---|---|---|---|");
    println!(
        "| sequential write MiB/s | {write:.0} | {raw_put:.0} | {:.2} |",
        write / raw_put
    );
    println!(
        "| sequential read MiB/s | {read:.0} | {raw_get:.0} | {:.2} |",
        read / raw_get
    );
    println!(
        "| random 4 KiB reads/s (no cache, one at a time) | {random:.0} | {raw_random:.0} | {:.2} |",
        random / raw_random
    );
    let (one, four) = (
        raw_small(objects.clone(), 1, 200).await,
        raw_small(objects.clone(), 4, 100).await,
    );
    println!();
    println!(
        "Raw 128 KiB PUTs/s (as `jfs bench`'s small files, each writer one at a time): \
         1 writer {one:.0}, 4 writers {four:.0}"
    );
}

/// A client of the volume as a mount would set it up: its own session,
/// data store (memory cache of `cache_bytes`, no disk cache) and vfs.
async fn mount(db: &Db, objects: Arc<dyn ObjectStore>, cache_bytes: usize) -> Arc<Vfs> {
    let meta = Arc::new(Meta::load(db.clone()).await.expect("load"));
    let info = SessionInfo {
        host: "bench".into(),
        pid: std::process::id(),
        mount_point: "-".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    meta.new_session(&info, 60).await.expect("session");
    let options = DataOptions {
        memory_cache_bytes: cache_bytes,
        ..Default::default()
    };
    let data = DataStore::with_options(meta.clone(), objects, options).expect("store");
    Vfs::new(meta, data, VfsOptions::default())
}
