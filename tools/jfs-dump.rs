//! `jfs-dump META_URL [FILE]`: a volume's metadata as JSON;
//! `jfs-dump load META_URL [FILE]`: a dump (jfs's or JuiceFS's) into an
//! empty store. The same code as `jfs dump` and `jfs load`.

use clap::Parser;
use jfs::cmd;

#[derive(Parser)]
#[command(
    name = "jfs-dump",
    version,
    about = "Dump a jfs volume's metadata as JSON"
)]
struct DumpCli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: cmd::dump::DumpArgs,
}

#[derive(Parser)]
#[command(
    name = "jfs-dump load",
    version,
    about = "Load a dump (jfs's or JuiceFS's) into an empty metadata store"
)]
struct LoadCli {
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: cmd::dump::LoadArgs,
}

fn main() {
    jfs::tune_allocator();
    let mut argv: Vec<String> = std::env::args().collect();
    let result = if argv.get(1).map(String::as_str) == Some("load") {
        argv.remove(1);
        let cli = LoadCli::parse_from(argv);
        cmd::init_logging(cli.verbose, false, false);
        cmd::dump::run_load(cli.args)
    } else {
        let cli = DumpCli::parse_from(argv);
        cmd::init_logging(cli.verbose, false, false);
        cmd::dump::run_dump(cli.args)
    };
    if let Err(e) = result {
        cmd::fail("jfs-dump", e);
    }
}
