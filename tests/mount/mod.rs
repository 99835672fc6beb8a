//! Helpers for tests that drive the `jfs` binary against real FUSE mounts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const JFS: &str = env!("CARGO_BIN_EXE_jfs");

/// Runs `jfs ARGS` and returns its output.
pub fn jfs(args: &[&str]) -> Output {
    Command::new(JFS)
        .args(args)
        .env_remove("JFS_MOUNT_READY_FD")
        .output()
        .expect("run jfs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A volume on the embedded engine with local object storage, in a
/// temporary directory; unmounted (forcibly if needed) when dropped.
pub struct TestVolume {
    pub dir: tempfile::TempDir,
    pub meta: String,
    pub bucket: String,
    pub mnt: PathBuf,
    pub cache: String,
    pub log: String,
}

impl TestVolume {
    /// Formats a fresh volume named `name`.
    pub fn format(name: &str) -> TestVolume {
        // A short path: pjdfstest binds UNIX sockets under the mount.
        let dir = tempfile::Builder::new()
            .prefix("jfs")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let p = |s: &str| dir.path().join(s).display().to_string();
        let v = TestVolume {
            meta: p("meta"),
            bucket: p("data"),
            mnt: dir.path().join("m"),
            cache: p("cache"),
            log: p("log"),
            dir,
        };
        std::fs::create_dir(&v.mnt).unwrap();
        let out = jfs(&[
            "format",
            &v.meta,
            name,
            "--bucket",
            &v.bucket,
            "--trash-days",
            "0",
        ]);
        assert!(out.status.success(), "format failed: {}", stderr(&out));
        v
    }

    pub fn mnt_str(&self) -> String {
        self.mnt.display().to_string()
    }

    /// `jfs mount -d` with extra flags; panics with the log if it fails.
    pub fn mount(&self, extra: &[&str]) {
        let out = self.try_mount(extra);
        assert!(
            out.status.success(),
            "mount failed: {}\nlog:\n{}",
            stderr(&out),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn try_mount(&self, extra: &[&str]) -> Output {
        let mnt = self.mnt_str();
        let mut args = vec![
            "mount",
            "-d",
            &self.meta,
            &mnt,
            "--cache-dir",
            &self.cache,
            "--log",
            &self.log,
        ];
        args.extend_from_slice(extra);
        jfs(&args)
    }

    pub fn umount(&self) {
        let out = jfs(&["umount", &self.mnt_str()]);
        assert!(out.status.success(), "umount failed: {}", stderr(&out));
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn is_mounted(&self) -> bool {
        is_mount_point(&self.mnt)
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = jfs(&["umount", "--force", &self.mnt_str()]);
        }
    }
}

pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}
