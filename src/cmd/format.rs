//! `jfs format`: writes a new volume's record into the metadata engine
//! after checking its object storage.

use clap::Args;

use super::{
    default_bucket, open_db_with, open_storage, parse_meta_url, print_json, CmdError, CmdResult,
};
use jfs::meta::{validate_name, Meta, Volume};
use jfs::object::check_storage;

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Metadata engine URL (a plain path is the embedded engine).
    pub meta_url: String,
    /// Volume name: 3-63 lowercase letters, digits and '-'.
    pub name: String,
    /// Object storage kind: file or s3.
    #[arg(long, default_value = "file")]
    pub storage: String,
    /// Bucket: a directory for file, a URL for s3
    /// (http://HOST:PORT/BUCKET or https://BUCKET.s3.REGION.amazonaws.com).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Object storage access key (stored in the volume; without it each host uses ACCESS_KEY from its environment).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Object storage secret key (stored in the volume; never printed).
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Block size in KiB (64 to 16384).
    #[arg(long, default_value_t = 4096)]
    pub block_size: u32,
    /// Block compression: none or zstd.
    #[arg(long, default_value = "none")]
    pub compress: String,
    /// Days deleted files stay in .trash (0: no trash).
    #[arg(long, default_value_t = 1)]
    pub trash_days: u32,
    /// Space limit in GiB (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub capacity: u64,
    /// Inode limit (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub inodes: u64,
    /// Overwrite the settings of an existing volume, or take over a bucket
    /// that holds another volume.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: FormatArgs) -> CmdResult<()> {
    validate_name(&args.name).map_err(CmdError::new)?;
    if !(64..=16384).contains(&args.block_size) || !args.block_size.is_power_of_two() {
        return Err(CmdError::new(format!(
            "--block-size {} KiB is not allowed: use a power of two from 64 to 16384",
            args.block_size
        )));
    }
    if jfs::data::block::Codec::parse(&args.compress).is_none() {
        return Err(CmdError::new(format!(
            "--compress {} is not known: use none or zstd",
            args.compress
        )));
    }
    let url = parse_meta_url(&args.meta_url)?;
    let bucket = match (&args.bucket, args.storage.as_str()) {
        (Some(b), _) => b.clone(),
        (None, "file") => default_bucket().display().to_string(),
        (None, other) => {
            return Err(CmdError::new(format!(
                "--storage {other} needs --bucket (for s3: http://HOST:PORT/BUCKET)"
            )))
        }
    };
    let bucket = if args.storage == "file" {
        std::path::absolute(&bucket)
            .map_err(|e| CmdError::new(format!("--bucket {bucket}: {e}")))?
            .display()
            .to_string()
    } else {
        bucket
    };
    let mut volume = Volume::new(&args.name, &args.storage, &bucket);
    volume.block_size_bytes = args.block_size << 10;
    volume.compression = args.compress.clone();
    volume.trash_days = args.trash_days;
    volume.capacity_bytes = args.capacity << 30;
    volume.inode_limit = args.inodes;
    volume.access_key = args.access_key.clone().filter(|k| !k.is_empty());
    volume.secret_key = args.secret_key.clone().filter(|k| !k.is_empty());

    let rt = super::runtime()?;
    rt.block_on(async {
        let db = open_db_with(&url, true).await?;
        for note in db.notes().await.unwrap_or_default() {
            eprintln!("{note}");
        }
        // An existing volume keeps its uuid (--force rewrites settings).
        if let Ok(existing) = Meta::load(db.clone()).await {
            if !args.force {
                let old = existing.volume();
                return Err(CmdError::new(format!(
                    "{url} already holds volume '{}' (uuid {}): mount it, or use --force to overwrite its settings",
                    old.name, old.uuid
                )));
            }
            volume.uuid = existing.volume().uuid.clone();
        }
        let storage = open_storage(&volume)?;
        check_storage(storage.as_ref(), &volume.uuid, args.force).await?;
        Meta::format(&db, &volume, args.force).await?;
        db.sync().await?;
        tracing::info!(meta = %url, storage = %storage.describe(), "volume formatted");
        print_json(&volume.redacted());
        Ok(())
    })
}
