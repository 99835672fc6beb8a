//! `jfs mount`: serves a volume at a mount point through FUSE, in the
//! foreground or (`--background`) as a daemon that reports back only once
//! the mount is ready or has failed.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;

use super::registry::{self, MountRecord};
use super::{
    default_cache_dir, default_log_file, is_root, load_meta, mount_entry, open_storage,
    parse_meta_url, CmdError, CmdResult,
};
use jfs::data::{
    block::block_key, DataOptions, DataStore, DiskCache, Staging, DEFAULT_BUFFER_BYTES,
    DEFAULT_MAX_UPLOADS,
};
use jfs::fuse::{CacheTimeouts, FuseFs};
use jfs::meta::{Ctx, Meta, SessionInfo, CHUNK_SIZE, ROOT_INO};
use jfs::vfs::{Vfs, VfsOptions};

/// Environment variable through which a background child gets the pipe
/// to report readiness on.
const READY_FD_ENV: &str = "JFS_MOUNT_READY_FD";

#[derive(Args, Debug, Clone, Default)]
pub struct MountArgs {
    /// Metadata engine URL (a plain path is the embedded engine).
    pub meta_url: String,
    /// Directory to mount the volume on.
    pub mount_point: PathBuf,
    /// Run in the background; return once the mount is ready.
    #[arg(short = 'd', long)]
    pub background: bool,
    /// Log file of a background mount.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Add the mount to /etc/fstab (and install /sbin/mount.jfs) so it is
    /// mounted at boot.
    #[arg(long)]
    pub update_fstab: bool,
    /// Directory of the local block cache (and of --writeback staging).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Local cache size in MiB (0: no disk cache).
    #[arg(long, default_value_t = 102_400)]
    pub cache_size: u64,
    /// Keep at least this share of the cache disk free.
    #[arg(long, default_value_t = 0.1)]
    pub free_space_ratio: f64,
    /// Upload blocks in the background after staging them in the cache
    /// directory (close returns before the upload).
    #[arg(long)]
    pub writeback: bool,
    /// Blocks uploading at once.
    #[arg(long, default_value_t = DEFAULT_MAX_UPLOADS)]
    pub max_uploads: usize,
    /// Memory for blocks being written, in MiB.
    #[arg(long, default_value_t = DEFAULT_BUFFER_BYTES >> 20)]
    pub buffer_size: u64,
    /// Kernel attribute cache timeout, seconds. 0 here or in
    /// --entry-cache also reads every lookup and getattr from the store
    /// (on Redis they are otherwise answered from change notices).
    #[arg(long, default_value_t = 1.0)]
    pub attr_cache: f64,
    /// Kernel cache timeout of file entries, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub entry_cache: f64,
    /// Kernel cache timeout of directory entries, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub dir_entry_cache: f64,
    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Mount only this directory of the volume.
    #[arg(long)]
    pub subdir: Option<String>,
    /// Let other users access the mount (always on when run as root).
    #[arg(long)]
    pub allow_other: bool,
    /// Support extended attributes.
    #[arg(long)]
    pub enable_xattr: bool,
    /// Seconds between session heartbeats; a session silent for five
    /// heartbeats is considered dead by other clients.
    #[arg(long, default_value_t = 12)]
    pub heartbeat: u64,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    pub fuse_threads: usize,
    /// Serve Prometheus metrics at this address (e.g. 127.0.0.1:9567).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// Reports readiness to the parent of a background mount.
struct Ready(Option<std::fs::File>);

impl Ready {
    fn from_env() -> Ready {
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok());
        std::env::remove_var(READY_FD_ENV);
        // SAFETY: the parent created this descriptor for us and nothing
        // else in this process owns it.
        Ready(fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) }))
    }

    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Something the user should read, shown by the waiting parent (or on
    /// stderr in the foreground); the verdict comes later.
    fn note(&mut self, line: &str) {
        match &mut self.0 {
            Some(f) => {
                let _ = writeln!(f, "note: {line}");
            }
            None => eprintln!("{line}"),
        }
        tracing::info!("{line}");
    }
}

