//! Metadata URLs: one parser for every engine, in the forms JuiceFS users
//! know. Passwords are kept in a [`Secret`] and never shown: `Display` and
//! `Debug` of a [`MetaUrl`], and every parse error, print `****` instead.
//!
//! | form | engine |
//! |---|---|
//! | `PATH` (no `://`) or `fjall://PATH` | embedded default (a directory) |
//! | `mem://NAME` | in-process, for tests |
//! | `etcd://[user:pass@]h1:2379,h2:2379/prefix?cacert=&cert=&key=` | etcd |
//! | `tikv://pd1:2379,pd2:2379/prefix` | TiKV |
//! | `fdb://path/to/fdb.cluster?prefix=vol` | FoundationDB |
//! | `redis://[user][:pass]@host:6379/1`, `rediss://...` | Redis |
//! | `sqlite3://path` | SQLite |
//! | `postgres://user:pass@host:5432/db?sslmode=disable` | PostgreSQL |
//! | `mysql://user:pass@(host:3306)/db` | MySQL, MariaDB |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::local::fjall;
use super::mem::open_mem;
use super::{Engine, KvError, KvResult};

/// A password or other credential. Shown as `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// User name and password from a URL or the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// A parsed metadata URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaUrl {
    Embedded {
        path: PathBuf,
    },
    Mem {
        name: String,
    },
    Etcd {
        endpoints: Vec<Endpoint>,
        prefix: String,
        credentials: Credentials,
        params: Vec<(String, String)>,
    },
    Tikv {
        endpoints: Vec<Endpoint>,
        prefix: String,
    },
    Fdb {
        cluster_file: PathBuf,
        prefix: String,
    },
    Redis {
        tls: bool,
        endpoint: Endpoint,
        db: u32,
        credentials: Credentials,
        /// `prefix=` puts the volume's keys under `PREFIX:` (several
        /// volumes in one database); `insecure=1` skips TLS host checks;
        /// `notices=0` reads without subscribing to change notices.
        params: Vec<(String, String)>,
    },
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        endpoint: Endpoint,
        database: String,
        credentials: Credentials,
        params: Vec<(String, String)>,
    },
    Mysql {
        endpoint: Endpoint,
        database: String,
        credentials: Credentials,
        params: Vec<(String, String)>,
    },
}

/// Schemes this parser knows, for error messages.
const SCHEMES: &str =
    "fjall (or a plain path), mem, etcd, tikv, fdb, redis, rediss, sqlite3, postgres, mysql";

/// Where FoundationDB clients look for the cluster file by default.
const FDB_DEFAULT_CLUSTER_FILE: &str = "/etc/foundationdb/fdb.cluster";

impl MetaUrl {
    /// Parses `raw`, taking a missing password from `META_PASSWORD` (and for
    /// Redis also `REDIS_PASSWORD`), so it can stay out of process lists.
    pub fn parse(raw: &str) -> Result<MetaUrl, KvError> {
        Self::parse_with_env(raw, |name| std::env::var(name).ok())
    }

