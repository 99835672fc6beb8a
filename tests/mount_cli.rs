//! The `jfs` commands on real FUSE mounts of the embedded engine: the
//! ordinary life of a volume, and every bad input a user can give, each of
//! which must fail with one clear line, a non-zero exit, no panic and no
//! change.

mod mount;

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use mount::{jfs, stderr, stdout, TestVolume};

/// Content that differs at every offset, so misplaced bytes are caught.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

#[test]
fn files_written_on_a_mount_read_back_after_remount() {
    let v = TestVolume::format("remount");
    v.mount(&[]);
    let big = pattern(9 << 20, 7); // several blocks, not block-aligned
    std::fs::write(v.path("big"), &big).unwrap();
    std::fs::create_dir_all(v.path("d/e")).unwrap();
    std::fs::write(v.path("d/e/small"), b"hello").unwrap();
    std::os::unix::fs::symlink("d/e/small", v.path("link")).unwrap();
    std::fs::hard_link(v.path("big"), v.path("d/big2")).unwrap();
    {
        // Overwrite in the middle through a second descriptor.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(v.path("big"))
            .unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(5_000_000)).unwrap();
        f.write_all(b"MIDDLE").unwrap();
    }
    let mut expected = big.clone();
    expected[5_000_000..5_000_006].copy_from_slice(b"MIDDLE");
    assert_eq!(std::fs::read(v.path("big")).unwrap(), expected);
    v.umount();
    assert!(!v.is_mounted());

    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("big")).unwrap(), expected);
    assert_eq!(std::fs::read(v.path("d/big2")).unwrap(), expected);
    assert_eq!(std::fs::read(v.path("link")).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(v.path("big")).unwrap().nlink(), 2);
    let names: Vec<String> = std::fs::read_dir(v.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    v.umount();
    v.fsck().unwrap();
}

#[test]
fn a_large_directory_lists_every_entry_once() {
    let v = TestVolume::format("bigdir");
    v.mount(&[]);
    let dir = v.path("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..3000 {
        std::fs::write(dir.join(format!("f{i:05}")), b"").unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..3000).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names, expected);
    v.umount();
}

#[test]
fn writeback_mount_keeps_what_close_acknowledged() {
    let v = TestVolume::format("writeback");
    v.mount(&["--writeback"]);
    let data = pattern(6 << 20, 3);
    std::fs::write(v.path("f"), &data).unwrap();
    v.umount();
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    v.umount();
}

