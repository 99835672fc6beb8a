//! `jfs fsck` (also `jfs-fsck`): checks a volume and, with `--repair`,
//! fixes what is safe. Exit 0 when nothing is left wrong, 1 otherwise.

use clap::Args;

use super::progress::Progress;
use super::{load_meta, open_storage, parse_meta_url, CmdError, CmdResult};
use jfs::fsck::{fsck, FsckOptions, Report};

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Metadata engine URL of the volume (not mounted when repairing).
    pub meta_url: String,
    /// Check only the subtree at this path of the volume (e.g. /data).
    #[arg(long)]
    pub path: Option<String>,
    /// Fix what is safe: counters, link counts, parents, directory stats,
    /// entries to missing inodes, unreachable inodes (into /lost+found),
    /// uploads of dead sessions, unreferenced objects older than the grace
    /// period.
    #[arg(long)]
    pub repair: bool,
    /// Skip listing object storage (missing and unreferenced blocks).
    #[arg(long)]
    pub no_objects: bool,
    /// Unreferenced objects younger than this many seconds are left alone.
    #[arg(long, default_value_t = 3600)]
    pub grace_secs: i64,
    /// Inodes held in memory per pass over the keys (bigger volumes take
    /// several passes; about 200 bytes each).
    #[arg(long, default_value_t = jfs::fsck::DEFAULT_INODES_PER_PASS)]
    pub inodes_per_pass: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the check; returns the exit code (0 clean, 1 problems remain).
pub fn run(args: FsckArgs) -> CmdResult<i32> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = load_meta(&url).await?;
        let objects = open_storage(meta.volume())?;
        let options = FsckOptions {
            path: args.path.clone(),
            repair: args.repair,
            check_objects: !args.no_objects,
            grace_secs: args.grace_secs,
            leaks_only: false,
            inodes_per_pass: args.inodes_per_pass,
        };
        let mut progress = Progress::new("fsck", "keys", args.json);
        let report = fsck(&meta, objects, &options, &mut |_, n| progress.update(n, 0))
            .await
            .map_err(|e| CmdError::new(format!("fsck of {url}: {e}")))?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            print_report(&report);
        }
        Ok(if report.remaining() == 0 { 0 } else { 1 })
    })
}

pub fn print_report(report: &Report) {
    for p in &report.details {
        let state = if p.repaired { " [repaired]" } else { "" };
        println!("{}: {}{state}", p.kind, p.what);
    }
    for (kind, (found, repaired)) in &report.counts {
        let shown = report.details.iter().filter(|p| p.kind == *kind).count() as u64;
        if *found > shown {
            println!("{kind}: {} more not shown", found - shown);
        }
        let _ = repaired;
    }
    let found: u64 = report.counts.values().map(|c| c.0).sum();
    let repaired: u64 = report.counts.values().map(|c| c.1).sum();
    println!(
        "checked {} inodes, {} entries, {} slices, {} objects: {found} problems, {repaired} repaired, {} left",
        report.inodes,
        report.entries,
        report.slices,
        report.objects,
        report.remaining()
    );
}
