//! The `jfs` command.

use clap::Parser;

/// jfs: a distributed POSIX file system with metadata in a transactional
/// key-value store and data in object storage.
///
/// The metadata layer (the KV contract and its engines) is in place; the
/// commands that format and mount volumes are being built and are not in
/// this version.
#[derive(Parser)]
#[command(name = "jfs", version, about)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!(
        "jfs {}: no commands in this version yet; see `jfs --help`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
