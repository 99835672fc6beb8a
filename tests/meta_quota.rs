//! Volume limits: the inode limit and the capacity give ENOSPC, and nothing
//! of the refused operation is applied.

use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, FileKind, Meta, MetaError, SetAttr, SliceRecord, Volume, ROOT_INO};

async fn limited(capacity_bytes: u64, inode_limit: u64) -> Meta {
    let db = Db::new(
        jfs::kv::url::open_engine(&MetaUrl::Mem {
            name: String::new(),
        })
        .expect("mem"),
        DbOptions {
            strict_limits: true,
            ..Default::default()
        },
    );
    let volume = Volume {
        schema_version: jfs::meta::SCHEMA_VERSION,
        name: "quota".into(),
        uuid: jfs::meta::new_uuid(),
        storage: "file".into(),
        bucket: "/tmp/none".into(),
        block_size_bytes: 4 << 20,
        compression: "none".into(),
        trash_days: 0,
        capacity_bytes,
        inode_limit,
        created: 0,
    };
    Meta::format(&db, &volume, false).await.expect("format");
    Meta::load(db).await.expect("load")
}

fn enospc<T: std::fmt::Debug>(r: Result<T, MetaError>) -> bool {
    matches!(r, Err(MetaError::Errno(libc::ENOSPC)))
}

#[tokio::test]
async fn inode_limit_gives_enospc() {
    let meta = limited(0, 5).await;
    let ctx = Ctx::root();
    for i in 0..4 {
        meta.mknod(
            &ctx,
            ROOT_INO,
            format!("f{i}").as_bytes(),
            FileKind::File,
            0o644,
            0,
        )
        .await
        .expect("under the limit");
    }
    assert!(enospc(
        meta.mkdir(&ctx, ROOT_INO, b"one-too-many", 0o755).await
    ));
    assert!(
        meta.lookup(&ctx, ROOT_INO, b"one-too-many").await.is_err(),
        "nothing created"
    );
    meta.unlink(&ctx, ROOT_INO, b"f0").await.expect("unlink");
    meta.mkdir(&ctx, ROOT_INO, b"fits-again", 0o755)
        .await
        .expect("room again");
}

#[tokio::test]
async fn capacity_gives_enospc_for_writes_and_extension() {
    let meta = limited(1 << 20, 0).await;
    let ctx = Ctx::root();
    let (ino, _) = meta
        .mknod(&ctx, ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let id = meta.new_slice_id().await.expect("id");
    meta.write_slice(
        ino,
        0,
        SliceRecord {
            pos: 0,
            id,
            size: 512 << 10,
            offset: 0,
            len: 512 << 10,
        },
    )
    .await
    .expect("half");
    let id = meta.new_slice_id().await.expect("id");
    let r = meta
        .write_slice(
            ino,
            0,
            SliceRecord {
                pos: 512 << 10,
                id,
                size: 1 << 20,
                offset: 0,
                len: 1 << 20,
            },
        )
        .await;
    assert!(enospc(r));
    assert_eq!(
        meta.getattr(ino).await.expect("getattr").length,
        512 << 10,
        "refused write not applied"
    );
    assert!(enospc(
        meta.setattr(
            &ctx,
            ino,
            &SetAttr {
                size: Some(10 << 20),
                ..Default::default()
            }
        )
        .await
    ));
    assert!(enospc(meta.fallocate(ino, 0, 0, 10 << 20).await));
}
