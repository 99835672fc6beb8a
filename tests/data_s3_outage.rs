//! The S3 server becoming unreachable in the middle of a write (every
//! connection cut and new ones refused, through a proxy in front of the test
//! server), then reachable again: a short outage is ridden out by the retry
//! policy and the write completes; a long one makes the flush fail with a
//! clear error, committing nothing, and what was acknowledged before stays
//! readable. Needs the test S3 server (JFS_TEST_S3, started by ci/test.sh).
//!
//! And the server process itself stopped (SIGSTOP: requests in flight hang,
//! new connections are not answered) in the middle of a write and resumed
//! (SIGCONT): the write completes and reads back byte for byte. moto keeps
//! its objects in memory, so a kill and restart would lose the bucket: a
//! pause is the stop that keeps the server's state. This test runs its own
//! moto_server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use jfs::data::{DataStore, FileReader, FileWriter};
use jfs::meta::{Ctx, FileKind, ROOT_INO};
use jfs::object::{ObjectRetry, ObjectStore, Retrying, S3Store};
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const BLOCK: u32 = 256 << 10;

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, _) = watch::channel(true);
        let state = up.subscribe();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Proxy { port, up })
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

fn main() {
    let args = Arguments::from_args();
    let url = std::env::var("JFS_TEST_S3").ok().filter(|v| !v.is_empty());
    if url.is_none() {
        eprintln!(
            "skipping the S3 outage test: JFS_TEST_S3 is not set (ci/test.sh starts a server)"
        );
    }
    let trials = vec![Trial::test(
        "data_s3_outage::outage_mid_write_completes_or_fails_cleanly",
        move || {
            let url = std::env::var("JFS_TEST_S3").unwrap_or_default();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(outage(url))
        },
    )
    .with_ignored_flag(url.is_none())];
    let have_moto = which("moto_server");
    if !have_moto {
        eprintln!("skipping the server pause test: moto_server is not installed (ci/install.sh installs it)");
    }
    let mut trials = trials;
    trials.push(
        Trial::test(
            "data_s3_outage::server_paused_mid_write_then_resumed_loses_nothing",
            || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?
                    .block_on(pause())
            },
        )
        .with_ignored_flag(!have_moto),
    );
    libtest_mimic::run(&args, trials).exit();
}

async fn outage(url: String) -> Result<(), Failed> {
    // http://127.0.0.1:PORT/BUCKET -> the same bucket through the proxy.
    let rest = url
        .strip_prefix("http://")
        .ok_or("JFS_TEST_S3 must be http://HOST:PORT/BUCKET")?;
    let (hostport, bucket) = rest.split_once('/').ok_or("no bucket in JFS_TEST_S3")?;
    let proxy = Proxy::start(hostport.to_string()).await?;
    let via_proxy = format!("http://127.0.0.1:{}/{bucket}", proxy.port);
    let patient: Arc<dyn ObjectStore> = Arc::new(Retrying::new(
        S3Store::new(&via_proxy, None, None)?,
        ObjectRetry::default(),
    ));
    let impatient: Arc<dyn ObjectStore> = Arc::new(Retrying::new(
        S3Store::new(&via_proxy, None, None)?,
        ObjectRetry {
            attempts: 3,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
        },
    ));
    let mut volume = common::volume("outage");
    volume.block_size_bytes = BLOCK;
    let meta = Arc::new(common::mem_meta(volume).await);
    let store = DataStore::new(meta.clone(), patient, 4, 0)?;
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await?;
    let first: Vec<u8> = (0..4 * BLOCK as usize).map(|i| (i % 199) as u8).collect();

    // A short outage in the middle of the write: the write completes.
    let mut w = FileWriter::new(store.clone(), ino);
    w.write(0, &first[..2 * BLOCK as usize]).await?;
    proxy.set_up(false);
    let cut = Arc::new(proxy);
    let restore = {
        let cut = cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cut.set_up(true);
        })
    };
    w.write(2 * BLOCK as u64, &first[2 * BLOCK as usize..])
        .await?;
    w.flush().await?;
    restore.await?;
    let got = FileReader::new(store.clone(), ino)
        .read(0, first.len(), first.len() as u64)
        .await?;
    if got != first {
        return Err("data written across the outage differs".into());
    }

    // A long outage: the flush fails, nothing is committed.
    let failing = DataStore::new(meta.clone(), impatient, 4, 0)?;
    cut.set_up(false);
    let mut w = FileWriter::new(failing, ino);
    w.write(0, &vec![0xEEu8; 2 * BLOCK as usize]).await?;
    let result = tokio::time::timeout(Duration::from_secs(60), w.flush()).await?;
    match result {
        Err(e) if e.errno() == libc::EIO => {
            let text = e.to_string();
            if !text.contains("failed 3 times") {
                return Err(format!("unclear error: {text}").into());
            }
        }
        other => return Err(format!("flush during the outage gave {other:?}").into()),
    }
    cut.set_up(true);
    let attr = meta.getattr(ino).await?;
    let fresh = DataStore::new(meta.clone(), store.objects(), 4, 0)?;
    let got = FileReader::new(fresh, ino)
        .read(0, first.len(), attr.length)
        .await?;
    if attr.length != first.len() as u64 || got != first {
        return Err("the failed write changed what was acknowledged".into());
    }
    Ok(())
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// A moto server of this test's own, stopped (by its PID) when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Result<Moto, Failed> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let moto = Moto { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto refuses some CreateBucket requests; boto3's is accepted.
        let made = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='paused')",
                &format!("http://127.0.0.1:{port}"),
            ])
            .status()?;
        if !made.success() {
            return Err("cannot create the bucket on the test moto server".into());
        }
        Ok(moto)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process by its PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

async fn pause() -> Result<(), Failed> {
    let moto = Arc::new(Moto::start()?);
    let url = format!("http://127.0.0.1:{}/paused", moto.port);
    let objects: Arc<dyn ObjectStore> = Arc::new(Retrying::new(
        S3Store::new(&url, Some("testing"), Some("testing"))?,
        ObjectRetry::default(),
    ));
    let mut volume = common::volume("paused");
    volume.block_size_bytes = BLOCK;
    let meta = Arc::new(common::mem_meta(volume).await);
    let store = DataStore::new(meta.clone(), objects.clone(), 4, 0)?;
    let (ino, _) = meta
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await?;
    let data: Vec<u8> = (0..6 * BLOCK as usize).map(|i| (i % 241) as u8).collect();
    let mut w = FileWriter::new(store.clone(), ino);
    w.write(0, &data[..2 * BLOCK as usize]).await?;
    moto.signal(libc::SIGSTOP);
    let resume = {
        let moto = moto.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            moto.signal(libc::SIGCONT);
        })
    };
    w.write(2 * BLOCK as u64, &data[2 * BLOCK as usize..])
        .await?;
    w.flush().await?;
    resume.await?;
    let fresh = DataStore::new(meta.clone(), objects, 4, 0)?;
    let got = FileReader::new(fresh, ino)
        .read(0, data.len(), data.len() as u64)
        .await?;
    if got != data {
        return Err("data written across the server pause differs".into());
    }
    Ok(())
}
