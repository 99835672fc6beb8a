//! Boot-time mounts: `jfs mount --update-fstab` writes the mount into
//! /etc/fstab and installs `/sbin/mount.jfs`, through which mount(8) runs
//! `jfs mount --background` with the `-o` options turned back into flags.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::mount::MountArgs;
use super::{CmdError, CmdResult};

/// fstab to edit; tests point `JFS_FSTAB` elsewhere.
fn fstab_path() -> PathBuf {
    std::env::var_os("JFS_FSTAB").map_or_else(|| PathBuf::from("/etc/fstab"), PathBuf::from)
}

/// Where mount(8) looks for the helper of type `jfs`.
const MOUNT_HELPER: &str = "/sbin/mount.jfs";

#[derive(Parser)]
struct MountOnly {
    #[command(flatten)]
    args: MountArgs,
}

/// The `-o` options that reproduce `args` (flags left at their defaults
/// are not written).
fn options(args: &MountArgs) -> Vec<String> {
    let d = MountOnly::parse_from(["mount", "x", "/"]).args;
    let mut o = vec!["_netdev".to_string()];
    let mut value = |name: &str, v: String, default: String| {
        if v != default {
            o.push(format!("{name}={v}"));
        }
    };
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    value("log", path(&args.log), path(&d.log));
    value("cache-dir", path(&args.cache_dir), path(&d.cache_dir));
    value(
        "cache-size",
        args.cache_size.to_string(),
        d.cache_size.to_string(),
    );
    value(
        "free-space-ratio",
        args.free_space_ratio.to_string(),
        d.free_space_ratio.to_string(),
    );
    value(
        "max-uploads",
        args.max_uploads.to_string(),
        d.max_uploads.to_string(),
    );
    value(
        "buffer-size",
        args.buffer_size.to_string(),
        d.buffer_size.to_string(),
    );
    value(
        "attr-cache",
        args.attr_cache.to_string(),
        d.attr_cache.to_string(),
    );
    value(
        "entry-cache",
        args.entry_cache.to_string(),
        d.entry_cache.to_string(),
    );
    value(
        "dir-entry-cache",
        args.dir_entry_cache.to_string(),
        d.dir_entry_cache.to_string(),
    );
    value(
        "subdir",
        args.subdir.clone().unwrap_or_default(),
        String::new(),
    );
    value(
        "heartbeat",
        args.heartbeat.to_string(),
        d.heartbeat.to_string(),
    );
    value(
        "fuse-threads",
        args.fuse_threads.to_string(),
        d.fuse_threads.to_string(),
    );
    for (on, name) in [
        (args.writeback, "writeback"),
        (args.read_only, "read-only"),
        (args.allow_other, "allow-other"),
        (args.enable_xattr, "enable-xattr"),
    ] {
        if on {
            o.push(name.to_string());
        }
    }
    o
}

/// fstab fields are separated by blanks: those inside one are escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// Writes (or replaces) the fstab line of `args.mount_point`, atomically,
/// and installs the mount helper.
pub fn update(args: &MountArgs) -> CmdResult<()> {
    let fstab = fstab_path();
    let mount_point = escape(&args.mount_point.display().to_string());
    let line = format!(
        "{} {} jfs {} 0 0",
        escape(&args.meta_url),
        mount_point,
        options(args).join(",")
    );
    let old = std::fs::read_to_string(&fstab).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            l.trim_start().starts_with('#') || fields.get(1) != Some(&mount_point.as_str())
        })
        .map(str::to_string)
        .collect();
    lines.push(line);
    let tmp = fstab.with_extension("jfs-tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n")
        .and_then(|()| std::fs::rename(&tmp, &fstab))
        .map_err(|e| CmdError::new(format!("cannot update {}: {e}", fstab.display())))?;
    install_helper()?;
    println!("{} updated; mount(8) runs {MOUNT_HELPER}", fstab.display());
    Ok(())
}

fn install_helper() -> CmdResult<()> {
    let exe = std::env::current_exe()?;
    let helper = Path::new(MOUNT_HELPER);
    if std::fs::read_link(helper).ok().as_deref() == Some(exe.as_path()) {
        return Ok(());
    }
    let tmp = helper.with_extension("jfs-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp)
        .and_then(|()| std::fs::rename(&tmp, helper))
        .map_err(|e| CmdError::new(format!("cannot install {MOUNT_HELPER}: {e}")))
}

/// Options of mount(8) and fstab that are not jfs flags.
fn is_mount_option(o: &str) -> bool {
    matches!(
        o,
        "_netdev"
            | "defaults"
            | "rw"
            | "auto"
            | "noauto"
            | "nofail"
            | "user"
            | "users"
            | "nouser"
            | "owner"
            | "group"
            | "dev"
            | "nodev"
            | "suid"
            | "nosuid"
            | "exec"
            | "noexec"
            | "atime"
            | "noatime"
            | "relatime"
            | "sync"
            | "async"
            | "background"
    ) || o.starts_with("x-")
        || o.starts_with("comment=")
}

/// Turns `mount.jfs SOURCE DIR [-o OPTS] [-n -s -f -v]` into the
/// arguments of `jfs mount --background`.
pub fn helper_args(argv: &[String]) -> CmdResult<Vec<String>> {
    let mut positional = Vec::new();
    let mut out = vec![
        "jfs".to_string(),
        "mount".to_string(),
        "--background".to_string(),
    ];
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let opts = it
                    .next()
                    .ok_or_else(|| CmdError::new("mount.jfs: -o needs options"))?;
                for o in opts
                    .split(',')
                    .filter(|o| !o.is_empty() && !is_mount_option(o))
                {
                    let (name, value) = o.split_once('=').map_or((o, None), |(n, v)| (n, Some(v)));
                    let name = if name == "ro" { "read-only" } else { name };
                    out.push(format!("--{name}"));
                    if let Some(v) = value {
                        out.push(v.to_string());
                    }
                }
            }
            // mount(8)'s own switches: no mtab, sloppy, fake, verbose.
            "-n" | "-s" | "-f" | "-v" => {}
            other => positional.push(other.to_string()),
        }
    }
    if positional.len() != 2 {
        return Err(CmdError::new(
            "usage: mount.jfs META_URL MOUNTPOINT [-o OPTIONS]",
        ));
    }
    out.extend(positional);
    Ok(out)
}
