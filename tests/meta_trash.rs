//! The trash: with `trash_days > 0`, a file's last unlink moves it to
//! `/.trash/HOUR/PARENT-INODE-NAME`; removing it there deletes it; old hour
//! directories are cleaned; only root may look inside.

mod common;

use jfs::meta::{Ctx, FileKind, Meta, MetaError, SliceRecord, Volume, ROOT_INO};

async fn volume_with_trash(trash_days: u32) -> Meta {
    common::mem_meta(Volume {
        trash_days,
        ..common::volume("trash")
    })
    .await
}

#[tokio::test]
async fn unlinked_files_go_to_the_trash_and_expire() {
    let meta = volume_with_trash(1).await;
    let root = Ctx::root();
    let (trash, attr) = meta
        .lookup(&root, ROOT_INO, b".trash")
        .await
        .expect("trash exists");
    assert_eq!(attr.mode, 0o700);
    let (dir, _) = meta
        .mkdir(&root, ROOT_INO, b"d", 0o777)
        .await
        .expect("mkdir");
    let (ino, _) = meta
        .mknod(&root, dir, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let id = meta.new_slice_id().await.expect("id");
    meta.write_slice(
        ino,
        0,
        SliceRecord {
            pos: 0,
            id,
            size: 10_000,
            offset: 0,
            len: 10_000,
        },
    )
    .await
    .expect("write");
    let before = meta.statfs().await.expect("statfs");

    meta.unlink(&root, dir, b"f").await.expect("unlink");
    assert!(matches!(
        meta.lookup(&root, dir, b"f").await,
        Err(MetaError::Errno(libc::ENOENT))
    ));
    let hours = meta
        .readdir(&root, trash, None, 10, false)
        .await
        .expect("list trash");
    assert_eq!(hours.len(), 1);
    let inside = meta
        .readdir(&root, hours[0].ino, None, 10, true)
        .await
        .expect("list hour");
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].name, format!("{dir}-{ino}-f").into_bytes());
    assert_eq!(
        inside[0].attr.as_ref().expect("attr").length,
        10_000,
        "data kept"
    );
    let after = meta.statfs().await.expect("statfs");
    assert_eq!(
        after.used_inodes,
        before.used_inodes + 1,
        "the file stays counted, plus the hour directory"
    );
    // Only root may look.
    let user = Ctx::user(1000, 1000);
    assert!(matches!(
        meta.readdir(&user, trash, None, 10, false).await,
        Err(MetaError::Errno(libc::EACCES))
    ));

    // A file with another link is not trashed when one link goes.
    let (g, _) = meta
        .mknod(&root, dir, b"g", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    meta.link(&root, g, dir, b"g2").await.expect("link");
    meta.unlink(&root, dir, b"g")
        .await
        .expect("unlink one link");
    assert_eq!(
        meta.readdir(&root, hours[0].ino, None, 10, false)
            .await
            .expect("list")
            .len(),
        1
    );

    // Nothing expires within the trash days; all of it after them.
    let now = jfs::meta::Timestamp::now().sec;
    assert_eq!(meta.clean_trash(now).await.expect("clean"), 0);
    assert_eq!(
        meta.clean_trash(now + 2 * 86_400).await.expect("clean"),
        2,
        "the file and its hour directory"
    );
    assert!(meta
        .readdir(&root, trash, None, 10, false)
        .await
        .expect("list")
        .is_empty());
    assert!(
        meta.getattr(ino).await.is_err(),
        "the trashed file is deleted"
    );
}

#[tokio::test]
async fn removing_from_the_trash_deletes_and_no_trash_means_delete() {
    let meta = volume_with_trash(1).await;
    let root = Ctx::root();
    let (ino, _) = meta
        .mknod(&root, ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    meta.unlink(&root, ROOT_INO, b"f").await.expect("unlink");
    let (trash, _) = meta
        .lookup(&root, ROOT_INO, b".trash")
        .await
        .expect("trash");
    let hour = meta
        .readdir(&root, trash, None, 1, false)
        .await
        .expect("list")
        .remove(0);
    let entry = meta
        .readdir(&root, hour.ino, None, 1, false)
        .await
        .expect("list")
        .remove(0);
    meta.unlink(&root, hour.ino, &entry.name)
        .await
        .expect("unlink in trash");
    assert!(meta.getattr(ino).await.is_err(), "deleted for real");

    // A file replaced by a rename goes to the trash too.
    let (old, _) = meta
        .mknod(&root, ROOT_INO, b"old", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    meta.mknod(&root, ROOT_INO, b"new", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    meta.rename(&root, ROOT_INO, b"new", ROOT_INO, b"old", 0)
        .await
        .expect("rename over");
    let trashed = meta
        .readdir(&root, hour.ino, None, 10, false)
        .await
        .expect("list");
    assert!(
        trashed.iter().any(|e| e.ino == old),
        "replaced file is in the trash"
    );

    let plain = volume_with_trash(0).await;
    assert!(
        plain.lookup(&root, ROOT_INO, b".trash").await.is_err(),
        "no trash when disabled"
    );
    let (ino, _) = plain
        .mknod(&root, ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    plain.unlink(&root, ROOT_INO, b"f").await.expect("unlink");
    assert!(plain.getattr(ino).await.is_err());
}
