//! Three hosts sharing one volume, each a network namespace made by this
//! test (a bridge with an address of its own, a veth into each namespace).
//! The metadata is on a 3-member etcd cluster and the data on an S3 server
//! (moto), both started by the test on the bridge's address, the outer
//! side. Each host runs its own `jfs mount` inside its namespace (entered
//! with nsenter for the network only, so the mounts are visible here).
//!
//! Covered: close-to-open across hosts; creates in one directory from
//! every host at once (all present, counts exact); POSIX locks and flock
//! excluding across hosts; a file unlinked on one host while another keeps
//! it open (it keeps reading it); a host's mount killed with SIGKILL (the
//! others clean up its session, its locks and its open-but-unlinked file).
//!
//! Needs root, `ip`, `nsenter`, `etcd` and `moto_server`; without them the
//! test is reported ignored, or fails under JFS_REQUIRE_SUITES=1 (CI).

mod mount;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use mount::{stderr, JFS};

const HOSTS: usize = 3;
/// Seconds between heartbeats of the mounts: a killed host's session
/// expires after five.
const HEARTBEAT: &str = "1";
/// The kernel's entry and attribute cache timeout (the mount's default).
const ATTR_CACHE: Duration = Duration::from_secs(1);
/// How long cleanup after a killed host may take before the test gives up
/// (session expiry after 5 s, cleanup each 5 s: about 10 s expected).
const CLEANUP_DEADLINE: Duration = Duration::from_secs(90);

fn run(program: &str, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), stderr(&out)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check(ok: bool, what: &str) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The bridge and the hosts' namespaces; removed when dropped.
struct Net {
    subnet: u8,
    bridge: String,
    hosts: Vec<String>,
}

