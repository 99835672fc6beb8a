//! The `jfs` command (also run as `mount.jfs` by mount(8)).

use clap::{Parser, Subcommand};

use jfs::cmd::{self, CmdError, CmdResult};

/// jfs: a distributed POSIX file system with metadata in a transactional
/// key-value store and data in object storage.
#[derive(Parser)]
#[command(name = "jfs", version, about)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a volume (or, with --force, change an existing one's settings).
    Format(cmd::format::FormatArgs),
    /// Mount a volume.
    Mount(cmd::mount::MountArgs),
    /// Unmount a volume, waiting for its uploads.
    Umount(cmd::umount::UmountArgs),
    /// Show a volume's settings and sessions.
    Status(cmd::status::StatusArgs),
    /// Show the inode, slices and objects of a file in a mount.
    Info(cmd::info::InfoArgs),
    /// Show what a mount counted: transactions, retries, conflicts.
    Stats(cmd::info::StatsArgs),
    /// Change a volume's settings.
    Config(cmd::config::ConfigArgs),
    /// Delete a volume with all its data.
    Destroy(cmd::destroy::DestroyArgs),
    /// Measure a directory: big and small files, stat.
    Bench(cmd::bench::BenchArgs),
    /// Write a volume's metadata as JSON (JuiceFS's dump layout).
    Dump(cmd::dump::DumpArgs),
    /// Load a dump (jfs's or JuiceFS's) into an empty metadata store.
    Load(cmd::dump::LoadArgs),
    /// Check a volume; with --repair fix what is safe.
    Fsck(cmd::fsck::FsckArgs),
    /// Find (and with --delete remove) leaked objects; --compact files.
    Gc(cmd::gc::GcArgs),
}

fn run(cli: Cli) -> CmdResult<()> {
    match cli.command {
        Command::Format(a) => cmd::format::run(a),
        Command::Mount(a) => cmd::mount::run(a),
        Command::Umount(a) => cmd::umount::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Stats(a) => cmd::info::stats(a),
        Command::Config(a) => cmd::config::run(a),
        Command::Destroy(a) => cmd::destroy::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Dump(a) => cmd::dump::run_dump(a),
        Command::Load(a) => cmd::dump::run_load(a),
        Command::Fsck(a) => cmd::fsck::run(a).and_then(|code| {
            if code == 0 {
                Ok(())
            } else {
                Err(CmdError {
                    message: "problems remain (listed above)".into(),
                    code,
                })
            }
        }),
        Command::Gc(a) => cmd::gc::run(a),
    }
}

fn main() {
    jfs::tune_allocator();
    let argv: Vec<String> = std::env::args().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let argv = if invoked_as.as_deref() == Some("mount.jfs") {
        match cmd::fstab::helper_args(&argv) {
            Ok(a) => a,
            Err(e) => fail(e),
        }
    } else {
        argv
    };
    let _ = cmd::EFFECTIVE_ARGS.set(argv.clone());
    let cli = Cli::parse_from(argv);
    cmd::init_logging(
        cli.verbose,
        cli.quiet,
        matches!(cli.command, Command::Mount(_)),
    );
    if let Err(e) = run(cli) {
        fail(e);
    }
}

fn fail(e: CmdError) -> ! {
    cmd::fail("jfs", e)
}
