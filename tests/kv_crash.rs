//! Crash test of the embedded engine: a child process commits numbered
//! transactions and prints each number once its commit is acknowledged; it is
//! killed with SIGKILL at a random moment; reopening the store must find every
//! acknowledged commit. Repeated on the same store, so recovery of a store
//! that already went through crashes is covered too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jfs::kv::txn::ScanOpts;
use jfs::kv::{decode_counter, Db, DbOptions, KeyRange, MetaUrl};
use libtest_mimic::{Arguments, Failed, Trial};

const CHILD_ENV: &str = "JFS_KV_CRASH_CHILD_DIR";
const ROUNDS: usize = 4;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "kill9_keeps_every_acknowledged_commit",
        kill9_keeps_every_acknowledged_commit,
    )];
    libtest_mimic::run(&args, trials).exit();
}

fn open(dir: &Path) -> Db {
    let url = MetaUrl::parse(dir.to_str().expect("utf-8 path")).expect("url");
    Db::open(&url, DbOptions::default()).expect("open embedded store")
}

/// Commits transaction n = 1, 2, ... (continuing after what is stored),
/// each writing its own key and bumping a counter, and prints n after the
/// commit returns.
fn child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = open(dir);
        let start = db
            .run("last", |tx| async move {
                Ok(tx.get(b"count").await?.map_or(0, |v| decode_counter(&v)))
            })
            .await
            .expect("read count");
        for n in (start + 1).. {
            db.run("commit_n", |tx| async move {
                tx.put(
                    format!("ack/{n:010}").into_bytes(),
                    n.to_le_bytes().to_vec(),
                )?;
                tx.put(b"count".to_vec(), n.to_le_bytes().to_vec())?;
                Ok(())
            })
            .await
            .expect("commit");
            println!("{n}");
        }
    });
}

fn kill9_keeps_every_acknowledged_commit() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("meta");
    let exe = std::env::current_exe()?;
    let mut total_acked = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &store)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(n) = line.trim().parse::<i64>() {
                    let _ = tx.send(n);
                }
            }
        });
        // Wait for the child to get going, then kill it at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "child acknowledged nothing")?;
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..400)));
        child.kill()?; // SIGKILL
        child.wait()?;
        reader.join().map_err(|_| "reader thread panicked")?;
        let last_acked = rx.try_iter().last().unwrap_or(first);
        total_acked = last_acked as u64;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let found = rt.block_on(async {
            let db = open(&store);
            let tx = db.begin().await?;
            let keys = tx
                .scan_all(&KeyRange::prefix(b"ack/"), 10_000, true)
                .await?;
            let count = tx.get(b"count").await?.map_or(0, |v| decode_counter(&v));
            let last = tx
                .scan(&KeyRange::prefix(b"ack/"), ScanOpts::limit(1).reverse())
                .await?;
            Ok::<_, jfs::kv::KvError>((keys.len() as i64, count, last.entries.len()))
        })?;
        let (keys, count, _) = found;
        eprintln!(
            "round {round}: last acknowledged {last_acked}, stored count {count}, keys {keys}"
        );
        if count < last_acked {
            return Err(format!(
                "round {round}: acknowledged {last_acked} commits but only {count} survived"
            )
            .into());
        }
        if keys != count {
            return Err(format!(
                "round {round}: counter says {count} but {keys} commit keys are stored"
            )
            .into());
        }
    }
    if total_acked == 0 {
        return Err("no commits acknowledged".into());
    }
    Ok(())
}
