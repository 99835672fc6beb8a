//! The disk cache: hits served without the object store, damaged entries
//! detected and fetched again, eviction under a small size, and the cache
//! found again after a remount.

mod common;

use std::sync::Arc;

use jfs::data::{DataOptions, DataStore, DiskCache, FileReader, FileWriter};
use jfs::meta::{Ctx, FileKind, Meta, ROOT_INO};
use jfs::object::{FileStore, ObjectStore};

const BLOCK: u32 = 64 << 10;

/// A directory for the objects (and caches), its store, and volume
/// `name`'s metadata with `BLOCK`-sized blocks.
async fn fixture(name: &str) -> (tempfile::TempDir, Arc<dyn ObjectStore>, Arc<Meta>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> =
        Arc::new(FileStore::open(&dir.path().join("objects")).expect("store"));
    let mut volume = common::volume(name);
    volume.block_size_bytes = BLOCK;
    let meta = Arc::new(common::mem_meta(volume).await);
    (dir, objects, meta)
}

async fn setup() -> (
    tempfile::TempDir,
    Arc<Meta>,
    Arc<dyn ObjectStore>,
    u64,
    Vec<u8>,
) {
    let (dir, objects, meta) = fixture("cache").await;
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let data: Vec<u8> = (0..10 * BLOCK as usize).map(|i| (i % 253) as u8).collect();
    let mut w = FileWriter::new(store, ino);
    w.write(0, &data).await.expect("write");
    w.flush().await.expect("flush");
    (dir, meta, objects, ino, data)
}

/// The whole of file `ino` (`len` bytes) through a reader of its own.
async fn read_whole(store: Arc<DataStore>, ino: u64, len: usize) -> bytes::Bytes {
    FileReader::new(store, ino)
        .read(0, len, len as u64)
        .await
        .expect("read")
}

/// 16 KiB of a file holding `data`, from `at`, checked.
async fn read_checked(reader: &FileReader, data: &[u8], at: usize) {
    let got = reader
        .read(at as u64, 16 << 10, data.len() as u64)
        .await
        .expect("read");
    assert_eq!(&got[..], &data[at..at + got.len()], "at {at}");
}

/// Options with `disk` as the disk cache and no memory cache.
fn disk(cache: DiskCache) -> DataOptions {
    DataOptions {
        max_uploads: 4,
        memory_cache_bytes: 0,
        disk_cache: Some(cache),
        ..Default::default()
    }
}

