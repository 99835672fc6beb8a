//! Reclaiming deleted data: objects go only when no file references their
//! slice any more (copies share slices), in bounded steps, leaving nothing
//! behind.

mod common;

use std::sync::Arc;

use jfs::data::{DataStore, FileReader, FileWriter};
use jfs::meta::{Ctx, FileKind, ROOT_INO};
use jfs::object::{FileStore, ObjectStore};

/// Two clients with sessions on one fresh `mem` volume: the first's
/// session expires a second after its last heartbeat, the second's lives.
async fn dying_and_living(
    volume: jfs::meta::Volume,
) -> (Arc<jfs::meta::Meta>, Arc<jfs::meta::Meta>) {
    let db = common::mem_db(None);
    let dying = Arc::new(common::format_and_load(db.clone(), volume).await);
    let living = Arc::new(jfs::meta::Meta::load(db).await.expect("load"));
    let info = jfs::meta::SessionInfo {
        host: "h".into(),
        pid: 1,
        mount_point: "/m".into(),
        version: "t".into(),
    };
    dying.new_session(&info, 1).await.expect("session");
    living.new_session(&info, 60).await.expect("session");
    (dying, living)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_data_is_reclaimed_once_nothing_shares_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let mut volume = common::volume("reclaim");
    volume.block_size_bytes = 64 << 10;
    let meta = Arc::new(common::mem_meta(volume).await);
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("data store");
    let ctx = Ctx::root();
    let count = |objects: Arc<dyn ObjectStore>| async move {
        objects
            .list("chunks/", None, 10_000)
            .await
            .expect("list")
            .len()
    };

    // a: one 200 KiB slice (4 blocks) and 60 small scattered slices.
    let (a, _) = meta
        .mknod(&ctx, ROOT_INO, b"a", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut w = FileWriter::new(store.clone(), a);
    w.write(0, &vec![1u8; 200 << 10]).await.expect("write");
    for i in 0..60u64 {
        w.write(300_000 + i * 10_000, b"scattered")
            .await
            .expect("write");
    }
    w.flush().await.expect("flush");
    assert_eq!(count(objects.clone()).await, 64);
    // b shares a's big slice through copy_file_range.
    let (b, _) = meta
        .mknod(&ctx, ROOT_INO, b"b", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    assert_eq!(
        meta.copy_file_range(a, 0, b, 0, 200 << 10)
            .await
            .expect("copy"),
        200 << 10
    );

    meta.unlink(&ctx, ROOT_INO, b"a").await.expect("unlink a");
    let deleted = store.reclaim().await.expect("reclaim");
    assert_eq!(deleted, 60, "only the unshared slices go");
    assert_eq!(count(objects.clone()).await, 4);
    let got = FileReader::new(store.clone(), b)
        .read(0, 200 << 10, 200 << 10)
        .await
        .expect("b still reads");
    assert_eq!(got, vec![1u8; 200 << 10]);

    meta.unlink(&ctx, ROOT_INO, b"b").await.expect("unlink b");
    assert_eq!(store.reclaim().await.expect("reclaim"), 4);
    assert_eq!(count(objects.clone()).await, 0, "nothing left behind");
    assert_eq!(store.reclaim().await.expect("reclaim"), 0, "idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rewrites_a_fragmented_chunk_and_releases_the_old_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let mut volume = common::volume("compact");
    volume.block_size_bytes = 64 << 10;
    let meta = Arc::new(common::mem_meta(volume).await);
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("data store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"frag", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut expected = vec![0u8; 100_000];
    for i in 0..100usize {
        let mut w = FileWriter::new(store.clone(), ino);
        let at = (i * 7919) % 99_000;
        let bytes = vec![(i % 250) as u8 + 1; 1000];
        w.write(at as u64, &bytes).await.expect("write");
        w.flush().await.expect("flush");
        expected[at..at + 1000].copy_from_slice(&bytes);
    }
    let len = meta.getattr(ino).await.expect("getattr").length;
    expected.truncate(len as usize);
    assert_eq!(meta.read_chunk(ino, 0).await.expect("chunk").len(), 100);
    while store.compact_chunk(ino, 0).await.expect("compact") {}
    let records = meta.read_chunk(ino, 0).await.expect("chunk");
    assert_eq!(records.len(), 1, "one record after compaction");
    let got = FileReader::new(store.clone(), ino)
        .read(0, len as usize, len)
        .await
        .expect("read");
    assert!(got == expected, "compaction changed the content");
    // The 100 small slices' objects go (and those of the intermediate
    // compactions, each of at most 32 records); the final slice's stay.
    assert!(store.reclaim().await.expect("reclaim") >= 100);
    let left = objects
        .list("chunks/", None, 1000)
        .await
        .expect("list")
        .len() as u64;
    assert_eq!(left, len.div_ceil(64 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_of_a_writer_that_died_before_committing_are_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let mut volume = common::volume("abandoned");
    volume.block_size_bytes = 64 << 10;
    let (writer_meta, other_meta) = dying_and_living(volume).await;
    let store = DataStore::new(writer_meta.clone(), objects.clone(), 4, 0).expect("data store");
    let (ino, _) = writer_meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    // One committed slice, then a slice whose blocks are uploaded but never
    // committed: the writer dies.
    let mut w = FileWriter::new(store.clone(), ino);
    w.write(0, &vec![1u8; 100_000]).await.expect("write");
    w.flush().await.expect("flush");
    let committed = objects
        .list("chunks/", None, 100)
        .await
        .expect("list")
        .len();
    let mut dying = FileWriter::new(store.clone(), ino);
    dying
        .write(1 << 20, &vec![2u8; 300_000])
        .await
        .expect("write");
    drop(dying);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let uploaded = objects
        .list("chunks/", None, 100)
        .await
        .expect("list")
        .len();
    assert!(
        uploaded > committed,
        "the dying writer uploaded full blocks"
    );
    // Its session expires; another client cleans up.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        other_meta
            .clean_dead_sessions()
            .await
            .expect("clean sessions"),
        1
    );
    let cleaner = DataStore::new(other_meta.clone(), objects.clone(), 4, 0).expect("data store");
    assert_eq!(
        cleaner
            .clean_abandoned_uploads()
            .await
            .expect("clean uploads") as usize,
        uploaded - committed
    );
    assert_eq!(
        objects
            .list("chunks/", None, 100)
            .await
            .expect("list")
            .len(),
        committed
    );
    let got = FileReader::new(cleaner, ino)
        .read(0, 100_000, 100_000)
        .await
        .expect("committed data reads");
    assert_eq!(got, vec![1u8; 100_000]);
}

/// An engine that records where each scan starts.
struct ScanStarts {
    inner: Arc<dyn jfs::kv::Engine>,
    starts: Arc<std::sync::Mutex<Vec<jfs::kv::Key>>>,
}

struct ScanStartsTxn {
    inner: Box<dyn jfs::kv::EngineTxn>,
    starts: Arc<std::sync::Mutex<Vec<jfs::kv::Key>>>,
}

#[async_trait::async_trait]
impl jfs::kv::Engine for ScanStarts {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn limits(&self) -> jfs::kv::Limits {
        self.inner.limits()
    }
    async fn begin(&self) -> jfs::kv::KvResult<Box<dyn jfs::kv::EngineTxn>> {
        Ok(Box::new(ScanStartsTxn {
            inner: self.inner.begin().await?,
            starts: self.starts.clone(),
        }))
    }
    async fn sync(&self) -> jfs::kv::KvResult<()> {
        self.inner.sync().await
    }
}

#[async_trait::async_trait]
impl jfs::kv::EngineTxn for ScanStartsTxn {
    async fn get(&mut self, key: &[u8]) -> jfs::kv::KvResult<Option<jfs::kv::Value>> {
        self.inner.get(key).await
    }
    async fn scan(
        &mut self,
        range: &jfs::kv::KeyRange,
        limit: usize,
        reverse: bool,
    ) -> jfs::kv::KvResult<Vec<(jfs::kv::Key, jfs::kv::Value)>> {
        self.starts.lock().unwrap().push(range.start.clone());
        self.inner.scan(range, limit, reverse).await
    }
    async fn commit(self: Box<Self>, request: jfs::kv::CommitRequest) -> jfs::kv::KvResult<()> {
        self.inner.commit(request).await
    }
}

/// A pass over the queues of deleted files and released slices goes on
/// from where its last step left them: in an LSM engine the entries it
/// removed stay as tombstones until compaction, and a pass whose every
/// step started at the front walked them all again (n² for n files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclaim_pass_starts_at_the_front_of_each_queue_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = jfs::kv::url::open_engine(&jfs::kv::MetaUrl::Mem {
        name: String::new(),
    })
    .expect("mem");
    let engine = Arc::new(ScanStarts {
        inner: engine,
        starts: starts.clone(),
    });
    let db = jfs::kv::Db::new(engine, jfs::kv::DbOptions::default());
    let mut volume = common::volume("cursor");
    volume.block_size_bytes = 64 << 10;
    let meta = Arc::new(common::format_and_load(db, volume).await);
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0).expect("data store");
    let ctx = Ctx::root();
    // 30 files of 3 chunks each (a slice in each), deleted.
    for i in 0..30u32 {
        let name = format!("f{i}");
        let (ino, _) = meta
            .mknod(&ctx, ROOT_INO, name.as_bytes(), FileKind::File, 0o644, 0)
            .await
            .expect("create");
        let mut w = FileWriter::new(store.clone(), ino);
        for chunk in 0..3u64 {
            w.write(chunk << 26, b"data").await.expect("write");
        }
        w.flush().await.expect("flush");
        meta.unlink(&ctx, ROOT_INO, name.as_bytes())
            .await
            .expect("unlink");
    }
    starts.lock().unwrap().clear();
    assert_eq!(
        store.reclaim().await.expect("reclaim"),
        90,
        "every slice's object"
    );
    let starts = starts.lock().unwrap();
    let at_front = |front: &[u8]| starts.iter().filter(|s| s.as_slice() == front).count();
    // The deleted-file queue (`R`) and the released-slice queue (`Q`),
    // each scanned from its front once (and once more when found empty).
    assert!(
        at_front(b"R") <= 2,
        "deleted-file queue from its front {} times",
        at_front(b"R")
    );
    assert!(
        at_front(b"Q") <= 2,
        "released queue from its front {} times",
        at_front(b"Q")
    );
    // And each file's chunks from their front once.
    let chunk_fronts = starts
        .iter()
        .filter(|s| s.len() == 10 && s[0] == b'A' && s[9] == b'C')
        .count();
    assert_eq!(chunk_fronts, 30, "each file's chunks from their front once");
}

/// Uploads of live sessions at the front of the pending queue (more than a
/// page of them) do not hide the abandoned ones behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_behind_a_page_of_live_ones_are_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let (dead, live) = dying_and_living(common::volume("pending")).await;
    for id in 1..=250 {
        live.mark_pending(id).await.expect("pending");
    }
    dead.mark_pending(1_000).await.expect("pending");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(live.clean_dead_sessions().await.expect("clean sessions"), 1);
    let (found, _) = live.abandoned_uploads(Some(250), 10).await.expect("scan");
    assert_eq!(found, vec![1_000], "the dead session's upload is abandoned");
    let cleaner = DataStore::new(live.clone(), objects, 4, 0).expect("data store");
    cleaner
        .clean_abandoned_uploads()
        .await
        .expect("clean uploads");
    let (left, end) = live.abandoned_uploads(None, 1_000).await.expect("scan");
    assert!(left.is_empty() && end.is_none(), "left: {left:?}");
}

