//! `--writeback`: blocks are staged locally and the slice committed before
//! the upload. A mount killed with SIGKILL before uploading loses nothing:
//! the next mount uploads the staged blocks. Staged blocks read back before
//! their upload, and unmount can wait for the uploads.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jfs::data::{DataOptions, DataStore, FileReader, FileWriter, Staging};
use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Ctx, FileKind, Meta, ROOT_INO};
use jfs::object::{FileStore, MemStore, ObjectStore};
use libtest_mimic::{Arguments, Failed, Trial};

const CHILD_ENV: &str = "JFS_WRITEBACK_CHILD_DIR";
const BLOCK: u32 = 64 << 10;
const SIZE: usize = 1 << 20;

fn pattern() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 13 % 251) as u8).collect()
}

/// An object store whose puts never finish until the flag returned is
/// set, and the store behind it.
fn stuck() -> (Arc<dyn ObjectStore>, Arc<AtomicBool>, Arc<dyn ObjectStore>) {
    let open = Arc::new(AtomicBool::new(false));
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let flag = open.clone();
    let store = Arc::new(common::Screened {
        inner: inner.clone(),
        screen: move |op: &str, _: String| {
            let (open, put) = (flag.clone(), op == "put");
            async move {
                while put && !open.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(())
            }
        },
    });
    (store, open, inner)
}

fn writeback(staging: Staging) -> DataOptions {
    DataOptions {
        max_uploads: 4,
        memory_cache_bytes: 0,
        writeback: Some(staging),
        ..Default::default()
    }
}

fn volume() -> jfs::meta::Volume {
    jfs::meta::Volume {
        block_size_bytes: BLOCK,
        ..common::volume("writeback")
    }
}

async fn open_meta(dir: &Path) -> Meta {
    let url = MetaUrl::parse(dir.join("meta").to_str().expect("utf-8")).expect("url");
    Meta::load(Db::open(&url, DbOptions::default()).expect("open meta"))
        .await
        .expect("load")
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(child(Path::new(&dir)));
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "data_writeback::staged_blocks_survive_kill9_and_upload_at_next_mount",
            || tokio::runtime::Runtime::new()?.block_on(kill9_recovery()),
        ),
        Trial::test(
            "data_writeback::staged_blocks_read_back_before_upload_and_drain",
            || tokio::runtime::Runtime::new()?.block_on(read_before_upload()),
        ),
        Trial::test(
            "data_writeback::a_file_deleted_before_its_upload_leaves_no_object",
            || tokio::runtime::Runtime::new()?.block_on(deleted_before_upload()),
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Writes the file with writeback to a store that never finishes an upload,
/// says so once the slice is committed, and waits to be killed.
async fn child(dir: &Path) {
    let meta = Arc::new(open_meta(dir).await);
    let (objects, _, _) = stuck();
    let staging = Staging::open(&dir.join("cache"), &meta.volume().uuid).expect("staging");
    let store = DataStore::with_options(meta.clone(), objects, writeback(staging)).expect("store");
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    let mut w = FileWriter::new(store.clone(), ino);
    w.write(0, &pattern()).await.expect("write");
    w.flush().await.expect("flush");
    println!("committed {}", store.pending_uploads());
    std::future::pending::<()>().await;
}

async fn kill9_recovery() -> Result<(), Failed> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    {
        let url = MetaUrl::parse(dir.join("meta").to_str().ok_or("path")?)?;
        let db = Db::open(&url, DbOptions::default())?;
        Meta::format(&db, &volume(), false).await?;
    }
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    if !line.starts_with("committed") {
        child.kill()?;
        return Err(format!("child said {line:?}").into());
    }
    child.kill()?; // SIGKILL, with every upload still pending
    child.wait()?;
    let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(&dir.join("objects"))?);
    if !objects.list("chunks/", None, 10).await?.is_empty() {
        return Err("objects reached the store before the kill".into());
    }
    // The next mount.
    let meta = Arc::new(open_meta(dir).await);
    let staging = Staging::open(&dir.join("cache"), &meta.volume().uuid)?;
    let store = DataStore::with_options(meta.clone(), objects.clone(), writeback(staging))?;
    let recovered = store.upload_staged().await?;
    if recovered != SIZE / BLOCK as usize {
        return Err(format!(
            "{recovered} staged blocks uploaded, want {}",
            SIZE / BLOCK as usize
        )
        .into());
    }
    let (ino, attr) = meta.lookup(&Ctx::root(), ROOT_INO, b"f").await?;
    if attr.length != SIZE as u64 {
        return Err(format!("length {}", attr.length).into());
    }
    // Read through a store without staging: the data is in object storage.
    let plain = DataStore::new(meta.clone(), objects.clone(), 4, 0)?;
    let got = FileReader::new(plain, ino)
        .read(0, SIZE, SIZE as u64)
        .await?;
    if got != pattern() {
        return Err("recovered file differs".into());
    }
    drop(store);
    // The metadata the crash left is consistent, every block in place.
    let options = jfs::fsck::FsckOptions {
        path: None,
        repair: false,
        check_objects: true,
        grace_secs: 3600,
        leaks_only: false,
        inodes_per_pass: 0,
    };
    let report = jfs::fsck::fsck(&meta, objects, &options, &mut |_, _| {}).await?;
    if report.remaining() != 0 {
        return Err(format!("fsck after the crash: {:?}", report.details).into());
    }
    Ok(())
}

