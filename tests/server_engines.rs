//! The engines users already run as servers (Redis, PostgreSQL,
//! MySQL/MariaDB) through the `jfs` binary: a mounted volume on each, and
//! the URL forms, password sources and warnings of each. An engine whose
//! server is not given (JFS_TEST_REDIS, JFS_TEST_POSTGRES, JFS_TEST_MYSQL)
//! is reported as ignored; `ci/test.sh` starts all three.

mod mount;

use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::{Arguments, Failed, Trial};
use mount::{jfs, stderr, stdout, JFS};

type Check = fn(&str) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (engine, var) in [
        ("redis", "JFS_TEST_REDIS"),
        ("postgres", "JFS_TEST_POSTGRES"),
        ("mysql", "JFS_TEST_MYSQL"),
    ] {
        let url = std::env::var(var).ok().filter(|u| !u.is_empty());
        let mut tests: Vec<(&str, Check)> =
            vec![("mounted_volume_reads_back_after_remount", mounted_volume)];
        if engine == "redis" {
            tests.push(("url_forms_and_password_sources", redis_url_forms));
            tests.push(("eviction_policy_warning", redis_eviction_warning));
        } else {
            tests.push(("password_sources_and_wrong_password", sql_passwords));
        }
        for (name, test) in tests {
            let given = url.clone();
            let trial = Trial::test(format!("{engine}::{name}"), move || {
                test(given.as_deref().unwrap_or_default())
            })
            .with_ignored_flag(url.is_none());
            trials.push(trial);
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn ensure(cond: bool, what: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

fn succeeded(out: &Output, what: &str) -> Result<(), Failed> {
    ensure(
        out.status.success(),
        format!("{what} failed: {}{}", stdout(out), stderr(out)),
    )
}

/// A clean failure: non-zero exit, one error line saying `expect`, no
/// panic, and none of `secrets` anywhere in the output.
fn failed_cleanly(out: &Output, expect: &str, secrets: &[&str]) -> Result<(), Failed> {
    let all = format!("{}{}", stdout(out), stderr(out));
    ensure(!out.status.success(), format!("succeeded: {all}"))?;
    ensure(
        out.status.code() != Some(101) && !all.contains("panicked"),
        format!("panicked: {all}"),
    )?;
    ensure(
        all.to_lowercase().contains(&expect.to_lowercase()),
        format!("error should mention {expect:?}: {all}"),
    )?;
    for secret in secrets {
        ensure(!all.contains(secret), format!("secret shown: {all}"))?;
    }
    Ok(())
}

/// `url` with a key space of its own, so runs and tests never meet.
fn unique(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}prefix=t{:016x}", fastrand::u64(..))
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jfs")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

fn mount_at(meta: &str, dir: &Path, at: &str) -> Output {
    let p = |s: &str| dir.join(s).display().to_string();
    let name = at.rsplit('/').next().unwrap_or("m");
    jfs(&[
        "mount",
        "-d",
        meta,
        at,
        "--cache-dir",
        &p(&format!("cache-{name}")),
        "--log",
        &p(&format!("log-{name}")),
    ])
}

/// Unmounts what it was given when dropped, so a failed check leaves no
/// mount behind.
struct Mounted(Vec<String>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for m in &self.0 {
            if mount::is_mount_point(Path::new(m)) {
                let _ = jfs(&["umount", "--force", m]);
            }
        }
    }
}

/// Format, two mounts at once (what one closes the other opens), write,
/// unmount, remount, read back; status lists both sessions.
fn mounted_volume(url: &str) -> Result<(), Failed> {
    let dir = temp_dir();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let meta = unique(url);
    let (a, b) = (p("a"), p("b"));
    std::fs::create_dir(&a)?;
    std::fs::create_dir(&b)?;
    let out = jfs(&["format", &meta, "server-vol", "--bucket", &p("data")]);
    succeeded(&out, "format")?;
    let _guard = Mounted(vec![a.clone(), b.clone()]);
    succeeded(&mount_at(&meta, dir.path(), &a), "mount a")?;
    succeeded(&mount_at(&meta, dir.path(), &b), "mount b")?;
    // The daemon's command line, readable by every user, holds no password.
    if let Some((_, password)) = jfs::kv::url::split_password(&meta) {
        let lines = command_lines_naming(&a);
        ensure(!lines.is_empty(), format!("no process found serving {a}"))?;
        for line in lines {
            ensure(
                !line.contains(&password),
                format!(
                    "the metadata password is in a process list: {}",
                    line.replace(&password, "<password>")
                ),
            )?;
        }
    }
    let data: Vec<u8> = (0..(5u32 << 20))
        .map(|i| (i * 7 + i / 4099) as u8)
        .collect();
    std::fs::write(format!("{a}/f"), &data)?;
    std::fs::create_dir_all(format!("{a}/d/e"))?;
    std::fs::write(format!("{a}/d/e/small"), b"small")?;
    ensure(
        std::fs::read(format!("{b}/f"))? == data,
        "the other mount read different bytes",
    )?;
    std::fs::rename(format!("{b}/d/e/small"), format!("{b}/d/moved"))?;
    ensure(
        std::fs::read(format!("{a}/d/moved"))? == b"small",
        "rename not seen by the first mount",
    )?;
    let status = jfs(&["status", &meta]);
    succeeded(&status, "status")?;
    ensure(
        stdout(&status).matches("\"mount_point\"").count() >= 2
            || stdout(&status).matches(&a).count() + stdout(&status).matches(&b).count() >= 2,
        format!("status should list both mounts: {}", stdout(&status)),
    )?;
    succeeded(&jfs(&["umount", &a]), "umount a")?;
    succeeded(&jfs(&["umount", &b]), "umount b")?;
    succeeded(&mount_at(&meta, dir.path(), &a), "remount")?;
    ensure(
        std::fs::read(format!("{a}/f"))? == data,
        "bytes differ after remount",
    )?;
    ensure(
        std::fs::read(format!("{a}/d/moved"))? == b"small",
        "renamed file lost after remount",
    )?;
    succeeded(&jfs(&["umount", &a]), "umount after remount")?;
    Ok(())
}

/// The command lines of the processes that name `path` among their
/// arguments.
fn command_lines_naming(path: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == path) && args.iter().any(|a| a == "mount") {
            found.push(args.join(" "));
        }
    }
    found
}