fn check_mount_point(path: &Path) -> CmdResult<PathBuf> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CmdError::new(format!(
            "mount point {} does not exist: create it with `mkdir -p {}`",
            path.display(),
            path.display()
        )),
        _ => CmdError::new(format!("mount point {}: {e}", path.display())),
    })?;
    if !meta.is_dir() {
        return Err(CmdError::new(format!(
            "mount point {} is not a directory",
            path.display()
        )));
    }
    let path = std::fs::canonicalize(path)?;
    if let Some(m) = mount_entry(&path) {
        if m.fs_type.starts_with("fuse") {
            return Err(CmdError::new(format!(
                "{} is already mounted ({} {}): unmount it first with `umount {}`",
                path.display(),
                m.fs_type,
                m.source,
                path.display()
            )));
        }
    }
    Ok(path)
}

pub fn run(mut args: MountArgs) -> CmdResult<()> {
    parse_meta_url(&args.meta_url)?;
    args.mount_point = check_mount_point(&args.mount_point)?;
    if args.update_fstab {
        super::fstab::update(&args)?;
    }
    if args.background && std::env::var_os(READY_FD_ENV).is_none() {
        return start_background(&args);
    }
    let mut ready = Ready::from_env();
    match serve(&args, &mut ready) {
        Ok(()) => Ok(()),
        Err(e) => {
            ready.send(&format!("error: {}", e.message));
            Err(e)
        }
    }
}

/// Starts this command again as a daemon and waits for its verdict.
fn start_background(args: &MountArgs) -> CmdResult<()> {
    let log = args.log.clone().unwrap_or_else(default_log_file);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| CmdError::new(format!("cannot open log file {}: {e}", log.display())))?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(CmdError::new(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 just returned these descriptors; each is owned once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = fds[1];
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    let argv: Vec<String> = super::EFFECTIVE_ARGS
        .get()
        .cloned()
        .unwrap_or_else(|| std::env::args().collect());
    // The daemon takes the metadata password from its environment, not
    // its command line: /proc/PID/cmdline is readable by every user,
    // /proc/PID/environ only by the process's owner.
    let hidden = crate::kv::url::split_password(&args.meta_url);
    if let Some((_, password)) = &hidden {
        cmd.env("META_PASSWORD", password);
    }
    cmd.args(argv.iter().skip(1).map(|a| match &hidden {
        Some((stripped, _)) if *a == args.meta_url => stripped.as_str(),
        _ => a.as_str(),
    }))
    .env(READY_FD_ENV, write_fd.to_string())
    .stdin(std::process::Stdio::null())
    .stdout(log_file.try_clone()?)
    .stderr(log_file);
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            let flags = libc::fcntl(write_fd, libc::F_GETFD);
            libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(write_end);
    let mut answer = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut answer);
    let mut verdict = "";
    for line in answer.lines() {
        match line.strip_prefix("note: ") {
            Some(note) => eprintln!("{note}"),
            None => verdict = line.trim(),
        }
    }
    let answer = verdict;
    if answer == "ok" {
        println!(
            "jfs mounted at {} (pid {}, log {})",
            args.mount_point.display(),
            child.id(),
            log.display()
        );
        return Ok(());
    }
    let _ = child.wait();
    match answer.strip_prefix("error: ") {
        Some(reason) => Err(CmdError::new(reason.to_string())),
        None => Err(CmdError::new(format!(
            "the mount process exited before the mount was ready; see {}",
            log.display()
        ))),
    }
}

