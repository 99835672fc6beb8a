//! `jfs umount`: unmounts a jfs mount point and waits until its process
//! has finished the uploads it still holds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::{is_root, mount_entry, registry, CmdError, CmdResult};

#[derive(Args, Debug)]
pub struct UmountArgs {
    pub mount_point: PathBuf,
    /// Detach now even if busy (lazy unmount: files still open keep
    /// working until closed).
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(args: UmountArgs) -> CmdResult<()> {
    let path = std::fs::canonicalize(&args.mount_point).unwrap_or(args.mount_point.clone());
    match mount_entry(&path) {
        Some(m) if m.is_jfs() => {}
        Some(m) => {
            return Err(CmdError::new(format!(
                "{} is a {} mount of {}, not jfs: use umount(8)",
                path.display(),
                m.fs_type,
                m.source
            )))
        }
        None => {
            return Err(CmdError::new(format!(
                "{} is not a mount point",
                path.display()
            )))
        }
    }
    let record = registry::read_record(&path);
    unmount(&path, args.force)?;
    if let Some(rec) = record {
        wait_for_exit(rec.pid, &path);
    }
    println!("unmounted {}", path.display());
    Ok(())
}

fn unmount(path: &std::path::Path, force: bool) -> CmdResult<()> {
    let busy = || {
        CmdError::new(format!(
            "cannot unmount {}: Device or resource busy. Some program has files open there: \
             find it with `lsof +f -- {}` or `fuser -vm {}`, close them and retry, \
             or detach anyway with `jfs umount --force`",
            path.display(),
            path.display(),
            path.display()
        ))
    };
    if is_root() {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| CmdError::new("mount point contains a NUL byte"))?;
        let flags = if force { libc::MNT_DETACH } else { 0 };
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                return Err(busy());
            }
            return Err(CmdError::new(format!(
                "cannot unmount {}: {e}",
                path.display()
            )));
        }
        return Ok(());
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if force {
        cmd.arg("-z");
    }
    let out = cmd
        .arg(path)
        .output()
        .map_err(|e| CmdError::new(format!("cannot run fusermount3 (install fuse3): {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        if msg.contains("busy") {
            return Err(busy());
        }
        return Err(CmdError::new(format!(
            "cannot unmount {}: {}",
            path.display(),
            msg.trim()
        )));
    }
    Ok(())
}

/// The mount process uploads what it still holds before it exits.
fn wait_for_exit(pid: u32, path: &std::path::Path) {
    let start = Instant::now();
    let mut next_note = Duration::from_secs(3);
    while registry::process_alive(pid) {
        if start.elapsed() >= next_note {
            eprintln!(
                "waiting for the jfs process of {} (pid {pid}) to finish its uploads...",
                path.display()
            );
            next_note += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