    /// As [`MetaUrl::parse`], with the environment given as a lookup.
    pub fn parse_with_env(
        raw: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<MetaUrl, KvError> {
        let fail =
            |why: String| KvError::Fatal(format!("invalid metadata URL '{}': {why}", redact(raw)));
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(KvError::Fatal(
                "empty metadata URL: give a path for the embedded engine (for example ./jfs.meta) or a URL such as redis://host:6379/1".into(),
            ));
        }
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Ok(MetaUrl::Embedded {
                path: PathBuf::from(raw),
            });
        };
        let scheme = scheme.to_ascii_lowercase();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, parse_query(q).map_err(&fail)?),
            None => (rest, Vec::new()),
        };
        let mut url = match scheme.as_str() {
            "fjall" => MetaUrl::Embedded {
                path: nonempty_path(rest).map_err(&fail)?,
            },
            "mem" => MetaUrl::Mem {
                name: rest.to_string(),
            },
            "sqlite3" | "sqlite" => MetaUrl::Sqlite {
                path: nonempty_path(rest).map_err(&fail)?,
            },
            "fdb" => {
                let cluster_file = if rest.is_empty() {
                    PathBuf::from(FDB_DEFAULT_CLUSTER_FILE)
                } else {
                    PathBuf::from(rest)
                };
                let prefix = query
                    .iter()
                    .find(|(k, _)| k == "prefix")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                MetaUrl::Fdb {
                    cluster_file,
                    prefix,
                }
            }
            "etcd" | "tikv" => {
                let (credentials, hosts, path) = split_authority(rest).map_err(&fail)?;
                let endpoints = hosts
                    .split(',')
                    .map(|h| parse_endpoint(h, 2379))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&fail)?;
                let prefix = path.trim_matches('/').to_string();
                if scheme == "etcd" {
                    MetaUrl::Etcd {
                        endpoints,
                        prefix,
                        credentials,
                        params: query,
                    }
                } else {
                    if credentials != Credentials::default() {
                        return Err(fail("TiKV URLs take no user or password".into()));
                    }
                    MetaUrl::Tikv { endpoints, prefix }
                }
            }
            "redis" | "rediss" => {
                let (credentials, host, path) = split_authority(rest).map_err(&fail)?;
                let endpoint = parse_endpoint(host, 6379).map_err(&fail)?;
                let db_text = path.trim_matches('/');
                let db = if db_text.is_empty() {
                    0
                } else {
                    db_text.parse().map_err(|_| {
                        fail(format!(
                            "database '{db_text}' is not a number (use redis://host:6379/1)"
                        ))
                    })?
                };
                MetaUrl::Redis {
                    tls: scheme == "rediss",
                    endpoint,
                    db,
                    credentials,
                    params: query,
                }
            }
            "postgres" | "postgresql" | "mysql" => {
                let (credentials, host, path) = split_authority(rest).map_err(&fail)?;
                let is_mysql = scheme == "mysql";
                // MySQL URLs in JuiceFS's (Go driver's) form put the address in
                // parentheses, optionally after "tcp".
                let host = host.strip_prefix("tcp").unwrap_or(host);
                let host = host
                    .strip_prefix('(')
                    .and_then(|h| h.strip_suffix(')'))
                    .unwrap_or(host);
                let endpoint =
                    parse_endpoint(host, if is_mysql { 3306 } else { 5432 }).map_err(&fail)?;
                let database = path.trim_matches('/').to_string();
                if database.is_empty() {
                    return Err(fail("no database name (add /DBNAME after the host)".into()));
                }
                if is_mysql {
                    MetaUrl::Mysql {
                        endpoint,
                        database,
                        credentials,
                        params: query,
                    }
                } else {
                    MetaUrl::Postgres {
                        endpoint,
                        database,
                        credentials,
                        params: query,
                    }
                }
            }
            other => {
                return Err(KvError::Fatal(format!(
                    "unknown metadata engine '{other}' in '{}': supported are {SCHEMES}",
                    redact(raw)
                )))
            }
        };
        url.fill_password_from_env(&env);
        Ok(url)
    }

    /// The password the URL carries, if its engine takes one.
    fn password(&self) -> Option<&str> {
        match self {
            MetaUrl::Redis { credentials, .. }
            | MetaUrl::Etcd { credentials, .. }
            | MetaUrl::Postgres { credentials, .. }
            | MetaUrl::Mysql { credentials, .. } => {
                credentials.password.as_ref().map(Secret::expose)
            }
            _ => None,
        }
    }

    fn fill_password_from_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        let (credentials, names): (&mut Credentials, &[&str]) = match self {
            MetaUrl::Redis { credentials, .. } => {
                (credentials, &["META_PASSWORD", "REDIS_PASSWORD"])
            }
            MetaUrl::Etcd { credentials, .. }
            | MetaUrl::Postgres { credentials, .. }
            | MetaUrl::Mysql { credentials, .. } => (credentials, &["META_PASSWORD"]),
            _ => return,
        };
        if credentials.password.is_none() {
            credentials.password = names
                .iter()
                .find_map(|n| env(n))
                .filter(|p| !p.is_empty())
                .map(Secret);
        }
    }

    /// The engine's short name.
    pub fn engine(&self) -> &'static str {
        match self {
            MetaUrl::Embedded { .. } => fjall::ENGINE_NAME,
            MetaUrl::Mem { .. } => "mem",
            MetaUrl::Etcd { .. } => "etcd",
            MetaUrl::Tikv { .. } => "tikv",
            MetaUrl::Fdb { .. } => "fdb",
            MetaUrl::Redis { .. } => "redis",
            MetaUrl::Sqlite { .. } => "sqlite3",
            MetaUrl::Postgres { .. } => "postgres",
            MetaUrl::Mysql { .. } => "mysql",
        }
    }
}

