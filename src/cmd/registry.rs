//! Running mounts on this host: each `jfs mount` writes a record
//! (`<id>.json`: pid, mount point, volume) and serves a control socket
//! (`<id>.sock`) in the runtime directory, so that `jfs umount`, `jfs
//! info` and `jfs status` can find and ask the process that owns a mount
//! (the embedded engine admits one process, so they cannot open it
//! themselves). One JSON request and one JSON answer per connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{is_root, CmdError, CmdResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mount_point: String,
    /// The metadata URL with any password hidden.
    pub meta_url: String,
    pub volume: String,
    pub uuid: String,
    pub session: u64,
}

/// Where records and sockets live: `/run/jfs` as root, else
/// `$XDG_RUNTIME_DIR/jfs` or `/tmp/jfs-UID`.
pub fn runtime_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/jfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("jfs"),
        // SAFETY: getuid has no preconditions.
        None => PathBuf::from(format!("/tmp/jfs-{}", unsafe { libc::getuid() })),
    }
}

/// The file name stem for a mount point: a hash, since paths may be long.
fn id(mount_point: &Path) -> String {
    // FNV-1a: stable across versions, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in mount_point.as_os_str().as_encoded_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

pub fn record_path(mount_point: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.json", id(mount_point)))
}

pub fn socket_path(mount_point: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.sock", id(mount_point)))
}

pub fn write_record(record: &MountRecord) -> std::io::Result<()> {
    let dir = runtime_dir();
    std::fs::create_dir_all(&dir)?;
    let path = record_path(Path::new(&record.mount_point));
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(record).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

pub fn remove_record(mount_point: &Path) {
    let _ = std::fs::remove_file(record_path(mount_point));
    let _ = std::fs::remove_file(socket_path(mount_point));
}

pub fn read_record(mount_point: &Path) -> Option<MountRecord> {
    let raw = std::fs::read(record_path(mount_point)).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Records of mounts whose process is alive.
pub fn live_records() -> Vec<MountRecord> {
    let Ok(dir) = std::fs::read_dir(runtime_dir()) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<MountRecord>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|r| process_alive(r.pid))
        .collect()
}

/// Whether process `pid` runs (a zombie, exited but not reaped, does not).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state ...: comm may hold spaces, so look after ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends one request to the mount at `mount_point` and returns its answer.
pub fn ask(mount_point: &Path, request: &serde_json::Value) -> CmdResult<serde_json::Value> {
    let path = socket_path(mount_point);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        CmdError::new(format!(
            "cannot reach the jfs process serving {}: {e}",
            mount_point.display()
        ))
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(request).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let value: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| CmdError::new(format!("bad answer from the mount process: {e}")))?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        return Err(CmdError::new(err.to_string()));
    }
    Ok(value)
}
