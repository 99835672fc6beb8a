//! The data path against a byte model: random writes (sequential runs and
//! scattered pieces), overwrites, truncates and reads, across a chunk
//! boundary, on the `file` and `mem` object stores, with both codecs and a
//! small block size; object requests fail at random and are retried. And a
//! damaged block is reported, never returned as data.

mod common;

use std::sync::Arc;

use jfs::data::{DataStore, FileReader, FileWriter};
use jfs::meta::{Ctx, FileKind, Meta, SetAttr, Volume, CHUNK_SIZE, ROOT_INO};
use jfs::object::{FaultyStore, FileStore, MemStore, ObjectRetry, ObjectStore, Retrying, S3Store};
use libtest_mimic::{Arguments, Failed, Trial};

const BLOCK: u32 = 64 << 10;
const REGION: u64 = 512 << 10;

/// The file's bytes in two windows: its start and around the first chunk
/// boundary. Nothing is ever written outside them.
struct Model {
    windows: [(u64, Vec<u8>); 2],
    length: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            windows: [
                (0, vec![0; REGION as usize]),
                (CHUNK_SIZE - REGION / 2, vec![0; REGION as usize]),
            ],
            length: 0,
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        for (start, bytes) in &mut self.windows {
            if offset >= *start && offset + data.len() as u64 <= *start + REGION {
                let at = (offset - *start) as usize;
                bytes[at..at + data.len()].copy_from_slice(data);
            }
        }
        self.length = self.length.max(offset + data.len() as u64);
    }
    fn truncate(&mut self, size: u64) {
        for (start, bytes) in &mut self.windows {
            for (i, b) in bytes.iter_mut().enumerate() {
                if *start + i as u64 >= size {
                    *b = 0;
                }
            }
        }
        self.length = size;
    }
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = (offset + len as u64).min(self.length);
        (offset..end)
            .map(|p| {
                self.windows
                    .iter()
                    .find(|(s, _)| p >= *s && p < *s + REGION)
                    .map_or(0, |(s, b)| b[(p - s) as usize])
            })
            .collect()
    }
    fn pick(&self, rng: &mut fastrand::Rng, max_len: u64) -> (u64, usize) {
        let (start, _) = self.windows[rng.usize(..2)];
        let len = rng.u64(1..max_len);
        let offset = start + rng.u64(0..REGION - len);
        (offset, len as usize)
    }
}

async fn volume(compression: &str) -> Arc<Meta> {
    let mut volume = common::volume("data");
    volume.block_size_bytes = BLOCK;
    volume.compression = compression.into();
    let meta = common::mem_meta(Volume { ..volume }).await;
    Arc::new(meta)
}