fn cache(dir: &std::path::Path, meta: &Meta, capacity: u64) -> DiskCache {
    DiskCache::open(&dir.join("cache"), &meta.volume().uuid, capacity, 0.0).expect("cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_need_no_object_store_and_survive_a_remount() {
    let (dir, meta, objects, ino, data) = setup().await;
    let store = DataStore::with_options(
        meta.clone(),
        objects.clone(),
        disk(cache(dir.path(), &meta, 1 << 30)),
    )
    .expect("store");
    let got = read_whole(store.clone(), ino, data.len()).await;
    assert!(got == data);
    let (bytes, entries) = store.disk_cache().expect("disk").usage();
    assert_eq!(entries, 10);
    drop(store);
    // The objects vanish; a remounted cache still serves every block.
    std::fs::remove_dir_all(dir.path().join("objects")).expect("remove objects");
    let remounted = cache(dir.path(), &meta, 1 << 30);
    assert_eq!(
        remounted.usage(),
        (bytes, 10),
        "cache found again after remount"
    );
    let store = DataStore::with_options(meta.clone(), objects, disk(remounted)).expect("store");
    let got = read_whole(store, ino, data.len()).await;
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_is_fetched_again() {
    let (dir, meta, objects, ino, data) = setup().await;
    let store = DataStore::with_options(
        meta.clone(),
        objects.clone(),
        disk(cache(dir.path(), &meta, 1 << 30)),
    )
    .expect("store");
    read_whole(store.clone(), ino, data.len()).await;
    drop(store);
    let mut damaged = 0;
    for entry in walk(&dir.path().join("cache")) {
        let mut bytes = std::fs::read(&entry).expect("read entry");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        std::fs::write(&entry, bytes).expect("damage entry");
        damaged += 1;
    }
    assert_eq!(damaged, 10);
    let store = DataStore::with_options(
        meta.clone(),
        objects,
        disk(cache(dir.path(), &meta, 1 << 30)),
    )
    .expect("store");
    let got = read_whole(store, ino, data.len()).await;
    assert!(got == data, "damaged cache entries were returned as data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cache_evicts_to_its_size() {
    let (dir, meta, objects, ino, data) = setup().await;
    let capacity = 3 * (BLOCK as u64 + 1024);
    let store = DataStore::with_options(
        meta.clone(),
        objects,
        disk(cache(dir.path(), &meta, capacity)),
    )
    .expect("store");
    let got = read_whole(store.clone(), ino, data.len()).await;
    assert!(got == data);
    let (bytes, entries) = store.disk_cache().expect("disk").usage();
    assert!(
        bytes <= capacity && entries == 3,
        "{entries} entries, {bytes} bytes for a capacity of {capacity}"
    );
    let on_disk: u64 = walk(&dir.path().join("cache"))
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(on_disk, bytes, "evicted entries are gone from disk");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_buffer_bounds_blocks_in_memory() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Counts puts in flight, each taking a while.
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (i, m) = (in_flight.clone(), most.clone());
    let slow = Arc::new(common::Screened {
        inner: Arc::new(jfs::object::MemStore::default()),
        screen: move |op: &str, _: String| {
            let (in_flight, most) = (i.clone(), m.clone());
            let put = op == "put";
            async move {
                if put {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(())
            }
        },
    });
    let mut volume = common::volume("buffer");
    volume.block_size_bytes = BLOCK;
    let meta = Arc::new(common::mem_meta(volume).await);
    let buffer = 3 * BLOCK as u64;
    let options = DataOptions {
        max_uploads: 20,
        buffer_bytes: buffer,
        memory_cache_bytes: 0,
        ..Default::default()
    };
    let store = DataStore::with_options(meta.clone(), slow, options).expect("store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let data: Vec<u8> = (0..40 * BLOCK as usize).map(|i| (i % 241) as u8).collect();
    let mut w = FileWriter::new(store.clone(), ino);
    for piece in data.chunks(10_000) {
        let at = (piece.as_ptr() as usize - data.as_ptr() as usize) as u64;
        w.write(at, piece).await.expect("write");
        assert!(store.buffer_in_use() <= buffer);
    }
    w.flush().await.expect("flush");
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 3,
        "{most} blocks uploading at once with a 3-block buffer"
    );
    assert_eq!(store.buffer_in_use(), 0, "buffer released after flush");
    let got = read_whole(store, ino, data.len()).await;
    assert!(got == data);
}

/// A disk cache that keeps nothing more (its disk is past the free-space
/// ratio) does not make small reads fetch whole blocks it would drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_reads_fetch_pieces_when_the_disk_cache_is_full() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (dir, meta, objects, ino, data) = setup().await;
    let (whole, ranged) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (w, r) = (whole.clone(), ranged.clone());
    let counting = Arc::new(common::Screened {
        inner: objects,
        screen: move |op: &str, _: String| {
            match op {
                "get" => w.fetch_add(1, Ordering::SeqCst),
                "get_range" => r.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
            std::future::ready(Ok(()))
        },
    });
    // No disk is ever entirely free: a ratio of 1 keeps nothing.
    let full = DiskCache::open(&dir.path().join("cache"), &meta.volume().uuid, 1 << 30, 1.0)
        .expect("cache");
    assert!(!full.has_free_space());
    let store = DataStore::with_options(meta.clone(), counting, disk(full)).expect("store");
    let reader = FileReader::new(store, ino);
    // First each block's CRC table and piece; read again, each block's
    // table is known: one GET per read.
    for (within, ranged_gets) in [(1000, 20), (30_000, 30)] {
        for block in 0..10u64 {
            let at = block * BLOCK as u64 + within;
            let got = reader
                .read(at, 4096, data.len() as u64)
                .await
                .expect("read");
            assert_eq!(&got[..], &data[at as usize..at as usize + 4096]);
        }
        assert_eq!(whole.load(Ordering::SeqCst), 0, "whole blocks fetched");
        assert_eq!(ranged.load(Ordering::SeqCst), ranged_gets, "ranged GETs");
    }
}

/// Random reads come with short sequential bursts (the kernel's own
/// read-ahead around a missed page): they fetch the blocks they read and
/// nothing ahead of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_sequential_bursts_fetch_nothing_ahead() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (dir, meta, objects, ino, data) = setup().await;
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let counting = Arc::new(common::Screened {
        inner: objects,
        screen: move |op: &str, _: String| {
            if op.starts_with("get") {
                g.fetch_add(1, Ordering::SeqCst);
            }
            std::future::ready(Ok(()))
        },
    });
    let options = disk(cache(dir.path(), &meta, 1 << 30));
    let store = DataStore::with_options(meta.clone(), counting, options).expect("store");
    let reader = FileReader::new(store, ino);
    for block in [7u64, 2, 5, 0] {
        let mut at = block * BLOCK as u64 + 100;
        for len in [4096usize, 8192, 16384] {
            let got = reader.read(at, len, data.len() as u64).await.expect("read");
            assert_eq!(&got[..], &data[at as usize..at as usize + len]);
            at += len as u64;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(gets.load(Ordering::SeqCst), 4, "one fetch per block read");
}

/// A file read from start to end keeps in memory the blocks read ahead and
/// not yet read, not everything it read: the memory cache does not fill
/// with blocks a stream is done with (the kernel's page cache has them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_leaves_no_read_blocks_in_memory() {
    stream_through_memory(false).await;
}

/// The kernel's requests of one stream arrive a little out of order (its
/// read-ahead runs beside the reader's request, on other threads): read
/// in swapped pairs, the file is still a stream, read ahead and dropped
/// behind. Taken for jumps, they stopped read-ahead (nothing was read
/// ahead) and, on a real mount, left read blocks in memory until the
/// cache was full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_requests_arrive_out_of_order_is_still_a_stream() {
    stream_through_memory(true).await;
}

async fn stream_through_memory(swapped: bool) {
    let (_dir, objects, meta) = fixture("stream").await;
    let blocks = 40usize;
    // Room for the whole file: only the reader's choice keeps it small.
    let store =
        DataStore::new(meta.clone(), objects, 4, 2 * blocks * BLOCK as usize).expect("store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let data: Vec<u8> = (0..blocks * BLOCK as usize)
        .map(|i| (i % 251) as u8)
        .collect();
    // Eight slices of five blocks: a block is dropped once the next is
    // reached, in the same slice or the next.
    let mut w = FileWriter::new(store.clone(), ino);
    for part in data.chunks(5 * BLOCK as usize).enumerate() {
        let (i, bytes) = part;
        w.write((i * 5 * BLOCK as usize) as u64, bytes)
            .await
            .expect("write");
        w.flush().await.expect("flush");
    }
    assert_eq!(
        meta.read_chunk(ino, 0).await.expect("records").len(),
        8,
        "one slice per part"
    );
    let reader = FileReader::new(store.clone(), ino);
    let mut most = 0;
    let mut order: Vec<usize> = (0..data.len()).step_by(16 << 10).collect();
    if swapped {
        for pair in order.chunks_mut(2) {
            pair.reverse();
        }
    }
    for at in order {
        read_checked(&reader, &data, at).await;
        most = most.max(store.memory_cache_bytes());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let kept = store.memory_cache_bytes();
    // The read-ahead window (4 uploads at once: 4 blocks) and the block
    // being read, at most (6 while the block before stayed until the next
    // was half read; without dropping what was read, 25).
    assert!(
        most <= 5 * BLOCK as usize && kept <= 3 * BLOCK as usize,
        "memory cache held up to {} blocks, {} after the read",
        most / BLOCK as usize,
        kept / BLOCK as usize
    );
    assert!(most > 0, "the stream read nothing ahead");
    // Closed, the file leaves nothing in memory (the block read last
    // stayed until the cache was full).
    drop(reader);
    assert_eq!(
        store.memory_cache_bytes() / BLOCK as usize,
        0,
        "blocks in memory after the file was closed"
    );
}

/// Streams over blocks the disk cache holds read ahead into the kernel's
/// page cache once several share the memory budget: four streams keep in
/// memory the block each reads and nothing ahead (with blocks read ahead
/// into memory, 8; up to 6 here as the streams start), while a lone stream
/// still reads ahead into memory (it waits on each read; several streams
/// keep several reads in flight between them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_disk_cache_read_ahead_into_the_page_cache() {
    let (dir, objects, meta) = fixture("streams").await;
    let options = || DataOptions {
        max_uploads: 4,
        memory_cache_bytes: 16 * BLOCK as usize,
        disk_cache: Some(cache(dir.path(), &meta, 1 << 30)),
        ..Default::default()
    };
    let writing = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("store");
    let blocks = 40usize;
    let data: Vec<u8> = (0..blocks * BLOCK as usize)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut files = Vec::new();
    for name in [b"f0", b"f1", b"f2", b"f3"] {
        let (ino, _) = meta
            .mknod(&Ctx::root(), ROOT_INO, name, FileKind::File, 0o644, 0)
            .await
            .expect("create");
        let mut w = FileWriter::new(writing.clone(), ino);
        w.write(0, &data).await.expect("write");
        w.flush().await.expect("flush");
        files.push(ino);
    }
    // One read of each whole file puts its blocks in the disk cache.
    let filling = DataStore::with_options(meta.clone(), objects.clone(), options()).expect("store");
    for &ino in &files {
        let got = read_whole(filling.clone(), ino, data.len()).await;
        assert!(got == data);
    }
    let (_, entries) = filling.disk_cache().expect("disk").usage();
    assert_eq!(entries, 4 * blocks, "every block in the disk cache");

    // One request of each stream in turn, 16 KiB at a time.
    for streams in [4usize, 1] {
        let store =
            DataStore::with_options(meta.clone(), objects.clone(), options()).expect("store");
        let readers: Vec<FileReader> = files[..streams]
            .iter()
            .map(|&ino| FileReader::new(store.clone(), ino))
            .collect();
        let mut most = 0;
        for at in (0..data.len()).step_by(16 << 10) {
            for reader in &readers {
                read_checked(reader, &data, at).await;
            }
            most = most.max(store.memory_cache_bytes());
        }
        let most = most / BLOCK as usize;
        if streams == 4 {
            // The block each reads, and one read ahead by each of the
            // first two streams while fewer streams were counted.
            assert!(most <= 6, "four streams held up to {most} blocks in memory");
        } else {
            assert!(most > 1, "a lone stream read nothing ahead into memory");
        }
    }
}
