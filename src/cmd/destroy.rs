//! `jfs destroy`: deletes a volume, its objects and its metadata, after
//! confirmation, and never while a client has it mounted.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::{load_meta, open_storage, parse_meta_url, CmdError, CmdResult};
use jfs::kv::txn::ScanOpts;
use jfs::kv::KeyRange;

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// Metadata engine URL.
    pub meta_url: String,
    /// The volume's uuid (see `jfs status`), to be sure of the target.
    pub uuid: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// Keys deleted per transaction: inside every engine's limits.
const DELETE_BATCH: usize = 100;

pub fn run(args: DestroyArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = load_meta(&url).await?;
        let volume = meta.volume().clone();
        if volume.uuid != args.uuid {
            return Err(CmdError::new(format!(
                "{url} holds volume '{}' with uuid {}, not {}: check the uuid with `jfs status`",
                volume.name, volume.uuid, args.uuid
            )));
        }
        let now = jfs::meta::Timestamp::now().sec;
        let live: Vec<String> = meta
            .list_sessions()
            .await?
            .into_iter()
            .filter(|s| s.alive_at(now))
            .map(|s| match s.info {
                Some(i) => format!("{}:{} (pid {})", i.host, i.mount_point, i.pid),
                None => format!("session {}", s.sid),
            })
            .collect();
        if !live.is_empty() {
            return Err(CmdError::new(format!(
                "volume '{}' is mounted by {}: unmount it everywhere first",
                volume.name,
                live.join(", ")
            )));
        }
        if !args.yes {
            if !std::io::stdin().is_terminal() {
                return Err(CmdError::new(
                    "destroy deletes every file of the volume: confirm with --yes",
                ));
            }
            print!(
                "Destroy volume '{}' ({}) and all its data? Type its name to confirm: ",
                volume.name, volume.uuid
            );
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if answer.trim() != volume.name {
                return Err(CmdError::new("not confirmed; nothing was deleted"));
            }
        }
        let storage = open_storage(&volume)?;
        let mut objects = 0u64;
        loop {
            let page = storage.list("", None, 1000).await?;
            if page.is_empty() {
                break;
            }
            for o in page {
                storage.delete(&o.key).await?;
                objects += 1;
            }
        }
        let mut keys = 0u64;
        loop {
            let deleted = meta
                .db()
                .run("destroy", |tx| async move {
                    let page = tx
                        .scan(&KeyRange::prefix(b""), ScanOpts::limit(DELETE_BATCH))
                        .await?;
                    for (k, _) in &page.entries {
                        tx.delete(k.clone())?;
                    }
                    Ok(page.entries.len())
                })
                .await?;
            if deleted == 0 {
                break;
            }
            keys += deleted as u64;
        }
        meta.db().sync().await?;
        println!(
            "destroyed volume '{}': {objects} objects and {keys} metadata keys deleted",
            volume.name
        );
        Ok(())
    })
}
