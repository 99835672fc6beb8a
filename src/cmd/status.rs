//! `jfs status`: the volume's settings (secret removed) and its sessions.

use clap::Args;
use std::path::Path;

use super::registry;
use super::{load_meta, parse_meta_url, print_json, CmdResult};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Metadata engine URL.
    pub meta_url: String,
}

pub fn run(args: StatusArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    // The embedded engine admits one process: when a mount of this URL runs
    // here, ask it instead of opening the store.
    if matches!(
        url,
        jfs::kv::MetaUrl::Embedded { .. } | jfs::kv::MetaUrl::Sqlite { .. }
    ) {
        let shown = url.to_string();
        if let Some(rec) = registry::live_records()
            .into_iter()
            .find(|r| r.meta_url == shown)
        {
            let answer = registry::ask(
                Path::new(&rec.mount_point),
                &serde_json::json!({"op": "status"}),
            )?;
            print_json(&serde_json::json!({
                "setting": answer.get("volume"),
                "sessions": answer.get("sessions"),
            }));
            return Ok(());
        }
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = load_meta(&url).await?;
        let sessions = super::mount::sessions_json(&meta).await;
        print_json(&serde_json::json!({
            "setting": meta.volume().redacted(),
            "sessions": sessions,
        }));
        Ok(())
    })
}