fn session_info(mount_point: &Path) -> SessionInfo {
    let mut host = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is NUL-terminated
    // when it fits.
    unsafe { libc::gethostname(host.as_mut_ptr() as *mut libc::c_char, host.len()) };
    let end = host.iter().position(|b| *b == 0).unwrap_or(host.len());
    SessionInfo {
        host: String::from_utf8_lossy(&host[..end]).into_owned(),
        pid: std::process::id(),
        mount_point: mount_point.display().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Builds the data path the flags ask for.
fn data_options(args: &MountArgs, uuid: &str) -> CmdResult<DataOptions> {
    let cache_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let disk_cache = if args.cache_size > 0 {
        Some(
            DiskCache::open(
                &cache_dir,
                uuid,
                args.cache_size << 20,
                args.free_space_ratio,
            )
            .map_err(|e| CmdError::new(format!("cache directory {}: {e}", cache_dir.display())))?,
        )
    } else {
        None
    };
    let writeback = if args.writeback {
        Some(Staging::open(&cache_dir, uuid).map_err(|e| {
            CmdError::new(format!("writeback staging in {}: {e}", cache_dir.display()))
        })?)
    } else {
        None
    };
    Ok(DataOptions {
        max_uploads: args.max_uploads.max(1),
        buffer_bytes: args.buffer_size.max(1) << 20,
        disk_cache,
        writeback,
        ..Default::default()
    })
}

async fn resolve_subdir(meta: &Meta, subdir: Option<&str>) -> CmdResult<u64> {
    let mut ino = ROOT_INO;
    for part in subdir.unwrap_or("").split('/').filter(|p| !p.is_empty()) {
        let (child, attr) = meta
            .lookup(&Ctx::root(), ino, part.as_bytes())
            .await
            .map_err(|e| CmdError::new(format!("--subdir {}: {e}", subdir.unwrap_or(""))))?;
        if !attr.is_dir() {
            return Err(CmdError::new(format!(
                "--subdir {}: '{part}' is not a directory",
                subdir.unwrap_or("")
            )));
        }
        ino = child;
    }
    Ok(ino)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Mounts and serves until the file system is unmounted.
fn serve(args: &MountArgs, ready: &mut Ready) -> CmdResult<()> {
    let url = parse_meta_url(&args.meta_url)?;
    let rt = super::runtime()?;
    let (vfs, root, record) = rt.block_on(async {
        let meta = Arc::new(load_meta(&url).await?);
        for note in meta.db().notes().await.unwrap_or_default() {
            ready.note(&note);
        }
        let volume = meta.volume().clone();
        let storage = open_storage(&volume)?;
        let root = resolve_subdir(&meta, args.subdir.as_deref()).await?;
        let data =
            DataStore::with_options(meta.clone(), storage, data_options(args, &volume.uuid)?)?;
        let staged = data.upload_staged().await?;
        if staged > 0 {
            tracing::info!(
                blocks = staged,
                "uploaded blocks a previous mount left staged"
            );
        }
        let heartbeat = args.heartbeat.max(1);
        let sid = meta
            .new_session(&session_info(&args.mount_point), heartbeat * 5)
            .await?;
        spawn_background_jobs(&meta, &data, heartbeat);
        jfs::metrics::start();
        if let Some(addr) = &args.metrics {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| {
                    CmdError::new(format!(
                        "--metrics {addr}: cannot listen there: {e} (give a free HOST:PORT, e.g. 127.0.0.1:9567)"
                    ))
                })?;
            let data = data.clone();
            tokio::spawn(jfs::metrics::serve(listener, move || data.gauges()));
            tracing::info!(%addr, "serving metrics");
        }
        let vfs = Vfs::new(
            meta,
            data,
            VfsOptions {
                read_only: args.read_only,
                xattr: args.enable_xattr,
                attr_cache: secs(args.attr_cache),
                // A zero timeout asks for answers read from the store:
                // no recent snapshots either.
                recent_reads: args.attr_cache > 0.0 && args.entry_cache > 0.0,
            },
        );
        let record = MountRecord {
            pid: std::process::id(),
            mount_point: args.mount_point.display().to_string(),
            meta_url: url.to_string(),
            volume: volume.name.clone(),
            uuid: volume.uuid.clone(),
            session: sid,
        };
        CmdResult::Ok((vfs, root, record))
    })?;

    let notifier = Arc::new(OnceLock::new());
    let fs = FuseFs::new(
        vfs.clone(),
        rt.handle().clone(),
        root,
        CacheTimeouts {
            attr: secs(args.attr_cache),
            entry: secs(args.entry_cache),
            dir_entry: secs(args.dir_entry_cache),
        },
        notifier.clone(),
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("{}{}", super::SOURCE_PREFIX, record.volume)),
        fuser::MountOption::Subtype("jfs".into()),
        fuser::MountOption::DefaultPermissions,
        if args.read_only {
            fuser::MountOption::RO
        } else {
            fuser::MountOption::RW
        },
    ];
    if args.allow_other || is_root() {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(args.fuse_threads.max(1));
    config.clone_fd = true;
    let mut session = fuser::Session::new(fs, &args.mount_point, &config).map_err(|e| {
        CmdError::new(format!(
            "cannot mount at {}: {e}",
            args.mount_point.display()
        ))
    })?;
    let _ = notifier.set(session.notifier());
    let _ = registry::write_record(&record);
    let control = rt.spawn(serve_control(vfs.clone(), record.clone(), root));
    let unmounter = session.unmount_callable();
    rt.spawn(unmount_on_signal(unmounter, args.mount_point.clone()));
    tracing::info!(mount_point = %args.mount_point.display(), meta = %record.meta_url, "mounted");
    ready.send("ok");

    let served = session.run();
    tracing::info!(mount_point = %args.mount_point.display(), "unmounted; finishing uploads");
    control.abort();
    let remaining = rt.block_on(async {
        let remaining = vfs.shutdown().await;
        if let Err(e) = vfs.meta().close_session(record.session).await {
            tracing::warn!(error = %e, "session not closed; another client will clean it up");
        }
        remaining
    });
    registry::remove_record(&args.mount_point);
    if remaining > 0 {
        tracing::warn!(
            blocks = remaining,
            "staged blocks not uploaded yet; the next mount uploads them"
        );
    }
    served.map_err(|e| CmdError::new(format!("FUSE session ended with an error: {e}")))
}

/// Heartbeats, and the upkeep any client may do for the volume: cleaning
/// up dead sessions and abandoned uploads, emptying expired trash, and
/// deleting the data of deleted files.
fn spawn_background_jobs(meta: &Arc<Meta>, data: &Arc<DataStore>, heartbeat_secs: u64) {
    let m = meta.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(heartbeat_secs));
        loop {
            tick.tick().await;
            if let Err(e) = m.heartbeat(heartbeat_secs * 5).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    });
    // As often as a session can die (five heartbeats), at most each minute.
    let upkeep = Duration::from_secs((heartbeat_secs * 5).min(60));
    let (m, d) = (meta.clone(), data.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(upkeep);
        loop {
            tick.tick().await;
            if let Err(e) = m.clean_dead_sessions().await {
                tracing::warn!(error = %e, "cleaning dead sessions failed");
            }
            if let Err(e) = d.clean_abandoned_uploads().await {
                tracing::warn!(error = %e, "cleaning abandoned uploads failed");
            }
            let now = jfs::meta::Timestamp::now().sec;
            if let Err(e) = m.clean_trash(now).await {
                tracing::warn!(error = %e, "cleaning the trash failed");
            }
        }
    });
    // Deleted data goes soon after this client deletes it, not at the
    // next upkeep: a minute's deletes reclaimed at once competed with
    // whatever ran then (a mount started after `jfs bench` deleted 4 GiB
    // spent its first cold read deleting their blocks). One pass a moment
    // after the first delete of a burst takes the whole burst; a pass each
    // upkeep, not at start, takes what other clients left.
    let (m, d) = (meta.clone(), data.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + upkeep, upkeep);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = m.reclaim_queued() => tokio::time::sleep(RECLAIM_DELAY).await,
            }
            if let Err(e) = d.reclaim().await {
                tracing::warn!(error = %e, "reclaiming deleted data failed");
            }
        }
    });
}

