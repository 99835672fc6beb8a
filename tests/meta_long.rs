//! Long operations stay within the strict limits (FoundationDB's and etcd's
//! tightest): a 100k-entry directory listed and removed, a chunk with 10k
//! slice records read, truncated and deleted. On the embedded engine.

mod common;

use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, FileKind, Meta, SetAttr, SliceRecord, Volume, ROOT_INO};

fn volume() -> Volume {
    common::volume("long")
}

async fn strict_volume(dir: &std::path::Path) -> Meta {
    let url = MetaUrl::parse(dir.join("meta").to_str().expect("utf-8")).expect("url");
    let db = Db::open(
        &url,
        DbOptions {
            strict_limits: true,
            ..Default::default()
        },
    )
    .expect("open");
    Meta::format(&db, &volume(), false).await.expect("format");
    Meta::load(db).await.expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_entries_list_and_remove_within_strict_limits() {
    const ENTRIES: usize = 100_000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let meta = std::sync::Arc::new(strict_volume(tmp.path()).await);
    let ctx = Ctx::root();
    let (top, _) = meta
        .mkdir(&ctx, ROOT_INO, b"big", 0o755)
        .await
        .expect("mkdir");
    let (sub, _) = meta.mkdir(&ctx, top, b"sub", 0o755).await.expect("mkdir");
    let mut handles = Vec::new();
    for t in 0..4 {
        let meta = meta.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..ENTRIES).step_by(4) {
                let dir = if i % 1000 == 0 { sub } else { top };
                meta.mknod(
                    &Ctx::root(),
                    dir,
                    format!("f{i:06}").as_bytes(),
                    FileKind::File,
                    0o644,
                    0,
                )
                .await
                .expect("create");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    // Listing by name pages sees every entry once, in order.
    let mut seen = 0usize;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = meta
            .readdir(&ctx, top, after.as_deref(), 1000, true)
            .await
            .expect("readdir");
        let Some(last) = page.last() else { break };
        if let Some(prev) = &after {
            assert!(page[0].name > *prev, "page starts before the cursor");
        }
        after = Some(last.name.clone());
        seen += page.len();
    }
    assert_eq!(
        seen,
        ENTRIES - ENTRIES / 1000 + 1,
        "entries of the big directory (+ sub)"
    );
    let removed = meta
        .remove_tree(&ctx, ROOT_INO, b"big")
        .await
        .expect("remove tree");
    assert_eq!(removed as usize, ENTRIES + 2);
    assert!(meta.lookup(&ctx, ROOT_INO, b"big").await.is_err());
    let stat = meta.statfs().await.expect("statfs");
    assert_eq!(stat.used_inodes, 1, "only the root is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_at_its_record_limit_stays_within_strict_limits() {
    // Writers compact before a chunk holds MAX_CHUNK_RECORDS records; the
    // whole list is one value, which must fit FoundationDB's 100 KB.
    const SLICES: u32 = jfs::meta::MAX_CHUNK_RECORDS as u32;
    let tmp = tempfile::tempdir().expect("tempdir");
    let meta = strict_volume(tmp.path()).await;
    let ctx = Ctx::root();
    let (ino, _) = meta
        .mknod(&ctx, ROOT_INO, b"frag", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    for i in 0..SLICES {
        let id = meta.new_slice_id().await.expect("slice id");
        meta.write_slice(
            ino,
            0,
            SliceRecord {
                pos: i * 100,
                id,
                size: 100,
                offset: 0,
                len: 100,
            },
        )
        .await
        .expect("write slice");
    }
    let records = meta.read_chunk(ino, 0).await.expect("read chunk");
    assert_eq!(records.len(), SLICES as usize);
    assert!(
        records.windows(2).all(|w| w[0].pos < w[1].pos),
        "records in write order"
    );
    assert_eq!(
        meta.getattr(ino).await.expect("getattr").length,
        SLICES as u64 * 100
    );
    // Shrink over many chunks: a 100 GiB sparse file truncated to 10 bytes
    // takes several bounded transactions.
    let big = SetAttr {
        size: Some(100 << 30),
        ..Default::default()
    };
    meta.setattr(&ctx, ino, &big).await.expect("extend");
    let small = SetAttr {
        size: Some(10),
        ..Default::default()
    };
    assert_eq!(
        meta.setattr(&ctx, ino, &small)
            .await
            .expect("truncate")
            .length,
        10
    );
    let last = meta.read_chunk(ino, 0).await.expect("read chunk");
    let hole = last.last().expect("a hole record");
    assert_eq!(
        (hole.id, hole.pos),
        (0, 10),
        "truncate hides the old data with a hole"
    );
    meta.unlink(&ctx, ROOT_INO, b"frag").await.expect("unlink");
}
