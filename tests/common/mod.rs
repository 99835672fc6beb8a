//! Engines the suites run against, chosen at run time: always the in-process
//! ones, and an external engine when its address is given in the environment.

#![allow(dead_code)]

use std::sync::Arc;

use jfs::kv::{Db, DbOptions, Engine, FaultConfig, MetaUrl};
use jfs::meta::{Meta, Volume};

/// One engine under test, with how to open it.
pub struct EngineUnderTest {
    pub label: String,
    /// Why it is skipped, when it is.
    pub skip: Option<String>,
    pub strict: bool,
    pub faults: Option<FaultConfig>,
    url: Option<String>,
    embedded: bool,
    /// Candidate stores, compiled in with their cargo features.
    candidate: Option<&'static str>,
}

/// A fresh, empty engine, plus its fault-free twin over the same data.
pub struct Opened {
    engine: Arc<dyn Engine>,
    /// With fault injection when the configuration has it.
    pub db: Db,
    /// The same data, no faults: for tests that need exact interleavings.
    pub clean: Db,
    pub faults_on: bool,
    _dir: Option<tempfile::TempDir>,
}

/// Fault rate per kind for the fault-injecting configurations: high enough
/// that every kind occurs many times in each test.
pub const FAULT_RATE: f64 = 0.03;

pub fn engines() -> Vec<EngineUnderTest> {
    let mut list = Vec::new();
    for strict in [false, true] {
        let suffix = if strict { "_strict" } else { "" };
        list.push(EngineUnderTest {
            label: format!("mem_faults{suffix}"),
            skip: None,
            strict,
            faults: Some(FaultConfig::uniform(FAULT_RATE)),
            url: None,
            embedded: false,
            candidate: None,
        });
        list.push(EngineUnderTest {
            label: format!("fjall{suffix}"),
            skip: None,
            strict,
            faults: None,
            url: None,
            embedded: true,
            candidate: None,
        });
    }
    for candidate in ["redb", "sqlite"] {
        let built = (candidate == "redb" && cfg!(feature = "redb"))
            || (candidate == "sqlite" && cfg!(feature = "sqlite"));
        list.push(EngineUnderTest {
            label: format!("{candidate}_candidate"),
            skip: (!built).then(|| format!("built without the `{candidate}` feature")),
            strict: false,
            faults: None,
            url: None,
            embedded: true,
            candidate: Some(candidate),
        });
    }
    // External engines, run when an address is given.
    for (label, var) in [
        ("etcd", "JFS_TEST_ETCD"),
        ("tikv", "JFS_TEST_TIKV"),
        ("fdb", "FDB_CLUSTER_FILE"),
        ("redis", "JFS_TEST_REDIS"),
        ("postgres", "JFS_TEST_POSTGRES"),
        ("mysql", "JFS_TEST_MYSQL"),
    ] {
        let url = std::env::var(var).ok().filter(|v| !v.is_empty());
        list.push(EngineUnderTest {
            label: format!("{label}_strict"),
            skip: url.is_none().then(|| format!("{var} is not set")),
            strict: true,
            faults: None,
            url: url.map(|u| match label {
                // FDB_CLUSTER_FILE is a path; JFS_TEST_TIKV may be PD's
                // address alone.
                "fdb" => format!("fdb://{u}?prefix=jfs-test"),
                "tikv" if !u.contains("://") => format!("tikv://{u}/jfs-test"),
                _ => u,
            }),
            embedded: false,
            candidate: None,
        });
    }
    list
}

