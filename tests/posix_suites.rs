//! The POSIX suites on real mounts of the embedded engine: pjdfstest
//! (every test that passes on a local directory must pass on jfs, apart
//! from the exclusions listed with their reasons in
//! `ci/pjdfstest/exclusions.txt`) and fsx (random reads, writes, mmap,
//! truncate, fallocate, hole punching, copy_file_range, with and without
//! --writeback; any corruption fails).
//!
//! The tools come from `cargo install pjdfstest fsx` (ci/install.sh). A
//! missing tool makes its tests *ignored*, unless JFS_REQUIRE_SUITES=1
//! (set by CI) makes it a failure.

mod mount;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};
use mount::TestVolume;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn tool(name: &str) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut candidates: Vec<PathBuf> = cargo_home
        .map(|h| h.join("bin").join(name))
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Test names and their verdicts from pjdfstest's output.
fn pjdfstest(dir: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>), Failed> {
    let bin = tool("pjdfstest").ok_or("pjdfstest is not installed")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = Command::new(bin)
        .arg("-c")
        .arg(Path::new(REPO).join("ci/pjdfstest/pjdfstest.toml"))
        .arg("-p")
        .arg(dir)
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut passed, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(verdict)) = (words.next(), words.last()) else {
            continue;
        };
        match verdict {
            "ok" => passed.insert(name.to_string()),
            "FAILED" => failed.insert(name.to_string()),
            _ => false,
        };
    }
    if passed.is_empty() {
        return Err(format!(
            "pjdfstest ran nothing: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((passed, failed))
}

/// Tests excused on jfs, from `ci/pjdfstest/exclusions.txt` (one name per
/// line, then its reason).
fn exclusions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(REPO).join("ci/pjdfstest/exclusions.txt"))
        .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn pjdfstest_on_jfs_passes_what_a_local_directory_passes() -> Result<(), Failed> {
    let v = TestVolume::format("pjdfstest");
    v.mount(&[]);
    // Same path length on both sides (pjdfstest's PATH_MAX tests build
    // paths relative to it).
    let local = v.dir.path().join("l").join("p");
    let (local_passed, _) = pjdfstest(&local)?;
    let (jfs_passed, jfs_failed) = pjdfstest(&v.path("p"))?;
    v.umount();
    // Everything pjdfstest did left the metadata consistent.
    v.fsck()?;
    let excused = exclusions();
    let regressions: Vec<&String> = local_passed
        .iter()
        .filter(|t| !jfs_passed.contains(*t) && !excused.contains(*t))
        .collect();
    eprintln!(
        "pjdfstest: jfs {} passed, {} failed; local directory {} passed",
        jfs_passed.len(),
        jfs_failed.len(),
        local_passed.len()
    );
    if !regressions.is_empty() {
        return Err(format!("pass on a local directory but not on jfs: {regressions:?}").into());
    }
    let unexpected: Vec<&String> = jfs_failed
        .iter()
        .filter(|t| !excused.contains(*t))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!("fail on jfs: {unexpected:?}").into());
    }
    Ok(())
}

fn fsx_ops() -> String {
    std::env::var("JFS_FSX_OPS").unwrap_or_else(|_| "100000".into())
}

fn fsx(config: &str, mount_flags: &[&str], seed: u32) -> Result<(), Failed> {
    let bin = tool("fsx").ok_or("fsx is not installed")?;
    let v = TestVolume::format("fsx");
    v.mount(mount_flags);
    let artifacts = v.dir.path().join("fsx-artifacts");
    std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
    let out = Command::new(bin)
        .args(["-N", &fsx_ops(), "-S", &seed.to_string(), "-f"])
        .arg(Path::new(REPO).join("ci/fsx").join(config))
        .arg("-P")
        .arg(&artifacts)
        .arg(v.path("fsx.file"))
        .output()
        .map_err(|e| e.to_string())?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !log.contains("All operations completed A-OK") {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        return Err(format!(
            "fsx failed (seed {seed}):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    // What fsx last wrote survives a remount.
    let before = std::fs::read(v.path("fsx.file")).map_err(|e| e.to_string())?;
    v.umount();
    v.mount(&[]);
    let after = std::fs::read(v.path("fsx.file")).map_err(|e| e.to_string())?;
    v.umount();
    if before != after {
        return Err("the file differs after a remount".into());
    }
    v.fsck()?;
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let require = std::env::var("JFS_REQUIRE_SUITES").is_ok_and(|v| v == "1");
    let missing = |name: &str| tool(name).is_none() && !require;
    let mut trials = vec![Trial::test(
        "pjdfstest_on_jfs_passes_what_a_local_directory_passes",
        pjdfstest_on_jfs_passes_what_a_local_directory_passes,
    )
    .with_ignored_flag(missing("pjdfstest"))];
    for (name, config, flags, seed) in [
        ("fsx_default_mix", "default.toml", &[][..], 11),
        ("fsx_extended_mix", "extended.toml", &[][..], 12),
        (
            "fsx_default_mix_writeback",
            "default.toml",
            &["--writeback"][..],
            13,
        ),
        (
            "fsx_extended_mix_writeback",
            "extended.toml",
            &["--writeback"][..],
            14,
        ),
    ] {
        trials.push(
            Trial::test(name, move || fsx(config, flags, seed)).with_ignored_flag(missing("fsx")),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
