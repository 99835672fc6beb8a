//! `jfs bench PATH`: the phases and report of `juicefs bench`, on any
//! directory: big files written and read in MiB/s, small files written,
//! read and stat'ed in files/s, with the time per file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::{is_root, CmdError, CmdResult};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Directory to run in (a work directory is made and removed there).
    pub path: PathBuf,
    /// I/O size in MiB.
    #[arg(long, default_value_t = 1)]
    pub block_size: u64,
    /// Size of each big file in MiB.
    #[arg(long, default_value_t = 1024)]
    pub big_file_size: u64,
    /// Size of each small file in KiB.
    #[arg(long, default_value_t = 128)]
    pub small_file_size: u64,
    /// Small files per thread.
    #[arg(long, default_value_t = 100)]
    pub small_file_count: usize,
    /// Threads; each writes its own big file and small files.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub threads: usize,
}

struct Phase {
    name: &'static str,
    /// MiB/s for big files, files/s for small ones.
    rate: f64,
    unit: &'static str,
    /// Seconds per file (per thread).
    cost: f64,
    cost_unit: &'static str,
}

/// Runs `work(thread)` on every thread at once; returns the wall time.
fn parallel<F>(threads: usize, work: F) -> CmdResult<f64>
where
    F: Fn(usize) -> std::io::Result<()> + Sync,
{
    let start = Instant::now();
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        for h in handles {
            h.join()
                .map_err(|_| CmdError::new("a benchmark thread failed"))?
                .map_err(|e| CmdError::new(format!("benchmark I/O failed: {e}")))?;
        }
        Ok::<_, CmdError>(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// As root, drops the kernel's page cache so reads reach the file system.
fn drop_caches() {
    if is_root() {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    }
}

pub fn run(args: BenchArgs) -> CmdResult<()> {
    if !args.path.is_dir() {
        return Err(CmdError::new(format!(
            "{} is not a directory",
            args.path.display()
        )));
    }
    let threads = args.threads.max(1);
    let work = args
        .path
        .join(format!("__jfs_benchmark_{}__", std::process::id()));
    std::fs::create_dir(&work)
        .map_err(|e| CmdError::new(format!("cannot create {}: {e}", work.display())))?;
    let result = phases(&args, threads, &work);
    let _ = std::fs::remove_dir_all(&work);
    let phases = result?;
    println!(
        "Benchmark: {threads} thread(s), {} big file(s) of {} MiB, {} small files of {} KiB, I/O size {} MiB",
        threads,
        args.big_file_size,
        args.small_file_count * threads,
        args.small_file_size,
        args.block_size
    );
    println!("+------------------+------------------+-----------------+");
    println!("|       ITEM       |      VALUE       |      COST       |");
    println!("+------------------+------------------+-----------------+");
    for p in phases {
        println!(
            "| {:>16} | {:>16} | {:>15} |",
            p.name,
            format!("{:.2} {}", p.rate, p.unit),
            format!("{:.2} {}", p.cost, p.cost_unit)
        );
    }
    println!("+------------------+------------------+-----------------+");
    Ok(())
}

fn phases(args: &BenchArgs, threads: usize, work: &Path) -> CmdResult<Vec<Phase>> {
    let bs = (args.block_size.max(1) << 20) as usize;
    let big = args.big_file_size << 20;
    let small = (args.small_file_size << 10) as usize;
    let count = args.small_file_count;
    let buf: Vec<u8> = (0..bs).map(|i| (i * 7 + 13) as u8).collect();
    let mut out = Vec::new();

    if big > 0 {
        let t = parallel(threads, |th| {
            let mut f = std::fs::File::create(work.join(format!("big.{th}")))?;
            let mut left = big;
            while left > 0 {
                let n = left.min(bs as u64) as usize;
                f.write_all(&buf[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })?;
        let mib = (big >> 20) as f64 * threads as f64;
        out.push(Phase {
            name: "Write big file",
            rate: mib / t,
            unit: "MiB/s",
            cost: t,
            cost_unit: "s/file",
        });
        drop_caches();
        let t = parallel(threads, |th| {
            let mut f = std::fs::File::open(work.join(format!("big.{th}")))?;
            let mut b = vec![0u8; bs];
            while f.read(&mut b)? > 0 {}
            Ok(())
        })?;
        out.push(Phase {
            name: "Read big file",
            rate: mib / t,
            unit: "MiB/s",
            cost: t,
            cost_unit: "s/file",
        });
    }
    if count > 0 {
        let files = (count * threads) as f64;
        let t = parallel(threads, |th| {
            for i in 0..count {
                let mut f = std::fs::File::create(work.join(format!("small.{th}.{i}")))?;
                let mut left = small;
                while left > 0 {
                    let n = left.min(bs);
                    f.write_all(&buf[..n])?;
                    left -= n;
                }
                f.sync_all()?;
            }
            Ok(())
        })?;
        out.push(Phase {
            name: "Write small file",
            rate: files / t,
            unit: "files/s",
            cost: t * 1000.0 / count as f64,
            cost_unit: "ms/file",
        });
        drop_caches();
        let t = parallel(threads, |th| {
            let mut b = Vec::with_capacity(small);
            for i in 0..count {
                b.clear();
                std::fs::File::open(work.join(format!("small.{th}.{i}")))?.read_to_end(&mut b)?;
            }
            Ok(())
        })?;
        out.push(Phase {
            name: "Read small file",
            rate: files / t,
            unit: "files/s",
            cost: t * 1000.0 / count as f64,
            cost_unit: "ms/file",
        });
        let t = parallel(threads, |th| {
            for i in 0..count {
                std::fs::metadata(work.join(format!("small.{th}.{i}")))?;
            }
            Ok(())
        })?;
        out.push(Phase {
            name: "Stat file",
            rate: files / t,
            unit: "files/s",
            cost: t * 1000.0 / count as f64,
            cost_unit: "ms/file",
        });
    }
    Ok(out)
}
