//! Two `jfs mount` processes of one volume whose metadata is on the etcd
//! cluster (JFS_TEST_ETCD, started by ci/test.sh): close-to-open between
//! them, names appearing and disappearing, creates from both in one
//! directory, and both sessions in `jfs status`. Ignored when no cluster is
//! given.

mod mount;

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use mount::{jfs, stderr};

/// The kernel entry cache timeout of the mounts (the default).
const ENTRY_CACHE: Duration = Duration::from_secs(1);

struct Shared {
    dir: tempfile::TempDir,
    meta: String,
    mounts: Vec<PathBuf>,
}

impl Shared {
    fn new(cluster: &str, name: &str) -> Result<Shared, Failed> {
        let dir = tempfile::Builder::new().prefix("jfs").tempdir_in("/tmp")?;
        let meta = format!(
            "{}/{name}-{:08x}",
            cluster.trim_end_matches('/'),
            fastrand::u32(..)
        );
        let bucket = dir.path().join("data").display().to_string();
        let out = jfs(&[
            "format",
            &meta,
            name,
            "--bucket",
            &bucket,
            "--trash-days",
            "0",
        ]);
        if !out.status.success() {
            return Err(format!("format: {}", stderr(&out)).into());
        }
        let mut shared = Shared {
            dir,
            meta,
            mounts: Vec::new(),
        };
        for host in ["a", "b"] {
            let mnt = shared.dir.path().join(host);
            std::fs::create_dir(&mnt)?;
            let p = |s: &str| {
                shared
                    .dir
                    .path()
                    .join(format!("{host}-{s}"))
                    .display()
                    .to_string()
            };
            let out = jfs(&[
                "mount",
                "-d",
                &shared.meta,
                &mnt.display().to_string(),
                "--cache-dir",
                &p("cache"),
                "--log",
                &p("log"),
            ]);
            if !out.status.success() {
                return Err(format!("mount {host}: {}", stderr(&out)).into());
            }
            shared.mounts.push(mnt);
        }
        Ok(shared)
    }

    fn a(&self) -> &Path {
        &self.mounts[0]
    }

    fn b(&self) -> &Path {
        &self.mounts[1]
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = jfs(&["umount", &m.display().to_string()]);
        }
    }
}

fn check(ok: bool, what: &str) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn close_to_open(cluster: &str) -> Result<(), Failed> {
    let s = Shared::new(cluster, "shared-c2o")?;
    let (a, b) = (s.a(), s.b());
    std::fs::write(a.join("f"), b"first")?;
    check(
        std::fs::read(b.join("f"))? == b"first",
        "B does not see A's file",
    )?;
    let long = vec![b'L'; 3 << 20];
    std::fs::write(a.join("f"), &long)?;
    check(
        std::fs::read(b.join("f"))? == long,
        "B does not see A's longer content",
    )?;
    std::fs::write(a.join("f"), b"short")?;
    check(
        std::fs::read(b.join("f"))? == b"short",
        "B does not see A's truncation",
    )?;
    std::fs::write(b.join("f"), b"from b")?;
    check(
        std::fs::read(a.join("f"))? == b"from b",
        "A does not see B's write",
    )?;

    std::fs::remove_file(a.join("f"))?;
    std::thread::sleep(ENTRY_CACHE + Duration::from_millis(500));
    check(!b.join("f").exists(), "the unlinked name stays on B")?;

    let status: serde_json::Value = serde_json::from_slice(&jfs(&["status", &s.meta]).stdout)?;
    let sessions = status["sessions"]
        .as_array()
        .ok_or("no sessions in status")?;
    check(sessions.len() == 2, "status should show both mounts")?;
    Ok(())
}

fn creates_from_both_mounts(cluster: &str) -> Result<(), Failed> {
    const EACH: usize = 200;
    let s = Shared::new(cluster, "shared-creates")?;
    std::fs::create_dir(s.a().join("d"))?;
    std::thread::scope(|scope| {
        let workers: Vec<_> = s
            .mounts
            .iter()
            .enumerate()
            .map(|(m, mnt)| {
                scope.spawn(move || -> std::io::Result<()> {
                    for i in 0..EACH {
                        std::fs::write(mnt.join("d").join(format!("{m}-{i}")), b"x")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "worker panicked")??;
        }
        Ok::<_, Failed>(())
    })?;
    std::thread::sleep(ENTRY_CACHE);
    for mnt in &s.mounts {
        let n = std::fs::read_dir(mnt.join("d"))?.count();
        check(
            n == 2 * EACH,
            &format!("{} lists {n} entries, want {}", mnt.display(), 2 * EACH),
        )?;
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let cluster = std::env::var("JFS_TEST_ETCD")
        .ok()
        .filter(|v| !v.is_empty());
    let skip = cluster.is_none();
    let cluster = cluster.unwrap_or_default();
    let c2 = cluster.clone();
    let trials = vec![
        Trial::test(
            "two_mount_processes_are_close_to_open_consistent",
            move || close_to_open(&cluster),
        )
        .with_ignored_flag(skip),
        Trial::test("creates_from_two_mount_processes_all_land", move || {
            creates_from_both_mounts(&c2)
        })
        .with_ignored_flag(skip),
    ];
    libtest_mimic::run(&args, trials).exit();
}