/// Opens the engine `url` names.
pub fn open_engine(url: &MetaUrl) -> KvResult<Arc<dyn Engine>> {
    match url {
        MetaUrl::Embedded { path } => {
            std::fs::create_dir_all(path).map_err(|e| {
                KvError::Fatal(format!(
                    "cannot create metadata directory {}: {e}",
                    path.display()
                ))
            })?;
            Ok(Arc::new(fjall::open_engine(path)?))
        }
        MetaUrl::Mem { name } => Ok(open_mem(name)),
        #[cfg(feature = "etcd")]
        MetaUrl::Etcd {
            endpoints,
            prefix,
            credentials,
            params,
        } => Ok(Arc::new(super::etcd::EtcdEngine::new(
            endpoints,
            prefix,
            credentials,
            params,
        )?)),
        #[cfg(feature = "redis")]
        MetaUrl::Redis {
            tls,
            endpoint,
            db,
            credentials,
            params,
        } => Ok(Arc::new(super::redis::RedisEngine::new(
            *tls,
            endpoint,
            *db,
            credentials,
            params,
        )?)),
        #[cfg(feature = "postgres")]
        MetaUrl::Postgres {
            endpoint,
            database,
            credentials,
            params,
        } => Ok(Arc::new(super::postgres::PostgresEngine::new(
            endpoint,
            database,
            credentials,
            params,
        )?)),
        #[cfg(feature = "mysql")]
        MetaUrl::Mysql {
            endpoint,
            database,
            credentials,
            params,
        } => Ok(Arc::new(super::mysql::MysqlEngine::new(
            endpoint,
            database,
            credentials,
            params,
        )?)),
        #[cfg(feature = "sqlite")]
        MetaUrl::Sqlite { path } => Ok(Arc::new(super::local::sqlite::open_file(path)?)),
        #[cfg(feature = "tikv")]
        MetaUrl::Tikv { endpoints, prefix } => {
            Ok(Arc::new(super::tikv::TikvEngine::new(endpoints, prefix)))
        }
        #[cfg(feature = "fdb")]
        MetaUrl::Fdb {
            cluster_file,
            prefix,
        } => Ok(Arc::new(super::fdb::FdbEngine::new(cluster_file, prefix)?)),
        // Unreachable when every engine feature is on.
        #[allow(unreachable_patterns)]
        other => Err(KvError::Fatal(format!(
            "this jfs was built without the `{}` metadata engine (cargo feature `{}`); available: {} (a path), mem{}{}{}{}{}{}{}",
            other.engine(),
            other.engine(),
            fjall::ENGINE_NAME,
            if cfg!(feature = "sqlite") { ", sqlite3" } else { "" },
            if cfg!(feature = "redis") { ", redis" } else { "" },
            if cfg!(feature = "postgres") { ", postgres" } else { "" },
            if cfg!(feature = "mysql") { ", mysql" } else { "" },
            if cfg!(feature = "etcd") { ", etcd" } else { "" },
            if cfg!(feature = "tikv") { ", tikv" } else { "" },
            if cfg!(feature = "fdb") { ", fdb" } else { "" },
        ))),
    }
}

