//! `jfs dump` / `jfs load` (also `jfs-dump` and `jfs-dump load`): a volume's
//! metadata to a JSON file and back into an empty store on any engine.
//! Names ending in `.gz` are compressed. A load also takes the JSON that
//! `juicefs dump` writes: the volume then reads JuiceFS's objects in place.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::progress::Progress;
use super::{load_meta, open_db_with, parse_meta_url, CmdError, CmdResult};
use jfs::dump::load::{load, LoadOptions};
use jfs::dump::write::{dump, DumpOptions};

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Metadata engine URL of the volume.
    pub meta_url: String,
    /// Where to write the dump (`.gz`: compressed); standard output if
    /// absent or `-`.
    pub file: Option<PathBuf>,
    /// Keep the object storage's secret key in the dump.
    #[arg(long)]
    pub keep_secret_key: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Metadata engine URL of an empty store to load into.
    pub meta_url: String,
    /// The dump to load (jfs's or JuiceFS's; `.gz`: compressed); standard
    /// input if absent or `-`.
    pub file: Option<PathBuf>,
    /// Object storage access key to store (instead of the dump's).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Object storage secret key to store (dumps leave it out; SECRET_KEY
    /// fills it in where the dump says it was removed).
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

fn to_stdio(file: &Option<PathBuf>) -> bool {
    file.as_ref().is_none_or(|f| f.as_os_str() == "-")
}

pub fn run_dump(args: DumpArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let meta = load_meta(&url).await?;
        let started = std::time::Instant::now();
        let stdout = to_stdio(&args.file);
        // A dump is written beside its name and renamed when complete, so
        // a file by that name is always a whole dump.
        let partial = args.file.as_ref().filter(|_| !stdout).map(|f| {
            let mut p = f.clone().into_os_string();
            p.push(".partial");
            PathBuf::from(p)
        });
        let sink: Box<dyn Write> = match &partial {
            None => Box::new(std::io::stdout().lock()),
            Some(p) => Box::new(File::create(p).map_err(|e| {
                CmdError::new(format!("cannot create {}: {e}", p.display()))
            })?),
        };
        let gz = args.file.as_deref().is_some_and(is_gz);
        let mut out: Box<dyn Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                BufWriter::with_capacity(1 << 20, sink),
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(BufWriter::with_capacity(1 << 20, sink))
        };
        let total = meta.statfs().await.map(|s| s.used_inodes).unwrap_or(0);
        let mut progress = Progress::new("dumped", "entries", stdout && !args.json);
        let options = DumpOptions {
            keep_secret_key: args.keep_secret_key,
        };
        let stats = dump(&meta, &mut *out, &options, &mut |n| progress.update(n, total))
            .await
            .map_err(|e| CmdError::new(format!("dump of {url}: {e}")))?;
        drop(out);
        progress.finish(stats.entries);
        if let (Some(p), Some(f)) = (&partial, &args.file) {
            std::fs::rename(p, f)
                .map_err(|e| CmdError::new(format!("cannot rename {}: {e}", p.display())))?;
        }
        let summary = json!({
            "entries": stats.entries,
            "dangling_entries": stats.dangling,
            "seconds": started.elapsed().as_secs_f64(),
            "file": args.file,
        });
        if args.json {
            println!("{summary}");
        }
        if stats.dangling > 0 {
            eprintln!(
                "warning: {} entries point to missing inodes and were left out: run `jfs fsck {url}`",
                stats.dangling
            );
        }
        Ok(())
    })
}

pub fn run_load(args: LoadArgs) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let input: Box<dyn Read + Send> = match args.file.as_ref().filter(|f| f.as_os_str() != "-") {
        None => Box::new(std::io::stdin()),
        Some(path) => {
            let file = File::open(path)
                .map_err(|e| CmdError::new(format!("cannot open {}: {e}", path.display())))?;
            if is_gz(path) {
                Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                    file,
                )))
            } else {
                Box::new(file)
            }
        }
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let db = open_db_with(&url, true).await?;
        let started = std::time::Instant::now();
        let mut progress = Progress::new("loaded", "entries", args.json);
        let options = LoadOptions {
            access_key: args.access_key.clone(),
            secret_key: args.secret_key.clone(),
            removed_secret_key: std::env::var("SECRET_KEY").ok(),
        };
        let stats = load(db.clone(), input, options, &mut |n, total| {
            progress.update(n, total)
        })
        .await
        .map_err(|e| CmdError::new(format!("load into {url}: {e}")))?;
        db.sync().await?;
        progress.finish(stats.entries);
        for note in &stats.notes {
            eprintln!("note: {note}");
        }
        if args.json {
            println!(
                "{}",
                json!({
                    "entries": stats.entries,
                    "inodes": stats.inodes,
                    "slices": stats.slices,
                    "from_juicefs": stats.from_juicefs,
                    "seconds": started.elapsed().as_secs_f64(),
                })
            );
        } else if stats.from_juicefs {
            eprintln!(
                "loaded a JuiceFS volume: its {} slices are read in place from its bucket",
                stats.slices
            );
        }
        Ok(())
    })
}