/// Host, port and database of a redis URL, and its password if any.
fn redis_parts(url: &str) -> Result<(String, Option<String>), Failed> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("JFS_TEST_REDIS is not a URL")?;
    let rest = rest.split('?').next().unwrap_or(rest);
    Ok(match rest.rsplit_once('@') {
        Some((auth, host)) => (
            host.to_string(),
            auth.split_once(':').map(|(_, p)| p.to_string()),
        ),
        None => (rest.to_string(), None),
    })
}

/// `jfs format` against `url`, with extra environment.
fn format_with(url: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(JFS);
    cmd.args([
        "format",
        url,
        "forms",
        "--bucket",
        &dir.join(format!("data-{:08x}", fastrand::u32(..)))
            .display()
            .to_string(),
    ])
    .env_remove("META_PASSWORD")
    .env_remove("REDIS_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run jfs")
}

/// The URL forms users type: user and password, password only (servers
/// before 6.0), the password from META_PASSWORD or REDIS_PASSWORD; a
/// wrong or missing password fails clearly and never shows the password.
fn redis_url_forms(url: &str) -> Result<(), Failed> {
    let (host, default_password) = redis_parts(url)?;
    let dir = temp_dir();
    // An ACL user of our own (Redis 6+).
    let user = format!("jfsuser{:08x}", fastrand::u32(..));
    let password = format!("pw-{:016x}", fastrand::u64(..));
    let client = redis::Client::open(url.split('?').next().unwrap_or(url))?;
    let mut conn = client.get_connection()?;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .exec(&mut conn)?;
    let form = |auth: &str| unique(&format!("redis://{auth}{host}"));

    succeeded(
        &format_with(&form(&format!("{user}:{password}@")), dir.path(), &[]),
        "user:password@",
    )?;
    succeeded(
        &format_with(
            &form(&format!("{user}@")),
            dir.path(),
            &[("META_PASSWORD", &password)],
        ),
        "password from META_PASSWORD",
    )?;
    succeeded(
        &format_with(
            &form(&format!("{user}@")),
            dir.path(),
            &[("REDIS_PASSWORD", &password)],
        ),
        "password from REDIS_PASSWORD",
    )?;
    if let Some(default_password) = &default_password {
        let out = format_with(&form(&format!(":{default_password}@")), dir.path(), &[]);
        succeeded(&out, ":password@ (default user)")?;
        ensure(
            !format!("{}{}", stdout(&out), stderr(&out)).contains(default_password.as_str()),
            "password shown by format",
        )?;
        // The ping latency is reported.
        ensure(
            stderr(&out).contains("ping"),
            format!("no ping latency: {}", stderr(&out)),
        )?;
        failed_cleanly(
            &format_with(&form(""), dir.path(), &[]),
            "authentication failed",
            &[],
        )?;
    }
    let wrong = "not-the-password-42";
    failed_cleanly(
        &format_with(&form(&format!("{user}:{wrong}@")), dir.path(), &[]),
        "authentication failed",
        &[wrong],
    )?;
    failed_cleanly(
        &format_with(
            &form(&format!("{user}@")),
            dir.path(),
            &[("META_PASSWORD", wrong)],
        ),
        "authentication failed",
        &[wrong],
    )?;
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .exec(&mut conn)?;
    Ok(())
}

