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

    /// `jfs fsck` of the (unmounted) volume: Ok when it finds nothing,
    /// else its report.
    pub fn fsck(&self) -> Result<(), String> {
        let out = jfs(&["fsck", &self.meta]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "fsck found problems:\n{}{}",
                stdout(&out),
                stderr(&out)
            ))
        }
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

/// A listing of the tree under `root` that two copies of a volume share
/// exactly: per entry (sorted by path) its type, mode, owner, size,
/// content checksum, symlink target, extended attributes, and for a
/// second name of a file the first name it shares its inode with.
pub fn tree_digest(root: &Path) -> String {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut first_name: HashMap<u64, String> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        if rel.as_os_str().is_empty() {
            // JuiceFS's virtual files at its root.
            names.retain(|n| {
                ![".accesslog", ".config", ".stats", ".trash"].contains(&n.to_str().unwrap_or(""))
            });
        }
        for name in names.into_iter().rev() {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let shown = rel.display().to_string();
            let mut line = format!(
                "{shown:?} mode {:o} uid {} gid {} xattrs {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                xattrs(&path)
            );
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(rel.clone());
            } else if ft.is_symlink() {
                line += &format!(" -> {:?}", std::fs::read_link(&path).expect("readlink"));
            } else if ft.is_file() {
                match first_name.get(&m.ino()) {
                    Some(first) => line += &format!(" same file as {first:?}"),
                    None => {
                        let data = std::fs::read(&path).expect("read");
                        line += &format!(
                            " nlink {} size {} crc {:08x}",
                            m.nlink(),
                            data.len(),
                            crc32fast::hash(&data)
                        );
                        first_name.insert(m.ino(), shown);
                    }
                }
            }
            lines.push(line);
        }
    }
    lines.sort();
    lines.join("\n")
}

/// Extended attributes of `path` (not following symlinks), sorted.
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = std::ffi::CString::new(name).expect("name");
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}

/// Sets extended attribute `name` of `path`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Fills `root` with a little of everything a volume holds: directories,
/// small, empty, multi-block and sparse files, a file rewritten in the
/// middle, hard links, symlinks, a fifo, odd names, owners, modes and
/// extended attributes. `xattr`: whether the mount takes them.
pub fn populate(root: &Path, xattr: bool) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};
    let p = |rel: &str| root.join(rel);
    std::fs::create_dir_all(p("dir/sub/deeper")).unwrap();
    std::fs::write(p("dir/small"), b"hello\n").unwrap();
    std::fs::write(p("dir/empty"), b"").unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let big: Vec<u8> = (0..9_500_000).map(|_| rng.u8(..)).collect();
    std::fs::write(p("dir/sub/big"), &big).unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(p("dir/sub/big"))
            .unwrap();
        f.seek(SeekFrom::Start(4_000_000)).unwrap();
        f.write_all(&[0xAB; 300_000]).unwrap();
        let sparse = std::fs::File::create(p("dir/sparse")).unwrap();
        sparse.set_len(70 << 20).unwrap();
        let mut sparse = sparse;
        sparse.seek(SeekFrom::Start(66 << 20)).unwrap();
        sparse.write_all(b"far away").unwrap();
    }
    for i in 0..40 {
        std::fs::write(
            p(&format!("dir/sub/deeper/f{i:02}")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    std::fs::hard_link(p("dir/small"), p("dir/sub/small-link")).unwrap();
    std::fs::hard_link(p("dir/small"), p("small-link2")).unwrap();
    symlink("dir/small", p("to-small")).unwrap();
    symlink("/nowhere/at all", p("dir/dangling-link")).unwrap();
    let fifo = std::ffi::CString::new(p("dir/fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    std::fs::write(p("dir/100% \"odd\" \\ name\u{1}"), b"odd").unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        b"bytes",
    )
    .unwrap();
    std::fs::set_permissions(p("dir/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(p("dir/small"), std::fs::Permissions::from_mode(0o4711)).unwrap();
    std::os::unix::fs::lchown(p("dir/sub/deeper/f01"), Some(1234), Some(5678)).unwrap();
    if xattr {
        set_xattr(&p("dir/small"), "user.tag", b"v\x00\xff%");
        set_xattr(&p("dir"), "user.dir", b"on a directory");
    }
}
