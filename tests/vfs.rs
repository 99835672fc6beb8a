//! The vfs without a kernel: open files, buffered writes, listings and the
//! keep-cache decision of close-to-open, over the in-memory engine.

mod common;

use std::sync::Arc;

use jfs::data::{DataOptions, DataStore};
use jfs::kv::Db;
use jfs::meta::{Ctx, Meta, SessionInfo, SetAttr, ROOT_INO};
use jfs::object::{MemStore, ObjectStore};
use jfs::vfs::{Vfs, VfsOptions};

const RW: i32 = libc::O_RDWR;

async fn client(db: &Db, objects: &Arc<dyn ObjectStore>) -> Arc<Vfs> {
    client_with(db, objects, VfsOptions::default()).await
}

async fn client_with(db: &Db, objects: &Arc<dyn ObjectStore>, options: VfsOptions) -> Arc<Vfs> {
    let meta = Arc::new(Meta::load(db.clone()).await.expect("load"));
    let info = SessionInfo {
        host: "test".into(),
        pid: 1,
        mount_point: "/t".into(),
        version: "test".into(),
    };
    meta.new_session(&info, 60).await.expect("session");
    let data = DataStore::with_options(meta.clone(), objects.clone(), DataOptions::default())
        .expect("data");
    Vfs::new(meta, data, options)
}

/// A file `name` in the root that `client` created, wrote `data` to and
/// closed.
async fn written(client: &Vfs, name: &[u8], data: &[u8]) -> jfs::meta::Ino {
    let ctx = Ctx::root();
    let (ino, _, w) = client
        .create(&ctx, ROOT_INO, name, 0o644, 0, RW)
        .await
        .expect("create");
    client.write(w.fh, 0, data).await.expect("write");
    client.flush(w.fh, None).await.expect("flush");
    client.release(w.fh).await.expect("release");
    ino
}

/// One volume, two clients (as two hosts would be).
async fn two_clients() -> (Arc<Vfs>, Arc<Vfs>) {
    two_clients_on(common::mem_db(None)).await
}

