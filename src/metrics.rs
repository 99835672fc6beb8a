//! What a mount counts, for `jfs mount --metrics ADDR` (Prometheus's text
//! format over HTTP) and `jfs stats MOUNTPOINT`: FUSE operations and their
//! latency, transactions, retries and conflicts, object requests, bytes
//! and latency, cache hits, buffer use.
//!
//! Counters are process-wide atomics, bumped where the work happens (the
//! FUSE adapter, the retry runner, the object retry layer, the block
//! reader), so counting costs a relaxed add and nothing is collected
//! unless asked for.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bounds of the latency buckets, in microseconds: from a cached
/// getattr (tens of µs) to a slow object request (seconds).
const BUCKETS_US: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000, 1_000_000,
];

/// A latency histogram with cumulative buckets, as Prometheus wants them.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len()],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            self.count()
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count());
    }
}

/// The FUSE operations counted, by the names the adapter gives them.
pub const FUSE_OPS: [&str; 34] = [
    "lookup",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "getlk",
    "setlk",
    "fallocate",
    "copy_file_range",
    "other",
];

static FUSE: [Histogram; FUSE_OPS.len()] = [const { Histogram::new() }; FUSE_OPS.len()];

/// Object requests by method.
pub const OBJECT_METHODS: [&str; 5] = ["get", "put", "delete", "head", "list"];

static OBJECT: [Histogram; OBJECT_METHODS.len()] =
    [const { Histogram::new() }; OBJECT_METHODS.len()];
static OBJECT_ERRORS: [AtomicU64; OBJECT_METHODS.len()] =
    [const { AtomicU64::new(0) }; OBJECT_METHODS.len()];
static OBJECT_BYTES_IN: AtomicU64 = AtomicU64::new(0);
static OBJECT_BYTES_OUT: AtomicU64 = AtomicU64::new(0);

/// Block cache lookups: memory and disk, hits and misses.
static MEMORY_HITS: AtomicU64 = AtomicU64::new(0);
static MEMORY_MISSES: AtomicU64 = AtomicU64::new(0);
static DISK_HITS: AtomicU64 = AtomicU64::new(0);
static DISK_MISSES: AtomicU64 = AtomicU64::new(0);

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Counts one FUSE request of `op` that took `took`.
pub fn fuse_op(op: &str, took: Duration) {
    let i = FUSE_OPS
        .iter()
        .position(|o| *o == op)
        .unwrap_or(FUSE_OPS.len() - 1);
    FUSE[i].observe(took);
}

/// Counts one object request (with its retries) of `method`.
pub fn object_request(method: &str, took: Duration, ok: bool) {
    let i = OBJECT_METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(0);
    OBJECT[i].observe(took);
    if !ok {
        OBJECT_ERRORS[i].fetch_add(1, Relaxed);
    }
}

/// Bytes received from (`inbound`) or sent to object storage.
pub fn object_bytes(inbound: bool, bytes: usize) {
    let counter = if inbound {
        &OBJECT_BYTES_IN
    } else {
        &OBJECT_BYTES_OUT
    };
    counter.fetch_add(bytes as u64, Relaxed);
}

pub fn memory_cache(hit: bool) {
    if hit { &MEMORY_HITS } else { &MEMORY_MISSES }.fetch_add(1, Relaxed);
}

pub fn disk_cache(hit: bool) {
    if hit { &DISK_HITS } else { &DISK_MISSES }.fetch_add(1, Relaxed);
}

/// Starts the uptime clock (at mount).
pub fn start() {
    let _ = STARTED.get_or_init(Instant::now);
}

/// Values only the mount knows when asked: buffer use, uploads waiting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub buffer_bytes: u64,
    pub buffer_limit_bytes: u64,
    pub pending_uploads: u64,
    /// Blocks allowed to upload at once now (see `data::limit`).
    pub upload_limit: u64,
    /// Decoded blocks kept in the memory cache now.
    pub memory_cache_bytes: u64,
    /// Page buffers (blocks being written, fetched, cached) in use now.
    pub page_bytes: u64,
    /// Page buffers kept for reuse.
    pub page_kept_bytes: u64,
}