/// A writer's slice ids come reserved sixteen at a time, each already
/// marked pending in the reservation's one transaction; the ids it never
/// used lose their marks when its session closes, and the ones it used
/// keep them until their slice is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_slice_ids_are_marked_pending_in_batches_and_released_at_close() {
    let db = common::mem_db(None);
    let meta = common::format_and_load(db.clone(), common::volume("reserve")).await;
    let info = jfs::meta::SessionInfo {
        host: "h".into(),
        pid: 1,
        mount_point: "/m".into(),
        version: "t".into(),
    };
    let sid = meta.new_session(&info, 60).await.expect("session");
    let marked = || async {
        db.run("pending", |tx| async move {
            let page = tx
                .scan(
                    &jfs::meta::keys::pending_uploads_all(),
                    jfs::kv::txn::ScanOpts::limit(1_000),
                )
                .await?;
            Ok(page
                .entries
                .iter()
                .map(|(k, _)| u64::from_be_bytes(k[1..9].try_into().expect("id")))
                .collect::<Vec<u64>>())
        })
        .await
        .expect("scan")
    };
    let mut used = Vec::new();
    for _ in 0..20 {
        used.push(meta.upload_slice_id().await.expect("slice id"));
    }
    let mut distinct = used.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "distinct ids: {used:?}");
    let before = marked().await;
    assert_eq!(before.len(), 32, "two reservations of sixteen");
    assert!(
        used.iter().all(|id| before.contains(id)),
        "every id handed out is marked"
    );
    meta.close_session(sid).await.expect("close");
    let mut after = marked().await;
    after.sort_unstable();
    assert_eq!(
        after, distinct,
        "the twelve unused marks are gone, the used ones stay"
    );
}