impl EngineUnderTest {
    pub fn open(&self) -> Opened {
        let mut dir = None;
        let engine: Arc<dyn Engine> = if self.embedded {
            let d = tempfile::tempdir().expect("temp dir");
            let url =
                MetaUrl::parse(d.path().join("meta").to_str().expect("utf-8 path")).expect("url");
            dir = Some(d);
            jfs::kv::url::open_engine(&url).expect("open embedded engine")
        } else if let Some(url) = &self.url {
            // A shared server: every opening gets a key space of its own.
            let unique = fastrand::u64(..);
            let url = if url.starts_with("etcd://") || url.starts_with("tikv://") {
                format!("{}/t{unique:016x}", url.trim_end_matches('/'))
            } else if url.starts_with("fdb://") {
                format!("{url}-t{unique:016x}")
            } else if ["redis://", "rediss://", "postgres://", "mysql://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}prefix=t{unique:016x}")
            } else {
                url.clone()
            };
            jfs::kv::url::open_engine(&MetaUrl::parse(&url).expect("url")).expect("open engine")
        } else {
            jfs::kv::url::open_engine(&MetaUrl::Mem {
                name: String::new(),
            })
            .expect("open mem")
        };
        let options = DbOptions {
            strict_limits: self.strict,
            ..Default::default()
        };
        Opened {
            engine: engine.clone(),
            db: Db::new(
                engine.clone(),
                DbOptions {
                    faults: self.faults,
                    ..options
                },
            ),
            clean: Db::new(engine, options),
            faults_on: self.faults.is_some(),
            _dir: dir,
        }
    }
}

fn open_embedded(path: &std::path::Path, candidate: Option<&str>) -> Arc<dyn Engine> {
    match candidate {
        #[cfg(feature = "redb")]
        Some("redb") => Arc::new(jfs::kv::local::redb::open_engine(path).expect("open redb")),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => Arc::new(jfs::kv::local::sqlite::open_engine(path).expect("open sqlite")),
        _ => {
            let url = MetaUrl::parse(path.to_str().expect("utf-8 path")).expect("url");
            jfs::kv::url::open_engine(&url).expect("open embedded engine")
        }
    }
}

impl Opened {
    /// The engine itself, to wrap in other options.
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    pub fn clean_db(&self) -> &Db {
        &self.clean
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A volume record for tests: no trash, no limits, unless changed.
pub fn volume(name: &str) -> Volume {
    Volume {
        trash_days: 0,
        ..Volume::new(name, "file", "/tmp/none")
    }
}

/// A fresh private `mem` engine with strict limits and `faults`.
pub fn mem_db(faults: Option<FaultConfig>) -> Db {
    let engine = jfs::kv::url::open_engine(&MetaUrl::Mem {
        name: String::new(),
    })
    .expect("mem");
    Db::new(
        engine,
        DbOptions {
            strict_limits: true,
            faults,
            ..Default::default()
        },
    )
}

/// `volume` formatted on a fresh private `mem` engine with strict limits.
pub async fn mem_meta(volume: Volume) -> Meta {
    format_and_load(mem_db(None), volume).await
}

pub async fn format_and_load(db: Db, volume: Volume) -> Meta {
    Meta::format(&db, &volume, false).await.expect("format");
    Meta::load(db).await.expect("load")
}

/// An object store that forwards every request to `inner` after `screen`
/// has seen it as (operation, key), operation one of "put", "get" and
/// "get_range", and has finished: its error is the request's answer. Tests
/// count, slow down, hold or refuse requests with it.
pub struct Screened<F> {
    pub inner: Arc<dyn jfs::object::ObjectStore>,
    pub screen: F,
}

#[async_trait::async_trait]
impl<F, Fut> jfs::object::ObjectStore for Screened<F>
where
    F: Fn(&'static str, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = jfs::object::ObjectResult<()>> + Send,
{
    fn describe(&self) -> String {
        format!("screened {}", self.inner.describe())
    }
    async fn put(&self, key: &str, data: bytes::Bytes) -> jfs::object::ObjectResult<()> {
        (self.screen)("put", key.to_string()).await?;
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> jfs::object::ObjectResult<bytes::Bytes> {
        (self.screen)("get", key.to_string()).await?;
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> jfs::object::ObjectResult<Vec<u8>> {
        (self.screen)("get_range", key.to_string()).await?;
        self.inner.get_range(key, offset, len).await
    }
    async fn delete(&self, key: &str) -> jfs::object::ObjectResult<()> {
        self.inner.delete(key).await
    }
    async fn head(&self, key: &str) -> jfs::object::ObjectResult<Option<jfs::object::ObjectInfo>> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> jfs::object::ObjectResult<Vec<jfs::object::ObjectInfo>> {
        self.inner.list(prefix, after, limit).await
    }
}