/// Everything, as Prometheus's text exposition format (version 0.0.4).
pub fn render(gauges: Gauges) -> String {
    let mut out = String::with_capacity(16 << 10);
    let uptime = STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
    let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    gauge(
        &mut out,
        "jfs_uptime_seconds",
        "Seconds since the mount started.",
        uptime,
    );
    let _ = writeln!(
        out,
        "# HELP jfs_fuse_op_seconds FUSE requests by operation and their latency.\n# TYPE jfs_fuse_op_seconds histogram"
    );
    for (op, h) in FUSE_OPS.iter().zip(&FUSE) {
        if h.count() > 0 {
            h.render(&mut out, "jfs_fuse_op_seconds", &format!("op=\"{op}\""));
        }
    }
    let stats = &crate::kv::STATS;
    counter(
        &mut out,
        "jfs_transactions_total",
        "Metadata transactions run.",
        stats.transactions.load(Relaxed),
    );
    counter(
        &mut out,
        "jfs_transaction_retries_total",
        "Transaction attempts after the first.",
        stats.retries.load(Relaxed),
    );
    counter(
        &mut out,
        "jfs_transaction_conflicts_total",
        "Attempts that failed because a key they read changed.",
        stats.conflicts.load(Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP jfs_object_request_seconds Object storage requests (with their retries) by method.\n# TYPE jfs_object_request_seconds histogram"
    );
    for (method, h) in OBJECT_METHODS.iter().zip(&OBJECT) {
        h.render(
            &mut out,
            "jfs_object_request_seconds",
            &format!("method=\"{method}\""),
        );
    }
    let _ = writeln!(
        out,
        "# HELP jfs_object_errors_total Object storage requests that failed after their retries.\n# TYPE jfs_object_errors_total counter"
    );
    for (method, e) in OBJECT_METHODS.iter().zip(&OBJECT_ERRORS) {
        let _ = writeln!(
            out,
            "jfs_object_errors_total{{method=\"{method}\"}} {}",
            e.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP jfs_object_bytes_total Bytes from and to object storage.\n# TYPE jfs_object_bytes_total counter\njfs_object_bytes_total{{direction=\"in\"}} {}\njfs_object_bytes_total{{direction=\"out\"}} {}",
        OBJECT_BYTES_IN.load(Relaxed),
        OBJECT_BYTES_OUT.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP jfs_cache_requests_total Block cache lookups.\n# TYPE jfs_cache_requests_total counter"
    );
    for (cache, result, value) in [
        ("memory", "hit", &MEMORY_HITS),
        ("memory", "miss", &MEMORY_MISSES),
        ("disk", "hit", &DISK_HITS),
        ("disk", "miss", &DISK_MISSES),
    ] {
        let _ = writeln!(
            out,
            "jfs_cache_requests_total{{cache=\"{cache}\",result=\"{result}\"}} {}",
            value.load(Relaxed)
        );
    }
    gauge(
        &mut out,
        "jfs_buffer_bytes",
        "Write buffer in use.",
        gauges.buffer_bytes as f64,
    );
    gauge(
        &mut out,
        "jfs_buffer_limit_bytes",
        "Write buffer size (--buffer-size).",
        gauges.buffer_limit_bytes as f64,
    );
    gauge(
        &mut out,
        "jfs_pending_uploads",
        "Blocks staged by writeback, not uploaded yet.",
        gauges.pending_uploads as f64,
    );
    gauge(
        &mut out,
        "jfs_upload_limit",
        "Blocks allowed to upload at once now (up to --max-uploads, fewer while the store is slow to answer).",
        gauges.upload_limit as f64,
    );
    gauge(
        &mut out,
        "jfs_memory_cache_bytes",
        "Decoded blocks kept in memory now (read ahead, or read and likely read again).",
        gauges.memory_cache_bytes as f64,
    );
    gauge(
        &mut out,
        "jfs_page_buffer_bytes",
        "Page-aligned block buffers in use now (blocks being written, fetched or kept in the memory cache).",
        gauges.page_bytes as f64,
    );
    gauge(
        &mut out,
        "jfs_page_buffer_kept_bytes",
        "Page-aligned block buffers unused and kept for reuse.",
        gauges.page_kept_bytes as f64,
    );
    out
}

/// The counters as JSON, for `jfs stats`.
pub fn snapshot(gauges: Gauges) -> Value {
    let ops: serde_json::Map<String, Value> = FUSE_OPS
        .iter()
        .zip(&FUSE)
        .filter(|(_, h)| h.count() > 0)
        .map(|(op, h)| {
            (
                op.to_string(),
                json!({"count": h.count(), "sum_us": h.sum_us()}),
            )
        })
        .collect();
    let objects: serde_json::Map<String, Value> = OBJECT_METHODS
        .iter()
        .zip(&OBJECT)
        .zip(&OBJECT_ERRORS)
        .map(|((m, h), e)| {
            (
                m.to_string(),
                json!({"count": h.count(), "sum_us": h.sum_us(), "errors": e.load(Relaxed)}),
            )
        })
        .collect();
    json!({
        "uptime_seconds": STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64()),
        "fuse": ops,
        "transactions": crate::kv::STATS.to_json(),
        "objects": objects,
        "object_bytes_in": OBJECT_BYTES_IN.load(Relaxed),
        "object_bytes_out": OBJECT_BYTES_OUT.load(Relaxed),
        "cache": {
            "memory_hits": MEMORY_HITS.load(Relaxed),
            "memory_misses": MEMORY_MISSES.load(Relaxed),
            "disk_hits": DISK_HITS.load(Relaxed),
            "disk_misses": DISK_MISSES.load(Relaxed),
        },
        "buffer_bytes": gauges.buffer_bytes,
        "buffer_limit_bytes": gauges.buffer_limit_bytes,
        "pending_uploads": gauges.pending_uploads,
        "upload_limit": gauges.upload_limit,
        "memory_cache_bytes": gauges.memory_cache_bytes,
        "page_buffer_bytes": gauges.page_bytes,
        "page_buffer_kept_bytes": gauges.page_kept_bytes,
    })
}

/// Serves `GET /metrics` (any path answers the same) on `listener` until
/// the runtime stops; `gauges` is asked at each request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
) {
    let gauges = std::sync::Arc::new(gauges);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let gauges = gauges.clone();
        tokio::spawn(async move {
            // The request itself does not matter: read its head and answer.
            let mut head = vec![0u8; 4096];
            let mut read = 0;
            while read < head.len() {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head[read..]))
                    .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        read += n;
                        if head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let body = render(gauges());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"t\"");
        assert!(out.contains("x_bucket{op=\"t\",le=\"0.00005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{op=\"t\",le=\"0.001\"} 2"), "{out}");
        assert!(out.contains("x_bucket{op=\"t\",le=\"1\"} 2"), "{out}");
        assert!(out.contains("x_bucket{op=\"t\",le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count{op=\"t\"} 3"), "{out}");
    }
}
