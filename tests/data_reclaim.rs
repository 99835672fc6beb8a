//! Reclaiming deleted data: objects go only when no file references their
//! slice any more (copies share slices), in bounded steps, leaving nothing
//! behind.

mod common;

use std::sync::Arc;

use jfs::data::{DataStore, FileReader, FileWriter};
use jfs::meta::{Ctx, FileKind, ROOT_INO};
use jfs::object::{FileStore, ObjectStore};

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
