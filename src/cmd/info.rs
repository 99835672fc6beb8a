//! `jfs info PATH`: inode, size, slices and objects of a file in a mount,
//! answered by the mount process that serves it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{mount_entry, print_json, registry, CmdError, CmdResult};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A file or directory inside a jfs mount.
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A jfs mount point (or a path inside one).
    pub path: PathBuf,
}

/// `jfs stats PATH`: what the mount process counted (transactions, their
/// retries and conflicts).
pub fn stats(args: StatsArgs) -> CmdResult<()> {
    let path = std::fs::canonicalize(&args.path)
        .map_err(|e| CmdError::new(format!("{}: {e}", args.path.display())))?;
    let mount = mount_of(&path)
        .ok_or_else(|| CmdError::new(format!("{} is not inside a jfs mount", path.display())))?;
    print_json(&registry::ask(&mount, &serde_json::json!({"op": "stats"}))?);
    Ok(())
}

/// The jfs mount point `path` is under.
fn mount_of(path: &Path) -> Option<PathBuf> {
    let mut at = Some(path);
    while let Some(p) = at {
        if mount_entry(p).is_some_and(|m| m.is_jfs()) {
            return Some(p.to_path_buf());
        }
        at = p.parent();
    }
    None
}

pub fn run(args: InfoArgs) -> CmdResult<()> {
    let path = std::fs::canonicalize(&args.path)
        .map_err(|e| CmdError::new(format!("{}: {e}", args.path.display())))?;
    let mount = mount_of(&path)
        .ok_or_else(|| CmdError::new(format!("{} is not inside a jfs mount", path.display())))?;
    let stat = std::fs::symlink_metadata(&path)?;
    let record = registry::read_record(&mount).ok_or_else(|| {
        CmdError::new(format!("no running jfs process serves {}", mount.display()))
    })?;
    let request = serde_json::json!({"op": "info", "ino": stat.ino()});
    let mut answer = registry::ask(&mount, &request)?;
    if let Some(obj) = answer.as_object_mut() {
        obj.insert("path".into(), path.display().to_string().into());
        obj.insert("volume".into(), record.volume.into());
    }
    print_json(&answer);
    Ok(())
}