/// How long the reclaimer waits after this client queues deleted data:
/// the rest of a burst of deletes joins the pass, and the transaction that
/// woke it has committed.
const RECLAIM_DELAY: Duration = Duration::from_secs(1);

async fn unmount_on_signal(mut unmounter: fuser::SessionUnmounter, mount_point: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        tracing::info!(mount_point = %mount_point.display(), "signal received: unmounting");
        match unmounter.unmount() {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "cannot unmount (busy?); still serving"),
        }
    }
}

/// Answers `jfs info`, `jfs status` and `jfs umount` on the control socket.
async fn serve_control(vfs: Arc<Vfs>, record: MountRecord, root: u64) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let path = registry::socket_path(Path::new(&record.mount_point));
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket: jfs info will not work");
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let vfs = vfs.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let answer = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(req) => control_request(&vfs, &record, root, &req).await,
                Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }),
            };
            let mut out = serde_json::to_vec(&answer).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

async fn control_request(
    vfs: &Vfs,
    record: &MountRecord,
    root: u64,
    req: &serde_json::Value,
) -> serde_json::Value {
    use serde_json::json;
    match req.get("op").and_then(|o| o.as_str()) {
        Some("status") => json!({
            "mount": record,
            "pending_uploads": vfs.data().pending_uploads(),
            "buffer_bytes_in_use": vfs.data().buffer_in_use(),
            "volume": vfs.meta().volume().redacted(),
            "sessions": sessions_json(vfs.meta()).await,
        }),
        Some("stats") => {
            let mut stats = jfs::metrics::snapshot(vfs.data().gauges());
            stats["mount"] = json!(record.mount_point);
            stats
        }
        Some("info") => {
            // The kernel knows the mount's root as inode 1 (--subdir).
            let ino = match req.get("ino").and_then(|i| i.as_u64()) {
                Some(ROOT_INO) => root,
                Some(ino) => ino,
                None => 0,
            };
            match inode_info(vfs, ino).await {
                Ok(v) => v,
                Err(e) => json!({ "error": e }),
            }
        }
        _ => json!({ "error": "unknown request" }),
    }
}

