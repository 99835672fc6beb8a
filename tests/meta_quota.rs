//! Volume limits: the inode limit and the capacity give ENOSPC, and nothing
//! of the refused operation is applied.

mod common;

use jfs::meta::{Ctx, FileKind, Meta, MetaError, SetAttr, SliceRecord, Volume, ROOT_INO};

async fn limited(capacity_bytes: u64, inode_limit: u64) -> Meta {
    common::mem_meta(Volume {
        capacity_bytes,
        inode_limit,
        ..common::volume("quota")
    })
    .await
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

#[tokio::test]
async fn name_and_xattr_size_limits() {
    let meta = limited(0, 0).await;
    let ctx = Ctx::root();
    // Any bytes but '/' and NUL, up to 255 of them.
    let odd: Vec<u8> = (1..=255u8).filter(|b| *b != b'/').collect();
    meta.mknod(&ctx, ROOT_INO, &odd, FileKind::File, 0o644, 0)
        .await
        .expect("odd bytes");
    let (ino, _) = meta
        .lookup(&ctx, ROOT_INO, &odd)
        .await
        .expect("lookup odd bytes");
    let long = vec![b'x'; 255];
    meta.mknod(&ctx, ROOT_INO, &long, FileKind::File, 0o644, 0)
        .await
        .expect("255 bytes");
    let too_long = vec![b'x'; 256];
    let errno =
        |r: Result<(jfs::meta::Ino, jfs::meta::Attr), MetaError>| r.err().map(|e| e.errno());
    assert_eq!(
        errno(
            meta.mknod(&ctx, ROOT_INO, &too_long, FileKind::File, 0o644, 0)
                .await
        ),
        Some(libc::ENAMETOOLONG)
    );
    assert_eq!(
        errno(
            meta.mknod(&ctx, ROOT_INO, b"a/b", FileKind::File, 0o644, 0)
                .await
        ),
        Some(libc::EINVAL)
    );
    assert_eq!(
        errno(
            meta.mknod(&ctx, ROOT_INO, b"a\0b", FileKind::File, 0o644, 0)
                .await
        ),
        Some(libc::EINVAL)
    );
    // Extended attributes: 255-byte names, 64 KiB values.
    meta.setxattr(&ctx, ino, &vec![b'n'; 255], &vec![1; 65536], 0)
        .await
        .expect("largest xattr");
    let e = meta
        .setxattr(&ctx, ino, &vec![b'n'; 256], b"v", 0)
        .await
        .err()
        .map(|e| e.errno());
    assert_eq!(e, Some(libc::ERANGE));
    let e = meta
        .setxattr(&ctx, ino, b"user.big", &vec![1; 65537], 0)
        .await
        .err()
        .map(|e| e.errno());
    assert_eq!(e, Some(libc::E2BIG));
    assert_eq!(
        meta.getxattr(ino, &vec![b'n'; 255])
            .await
            .expect("get")
            .len(),
        65536
    );
}
