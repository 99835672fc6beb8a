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
    /// Print one snapshot of every counter as JSON and exit.
    #[arg(long)]
    pub json: bool,
    /// Lines to print before exiting (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Seconds between lines.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// `jfs stats PATH`: what the mount process counts, live: one line per
/// interval of FUSE operations and their latency, transactions, retries
/// and conflicts, object requests and bytes, cache hits and buffer use
/// (`--json`: every counter once).
pub fn stats(args: StatsArgs) -> CmdResult<()> {
    let path = std::fs::canonicalize(&args.path)
        .map_err(|e| CmdError::new(format!("{}: {e}", args.path.display())))?;
    let mount = mount_of(&path)
        .ok_or_else(|| CmdError::new(format!("{} is not inside a jfs mount", path.display())))?;
    let ask = || registry::ask(&mount, &serde_json::json!({"op": "stats"}));
    if args.json {
        print_json(&ask()?);
        return Ok(());
    }
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        return Err(CmdError::new(
            "--interval must be a positive number of seconds",
        ));
    }
    let interval = std::time::Duration::from_secs_f64(args.interval);
    let mut before = ask()?;
    let mut at = std::time::Instant::now();
    let mut lines = 0u64;
    loop {
        std::thread::sleep(interval);
        let now = ask()?;
        let dt = at.elapsed().as_secs_f64().max(1e-3);
        at = std::time::Instant::now();
        if lines.is_multiple_of(20) {
            println!(
                "{:>9} {:>8} | {:>8} {:>7} {:>9} | {:>7} {:>7} {:>8} {:>8} | {:>6} {:>8}",
                "fuse op/s",
                "lat ms",
                "txn/s",
                "retry/s",
                "conflict/s",
                "get/s",
                "put/s",
                "in MiB/s",
                "out MiB/s",
                "hit %",
                "buf MiB"
            );
        }
        println!("{}", stats_line(&before, &now, dt));
        lines += 1;
        before = now;
        if args.count > 0 && lines >= args.count {
            return Ok(());
        }
    }
}

/// One line of `jfs stats`: rates between two snapshots `dt` seconds apart.
fn stats_line(a: &serde_json::Value, b: &serde_json::Value, dt: f64) -> String {
    let num = |v: &serde_json::Value, path: &[&str]| -> f64 {
        path.iter()
            .try_fold(v, |v, k| v.get(k))
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let delta = |path: &[&str]| num(b, path) - num(a, path);
    let fuse_sum = |v: &serde_json::Value, field: &str| -> f64 {
        v.get("fuse")
            .and_then(|f| f.as_object())
            .map_or(0.0, |ops| {
                ops.values().filter_map(|o| o.get(field)?.as_f64()).sum()
            })
    };
    let ops = fuse_sum(b, "count") - fuse_sum(a, "count");
    let op_us = fuse_sum(b, "sum_us") - fuse_sum(a, "sum_us");
    let lookups = delta(&["cache", "memory_hits"]) + delta(&["cache", "memory_misses"]);
    let hits = delta(&["cache", "memory_hits"]) + delta(&["cache", "disk_hits"]);
    let mib = (1u64 << 20) as f64;
    format!(
        "{:>9.0} {:>8.3} | {:>8.0} {:>7.0} {:>9.0} | {:>7.0} {:>7.0} {:>8.1} {:>8.1} | {:>6} {:>8.1}",
        ops / dt,
        if ops > 0.0 { op_us / ops / 1000.0 } else { 0.0 },
        delta(&["transactions", "transactions"]) / dt,
        delta(&["transactions", "retries"]) / dt,
        delta(&["transactions", "conflicts"]) / dt,
        delta(&["objects", "get", "count"]) / dt,
        delta(&["objects", "put", "count"]) / dt,
        delta(&["object_bytes_in"]) / mib / dt,
        delta(&["object_bytes_out"]) / mib / dt,
        if lookups > 0.0 {
            format!("{:.0}", 100.0 * hits / lookups)
        } else {
            "-".into()
        },
        num(b, &["buffer_bytes"]) / mib,
    )
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
