//! Close-to-open across two mounts of one volume: two kernel FUSE mounts,
//! each with its own session, vfs and caches, over one shared KV store and
//! one object store. (The embedded engine admits one process, so the two
//! mounts live in this test process on the shared in-memory engine; the
//! same test across hosts runs on etcd with the multi-host tests.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jfs::data::{DataOptions, DataStore};
use jfs::fuse::{CacheTimeouts, FuseFs};
use jfs::kv::{Db, DbOptions, MetaUrl};
use jfs::meta::{Meta, SessionInfo, Volume, ROOT_INO};
use jfs::object::{FileStore, ObjectStore};
use jfs::vfs::{Vfs, VfsOptions};

/// The kernel's entry and attribute cache timeout on both mounts.
const CACHE: Duration = Duration::from_secs(1);

struct Mounted {
    _session: fuser::BackgroundSession,
    path: PathBuf,
}

struct TwoMounts {
    /// Keeps the in-memory engine alive between the mounts' openings.
    _db: Db,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    a: Mounted,
    b: Mounted,
}

fn mount_one(rt: &tokio::runtime::Runtime, db_name: &str, bucket: &Path, at: PathBuf) -> Mounted {
    let vfs = rt.block_on(async {
        let url = MetaUrl::parse(&format!("mem://{db_name}")).unwrap();
        let db = Db::open(&url, DbOptions::default()).unwrap();
        let meta = Arc::new(Meta::load(db).await.unwrap());
        let info = SessionInfo {
            host: "test".into(),
            pid: std::process::id(),
            mount_point: at.display().to_string(),
            version: "test".into(),
        };
        meta.new_session(&info, 60).await.unwrap();
        let objects: Arc<dyn ObjectStore> = Arc::new(FileStore::open(bucket).unwrap());
        let data = DataStore::with_options(meta.clone(), objects, DataOptions::default()).unwrap();
        Vfs::new(meta, data, VfsOptions::default())
    });
    let notifier = Arc::new(OnceLock::new());
    let fs = FuseFs::new(
        vfs,
        rt.handle().clone(),
        ROOT_INO,
        CacheTimeouts {
            attr: CACHE,
            entry: CACHE,
            dir_entry: CACHE,
        },
        notifier.clone(),
    );
    std::fs::create_dir_all(&at).unwrap();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("jfs:c2o".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(2);
    let session = fuser::spawn_mount(fs, &at, &config).expect("mount");
    let _ = notifier.set(session.notifier());
    Mounted {
        _session: session,
        path: at,
    }
}

fn two_mounts(name: &str) -> TwoMounts {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db_name = format!("c2o-{name}-{}", std::process::id());
    let db = rt.block_on(async {
        let url = MetaUrl::parse(&format!("mem://{db_name}")).unwrap();
        let db = Db::open(&url, DbOptions::default()).unwrap();
        let mut volume = Volume::new(
            "c2o",
            "file",
            &dir.path().join("data").display().to_string(),
        );
        volume.trash_days = 0;
        Meta::format(&db, &volume, false).await.unwrap();
        db
    });
    let bucket = dir.path().join("data");
    let a = mount_one(&rt, &db_name, &bucket, dir.path().join("a"));
    let b = mount_one(&rt, &db_name, &bucket, dir.path().join("b"));
    TwoMounts {
        _db: db,
        _dir: dir,
        _rt: rt,
        a,
        b,
    }
}

#[test]
fn a_file_closed_on_one_mount_opens_with_its_new_content_on_the_other() {
    let m = two_mounts("content");
    let (a, b) = (&m.a.path, &m.b.path);
    std::fs::write(a.join("f"), b"first version").unwrap();
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"first version");

    // B has the file's pages and attributes cached now. A replaces the
    // content with a longer one and closes; B's next open sees all of it,
    // without waiting for any cache to expire.
    let second = vec![b'x'; 200_000];
    std::fs::write(a.join("f"), &second).unwrap();
    assert_eq!(std::fs::read(b.join("f")).unwrap(), second);
    let f = std::fs::File::open(b.join("f")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 200_000);
    drop(f);

    // Shrinking is seen as well.
    std::fs::write(a.join("f"), b"short").unwrap();
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"short");

    // And the other way round.
    std::fs::write(b.join("f"), b"from b").unwrap();
    assert_eq!(std::fs::read(a.join("f")).unwrap(), b"from b");
}

#[test]
fn names_created_and_removed_on_one_mount_show_on_the_other() {
    let m = two_mounts("names");
    let (a, b) = (&m.a.path, &m.b.path);
    std::fs::create_dir(a.join("d")).unwrap();
    std::fs::write(a.join("d/f"), b"x").unwrap();
    assert!(b.join("d/f").exists());
    std::fs::remove_file(a.join("d/f")).unwrap();
    // B may keep the name for its entry cache timeout, not longer.
    std::thread::sleep(CACHE + Duration::from_millis(500));
    assert!(
        !b.join("d/f").exists(),
        "unlinked name still visible on the other mount"
    );
    let names: Vec<_> = std::fs::read_dir(b.join("d")).unwrap().collect();
    assert!(names.is_empty());
}

#[test]
fn an_unlinked_file_stays_readable_where_it_is_open() {
    let m = two_mounts("unlinked");
    let (a, b) = (&m.a.path, &m.b.path);
    std::fs::write(a.join("f"), b"still here").unwrap();
    let mut open_on_b = std::fs::File::open(b.join("f")).unwrap();
    std::fs::remove_file(a.join("f")).unwrap();
    use std::io::Read;
    let mut content = String::new();
    open_on_b.read_to_string(&mut content).unwrap();
    assert_eq!(content, "still here");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The kernel keeps a directory's listing between opens while the
/// directory is unchanged; a change made on another mount shows at the
/// next opendir, with no cache to wait out, even when the mtime was set
/// back to what it was.
#[test]
fn a_cached_listing_shows_changes_from_the_other_mount_at_the_next_open() {
    let m = two_mounts("listing");
    let (a, b) = (&m.a.path, &m.b.path);
    std::fs::create_dir(a.join("d")).unwrap();
    for i in 0..50 {
        std::fs::write(a.join(format!("d/f{i:02}")), b"").unwrap();
    }
    let first = listing(&b.join("d"));
    assert_eq!(first.len(), 50);
    // Listed again unchanged: the same names (from the kernel's cache).
    assert_eq!(listing(&b.join("d")), first);

    std::fs::write(a.join("d/new"), b"").unwrap();
    assert!(listing(&b.join("d")).contains(&"new".to_string()));

    std::fs::remove_file(a.join("d/f00")).unwrap();
    assert!(!listing(&b.join("d")).contains(&"f00".to_string()));

    // A create, then the mtime set back as tar and rsync do: the ctime
    // moved, so the cached listing goes.
    let before = std::fs::metadata(a.join("d")).unwrap().modified().unwrap();
    assert_eq!(listing(&b.join("d")).len(), 50);
    std::fs::write(a.join("d/restored"), b"").unwrap();
    std::fs::File::open(a.join("d"))
        .unwrap()
        .set_modified(before)
        .unwrap();
    assert_eq!(
        std::fs::metadata(a.join("d")).unwrap().modified().unwrap(),
        before
    );
    assert!(listing(&b.join("d")).contains(&"restored".to_string()));

    // This mount's own changes show at once as well.
    std::fs::write(b.join("d/mine"), b"").unwrap();
    assert!(listing(&b.join("d")).contains(&"mine".to_string()));
    std::fs::remove_file(b.join("d/mine")).unwrap();
    assert!(!listing(&b.join("d")).contains(&"mine".to_string()));
}
