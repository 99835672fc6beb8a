//! `jfs config`: changes the settings a volume may change after format.

use clap::Args;

use super::{load_meta, parse_meta_url, print_json, CmdError, CmdResult};
use jfs::meta::{keys, Volume};

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Metadata engine URL.
    pub meta_url: String,
    /// Space limit in GiB (0: unlimited).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Inode limit (0: unlimited).
    #[arg(long)]
    pub inodes: Option<u64>,
    /// Days deleted files stay in .trash (0: no trash).
    #[arg(long)]
    pub trash_days: Option<u32>,
    /// New object storage access key.
    #[arg(long)]
    pub access_key: Option<String>,
    /// New object storage secret key.
    #[arg(long)]
    pub secret_key: Option<String>,
}

pub fn run(args: ConfigArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = load_meta(&url).await?;
        let change = |v: &mut Volume| {
            if let Some(c) = args.capacity {
                v.capacity_bytes = c << 30;
            }
            if let Some(i) = args.inodes {
                v.inode_limit = i;
            }
            if let Some(t) = args.trash_days {
                v.trash_days = t;
            }
            if let Some(k) = &args.access_key {
                v.access_key = Some(k.clone()).filter(|k| !k.is_empty());
            }
            if let Some(k) = &args.secret_key {
                v.secret_key = Some(k.clone()).filter(|k| !k.is_empty());
            }
        };
        let updated = meta
            .db()
            .run("config", |tx| async move {
                let raw = tx.get(&keys::setting()).await?.ok_or_else(|| {
                    jfs::kv::KvError::Fatal("the volume record disappeared".into())
                })?;
                let mut volume = Volume::decode(&raw).map_err(jfs::kv::KvError::Fatal)?;
                change(&mut volume);
                tx.put(keys::setting(), volume.encode())?;
                Ok(volume)
            })
            .await
            .map_err(|e| CmdError::new(format!("cannot change the settings: {e}")))?;
        meta.db().sync().await?;
        print_json(&updated.redacted());
        Ok(())
    })
}