/// One volume on `db`, two clients.
async fn two_clients_on(db: Db) -> (Arc<Vfs>, Arc<Vfs>) {
    Meta::format(&db, &common::volume("vfs"), false)
        .await
        .expect("format");
    let objects: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    (client(&db, &objects).await, client(&db, &objects).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_writes_show_in_getattr_and_reads_before_close() {
    let (a, _) = two_clients().await;
    let ctx = Ctx::root();
    let (ino, _, opened) = a
        .create(&ctx, ROOT_INO, b"f", 0o644, 0o022, RW)
        .await
        .expect("create");
    a.write(opened.fh, 0, &[7u8; 1000]).await.expect("write");
    a.write(opened.fh, 1000, &[8u8; 500]).await.expect("write");
    assert_eq!(a.getattr(ino).await.expect("getattr").0.length, 1500);
    let back = a.read(opened.fh, 900, 200).await.expect("read");
    assert_eq!(&back[..100], &[7u8; 100][..]);
    assert_eq!(&back[100..], &[8u8; 100][..]);
    a.flush(opened.fh, None).await.expect("flush");
    a.release(opened.fh).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_keeps_the_cache_only_when_the_file_did_not_change() {
    let (a, b) = two_clients().await;
    let ctx = Ctx::root();
    let ino = written(&a, b"f", b"one").await;

    let first = b.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    assert!(!first.keep_cache, "first open on this client");
    b.release(first.fh).await.expect("release");
    let again = b.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    assert!(again.keep_cache, "nothing changed since");
    b.release(again.fh).await.expect("release");

    // Another client writes and closes: the next open must drop the pages.
    let w = a.open(&ctx, ino, RW).await.expect("open");
    a.write(w.fh, 0, b"two").await.expect("write");
    a.flush(w.fh, None).await.expect("flush");
    a.release(w.fh).await.expect("release");
    let after = b.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    assert!(!after.keep_cache, "changed by another client");
    assert_eq!(&b.read(after.fh, 0, 10).await.expect("read")[..], b"two");
    b.release(after.fh).await.expect("release");

    // A client's own writes do not cost it its cache.
    let own = a.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    assert!(own.keep_cache, "unchanged since this client's own close");
    a.release(own.fh).await.expect("release");
}

/// Counts the transactions begun on an engine.
struct Counting {
    inner: Arc<dyn jfs::kv::Engine>,
    begun: Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait::async_trait]
impl jfs::kv::Engine for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn limits(&self) -> jfs::kv::Limits {
        self.inner.limits()
    }

    async fn begin(&self) -> jfs::kv::KvResult<Box<dyn jfs::kv::EngineTxn>> {
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.begin().await
    }

    async fn begin_recent(&self) -> jfs::kv::KvResult<Box<dyn jfs::kv::EngineTxn>> {
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.begin_recent().await
    }

    async fn sync(&self) -> jfs::kv::KvResult<()> {
        self.inner.sync().await
    }
}

/// Opening a small file reads its first chunk's records with its
/// attributes: the first read asks the KV store nothing more (on etcd, a
/// round trip less per small file read). Records read by the open are
/// dropped as any others when this client writes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_file_reads_its_first_chunk_with_it() {
    let begun = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let engine = jfs::kv::url::open_engine(&jfs::kv::url::MetaUrl::Mem {
        name: String::new(),
    })
    .expect("mem");
    let db = Db::new(
        Arc::new(Counting {
            inner: engine,
            begun: begun.clone(),
        }),
        jfs::kv::DbOptions::default(),
    );
    let (a, b) = two_clients_on(db).await;
    let ctx = Ctx::root();
    let ino = written(&a, b"f", b"small file").await;

    let count = || begun.load(std::sync::atomic::Ordering::SeqCst);
    let before = count();
    let r = b.open(&ctx, ino, libc::O_RDONLY).await.expect("open");
    assert_eq!(
        &b.read(r.fh, 0, 100).await.expect("read")[..],
        b"small file"
    );
    assert_eq!(count() - before, 1, "the open's transaction, and no other");

    // Written here, then read: the open's records are not used again.
    let w = b.open(&ctx, ino, RW).await.expect("open");
    b.write(w.fh, 0, b"SMALL").await.expect("write");
    b.flush(w.fh, None).await.expect("flush");
    assert_eq!(
        &b.read(r.fh, 0, 100).await.expect("read")[..],
        b"SMALL file"
    );
    b.release(w.fh).await.expect("release");
    b.release(r.fh).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_o_excl_refuses_an_existing_name() {
    let (a, _) = two_clients().await;
    let ctx = Ctx::root();
    let (_, _, h) = a
        .create(&ctx, ROOT_INO, b"f", 0o644, 0, RW | libc::O_EXCL)
        .await
        .expect("create");
    a.release(h.fh).await.expect("release");
    let again = a
        .create(&ctx, ROOT_INO, b"f", 0o644, 0, RW | libc::O_EXCL)
        .await;
    assert_eq!(again.err().map(|e| e.0), Some(libc::EEXIST));
    let (_, _, h) = a
        .create(&ctx, ROOT_INO, b"f", 0o644, 0, RW)
        .await
        .expect("open existing");
    a.release(h.fh).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdir_positions_stay_valid_while_entries_change() {
    let (a, _) = two_clients().await;
    let ctx = Ctx::root();
    for i in 0..3000 {
        a.mknod(
            &ctx,
            ROOT_INO,
            format!("f{i:04}").as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            0,
        )
        .await
        .expect("mknod");
    }
    let fh = a.opendir(&ctx, ROOT_INO).await.expect("opendir").fh;
    let first = a.readdir(&ctx, fh, 0, 100).await.expect("readdir");
    assert_eq!(first[0].1.name, b".");
    assert_eq!(first[1].1.name, b"..");
    // Entries removed behind the cursor do not shift later positions.
    for i in 0..50 {
        a.unlink(&ctx, ROOT_INO, format!("f{i:04}").as_bytes())
            .await
            .expect("unlink");
    }
    let mut names: Vec<Vec<u8>> = first.iter().map(|(_, e)| e.name.clone()).collect();
    let mut offset = first.last().expect("entries").0;
    loop {
        let page = a.readdir(&ctx, fh, offset, 700).await.expect("readdir");
        let Some(last) = page.last() else { break };
        offset = last.0;
        names.extend(page.into_iter().map(|(_, e)| e.name));
    }
    a.releasedir(fh);
    // ".", "..", ".trash"? (trash is off here), then f0000..f2999 once each.
    let files: Vec<&Vec<u8>> = names.iter().filter(|n| n.starts_with(b"f")).collect();
    assert_eq!(files.len(), 3000, "each entry once, none skipped");
    let mut sorted = files.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_commits_buffered_writes_first() {
    let (a, _) = two_clients().await;
    let ctx = Ctx::root();
    let (ino, _, h) = a
        .create(&ctx, ROOT_INO, b"f", 0o644, 0, RW)
        .await
        .expect("create");
    a.write(h.fh, 0, &[1u8; 4096]).await.expect("write");
    let shrink = SetAttr {
        size: Some(100),
        ..Default::default()
    };
    assert_eq!(
        a.setattr(&ctx, ino, &shrink)
            .await
            .expect("truncate")
            .length,
        100
    );
    assert_eq!(a.read(h.fh, 0, 4096).await.expect("read"), vec![1u8; 100]);
    a.release(h.fh).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_directory_changes_its_ctime() {
    let (a, _) = two_clients().await;
    let ctx = Ctx::root();
    let (ino, before) = a
        .mkdir(&ctx, ROOT_INO, b"d", 0o755, 0)
        .await
        .expect("mkdir");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    a.rename(&ctx, ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .await
        .expect("rename");
    assert!(a.getattr(ino).await.expect("getattr").0.ctime > before.ctime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mounts_refuse_changes() {
    let db = common::mem_db(None);
    Meta::format(&db, &common::volume("readonly"), false)
        .await
        .expect("format");
    let meta = Arc::new(Meta::load(db).await.expect("load"));
    let objects: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let data =
        DataStore::with_options(meta.clone(), objects, DataOptions::default()).expect("data");
    let vfs = Vfs::new(
        meta,
        data,
        VfsOptions {
            read_only: true,
            ..VfsOptions::default()
        },
    );
    let ctx = Ctx::root();
    let made = vfs.mkdir(&ctx, ROOT_INO, b"d", 0o755, 0).await;
    assert_eq!(made.err().map(|e| e.0), Some(libc::EROFS));
    let xattr = vfs.getxattr(ROOT_INO, b"user.x").await;
    assert_eq!(xattr.err().map(|e| e.0), Some(libc::ENOTSUP));
}

/// Open markers of `ino` in the KV store.
async fn open_markers(vfs: &Vfs, ino: u64) -> usize {
    let range = jfs::meta::keys::opens(ino);
    vfs.meta()
        .db()
        .run("markers", |tx| {
            let range = range.clone();
            async move { Ok(tx.scan_all(&range, 64, false).await?.len()) }
        })
        .await
        .expect("scan markers")
}

/// Waits until the batched close of released files has run.
async fn until_closed(vfs: &Vfs, ino: u64) {
    for _ in 0..200 {
        if open_markers(vfs, ino).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("inode {ino} still has an open marker 2 s after its last release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_files_close_in_batches_and_reopen_meanwhile() {
    let (a, b) = two_clients().await;
    let ctx = Ctx::root();
    let mut inos = Vec::new();
    for i in 0..40 {
        let name = format!("f{i}");
        let (ino, _, opened) = a
            .create(&ctx, ROOT_INO, name.as_bytes(), 0o644, 0o022, RW)
            .await
            .expect("create");
        a.write(opened.fh, 0, name.as_bytes()).await.expect("write");
        a.release(opened.fh).await.expect("release");
        inos.push(ino);
    }
    // Released but not closed yet: the marker stays, and an open reuses it.
    let (first, last) = (inos[0], inos[39]);
    let again = a.open(&ctx, last, RW).await.expect("reopen");
    assert_eq!(&a.read(again.fh, 0, 10).await.expect("read")[..], b"f39");
    // Another host unlinks files this one has open or just released: the
    // open one stays readable, the released one goes once closed.
    b.unlink(&ctx, ROOT_INO, b"f39").await.expect("unlink open");
    b.unlink(&ctx, ROOT_INO, b"f0")
        .await
        .expect("unlink released");
    until_closed(&a, first).await;
    assert_eq!(
        a.getattr(first).await.map(|_| ()).map_err(|e| e.0),
        Err(libc::ENOENT),
        "an unlinked file that nobody has open is deleted at its close"
    );
    for &ino in &inos[1..39] {
        until_closed(&a, ino).await;
    }
    assert_eq!(
        open_markers(&a, last).await,
        1,
        "the reopened file stays open"
    );
    assert_eq!(&a.read(again.fh, 0, 10).await.expect("read")[..], b"f39");
    a.release(again.fh).await.expect("release");
    until_closed(&a, last).await;
    assert_eq!(
        a.getattr(last).await.map(|_| ()).map_err(|e| e.0),
        Err(libc::ENOENT)
    );
}

/// The directory's attributes as stored: times, link count, mode.
async fn stored(vfs: &Vfs, dir: u64) -> (jfs::meta::Timestamp, jfs::meta::Timestamp, u32, u16) {
    let attr = vfs.meta().getattr(dir).await.expect("stored attributes");
    (attr.mtime, attr.ctime, attr.nlink, attr.mode)
}

async fn answered(vfs: &Vfs, dir: u64) -> (jfs::meta::Timestamp, jfs::meta::Timestamp, u32, u16) {
    let (attr, _) = vfs.getattr(dir).await.expect("getattr");
    (attr.mtime, attr.ctime, attr.nlink, attr.mode)
}

/// The kernel asks for a directory's attributes after every change in it;
/// a mount answers from its last read with its own changes applied, which
/// must be exactly what is stored, and another mount's changes show once
/// the attribute timeout of that read is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_changed_here_is_answered_with_its_stored_attributes() {
    let db = common::mem_db(None);
    Meta::format(&db, &common::volume("dirattrs"), false)
        .await
        .expect("format");
    let objects: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let cached = VfsOptions {
        attr_cache: std::time::Duration::from_secs(3600),
        ..VfsOptions::default()
    };
    let a = client_with(&db, &objects, cached.clone()).await;
    let other = client(&db, &objects).await;
    let ctx = Ctx::root();
    let (dir, _) = a
        .mkdir(&ctx, ROOT_INO, b"d", 0o755, 0)
        .await
        .expect("mkdir");
    assert_eq!(answered(&a, dir).await, stored(&a, dir).await);

    let (_, _, opened) = a
        .create(&ctx, dir, b"f", 0o644, 0, RW | libc::O_EXCL)
        .await
        .expect("create");
    a.release(opened.fh).await.expect("release");
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after create"
    );
    let (sub, _) = a.mkdir(&ctx, dir, b"sub", 0o755, 0).await.expect("mkdir");
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after mkdir"
    );
    let (file, _) = a.lookup(&ctx, dir, b"f").await.expect("lookup");
    a.link(&ctx, file, dir, b"g").await.expect("link");
    a.symlink(&ctx, dir, b"s", b"f").await.expect("symlink");
    a.mknod(&ctx, dir, b"n", libc::S_IFIFO | 0o644, 0, 0)
        .await
        .expect("mknod");
    assert_eq!(answered(&a, dir).await, stored(&a, dir).await, "after link");
    a.unlink(&ctx, dir, b"f").await.expect("unlink");
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after unlink"
    );
    let failed = a.unlink(&ctx, dir, b"f").await;
    assert_eq!(failed.err().map(|e| e.0), Some(libc::ENOENT));
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after a failure"
    );
    a.rename(&ctx, dir, b"g", sub, b"g", 0)
        .await
        .expect("rename");
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after rename"
    );
    assert_eq!(
        answered(&a, sub).await,
        stored(&a, sub).await,
        "after rename"
    );
    a.rename(&ctx, sub, b"g", sub, b"g", 0)
        .await
        .expect("rename to itself");
    a.symlink(&ctx, sub, b"h", b"g").await.expect("symlink");
    a.rename(&ctx, sub, b"h", sub, b"g", jfs::meta::RENAME_EXCHANGE)
        .await
        .expect("exchange");
    assert_eq!(answered(&a, sub).await, stored(&a, sub).await, "exchange");
    a.unlink(&ctx, sub, b"h").await.expect("unlink");
    a.rename(&ctx, dir, b"sub", ROOT_INO, b"moved", 0)
        .await
        .expect("rename a directory");
    assert_eq!(answered(&a, sub).await, stored(&a, sub).await, "moved");
    assert_eq!(answered(&a, dir).await, stored(&a, dir).await, "moved from");
    let chmod = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    a.setattr(&ctx, dir, &chmod).await.expect("chmod");
    assert_eq!(
        answered(&a, dir).await,
        stored(&a, dir).await,
        "after chmod"
    );
    a.unlink(&ctx, sub, b"g").await.expect("unlink");
    a.rmdir(&ctx, ROOT_INO, b"moved").await.expect("rmdir");
    assert_eq!(answered(&a, ROOT_INO).await, stored(&a, ROOT_INO).await);

    // Another mount's change is not seen within the timeout of the last
    // read (as the kernel's own cache would not see it)...
    let seen = answered(&a, dir).await;
    other
        .mkdir(&ctx, dir, b"there", 0o755, 0)
        .await
        .expect("mkdir");
    assert_eq!(answered(&a, dir).await, seen, "answered from the last read");
    assert_ne!(stored(&a, dir).await, seen);
    // ... and is, by a mount whose timeout is over.
    let short = VfsOptions {
        attr_cache: std::time::Duration::from_millis(100),
        ..VfsOptions::default()
    };
    let b = client_with(&db, &objects, short).await;
    let before = answered(&b, dir).await;
    b.unlink(&ctx, dir, b"n").await.expect("unlink");
    other
        .mkdir(&ctx, dir, b"later", 0o755, 0)
        .await
        .expect("mkdir");
    assert_ne!(answered(&b, dir).await, before, "own change applied");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(answered(&b, dir).await, stored(&b, dir).await, "read again");
}

/// The names listed by one open of directory `dir`, and whether the
/// kernel was allowed to reuse its cached listing.
async fn list(vfs: &Vfs, dir: u64) -> (Vec<Vec<u8>>, bool) {
    let ctx = Ctx::root();
    let opened = vfs.opendir(&ctx, dir).await.expect("opendir");
    let page = vfs
        .readdir(&ctx, opened.fh, 0, 1000)
        .await
        .expect("readdir");
    vfs.releasedir(opened.fh);
    let names = page.into_iter().map(|(_, e)| e.name);
    let names = names.filter(|n| n != b"." && n != b"..").collect();
    (names, opened.keep_cache)
}

/// Files moved into the trash leave the hour directory's times alone (so
/// that unlinks everywhere do not all write its time keys): a mount never
/// reuses a listing of it, and every open lists what is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_hour_listings_are_never_reused() {
    let db = common::mem_db(None);
    let volume = jfs::meta::Volume {
        trash_days: 1,
        ..common::volume("vfs")
    };
    Meta::format(&db, &volume, false).await.expect("format");
    let objects: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let a = client(&db, &objects).await;
    let ctx = Ctx::root();
    for name in [b"one".as_slice(), b"two"] {
        a.mknod(&ctx, ROOT_INO, name, libc::S_IFREG | 0o644, 0, 0)
            .await
            .expect("mknod");
    }
    a.unlink(&ctx, ROOT_INO, b"one").await.expect("unlink");
    let (hours, _) = list(&a, jfs::meta::TRASH_INO).await;
    assert_eq!(hours.len(), 1, "one hour directory: {hours:?}");
    let hour = a
        .lookup(&ctx, jfs::meta::TRASH_INO, &hours[0])
        .await
        .expect("hour directory")
        .0;
    let stored = || async {
        let meta = Meta::load(db.clone()).await.expect("load");
        let attr = meta.getattr(hour).await.expect("getattr");
        (attr.mtime, attr.ctime)
    };
    let before = stored().await;
    let (first, _) = list(&a, hour).await;
    assert_eq!(first.len(), 1, "{first:?}");
    a.unlink(&ctx, ROOT_INO, b"two").await.expect("unlink");
    let (second, keep) = list(&a, hour).await;
    assert!(!keep, "a trash hour listing is never reused");
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(before, stored().await, "moves in leave the times alone");
    // An ordinary directory's unchanged listing still is.
    let (_, _) = list(&a, ROOT_INO).await;
    let (_, keep) = list(&a, ROOT_INO).await;
    assert!(keep, "an unchanged directory keeps its listing");
}

/// A lookup guesses the inode from what this client last saw of the name
/// and reads its keys with the entry; a guess another client made stale
/// must give the same answer as a client with no guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_with_stale_guesses_answer_what_is_there() {
    let (a, b) = two_clients().await;
    let ctx = Ctx::root();
    let (first, _) = a
        .mknod(&ctx, ROOT_INO, b"x", libc::S_IFREG | 0o644, 0, 0)
        .await
        .expect("mknod");
    assert_eq!(
        a.lookup(&ctx, ROOT_INO, b"x").await.expect("lookup").0,
        first
    );
    // Another client replaces the file with a directory.
    b.unlink(&ctx, ROOT_INO, b"x").await.expect("unlink");
    let (second, _) = b
        .mkdir(&ctx, ROOT_INO, b"x", 0o755, 0)
        .await
        .expect("mkdir");
    assert_ne!(first, second);
    let (ino, attr) = a.lookup(&ctx, ROOT_INO, b"x").await.expect("lookup");
    assert_eq!(ino, second, "the entry's inode, not the guess");
    assert!(attr.is_dir() && attr.nlink == 2, "{attr:?}");
    // A right guess of a directory reads its separately kept count and
    // times with the record.
    b.mkdir(&ctx, second, b"sub", 0o755, 0)
        .await
        .expect("mkdir");
    let (ino, again) = a.lookup(&ctx, ROOT_INO, b"x").await.expect("lookup");
    assert_eq!(ino, second);
    assert_eq!(again.nlink, 3, "{again:?}");
    assert!(again.mtime >= attr.mtime && again.ctime >= attr.ctime);
    b.rmdir(&ctx, second, b"sub").await.expect("rmdir");
    // Gone: ENOENT, then a new name is found again.
    b.rmdir(&ctx, ROOT_INO, b"x").await.expect("rmdir");
    let gone = a.lookup(&ctx, ROOT_INO, b"x").await;
    assert!(gone.is_err(), "{gone:?}");
    let (third, _) = b
        .symlink(&ctx, ROOT_INO, b"x", b"target")
        .await
        .expect("symlink");
    let (ino, attr) = a.lookup(&ctx, ROOT_INO, b"x").await.expect("lookup");
    assert_eq!((ino, attr.kind), (third, jfs::meta::FileKind::Symlink));
}