impl fmt::Display for MetaUrl {
    /// The URL with any password replaced by `****`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn userinfo(c: &Credentials) -> String {
            match (&c.user, &c.password) {
                (None, None) => String::new(),
                (Some(u), None) => format!("{u}@"),
                (u, Some(_)) => format!("{}:****@", u.as_deref().unwrap_or("")),
            }
        }
        fn query(params: &[(String, String)]) -> String {
            if params.is_empty() {
                return String::new();
            }
            let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("?{}", joined.join("&"))
        }
        let list = |eps: &[Endpoint]| {
            eps.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            MetaUrl::Embedded { path } => write!(f, "{}://{}", fjall::ENGINE_NAME, path.display()),
            MetaUrl::Mem { name } => write!(f, "mem://{name}"),
            MetaUrl::Etcd {
                endpoints,
                prefix,
                credentials,
                params,
            } => {
                write!(
                    f,
                    "etcd://{}{}/{prefix}{}",
                    userinfo(credentials),
                    list(endpoints),
                    query(params)
                )
            }
            MetaUrl::Tikv { endpoints, prefix } => write!(f, "tikv://{}/{prefix}", list(endpoints)),
            MetaUrl::Fdb {
                cluster_file,
                prefix,
            } => write!(f, "fdb://{}?prefix={prefix}", cluster_file.display()),
            MetaUrl::Redis {
                tls,
                endpoint,
                db,
                credentials,
                params,
            } => {
                let scheme = if *tls { "rediss" } else { "redis" };
                write!(
                    f,
                    "{scheme}://{}{endpoint}/{db}{}",
                    userinfo(credentials),
                    query(params)
                )
            }
            MetaUrl::Sqlite { path } => write!(f, "sqlite3://{}", path.display()),
            MetaUrl::Postgres {
                endpoint,
                database,
                credentials,
                params,
            } => {
                write!(
                    f,
                    "postgres://{}{endpoint}/{database}{}",
                    userinfo(credentials),
                    query(params)
                )
            }
            MetaUrl::Mysql {
                endpoint,
                database,
                credentials,
                params,
            } => {
                write!(
                    f,
                    "mysql://{}({endpoint})/{database}{}",
                    userinfo(credentials),
                    query(params)
                )
            }
        }
    }
}

/// `raw` with the password of its user-info part replaced by `****`, for
/// messages about URLs that may not parse.
pub fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let before_query = rest.split('?').next().unwrap_or(rest);
    let Some(at) = before_query.rfind('@') else {
        return raw.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****{}", &rest[at..]),
        None => raw.to_string(),
    }
}

/// For a URL that carries a password the engine can also take from
/// `META_PASSWORD`: the URL without it, and the password. None when there
/// is none, or when the URL without it would not mean the same (then the
/// URL is kept whole).
pub fn split_password(raw: &str) -> Option<(String, String)> {
    let (scheme, rest) = raw.split_once("://")?;
    let before_query = rest.split('?').next().unwrap_or(rest);
    let at = before_query.rfind('@')?;
    let (user, password) = rest[..at].split_once(':')?;
    if password.is_empty() {
        return None;
    }
    let stripped = if user.is_empty() {
        format!("{scheme}://{}", &rest[at + 1..])
    } else {
        format!("{scheme}://{user}{}", &rest[at..])
    };
    let whole = MetaUrl::parse_with_env(raw, |_| None).ok()?;
    // The password as the engine uses it (percent-decoded).
    let password = whole.password()?.to_string();
    let from_env = |name: &str| (name == "META_PASSWORD").then(|| password.clone());
    let same = whole == MetaUrl::parse_with_env(&stripped, from_env).ok()?;
    same.then_some((stripped, password))
}