impl Net {
    fn new() -> Result<Net, Failed> {
        // A /24 of 10.231.0.0/16 not in use by another run.
        let subnet = (0..50)
            .map(|_| fastrand::u8(1..=250))
            .find(|s| !Path::new(&format!("/sys/class/net/jfsbr{s}")).exists())
            .ok_or("no free test subnet")?;
        let mut net = Net {
            subnet,
            bridge: format!("jfsbr{subnet}"),
            hosts: Vec::new(),
        };
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", net.outer()),
                "dev",
                &net.bridge,
            ],
        )?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for h in 1..=HOSTS {
            let ns = format!("jfs{subnet}h{h}");
            let veth = format!("vj{subnet}h{h}");
            run("ip", &["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &net.bridge, "up"])?;
            let addr = format!("10.231.{subnet}.{}/24", 10 + h);
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The bridge's address, where the servers listen.
    fn outer(&self) -> String {
        format!("10.231.{}.1", self.subnet)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// Processes this test started; killed (by PID) when dropped.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port(addr: &str) -> Result<u16, Failed> {
    Ok(std::net::TcpListener::bind((addr, 0))?.local_addr()?.port())
}

fn wait_port(addr: &str, port: u16) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((addr, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("nothing listens on {addr}:{port} after 30 s").into())
}

/// A 3-member etcd cluster on `addr`; returns its client endpoints.
fn start_etcd(addr: &str, dir: &Path, children: &mut Children) -> Result<String, Failed> {
    let mut clients = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        clients.push(free_port(addr)?);
        peers.push(free_port(addr)?);
    }
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("m{i}=http://{addr}:{}", peers[i]))
        .collect();
    for i in 0..3 {
        let client = format!("http://{addr}:{}", clients[i]);
        let peer = format!("http://{addr}:{}", peers[i]);
        let log = File::create(dir.join(format!("etcd{i}.log")))?;
        children.0.push(
            Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .args([
                    "--data-dir",
                    &dir.join(format!("etcd{i}")).display().to_string(),
                ])
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
    }
    for &port in &clients {
        wait_port(addr, port)?;
    }
    Ok(clients
        .iter()
        .map(|p| format!("{addr}:{p}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// moto on `addr` with a bucket; returns the bucket's URL.
fn start_s3(addr: &str, dir: &Path, children: &mut Children) -> Result<String, Failed> {
    let port = free_port(addr)?;
    let log = File::create(dir.join("moto.log"))?;
    children.0.push(
        Command::new("moto_server")
            .args(["-H", addr, "-p", &port.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    wait_port(addr, port)?;
    let endpoint = format!("http://{addr}:{port}");
    let made = Command::new("python3")
        .args([
            "-c",
            "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='multihost')",
            &endpoint,
        ])
        .output()?;
    check(
        made.status.success(),
        &format!("creating the bucket: {}", stderr(&made)),
    )?;
    Ok(format!("{endpoint}/multihost"))
}

/// The volume, its servers and one mount per host.
struct Hosts {
    mounts: Vec<PathBuf>,
    meta: String,
    // Dropped in this order: mounts first (see Drop), then servers, then
    // the network, then the directory.
    _servers: Children,
    net: Net,
    dir: tempfile::TempDir,
}

impl Hosts {
    fn new() -> Result<Hosts, Failed> {
        let dir = tempfile::Builder::new()
            .prefix("jfsmh")
            .tempdir_in("/tmp")?;
        let net = Net::new()?;
        let outer = net.outer();
        let mut servers = Children::default();
        let endpoints = start_etcd(&outer, dir.path(), &mut servers)?;
        let bucket = start_s3(&outer, dir.path(), &mut servers)?;
        let meta = format!("etcd://{endpoints}/multihost");
        let out = Command::new(JFS)
            .args([
                "format",
                &meta,
                "shared",
                "--storage",
                "s3",
                "--bucket",
                &bucket,
            ])
            .args(["--access-key", "testing", "--secret-key", "testing"])
            .args(["--trash-days", "0"])
            .output()?;
        check(out.status.success(), &format!("format: {}", stderr(&out)))?;
        let mut hosts = Hosts {
            mounts: Vec::new(),
            meta,
            _servers: servers,
            net,
            dir,
        };
        for h in 0..HOSTS {
            let mnt = hosts.dir.path().join(format!("h{}", h + 1));
            std::fs::create_dir(&mnt)?;
            let p = |s: &str| {
                hosts
                    .dir
                    .path()
                    .join(format!("h{}-{s}", h + 1))
                    .display()
                    .to_string()
            };
            let out = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", hosts.net.hosts[h]))
                .args([JFS, "mount", "--background", &hosts.meta])
                .arg(&mnt)
                .args(["--cache-dir", &p("cache"), "--log", &p("log")])
                .args(["--heartbeat", HEARTBEAT])
                .env_remove("JFS_MOUNT_READY_FD")
                .output()?;
            check(
                out.status.success(),
                &format!("mount on host {}: {}", h + 1, stderr(&out)),
            )?;
            hosts.mounts.push(mnt);
        }
        Ok(hosts)
    }

    fn host(&self, h: usize) -> &Path {
        &self.mounts[h]
    }

    /// The PID of host `h`'s mount process (a process this test started).
    fn mount_pid(&self, h: usize) -> Result<i32, Failed> {
        let mnt = self.host(h).display().to_string();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            if args.first() == Some(&JFS.as_bytes())
                && args.contains(&b"mount".as_slice())
                && args.contains(&mnt.as_bytes())
            {
                return Ok(pid);
            }
        }
        Err(format!("no mount process for {mnt}").into())
    }

    fn sessions(&self) -> Result<usize, Failed> {
        let out = Command::new(JFS).args(["status", &self.meta]).output()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(status["sessions"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for m in &self.mounts {
            let m = m.display().to_string();
            let quiet = Command::new(JFS)
                .args(["umount", &m])
                .output()
                .is_ok_and(|o| o.status.success());
            if !quiet {
                let _ = Command::new("umount").args(["-l", &m]).output();
            }
        }
    }
}

fn close_to_open(h: &Hosts) -> Result<(), Failed> {
    std::fs::write(h.host(0).join("c2o"), b"from host 1")?;
    check(
        std::fs::read(h.host(1).join("c2o"))? == b"from host 1",
        "host 2 does not see what host 1 closed",
    )?;
    let big = vec![b'B'; 5 << 20];
    std::fs::write(h.host(1).join("c2o"), &big)?;
    for other in [0, 2] {
        check(
            std::fs::read(h.host(other).join("c2o"))? == big,
            &format!("host {} does not see host 2's 5 MiB", other + 1),
        )?;
    }
    std::fs::write(h.host(2).join("c2o"), b"short")?;
    check(
        std::fs::read(h.host(0).join("c2o"))? == b"short",
        "host 1 does not see host 3's truncation",
    )?;
    Ok(())
}

fn creates_in_one_directory(h: &Hosts) -> Result<(), Failed> {
    const EACH: usize = 150;
    std::fs::create_dir(h.host(0).join("many"))?;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..HOSTS)
            .map(|n| {
                let dir = h.host(n).join("many");
                scope.spawn(move || -> std::io::Result<()> {
                    for i in 0..EACH {
                        std::fs::write(dir.join(format!("h{n}-{i}")), format!("{n}/{i}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a creating thread panicked")??;
        }
        Ok::<_, Failed>(())
    })?;
    std::thread::sleep(ATTR_CACHE);
    for n in 0..HOSTS {
        let mut names: Vec<String> = std::fs::read_dir(h.host(n).join("many"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        let mut want: Vec<String> = (0..HOSTS)
            .flat_map(|m| (0..EACH).map(move |i| format!("h{m}-{i}")))
            .collect();
        want.sort();
        check(
            names == want,
            &format!(
                "host {} lists {} entries, want exactly the {} created",
                n + 1,
                names.len(),
                want.len()
            ),
        )?;
        let links = std::fs::metadata(h.host(n).join("many"))?;
        check(links.is_dir(), "the directory is gone")?;
    }
    check(
        std::fs::read(h.host(2).join("many/h0-7"))? == b"0/7",
        "host 3 reads wrong content of host 1's file",
    )?;
    Ok(())
}

fn posix_lock(file: &File, kind: i32, wait: bool) -> std::io::Result<()> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn flock(file: &File, op: i32) -> std::io::Result<()> {
    if unsafe { libc::flock(file.as_raw_fd(), op) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn would_block(r: std::io::Result<()>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN) || e.raw_os_error() == Some(libc::EACCES))
}

fn locks_exclude_across_hosts(h: &Hosts) -> Result<(), Failed> {
    std::fs::write(h.host(0).join("locked"), b"x")?;
    let open = |n: usize| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(h.host(n).join("locked"))
    };
    let (one, two, three) = (open(0)?, open(1)?, open(2)?);

    posix_lock(&one, libc::F_WRLCK, false)?;
    check(
        would_block(posix_lock(&two, libc::F_WRLCK, false)),
        "host 2 took a POSIX write lock host 1 holds",
    )?;
    check(
        would_block(posix_lock(&three, libc::F_RDLCK, false)),
        "host 3 took a POSIX read lock under host 1's write lock",
    )?;
    posix_lock(&one, libc::F_UNLCK, false)?;
    posix_lock(&two, libc::F_RDLCK, false)?;
    posix_lock(&three, libc::F_RDLCK, false)?;
    check(
        would_block(posix_lock(&one, libc::F_WRLCK, false)),
        "host 1 took a write lock over two read locks",
    )?;
    posix_lock(&two, libc::F_UNLCK, false)?;
    posix_lock(&three, libc::F_UNLCK, false)?;

    flock(&one, libc::LOCK_EX | libc::LOCK_NB)?;
    check(
        would_block(flock(&two, libc::LOCK_EX | libc::LOCK_NB)),
        "host 2 took an flock host 1 holds",
    )?;
    // A blocked taker gets the lock once it is released on another host.
    let waiter = std::thread::spawn(move || flock(&two, libc::LOCK_EX).map(|_| two));
    std::thread::sleep(Duration::from_millis(300));
    drop(one); // closing the file releases its flock
    let two = waiter.join().map_err(|_| "waiter panicked")??;
    check(
        would_block(flock(&three, libc::LOCK_SH | libc::LOCK_NB)),
        "host 3 took a shared flock under host 2's exclusive one",
    )?;
    flock(&two, libc::LOCK_UN)?;
    flock(&three, libc::LOCK_SH | libc::LOCK_NB)?;
    Ok(())
}

fn unlink_while_open(h: &Hosts) -> Result<(), Failed> {
    let data: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
    let before = used_inodes(h.host(0))?;
    std::fs::write(h.host(0).join("doomed"), &data)?;
    let mut reader = File::open(h.host(1).join("doomed"))?;
    let mut first = vec![0u8; 1 << 20];
    reader.read_exact(&mut first)?;
    std::fs::remove_file(h.host(0).join("doomed"))?;
    std::thread::sleep(ATTR_CACHE);
    check(
        !h.host(2).join("doomed").exists(),
        "host 3 still sees the unlinked name",
    )?;
    // Past what host 2 read so far and not cached by its kernel.
    reader.seek(SeekFrom::Start(4 << 20))?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    check(
        rest == data[4 << 20..],
        "host 2 cannot read the rest of a file unlinked on host 1",
    )?;
    check(first == data[..1 << 20], "host 2 read wrong data")?;
    // Its last close, on host 2, deletes it.
    drop(reader);
    let start = Instant::now();
    while start.elapsed() < CLEANUP_DEADLINE && used_inodes(h.host(0))? != before {
        std::thread::sleep(Duration::from_millis(100));
    }
    check(
        used_inodes(h.host(0))? == before,
        "the unlinked file was not deleted after its last close",
    )?;
    Ok(())
}

/// Inodes in use on the volume, as statfs on a mount shows them.
fn used_inodes(mnt: &Path) -> Result<u64, Failed> {
    let path = std::ffi::CString::new(mnt.display().to_string())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(st.f_files - st.f_ffree)
}

fn killed_host_is_cleaned_up(h: &Hosts) -> Result<(), Failed> {
    let before = used_inodes(h.host(0))?;
    check(h.sessions()? == HOSTS, "status does not show every host")?;
    std::fs::write(h.host(0).join("held"), b"x")?;
    let held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(h.host(2).join("held"))?;
    posix_lock(&held, libc::F_WRLCK, false)?;
    let mut orphan = File::create(h.host(2).join("orphan"))?;
    orphan.write_all(&[7u8; 100_000])?;
    orphan.sync_all()?;
    std::fs::remove_file(h.host(2).join("orphan"))?;
    check(
        used_inodes(h.host(0))? == before + 2,
        "the open-but-unlinked file should still count",
    )?;

    let pid = h.mount_pid(2)?;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut took = false;
    let mine = OpenOptions::new()
        .read(true)
        .write(true)
        .open(h.host(0).join("held"))?;
    let start = Instant::now();
    while start.elapsed() < CLEANUP_DEADLINE {
        if posix_lock(&mine, libc::F_WRLCK, false).is_ok() {
            took = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    check(took, "the killed host's POSIX lock was never cleaned up")?;
    let lock_freed = start.elapsed();
    while start.elapsed() < CLEANUP_DEADLINE && used_inodes(h.host(0))? != before + 1 {
        std::thread::sleep(Duration::from_millis(500));
    }
    check(
        used_inodes(h.host(0))? == before + 1,
        "the killed host's open-but-unlinked file was not deleted",
    )?;
    check(
        h.sessions()? == HOSTS - 1,
        "the killed host's session is still listed",
    )?;
    eprintln!(
        "killed host cleaned up: lock free after {:.1} s, orphan deleted after {:.1} s",
        lock_freed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    drop(held);
    drop(orphan);
    let _ = Command::new("umount")
        .args(["-l", &h.host(2).display().to_string()])
        .output();
    Ok(())
}

fn all(h: &Hosts) -> Result<(), Failed> {
    type Step = fn(&Hosts) -> Result<(), Failed>;
    let steps: [(&str, Step); 5] = [
        ("close-to-open", close_to_open),
        ("creates in one directory", creates_in_one_directory),
        ("locks", locks_exclude_across_hosts),
        ("unlink while open", unlink_while_open),
        ("killed host", killed_host_is_cleaned_up),
    ];
    for (name, step) in steps {
        step(h).map_err(|e| format!("{name}: {}", e.message().unwrap_or("failed")))?;
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let missing: Vec<&str> = ["ip", "nsenter", "etcd", "moto_server", "fusermount3"]
        .into_iter()
        .filter(|p| !have(p))
        .collect();
    let root = unsafe { libc::geteuid() } == 0;
    let required = std::env::var("JFS_REQUIRE_SUITES").is_ok_and(|v| v == "1");
    let skip = !missing.is_empty() || !root;
    if skip {
        let why = if root {
            format!("missing {}", missing.join(", "))
        } else {
            "not root".to_string()
        };
        if required {
            eprintln!("multihost: cannot run ({why}) but JFS_REQUIRE_SUITES=1");
            std::process::exit(1);
        }
        eprintln!("skipping the multi-host test: {why}");
    }
    let trials = vec![Trial::test(
        "three_namespaced_hosts_share_one_volume_on_etcd_and_s3",
        || all(&Hosts::new()?),
    )
    .with_ignored_flag(skip)];
    libtest_mimic::run(&args, trials).exit();
}
