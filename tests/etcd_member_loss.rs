//! An etcd member lost under a mounted workload: the test starts its own
//! 3-member cluster on 127.0.0.1, mounts a volume on it and writes files
//! while the leader is killed (SIGKILL). The mount rides out the election,
//! every file whose close succeeded reads back (also after a remount), and
//! the member, restarted on its data, rejoins healthy. Ignored when the
//! `etcd` binary is not installed (ci/install.sh installs etcd-server).

mod mount;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use mount::{jfs, stderr};

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Three etcd members of our own, stopped (by PID) when dropped.
struct Cluster {
    dir: PathBuf,
    clients: Vec<u16>,
    peers: Vec<u16>,
    members: Vec<Option<Child>>,
}

impl Cluster {
    fn start(dir: &Path) -> Result<Cluster, Failed> {
        std::fs::create_dir_all(dir)?;
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            clients: Vec::new(),
            peers: Vec::new(),
            members: Vec::new(),
        };
        for _ in 0..3 {
            c.clients.push(free_port()?);
            c.peers.push(free_port()?);
        }
        for i in 0..3 {
            let child = c.spawn(i, "new")?;
            c.members.push(Some(child));
        }
        c.wait_healthy(&c.endpoints())?;
        Ok(c)
    }

    fn spawn(&self, i: usize, state: &str) -> Result<Child, Failed> {
        let cluster: Vec<String> = (0..3)
            .map(|j| format!("m{j}=http://127.0.0.1:{}", self.peers[j]))
            .collect();
        let client = format!("http://127.0.0.1:{}", self.clients[i]);
        let peer = format!("http://127.0.0.1:{}", self.peers[i]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("m{i}.log")))?;
        Ok(Command::new("etcd")
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "loss",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    fn endpoints(&self) -> String {
        self.clients
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoints])
            .args(args)
            .output()
    }

    fn wait_healthy(&self, endpoints: &str) -> Result<(), Failed> {
        for _ in 0..150 {
            if self
                .etcdctl(endpoints, &["endpoint", "health"])
                .is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "etcd at {endpoints} not healthy; logs in {}",
            self.dir.display()
        )
        .into())
    }

    /// Index of the current leader.
    fn leader(&self) -> Result<usize, Failed> {
        let out = self.etcdctl(&self.endpoints(), &["endpoint", "status", "-w", "json"])?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let list = status.as_array().ok_or("no endpoint status")?;
        for (i, s) in list.iter().enumerate() {
            if s["Status"]["leader"] == s["Status"]["header"]["member_id"] {
                let endpoint = s["Endpoint"].as_str().unwrap_or_default();
                return Ok(self
                    .clients
                    .iter()
                    .position(|p| endpoint.ends_with(&format!(":{p}")))
                    .unwrap_or(i));
            }
        }
        Err("no leader found".into())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn member_loss() -> Result<(), Failed> {
    let dir = tempfile::Builder::new().prefix("jfs").tempdir_in("/tmp")?;
    let mut cluster = Cluster::start(&dir.path().join("etcd"))?;
    let meta = format!("etcd://{}/loss", cluster.endpoints());
    let bucket = dir.path().join("data").display().to_string();
    let out = jfs(&[
        "format",
        &meta,
        "memberloss",
        "--bucket",
        &bucket,
        "--trash-days",
        "0",
    ]);
    if !out.status.success() {
        return Err(format!("format: {}", stderr(&out)).into());
    }
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt)?;
    let mnt_s = mnt.display().to_string();
    let cache = dir.path().join("cache").display().to_string();
    let log = dir.path().join("log").display().to_string();
    let mount = || {
        jfs(&[
            "mount",
            "-d",
            &meta,
            &mnt_s,
            "--cache-dir",
            &cache,
            "--log",
            &log,
        ])
    };
    let out = mount();
    if !out.status.success() {
        return Err(format!("mount: {}", stderr(&out)).into());
    }
    let _unmount = Unmount(mnt_s.clone());
    let content = |i: usize| format!("file {i} ").repeat(100 + i).into_bytes();

    // Writes go on in a thread while the leader dies.
    const FILES: usize = 300;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (mnt, progress) = (mnt.clone(), progress.clone());
        std::thread::spawn(move || -> Result<usize, String> {
            let mut written = 0;
            for i in 0..FILES {
                match std::fs::write(mnt.join(format!("f{i}")), content(i)) {
                    Ok(()) => {
                        written += 1;
                        progress.store(written, std::sync::atomic::Ordering::Release);
                    }
                    Err(e) => return Err(format!("write of f{i} failed during the election: {e}")),
                }
            }
            Ok(written)
        })
    };
    while progress.load(std::sync::atomic::Ordering::Acquire) < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let leader = cluster.leader()?;
    cluster.kill(leader);
    let at_kill = progress.load(std::sync::atomic::Ordering::Acquire);
    if at_kill >= FILES {
        return Err("the workload ended before the leader was killed".into());
    }
    eprintln!("leader m{leader} killed after {at_kill} of {FILES} files");
    let written = writer.join().map_err(|_| "writer panicked")?.map_err(|e| {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!(
            "{e}\nmount log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    if written != FILES {
        return Err(format!("{written} of {FILES} files written").into());
    }
    for i in 0..FILES {
        if std::fs::read(mnt.join(format!("f{i}")))? != content(i) {
            return Err(format!("f{i} differs after the member loss").into());
        }
    }

    // The member comes back on its data and rejoins.
    let back = cluster.spawn(leader, "existing")?;
    cluster.members[leader] = Some(back);
    cluster.wait_healthy(&format!("127.0.0.1:{}", cluster.clients[leader]))?;

    let out = jfs(&["umount", &mnt_s]);
    if !out.status.success() {
        return Err(format!("umount: {}", stderr(&out)).into());
    }
    let out = mount();
    if !out.status.success() {
        return Err(format!("remount: {}", stderr(&out)).into());
    }
    let n = std::fs::read_dir(&mnt)?.count();
    let intact =
        (0..FILES).all(|i| std::fs::read(mnt.join(format!("f{i}"))).is_ok_and(|c| c == content(i)));
    let _ = jfs(&["umount", &mnt_s]);
    if n != FILES || !intact {
        return Err(format!("after remount: {n} entries, content intact: {intact}").into());
    }
    Ok(())
}

/// Detaches the mount if the test ends early.
struct Unmount(String);

impl Drop for Unmount {
    fn drop(&mut self) {
        if mount::is_mount_point(Path::new(&self.0)) {
            let _ = jfs(&["umount", "--force", &self.0]);
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let have = which("etcd") && which("etcdctl");
    let trials = vec![Trial::test(
        "leader_killed_under_a_mounted_workload_loses_nothing",
        member_loss,
    )
    .with_ignored_flag(!have)];
    libtest_mimic::run(&args, trials).exit();
}
