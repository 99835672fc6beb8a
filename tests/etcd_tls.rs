//! The etcd engine over TLS with client certificates and etcd's own
//! authentication: an etcd member started by this test with certificates
//! made here (openssl), auth enabled with a root password. A transaction
//! runs through a URL carrying all of it; a wrong password, a missing
//! client certificate and a plain connection each fail with a clear error
//! that never shows the password.
//!
//! Needs `etcd`, `etcdctl` and `openssl`; ignored without them, failed
//! under JFS_REQUIRE_SUITES=1 (CI).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jfs::kv::{Db, DbOptions, MetaUrl, RetryPolicy};
use libtest_mimic::{Arguments, Failed, Trial};

const PASSWORD: &str = "s3cret-Pw";

fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), Failed> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certificates(dir: &Path) -> Result<(), Failed> {
    let ssl = |args: &[&str]| run("openssl", args, dir);
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=jfs-test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ])?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    for (name, cn) in [("server", "127.0.0.1"), ("client", "root")] {
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ])?;
        ssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ])?;
    }
    Ok(())
}

fn free_port() -> Result<u16, Failed> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The etcd member; killed (by PID) when dropped.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn roundtrip(url: &str) -> Result<Option<Vec<u8>>, String> {
    let url = MetaUrl::parse(url).map_err(|e| e.to_string())?;
    let engine = jfs::kv::url::open_engine(&url).map_err(|e| e.to_string())?;
    let db = Db::new(
        engine,
        DbOptions {
            retry: RetryPolicy {
                deadline: Duration::from_secs(5),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    db.run("tls", |tx| async move {
        tx.put(b"k".to_vec(), b"over tls".to_vec())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?;
    db.run("tls", |tx| async move { tx.get(b"k").await })
        .await
        .map_err(|e| e.to_string())
}

fn tls_and_auth() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    make_certificates(d)?;
    let (client, peer) = (free_port()?, free_port()?);
    let endpoint = format!("https://127.0.0.1:{client}");
    let log = std::fs::File::create(d.join("etcd.log"))?;
    let p = |f: &str| d.join(f).display().to_string();
    let _member = Member(
        Command::new("etcd")
            .args(["--name", "tls", "--data-dir", &p("data")])
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("tls=http://127.0.0.1:{peer}")])
            .args([
                "--cert-file",
                &p("server.pem"),
                "--key-file",
                &p("server-key.pem"),
            ])
            .args(["--trusted-ca-file", &p("ca.pem"), "--client-cert-auth"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let ctl = |args: &[&str]| {
        let mut all = vec![
            "--endpoints",
            &endpoint,
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client-key.pem",
        ];
        all.extend_from_slice(args);
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(&all)
            .current_dir(d)
            .output()
    };
    let start = Instant::now();
    while !ctl(&["endpoint", "health"])?.status.success() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the TLS etcd member did not become healthy in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for args in [
        vec!["user", "add", &format!("root:{PASSWORD}")],
        vec!["auth", "enable"],
    ] {
        let out = ctl(&args)?;
        if !out.status.success() {
            return Err(format!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    let tls = format!(
        "cacert={}&cert={}&key={}",
        p("ca.pem"),
        p("client.pem"),
        p("client-key.pem")
    );
    let hosts = format!("127.0.0.1:{client}");
    let rt = tokio::runtime::Runtime::new()?;

    let good = format!("etcd://root:{PASSWORD}@{hosts}/vol?{tls}");
    let value = rt.block_on(roundtrip(&good))?;
    if value.as_deref() != Some(b"over tls".as_slice()) {
        return Err(format!("read back {value:?} over TLS").into());
    }

    let bad_password = format!("etcd://root:wrong-{PASSWORD}@{hosts}/vol?{tls}");
    let no_client_cert = format!("etcd://root:{PASSWORD}@{hosts}/vol?cacert={}", p("ca.pem"));
    let plain = format!("etcd://root:{PASSWORD}@{hosts}/vol");
    let half = format!(
        "etcd://root:{PASSWORD}@{hosts}/vol?cacert={}&cert={}",
        p("ca.pem"),
        p("client.pem")
    );
    let unknown = format!("etcd://{hosts}/vol?sslmode=on");
    for (what, url, expect) in [
        ("a wrong password", bad_password, "auth"),
        ("no client certificate", no_client_cert, ""),
        ("a plain connection to a TLS member", plain, ""),
        ("a certificate without its key", half, "key="),
        ("an unknown option", unknown, "sslmode"),
    ] {
        match rt.block_on(roundtrip(&url)) {
            Ok(v) => return Err(format!("{what}: the transaction succeeded ({v:?})").into()),
            Err(message) => {
                if message.contains(PASSWORD) {
                    return Err(format!("{what}: the error shows the password: {message}").into());
                }
                if !message.to_lowercase().contains(expect) {
                    return Err(format!(
                        "{what}: the error does not mention '{expect}': {message}"
                    )
                    .into());
                }
                eprintln!("{what}: {message}");
            }
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let missing: Vec<&str> = ["etcd", "etcdctl", "openssl"]
        .into_iter()
        .filter(|p| !have(p))
        .collect();
    if !missing.is_empty() {
        if std::env::var("JFS_REQUIRE_SUITES").is_ok_and(|v| v == "1") {
            eprintln!(
                "etcd_tls: missing {} but JFS_REQUIRE_SUITES=1",
                missing.join(", ")
            );
            std::process::exit(1);
        }
        eprintln!("skipping the etcd TLS test: missing {}", missing.join(", "));
    }
    let trials = vec![Trial::test(
        "etcd_over_tls_with_client_certificates_and_auth",
        tls_and_auth,
    )
    .with_ignored_flag(!missing.is_empty())];
    libtest_mimic::run(&args, trials).exit();
}
