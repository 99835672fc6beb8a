//! The `jfs` command (also run as `mount.jfs` by mount(8)).

mod cmd;

use clap::{Parser, Subcommand};

use cmd::{CmdError, CmdResult};

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
}

/// A mount logs at info; one-shot commands print their result and their
/// error line, and log only with -v.
fn init_logging(verbose: u8, quiet: bool, mount: bool) {
    use std::io::IsTerminal;
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) if !mount => "off",
        // fjall narrates its own housekeeping at info.
        (false, 0) => "info,fjall=warn",
        (false, 1) => "debug,fjall=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("JFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
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
    init_logging(
        cli.verbose,
        cli.quiet,
        matches!(cli.command, Command::Mount(_)),
    );
    if let Err(e) = run(cli) {
        fail(e);
    }
}

fn fail(e: CmdError) -> ! {
    eprintln!("jfs: error: {}", e.message);
    std::process::exit(e.code);
}