fn nonempty_path(rest: &str) -> Result<PathBuf, String> {
    if rest.is_empty() {
        return Err("no path after the scheme".into());
    }
    Ok(PathBuf::from(rest))
}

/// Splits `[userinfo@]hosts[/path]`.
fn split_authority(rest: &str) -> Result<(Credentials, &str, &str), String> {
    let (credentials, after) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let user = percent_decode(user)?;
            let password = password.map(percent_decode).transpose()?;
            (
                Credentials {
                    user: Some(user).filter(|u| !u.is_empty()),
                    password: password.filter(|p| !p.is_empty()).map(Secret),
                },
                &rest[at + 1..],
            )
        }
        None => (Credentials::default(), rest),
    };
    // A path starts at the first '/' outside parentheses (MySQL's "(h:p)").
    let mut depth = 0;
    let split = after.char_indices().find(|&(_, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        c == '/' && depth == 0
    });
    let (hosts, path) = match split {
        Some((i, _)) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    if hosts.is_empty() {
        return Err("no host given".into());
    }
    Ok((credentials, hosts, path))
}

fn parse_endpoint(text: &str, default_port: u16) -> Result<Endpoint, String> {
    let text = text.trim();
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("host '{text}' opens '[' without closing it"))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("empty host in '{text}'"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!(
            "host '{host}' has characters a host name cannot have"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(format!(
                    "port '{p}' of host '{host}' is not a number from 1 to 65535"
                ))
            }
        },
    };
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a '%' escape is not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape does not decode to UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_split_out_of_urls_mean_the_same_url() {
        for (raw, stripped, password) in [
            (
                "redis://tom:pw@127.0.0.1:6379/1",
                "redis://tom@127.0.0.1:6379/1",
                "pw",
            ),
            (
                "redis://:pw@127.0.0.1:6379/1?prefix=a",
                "redis://127.0.0.1:6379/1?prefix=a",
                "pw",
            ),
            ("rediss://u:p%40s@h:6380/2", "rediss://u@h:6380/2", "p@s"),
            (
                "postgres://u:secret@127.0.0.1:5432/db",
                "postgres://u@127.0.0.1:5432/db",
                "secret",
            ),
            (
                "mysql://u:secret@(127.0.0.1:3306)/db",
                "mysql://u@(127.0.0.1:3306)/db",
                "secret",
            ),
            (
                "etcd://u:secret@h1:2379,h2:2379/p",
                "etcd://u@h1:2379,h2:2379/p",
                "secret",
            ),
        ] {
            assert_eq!(
                split_password(raw),
                Some((stripped.to_string(), password.to_string())),
                "{raw}"
            );
        }
        for raw in [
            "redis://127.0.0.1:6379/1",
            "redis://tom@127.0.0.1:6379/1",
            "redis://tom:@127.0.0.1:6379/1",
            "/var/lib/jfs/vol.meta",
            "sqlite3:///tmp/x.db",
        ] {
            assert_eq!(split_password(raw), None, "{raw}");
        }
    }

    fn parse(raw: &str) -> Result<MetaUrl, KvError> {
        MetaUrl::parse_with_env(raw, |_| None)
    }

    fn message(raw: &str) -> String {
        parse(raw).unwrap_err().to_string()
    }

    #[test]
    fn plain_path_is_the_embedded_engine() {
        assert_eq!(
            parse("./vol.meta").unwrap(),
            MetaUrl::Embedded {
                path: "./vol.meta".into()
            }
        );
        assert_eq!(
            parse("fjall:///var/jfs").unwrap(),
            MetaUrl::Embedded {
                path: "/var/jfs".into()
            }
        );
    }

    #[test]
    fn redis_forms_parse_with_and_without_user() {
        let MetaUrl::Redis {
            tls,
            endpoint,
            db,
            credentials,
            ..
        } = parse("redis://tom:mypassword@host:6380/1").unwrap()
        else {
            panic!("not redis")
        };
        assert!(!tls);
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port, db),
            ("host", 6380, 1)
        );
        assert_eq!(credentials.user.as_deref(), Some("tom"));
        assert_eq!(
            credentials.password.as_ref().map(Secret::expose),
            Some("mypassword")
        );

        let MetaUrl::Redis {
            tls,
            credentials,
            endpoint,
            db,
            ..
        } = parse("rediss://:p%40ss@10.0.0.1/2").unwrap()
        else {
            panic!("not redis")
        };
        assert!(tls);
        assert_eq!(credentials.user, None);
        assert_eq!(
            credentials.password.as_ref().map(Secret::expose),
            Some("p@ss")
        );
        assert_eq!((endpoint.port, db), (6379, 2));
    }

    #[test]
    fn password_comes_from_the_environment_when_absent() {
        let url = MetaUrl::parse_with_env("redis://host/1", |n| {
            (n == "REDIS_PASSWORD").then(|| "envpw".into())
        })
        .unwrap();
        let MetaUrl::Redis { credentials, .. } = url else {
            panic!()
        };
        assert_eq!(credentials.password.unwrap().expose(), "envpw");
    }

    #[test]
    fn etcd_takes_several_hosts_and_a_prefix() {
        let MetaUrl::Etcd {
            endpoints,
            prefix,
            params,
            ..
        } = parse("etcd://h1:2379,h2,[::1]:2380/jfs/vol?cacert=/ca.pem").unwrap()
        else {
            panic!()
        };
        let shown: Vec<String> = endpoints.iter().map(Endpoint::to_string).collect();
        assert_eq!(shown, ["h1:2379", "h2:2379", "[::1]:2380"]);
        assert_eq!(prefix, "jfs/vol");
        assert_eq!(params, vec![("cacert".to_string(), "/ca.pem".to_string())]);
    }

    #[test]
    fn mysql_accepts_parenthesised_address() {
        let MetaUrl::Mysql {
            endpoint, database, ..
        } = parse("mysql://root:pw@(127.0.0.1:3307)/jfs").unwrap()
        else {
            panic!()
        };
        assert_eq!((endpoint.port, database.as_str()), (3307, "jfs"));
        let MetaUrl::Postgres { endpoint, .. } =
            parse("postgres://u:p@db/jfs?sslmode=disable").unwrap()
        else {
            panic!()
        };
        assert_eq!(endpoint.port, 5432);
    }

    #[test]
    fn fdb_defaults_cluster_file_and_reads_prefix() {
        assert_eq!(
            parse("fdb://?prefix=vol").unwrap(),
            MetaUrl::Fdb {
                cluster_file: FDB_DEFAULT_CLUSTER_FILE.into(),
                prefix: "vol".into()
            }
        );
    }

    #[test]
    fn unknown_scheme_lists_the_supported_ones() {
        let m = message("foo://bar");
        assert!(
            m.contains("unknown metadata engine 'foo'") && m.contains("redis"),
            "{m}"
        );
    }

    #[test]
    fn bad_port_and_host_are_named() {
        assert!(message("redis://host:abc/1").contains("port 'abc'"));
        assert!(message("redis://host:70000/1").contains("port '70000'"));
        assert!(message("etcd://h1:2379,/p").contains("empty host"));
        assert!(message("redis:///1").contains("no host"));
        assert!(message("redis://ho st:1/1").contains("host 'ho st'"));
    }

    #[test]
    fn passwords_never_show() {
        let raw = "redis://tom:hunter2@host:abc/1";
        assert!(!message(raw).contains("hunter2"));
        let url = parse("postgres://tom:hunter2@db:5432/jfs").unwrap();
        assert!(!url.to_string().contains("hunter2"), "{url}");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.to_string().contains("tom:****@"));
        assert!(!message("mysql://u:hunter2@(db:x)/jfs").contains("hunter2"));
    }

    #[test]
    fn engines_not_built_in_say_so() {
        let err = open_engine(&parse("fdb:///etc/fdb.cluster").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("built without the `fdb`"), "{err}");
    }
}
