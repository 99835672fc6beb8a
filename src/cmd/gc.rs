//! `jfs gc`: finds objects nothing references and uploads left by dead
//! sessions, reports them (count and bytes), deletes them with
//! `--delete`, and compacts fragmented files with `--compact`.

use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::progress::Progress;
use super::{load_meta, open_storage, parse_meta_url, CmdError, CmdResult};
use jfs::data::DataStore;
use jfs::fsck::{fsck, FsckOptions};

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Metadata engine URL of the volume.
    pub meta_url: String,
    /// Delete the leaked objects and the stale uploads.
    #[arg(long)]
    pub delete: bool,
    /// Rewrite every chunk of several slices as one slice.
    #[arg(long)]
    pub compact: bool,
    /// Objects younger than this many seconds are never deleted.
    #[arg(long, default_value_t = 3600)]
    pub grace_secs: i64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: GcArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = Arc::new(load_meta(&url).await?);
        let objects = open_storage(meta.volume())?;
        let options = FsckOptions {
            path: None,
            repair: args.delete,
            check_objects: true,
            grace_secs: args.grace_secs,
            leaks_only: true,
            inodes_per_pass: 0,
        };
        let mut progress = Progress::new("gc", "keys", args.json);
        let report = fsck(&meta, objects.clone(), &options, &mut |_, n| {
            progress.update(n, 0)
        })
        .await
        .map_err(|e| CmdError::new(format!("gc of {url}: {e}")))?;
        let count = |kind: &str| report.counts.get(kind).copied().unwrap_or((0, 0));
        let leaked = count("object nothing references");
        let pending = count("upload pending for a dead session");
        let mut compacted = 0u64;
        if args.compact {
            let data = DataStore::new(meta.clone(), objects, 20, 64 << 20)
                .map_err(|e| CmdError::new(format!("{e}")))?;
            for (ino, index) in &report.fragmented {
                if data
                    .compact_chunk(*ino, *index)
                    .await
                    .map_err(|e| CmdError::new(format!("compaction of inode {ino}: {e}")))?
                {
                    compacted += 1;
                }
            }
            // The slices compaction released are deleted now, not at the
            // next mount.
            data.reclaim()
                .await
                .map_err(|e| CmdError::new(format!("reclaim: {e}")))?;
        }
        let summary = json!({
            "objects_listed": report.objects,
            "leaked_objects": report.leaked_objects,
            "leaked_bytes": report.leaked_bytes,
            "leaked_objects_deleted": leaked.1,
            "stale_uploads": pending.0,
            "stale_uploads_deleted": pending.1,
            "fragmented_chunks": report.fragmented_chunks,
            "chunks_compacted": compacted,
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "{} objects listed; leaked: {} objects, {} bytes ({} deleted); uploads of dead sessions: {} ({} cleaned); fragmented chunks: {} ({} compacted)",
                report.objects,
                report.leaked_objects,
                report.leaked_bytes,
                leaked.1,
                pending.0,
                pending.1,
                report.fragmented_chunks,
                compacted
            );
            if !args.delete && (report.leaked_objects > 0 || pending.0 > 0) {
                println!("run with --delete to delete them (objects younger than {} s are kept)", args.grace_secs);
            }
        }
        Ok(())
    })
}