/// Live and expired sessions of the volume, for `jfs status`.
pub async fn sessions_json(meta: &Meta) -> serde_json::Value {
    let now = jfs::meta::Timestamp::now().sec;
    match meta.list_sessions().await {
        Ok(list) => serde_json::Value::Array(
            list.into_iter()
                .map(|s| {
                    let info = s.info.as_ref();
                    let beat = s.last_heartbeat();
                    serde_json::json!({
                        "sid": s.sid,
                        "alive": s.alive_at(now),
                        "host": info.map(|i| i.host.clone()),
                        "pid": info.map(|i| i.pid),
                        "mount_point": info.map(|i| i.mount_point.clone()),
                        "version": info.map(|i| i.version.clone()),
                        "last_heartbeat": beat.map(jfs::meta::utc_time),
                        "last_heartbeat_secs_ago": beat.map(|b| now - b),
                        "expires_in_secs": s.expiry - now,
                    })
                })
                .collect(),
        ),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

/// Inode, size, slices and objects of one inode, for `jfs info`.
async fn inode_info(vfs: &Vfs, ino: u64) -> Result<serde_json::Value, String> {
    let attr = vfs.meta().getattr(ino).await.map_err(|e| e.to_string())?;
    let block = vfs.meta().volume().block_size_bytes as u64;
    let mut chunks = Vec::new();
    let mut objects = Vec::new();
    if attr.kind == jfs::meta::FileKind::File {
        for index in 0..attr.length.div_ceil(CHUNK_SIZE) {
            let records = vfs
                .meta()
                .read_chunk(ino, index as u32)
                .await
                .map_err(|e| e.to_string())?;
            for r in &records {
                if r.id != 0 {
                    let size = r.size as u64;
                    for b in 0..size.div_ceil(block) {
                        let len = (size - b * block).min(block);
                        objects.push(block_key(r.id, b as u32, len as u32));
                    }
                }
            }
            chunks.push(serde_json::json!({
                "index": index,
                "slices": records.iter().map(|r| serde_json::json!({
                    "pos": r.pos, "id": r.id, "size": r.size, "offset": r.offset, "len": r.len,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    objects.sort();
    objects.dedup();
    Ok(serde_json::json!({
        "inode": ino,
        "kind": format!("{:?}", attr.kind),
        "size": attr.length,
        "nlink": attr.nlink,
        "chunks": chunks,
        "objects": objects,
    }))
}
