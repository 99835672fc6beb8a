//! `jfs-fsck META_URL`: checks a volume (and with `--repair` fixes what is
//! safe). The same code as `jfs fsck`.

use clap::Parser;
use jfs::cmd;

#[derive(Parser)]
#[command(
    name = "jfs-fsck",
    version,
    about = "Check a jfs volume and repair what is safe"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: cmd::fsck::FsckArgs,
}

fn main() {
    jfs::tune_allocator();
    let cli = Cli::parse();
    cmd::init_logging(cli.verbose, false, false);
    match cmd::fsck::run(cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => cmd::fail("jfs-fsck", e),
    }
}