#[test]
fn status_info_and_config_describe_the_volume() {
    let v = TestVolume::format("describe");
    v.mount(&[]);
    std::fs::write(v.path("f"), pattern(5 << 20, 1)).unwrap();

    let out = jfs(&["status", &v.meta]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["setting"]["name"], "describe");
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["mount_point"], v.mnt_str());
    assert_eq!(sessions[0]["alive"], true);
    let pid = sessions[0]["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains(&v.mnt_str()),
        "pid {pid} is not the mount"
    );
    assert!(sessions[0]["host"].as_str().is_some_and(|h| !h.is_empty()));
    // The mount beat (or started) within the last heartbeat interval.
    let ago = sessions[0]["last_heartbeat_secs_ago"].as_i64().unwrap();
    assert!((0..=13).contains(&ago), "{}", sessions[0]);
    let beat = sessions[0]["last_heartbeat"].as_str().unwrap();
    assert!(beat.len() == 20 && beat.ends_with('Z'), "{beat}");

    let out = jfs(&["info", &v.path("f").display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["size"], 5 << 20);
    assert_eq!(info["objects"].as_array().unwrap().len(), 2, "{info}");
    v.umount();

    let out = jfs(&[
        "config",
        &v.meta,
        "--capacity",
        "2",
        "--secret-key",
        "hush-hush",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("hush-hush"),
        "secret printed: {}",
        stdout(&out)
    );
    let out = jfs(&["status", &v.meta]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["setting"]["capacity_bytes"], 2u64 << 30);
    assert_eq!(status["setting"]["secret_key"], "removed");
    assert!(status["sessions"].as_array().unwrap().is_empty());
}

#[test]
fn destroy_removes_the_volume_but_never_while_mounted() {
    let v = TestVolume::format("doomed");
    let status: serde_json::Value =
        serde_json::from_slice(&jfs(&["status", &v.meta]).stdout).unwrap();
    let uuid = status["setting"]["uuid"].as_str().unwrap().to_string();
    v.mount(&[]);
    std::fs::write(v.path("f"), b"data").unwrap();
    // The embedded store is held by the mount: destroy is refused.
    let out = jfs(&["destroy", &v.meta, &uuid, "--yes"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(v.path("f")).unwrap(), b"data");
    v.umount();

    let out = jfs(&["destroy", &v.meta, "not-the-uuid", "--yes"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("uuid"), "{}", stderr(&out));
    let out = jfs(&["destroy", &v.meta, &uuid]);
    assert!(!out.status.success(), "destroy without confirmation ran");
    let out = jfs(&["destroy", &v.meta, &uuid, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = jfs(&["status", &v.meta]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("jfs format"), "{}", stderr(&out));
}

/// One line, non-zero, no panic, no stack trace.
fn assert_clean_failure(out: &std::process::Output, expect: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {err}");
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "error should mention {expect:?}: {err}"
    );
}

#[test]
fn bad_input_gives_one_clear_line_and_changes_nothing() {
    let v = TestVolume::format("badinput");
    let mnt = v.mnt_str();
    let missing = v.dir.path().join("nowhere").display().to_string();
    let file = v.dir.path().join("plainfile");
    std::fs::write(&file, b"x").unwrap();
    let file = file.display().to_string();

    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "unknown scheme",
            vec!["status", "nosuch://host/x"],
            "unknown metadata engine",
        ),
        (
            "unreachable store",
            vec!["status", "etcd://127.0.0.1:1/x"],
            "etcd",
        ),
        ("volume missing", vec!["status", &missing], "jfs format"),
        (
            "bad volume name",
            vec!["format", &missing, "Bad_Name"],
            "name",
        ),
        (
            "format twice",
            vec!["format", &v.meta, "badinput"],
            "--force",
        ),
        (
            "bad block size",
            vec!["format", &missing, "okname", "--block-size", "3"],
            "block-size",
        ),
        (
            "bad compression",
            vec!["format", &missing, "okname", "--compress", "lzma"],
            "compress",
        ),
        (
            "mount point missing",
            vec!["mount", &v.meta, &missing],
            "does not exist",
        ),
        (
            "mount point not a dir",
            vec!["mount", &v.meta, &file],
            "not a directory",
        ),
        (
            "mount wrong volume",
            vec!["mount", &missing, &mnt],
            "jfs format",
        ),
        ("umount not jfs", vec!["umount", "/"], "not jfs"),
        (
            "umount not mounted",
            vec!["umount", &mnt],
            "not a mount point",
        ),
        (
            "info outside jfs",
            vec!["info", "/tmp"],
            "not inside a jfs mount",
        ),
    ];
    for (what, args, expect) in &cases {
        let out = jfs(args);
        assert_clean_failure(&out, expect);
        eprintln!("{what}: {}", stderr(&out).trim());
    }
    // The failed format changed nothing: the volume is as it was.
    let status: serde_json::Value =
        serde_json::from_slice(&jfs(&["status", &v.meta]).stdout).unwrap();
    assert_eq!(status["setting"]["name"], "badinput");
    assert!(
        !std::path::Path::new(&missing).exists(),
        "a failed command created {missing}"
    );

    // Already mounted; busy umount.
    v.mount(&[]);
    let out = v.try_mount(&[]);
    assert_clean_failure(&out, "already mounted");
    // A second mount of the embedded store elsewhere: the daemon fails and
    // its reason reaches the command.
    let other = v.dir.path().join("m2");
    std::fs::create_dir(&other).unwrap();
    let other = other.display().to_string();
    let log2 = v.dir.path().join("log2").display().to_string();
    let out = jfs(&[
        "mount",
        "-d",
        &v.meta,
        &other,
        "--log",
        &log2,
        "--cache-dir",
        &v.cache,
    ]);
    assert_clean_failure(&out, "in use by another process");
    assert!(!mount::is_mount_point(std::path::Path::new(&other)));
    let busy = std::fs::File::open(v.path(".")).unwrap();
    let cwd_holder = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&v.mnt)
        .spawn()
        .unwrap();
    let out = jfs(&["umount", &mnt]);
    assert_clean_failure(&out, "Device or resource busy");
    assert!(stderr(&out).contains("lsof") || stderr(&out).contains("fuser"));
    assert!(v.is_mounted());
    let mut cwd_holder = cwd_holder;
    let _ = cwd_holder.kill();
    let _ = cwd_holder.wait();
    drop(busy);
    v.umount();
}

#[test]
fn force_umount_detaches_a_busy_mount() {
    let v = TestVolume::format("forceoff");
    v.mount(&[]);
    std::fs::write(v.path("f"), b"kept").unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&v.mnt)
        .spawn()
        .unwrap();
    let out = jfs(&["umount", "--force", &v.mnt_str()]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!v.is_mounted());
    // Wait for the detached mount's process to finish, then remount.
    for _ in 0..200 {
        if v.try_mount(&[]).status.success() {
            assert_eq!(std::fs::read(v.path("f")).unwrap(), b"kept");
            v.umount();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("could not remount after a forced umount");
}

#[test]
fn update_fstab_writes_a_line_mount_8_can_use() {
    let v = TestVolume::format("boot");
    let fstab = v.dir.path().join("fstab");
    std::fs::write(&fstab, "# existing\nUUID=abc / ext4 defaults 0 1\n").unwrap();
    let mnt = v.mnt_str();
    let out = std::process::Command::new(mount::JFS)
        .args([
            "mount",
            "-d",
            &v.meta,
            &mnt,
            "--update-fstab",
            "--cache-dir",
            &v.cache,
            "--log",
            &v.log,
            "--max-uploads",
            "7",
            "--writeback",
        ])
        .env("JFS_FSTAB", &fstab)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&fstab).unwrap();
    assert!(
        text.contains("UUID=abc / ext4"),
        "existing lines lost: {text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains(" jfs "))
        .expect("jfs line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[0], v.meta);
    assert_eq!(fields[1], mnt);
    assert_eq!(fields[2], "jfs");
    for opt in ["_netdev", "max-uploads=7", "writeback"] {
        assert!(
            fields[3].split(',').any(|o| o == opt),
            "{opt} missing: {line}"
        );
    }
    assert_eq!(
        std::fs::read_link("/sbin/mount.jfs").unwrap(),
        std::path::Path::new(mount::JFS).canonicalize().unwrap()
    );
    v.umount();

    // mount(8) with the alternative fstab runs /sbin/mount.jfs.
    let out = std::process::Command::new("mount")
        .args(["-T", &fstab.display().to_string(), &mnt])
        .output()
        .unwrap();
    assert!(out.status.success(), "mount(8) failed: {}", stderr(&out));
    assert!(v.is_mounted());
    std::fs::write(v.path("viafstab"), b"ok").unwrap();
    v.umount();
}

#[test]
fn sqlite3_volume_mounts_and_reads_back_after_remount() {
    let dir = tempfile::Builder::new()
        .prefix("jfs")
        .tempdir_in("/tmp")
        .unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let meta = format!("sqlite3://{}", p("vol.db"));
    let (mnt, other) = (p("m"), p("m2"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&other).unwrap();
    let mount = |at: &str| {
        jfs(&[
            "mount",
            "-d",
            &meta,
            at,
            "--cache-dir",
            &p("cache"),
            "--log",
            &p("log"),
        ])
    };
    assert_clean_failure(&mount(&mnt), "no volume at");
    let out = jfs(&["format", &meta, "lite", "--bucket", &p("data")]);
    assert!(out.status.success(), "format: {}", stderr(&out));
    let out = mount(&mnt);
    assert!(out.status.success(), "mount: {}", stderr(&out));
    let data = pattern(5 << 20, 3);
    std::fs::write(format!("{mnt}/f"), &data).unwrap();
    // One process at a time: a second mount says why it cannot.
    assert_clean_failure(&mount(&other), "in use by another jfs process");
    // status asks the mount that holds the database.
    let out = jfs(&["status", &meta]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    assert!(stdout(&out).contains("\"sessions\""), "{}", stdout(&out));
    let out = jfs(&["umount", &mnt]);
    assert!(out.status.success(), "umount: {}", stderr(&out));
    let out = mount(&mnt);
    assert!(out.status.success(), "remount: {}", stderr(&out));
    assert_eq!(std::fs::read(format!("{mnt}/f")).unwrap(), data);
    let out = jfs(&["umount", &mnt]);
    assert!(out.status.success(), "umount: {}", stderr(&out));
}

/// The value of the first metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
}

fn scrape(addr: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"));
    response
}

#[test]
fn metrics_endpoint_and_stats_show_a_live_mount() {
    let v = TestVolume::format("metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    v.mount(&["--metrics", &addr]);
    for i in 0..20 {
        std::fs::write(v.path(&format!("f{i}")), pattern(100_000, i as u8)).unwrap();
    }
    for i in 0..20 {
        assert_eq!(
            std::fs::read(v.path(&format!("f{i}"))).unwrap().len(),
            100_000
        );
    }
    let text = scrape(&addr);
    assert!(metric(&text, "jfs_fuse_op_seconds_count{op=\"create\"}") >= 20.0);
    assert!(metric(&text, "jfs_fuse_op_seconds_count{op=\"write\"}") >= 20.0);
    assert!(
        metric(
            &text,
            "jfs_fuse_op_seconds_bucket{op=\"create\",le=\"+Inf\"}"
        ) >= 20.0
    );
    assert!(metric(&text, "jfs_transactions_total") >= 40.0);
    assert!(metric(&text, "jfs_object_request_seconds_count{method=\"put\"}") >= 20.0);
    assert!(metric(&text, "jfs_object_bytes_total{direction=\"out\"}") >= 2_000_000.0);
    assert_eq!(
        metric(&text, "jfs_buffer_limit_bytes"),
        (300u64 << 20) as f64
    );
    // Uploads allowed at once: between the floor (4) and --max-uploads.
    let uploads = metric(&text, "jfs_upload_limit");
    assert!((4.0..=20.0).contains(&uploads), "upload limit {uploads}");
    // Within the default memory cache (64 MiB).
    let kept = metric(&text, "jfs_memory_cache_bytes");
    assert!(
        (0.0..=(64u64 << 20) as f64).contains(&kept),
        "memory cache {kept}"
    );
    metric(
        &text,
        "jfs_cache_requests_total{cache=\"memory\",result=\"hit\"}",
    );
    // A whole block written goes through a page buffer of its own, kept
    // for reuse once uploaded (or still in use).
    std::fs::write(v.path("whole"), pattern(8 << 20, 3)).unwrap();
    let text = scrape(&addr);
    let pages =
        metric(&text, "jfs_page_buffer_bytes") + metric(&text, "jfs_page_buffer_kept_bytes");
    assert!(pages >= (4u64 << 20) as f64, "page buffers {pages}");
    metric(&text, "jfs_transaction_conflicts_total");

    // `jfs stats`: a snapshot as JSON, and live lines while files are made.
    let out = jfs(&["stats", "--json", &v.mnt_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        snap["fuse"]["create"]["count"].as_u64().unwrap() >= 20,
        "{snap}"
    );
    assert!(
        snap["transactions"]["transactions"].as_u64().unwrap() >= 40,
        "{snap}"
    );
    let mnt = v.mnt.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            std::fs::write(mnt.join(format!("g{i}")), b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let out = jfs(&["stats", &v.mnt_str(), "--count", "3", "--interval", "0.3"]);
    writer.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three lines:\n{text}");
    assert!(
        lines[0].contains("fuse op/s") && lines[0].contains("txn/s"),
        "{text}"
    );
    let busy = lines[1..].iter().any(|l| {
        l.split_whitespace()
            .next()
            .and_then(|n| n.parse::<f64>().ok())
            > Some(0.0)
    });
    assert!(busy, "the lines show the writes going on:\n{text}");
    v.umount();

    // An address that cannot be served fails the mount, clearly.
    let out = v.try_mount(&["--metrics", "not-an-address"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--metrics not-an-address"),
        "{}",
        stderr(&out)
    );
    assert!(!v.is_mounted());
}

/// The files under `dir`, recursively: a local-directory store's objects.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| match e.file_type().unwrap().is_dir() {
            true => files_under(&e.path()),
            false => 1,
        })
        .sum()
}

#[test]
fn deleted_data_goes_soon_not_at_the_next_upkeep() {
    let v = TestVolume::format("reclaim");
    // Upkeep each minute: the reclaim asked for here comes from the delete.
    v.mount(&["--heartbeat", "12"]);
    let store = std::path::Path::new(&v.bucket);
    let before = files_under(store);
    std::fs::write(v.path("big"), pattern(9 << 20, 3)).unwrap();
    std::fs::write(v.path("small"), b"gone soon").unwrap();
    std::fs::write(v.path("kept"), b"stays").unwrap();
    let written = files_under(store);
    assert!(
        written >= before + 5,
        "{before} objects before, {written} after"
    );
    std::fs::remove_file(v.path("big")).unwrap();
    std::fs::remove_file(v.path("small")).unwrap();
    // Well inside the minute to the next upkeep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files_under(store) > before + 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        files_under(store),
        before + 1,
        "the deleted files' blocks are still stored"
    );
    assert_eq!(std::fs::read(v.path("kept")).unwrap(), b"stays");
    v.umount();
    v.fsck().unwrap();
}