/// A writeback store whose uploads wait until `open` is set, and file
/// `f` written and flushed there (its blocks staged, not uploaded). The
/// staging area lives as long as `_tmp` is kept.
struct Staged {
    _tmp: tempfile::TempDir,
    meta: Arc<Meta>,
    store: Arc<DataStore>,
    ino: jfs::meta::Ino,
    open: Arc<AtomicBool>,
    behind: Arc<dyn ObjectStore>,
}

async fn staged_file() -> Result<Staged, Failed> {
    let tmp = tempfile::tempdir()?;
    let meta = Arc::new(common::mem_meta(volume()).await);
    let (stuck, open, behind) = stuck();
    let staging = Staging::open(tmp.path(), &meta.volume().uuid)?;
    let store = DataStore::with_options(meta.clone(), stuck, writeback(staging))?;
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await?;
    let mut w = FileWriter::new(store.clone(), ino);
    w.write(0, &pattern()).await?;
    w.flush().await?;
    Ok(Staged {
        _tmp: tmp,
        meta,
        store,
        ino,
        open,
        behind,
    })
}

async fn read_before_upload() -> Result<(), Failed> {
    let Staged {
        _tmp,
        store,
        ino,
        open,
        behind,
        ..
    } = staged_file().await?;
    if store.pending_uploads() != SIZE / BLOCK as usize {
        return Err(format!("{} pending uploads", store.pending_uploads()).into());
    }
    let got = FileReader::new(store.clone(), ino)
        .read(0, SIZE, SIZE as u64)
        .await?;
    if got != pattern() {
        return Err("staged data reads differently".into());
    }
    open.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), store.wait_uploads()).await?;
    if store.pending_uploads() != 0
        || behind.list("chunks/", None, 100).await?.len() != SIZE / BLOCK as usize
    {
        return Err("uploads did not complete".into());
    }
    Ok(())
}

/// A file deleted while its blocks wait in the staging area: a reclaim
/// pass then deletes nothing (the uploads would store the blocks again
/// after it), the pass after the uploads deletes every one.
async fn deleted_before_upload() -> Result<(), Failed> {
    let Staged {
        _tmp,
        meta,
        store,
        open,
        behind,
        ..
    } = staged_file().await?;
    meta.unlink(&Ctx::root(), ROOT_INO, b"f").await?;
    let early = store.reclaim().await?;
    if early != 0 {
        return Err(format!("{early} objects deleted while still uploading").into());
    }
    open.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), store.wait_uploads()).await?;
    let uploaded = behind.list("chunks/", None, 100).await?.len();
    if uploaded != SIZE / BLOCK as usize {
        return Err(format!("{uploaded} objects uploaded").into());
    }
    let late = store.reclaim().await?;
    let left = behind.list("chunks/", None, 100).await?.len();
    if late != uploaded as u64 || left != 0 {
        return Err(format!("the pass after the uploads deleted {late}, left {left}").into());
    }
    Ok(())
}