async fn random_ops_match_model(objects: Arc<dyn ObjectStore>, compression: &str, seed: u64) {
    let meta = volume(compression).await;
    let store = DataStore::new(meta.clone(), objects, 4, 1 << 20).expect("data store");
    let ctx = Ctx::root();
    let (ino, _) = meta
        .mknod(&ctx, ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut model = Model::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    for step in 0..120 {
        let op = rng.u8(..10);
        if op < 5 {
            // A batch of writes, then close (flush).
            let mut writer = FileWriter::new(store.clone(), ino);
            let sequential = rng.bool();
            let (mut offset, _) = model.pick(&mut rng, 4096);
            for _ in 0..rng.usize(1..6) {
                let len = rng.usize(1..(3 * BLOCK as usize));
                if !sequential {
                    offset = model.pick(&mut rng, len as u64 + 1).0;
                }
                let in_window = model
                    .windows
                    .iter()
                    .any(|(s, _)| offset >= *s && offset + len as u64 <= *s + REGION);
                if !in_window {
                    continue;
                }
                let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                writer.write(offset, &data).await.expect("write");
                model.write(offset, &data);
                offset += len as u64;
            }
            writer.flush().await.expect("flush");
        } else if op < 6 {
            let size = [
                0,
                model.length / 2,
                model.pick(&mut rng, 100).0,
                CHUNK_SIZE + 1000,
            ][rng.usize(..4)];
            meta.setattr(
                &ctx,
                ino,
                &SetAttr {
                    size: Some(size),
                    ..Default::default()
                },
            )
            .await
            .expect("truncate");
            model.truncate(size);
        } else if op < 7 {
            // Compaction must not change what anyone reads.
            store
                .compact_chunk(ino, rng.u32(0..2))
                .await
                .expect("compact");
        } else {
            let (offset, len) = model.pick(&mut rng, 300_000);
            let length = meta.getattr(ino).await.expect("getattr").length;
            assert_eq!(length, model.length, "step {step}: length");
            let got = FileReader::new(store.clone(), ino)
                .read(offset, len, length)
                .await
                .expect("read");
            assert!(
                got == model.read(offset, len),
                "step {step}: read {offset}+{len} differs"
            );
        }
    }
    // Everything, through a reader with a cold cache.
    let cold = DataStore::new(meta.clone(), store_objects(&store), 4, 0).expect("data store");
    for (start, _) in &model.windows {
        let got = FileReader::new(cold.clone(), ino)
            .read(*start, REGION as usize, model.length)
            .await
            .expect("read");
        assert!(
            got == model.read(*start, REGION as usize),
            "final window at {start} differs"
        );
    }
}

fn store_objects(store: &DataStore) -> Arc<dyn ObjectStore> {
    store.objects()
}

fn flaky<S: ObjectStore>(inner: S) -> Arc<dyn ObjectStore> {
    Arc::new(Retrying::new(
        FaultyStore::new(inner, 0.1),
        ObjectRetry {
            attempts: 30,
            first_backoff: std::time::Duration::from_millis(1),
            ..Default::default()
        },
    ))
}

/// Runs one async check on a fresh runtime.
fn run<F: std::future::Future<Output = ()>>(f: F) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f);
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let s3 = std::env::var("JFS_TEST_S3").ok().filter(|v| !v.is_empty());
    if s3.is_none() {
        eprintln!("skipping the S3 data test: JFS_TEST_S3 is not set (ci/test.sh starts a server)");
    }
    let trials = vec![
        Trial::test("data_model::file_store_uncompressed_matches_model", || {
            let dir = tempfile::tempdir()?;
            run(random_ops_match_model(
                flaky(FileStore::open(dir.path()).expect("file store")),
                "none",
                1,
            ))
        }),
        Trial::test("data_model::file_store_zstd_matches_model", || {
            let dir = tempfile::tempdir()?;
            run(random_ops_match_model(
                flaky(FileStore::open(dir.path()).expect("file store")),
                "zstd",
                2,
            ))
        }),
        Trial::test("data_model::mem_store_matches_model", || {
            run(random_ops_match_model(
                flaky(MemStore::default()),
                "zstd",
                3,
            ))
        }),
        Trial::test("data_model::s3_store_matches_model", move || {
            let url = std::env::var("JFS_TEST_S3").unwrap_or_default();
            run(random_ops_match_model(
                Arc::new(Retrying::new(
                    S3Store::new(&url, None, None).expect("s3"),
                    ObjectRetry::default(),
                )),
                "none",
                4,
            ))
        })
        .with_ignored_flag(s3.is_none()),
        Trial::test(
            "data_model::a_failed_upload_before_a_chunk_boundary_fails_the_flush",
            || run(a_failed_upload_before_a_chunk_boundary_fails_the_flush()),
        ),
        Trial::test("data_model::damaged_block_is_an_error_not_data", || {
            run(damaged_block_is_an_error_not_data())
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}

async fn damaged_block_is_an_error_not_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let meta = volume("none").await;
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("data store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut writer = FileWriter::new(store.clone(), ino);
    writer.write(0, &vec![7u8; 100_000]).await.expect("write");
    writer.flush().await.expect("flush");
    // A small read before the damage: the block's CRC table is kept.
    let before = FileReader::new(store.clone(), ino)
        .read(100, 10, 100_000)
        .await
        .expect("small read");
    assert_eq!(before, vec![7u8; 10]);
    // Flip one byte of the data of the first block on disk.
    let listed = objects.list("chunks/", None, 10).await.expect("list");
    let first = listed
        .iter()
        .find(|o| o.key.ends_with(&format!("_0_{BLOCK}")))
        .expect("first block");
    let path = dir.path().join(&first.key);
    let mut bytes = std::fs::read(&path).expect("read block file");
    let at = bytes.len() - 10;
    bytes[at] ^= 0xFF;
    std::fs::write(&path, bytes).expect("damage");
    let err = FileReader::new(store.clone(), ino)
        .read(0, 100_000, 100_000)
        .await
        .expect_err("damage detected");
    assert_eq!(err.errno(), libc::EIO);
    assert!(
        err.to_string().contains(&first.key),
        "error names the object: {err}"
    );
    // A small read, served by a ranged fetch of the damaged piece, too:
    // checked against the kept table, then (the table dropped after the
    // failure) against a table fetched again.
    for _ in 0..2 {
        let err = FileReader::new(store.clone(), ino)
            .read(100, 10, 100_000)
            .await
            .expect_err("ranged read checked");
        assert_eq!(err.errno(), libc::EIO);
    }
    // The undamaged second block still reads.
    let tail = FileReader::new(store, ino)
        .read(BLOCK as u64, 1000, 100_000)
        .await
        .expect("second block");
    assert_eq!(tail, vec![7u8; 1000]);
}

/// The slice a sequential writer leaves at a chunk boundary commits in the
/// background; its failed upload is still the flush's error (the slice
/// after it, in the next chunk, uploads fine), and nothing of it is
/// committed.
async fn a_failed_upload_before_a_chunk_boundary_fails_the_flush() {
    let meta = volume("none").await;
    // Every block but the first of each slice is refused.
    let objects: Arc<dyn ObjectStore> = Arc::new(common::Screened {
        inner: Arc::new(MemStore::default()),
        screen: |op: &str, key: String| {
            let index = key
                .rsplit('/')
                .next()
                .and_then(|name| name.split('_').nth(1));
            std::future::ready(match op == "put" && index != Some("0") {
                true => Err(jfs::object::ObjectError::Fatal(format!("refused {key}"))),
                false => Ok(()),
            })
        },
    });
    let store = DataStore::new(meta.clone(), objects, 4, 0).expect("data store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut writer = FileWriter::new(store.clone(), ino);
    // Three blocks before the boundary (the last two refused), one after.
    let start = CHUNK_SIZE - 3 * BLOCK as u64;
    writer
        .write(start, &vec![5u8; 4 * BLOCK as usize])
        .await
        .expect("write (buffered)");
    assert!(
        writer.flush().await.is_err(),
        "a failed upload was acknowledged"
    );
    assert!(
        meta.read_chunk(ino, 0).await.expect("records").is_empty(),
        "a slice with a failed upload was committed"
    );
    assert_eq!(meta.read_chunk(ino, 1).await.expect("records").len(), 1);
}