/// `scheme://user:password@rest` split at the password.
fn split_password(url: &str) -> Result<(String, String, String), Failed> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (auth, host) = rest.rsplit_once('@').ok_or("the test URL has no user")?;
    let (user, password) = auth.split_once(':').ok_or("the test URL has no password")?;
    Ok((
        format!("{scheme}://{user}"),
        password.to_string(),
        format!("@{host}"),
    ))
}

/// The password from META_PASSWORD; a wrong one fails clearly and is
/// never shown.
fn sql_passwords(url: &str) -> Result<(), Failed> {
    let dir = temp_dir();
    let (head, password, tail) = split_password(url)?;
    let without = unique(&format!("{head}{tail}"));
    succeeded(
        &format_with(&without, dir.path(), &[("META_PASSWORD", &password)]),
        "password from META_PASSWORD",
    )?;
    let wrong = "not-the-password-42";
    failed_cleanly(
        &format_with(&unique(&format!("{head}:{wrong}{tail}")), dir.path(), &[]),
        "authentication failed",
        &[wrong, &password],
    )?;
    failed_cleanly(
        &format_with(&without, dir.path(), &[("META_PASSWORD", wrong)]),
        "authentication failed",
        &[wrong, &password],
    )
}

/// A server that may evict keys gets a warning at format and mount.
fn redis_eviction_warning(_url: &str) -> Result<(), Failed> {
    let dir = temp_dir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut server = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "allkeys-lru",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let result = (|| {
        let url = format!("redis://127.0.0.1:{port}/2");
        let mut out = format_with(&url, dir.path(), &[]);
        for _ in 0..50 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            out = format_with(&url, dir.path(), &[]);
        }
        succeeded(&out, "format")?;
        ensure(
            stderr(&out).contains("maxmemory-policy is 'allkeys-lru'")
                && stderr(&out).contains("noeviction"),
            format!("no eviction warning at format: {}", stderr(&out)),
        )?;
        let mnt = dir.path().join("m");
        std::fs::create_dir(&mnt)?;
        let mnt = mnt.display().to_string();
        let _guard = Mounted(vec![mnt.clone()]);
        let out = mount_at(&url, dir.path(), &mnt);
        succeeded(&out, "mount")?;
        ensure(
            stderr(&out).contains("noeviction"),
            format!("no eviction warning at mount: {}", stderr(&out)),
        )?;
        succeeded(&jfs(&["umount", &mnt]), "umount")
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
