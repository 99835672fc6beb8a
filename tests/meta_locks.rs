//! flock and POSIX locks between two clients (separate sessions, as two
//! hosts) on one volume: exclusion, sharing, blocking waits that end when the
//! other releases, F_GETLK, and locks released when a session dies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use jfs::meta::{Ctx, FileKind, LockKind, Meta, MetaError, SessionInfo, ROOT_INO, R_OK, W_OK};

fn info(host: &str) -> SessionInfo {
    SessionInfo {
        host: host.into(),
        pid: 1,
        mount_point: "/mnt".into(),
        version: "test".into(),
    }
}

/// Two clients with sessions, and a file both have open.
async fn two_clients(timeout_secs: u64) -> (Arc<Meta>, Arc<Meta>, u64) {
    let db = common::mem_db(None);
    let a = Arc::new(common::format_and_load(db.clone(), common::volume("locks")).await);
    let b = Arc::new(Meta::load(db).await.expect("load"));
    a.new_session(&info("a"), timeout_secs)
        .await
        .expect("session");
    b.new_session(&info("b"), 60).await.expect("session");
    let (ino, _) = a
        .mknod(&Ctx::root(), ROOT_INO, b"f", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    a.open(&Ctx::root(), ino, R_OK | W_OK).await.expect("open");
    b.open(&Ctx::root(), ino, R_OK | W_OK).await.expect("open");
    (a, b, ino)
}

fn eagain(r: Result<(), MetaError>) -> bool {
    matches!(r, Err(MetaError::Errno(libc::EAGAIN)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flock_excludes_across_clients_and_blocking_waits_for_release() {
    let (a, b, ino) = two_clients(60).await;
    a.flock(ino, 1, LockKind::Write, false)
        .await
        .expect("a takes exclusive");
    assert!(
        eagain(b.flock(ino, 2, LockKind::Read, false).await),
        "shared against exclusive"
    );
    assert!(
        eagain(b.flock(ino, 2, LockKind::Write, false).await),
        "exclusive against exclusive"
    );
    // b blocks; a releases after a while; b gets it.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.flock(ino, 2, LockKind::Write, true).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "blocking flock returned while the other held the lock"
    );
    a.flock(ino, 1, LockKind::Unlock, false)
        .await
        .expect("unlock");
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("waiter woke")
        .expect("task")
        .expect("b locks");
    assert!(eagain(a.flock(ino, 1, LockKind::Read, false).await));
    b.flock(ino, 2, LockKind::Unlock, false)
        .await
        .expect("unlock");
    // Shared locks share.
    a.flock(ino, 1, LockKind::Read, false)
        .await
        .expect("shared");
    b.flock(ino, 2, LockKind::Read, false)
        .await
        .expect("shared too");
    assert!(eagain(b.flock(ino, 3, LockKind::Write, false).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_locks_conflict_by_range_and_getlk_reports_the_holder() {
    let (a, b, ino) = two_clients(60).await;
    a.setlk(ino, 1, 100, LockKind::Write, 0..100, false)
        .await
        .expect("lock 0-100");
    b.setlk(ino, 2, 200, LockKind::Write, 100..200, false)
        .await
        .expect("adjacent range is free");
    assert!(eagain(
        b.setlk(ino, 2, 200, LockKind::Read, 50..60, false).await
    ));
    let seen = b
        .getlk(ino, 2, LockKind::Read, 0, u64::MAX)
        .await
        .expect("getlk")
        .expect("a conflict");
    assert_eq!(
        (seen.kind, seen.start, seen.end, seen.pid),
        (LockKind::Write, 0, 100, 100)
    );
    // Unlocking the middle splits a's lock.
    a.setlk(ino, 1, 100, LockKind::Unlock, 40..60, false)
        .await
        .expect("unlock middle");
    b.setlk(ino, 2, 200, LockKind::Read, 45..55, false)
        .await
        .expect("middle is free now");
    assert!(eagain(
        b.setlk(ino, 2, 200, LockKind::Read, 30..45, false).await
    ));
    // Read locks share; a write lock over them waits until they go.
    a.setlk(ino, 1, 100, LockKind::Read, 300..400, false)
        .await
        .expect("read");
    b.setlk(ino, 2, 200, LockKind::Read, 350..450, false)
        .await
        .expect("read too");
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.setlk(ino, 1, 100, LockKind::Write, 300..400, true).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    b.setlk(ino, 2, 200, LockKind::Unlock, 0..u64::MAX, false)
        .await
        .expect("unlock all");
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woke")
        .expect("task")
        .expect("a upgrades");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sessions_locks_and_unlinked_files_are_cleaned_up() {
    // a's session expires one second after its last heartbeat.
    let (a, b, ino) = two_clients(1).await;
    a.flock(ino, 1, LockKind::Write, false)
        .await
        .expect("flock");
    a.setlk(ino, 1, 1, LockKind::Write, 0..10, false)
        .await
        .expect("posix");
    // A second file a keeps open and locked.
    let (kept, _) = a
        .mknod(&Ctx::root(), ROOT_INO, b"kept", FileKind::File, 0o644, 0)
        .await
        .expect("create");
    a.open(&Ctx::root(), kept, R_OK | W_OK).await.expect("open");
    b.open(&Ctx::root(), kept, R_OK | W_OK).await.expect("open");
    a.flock(kept, 1, LockKind::Write, false)
        .await
        .expect("flock");
    a.setlk(kept, 1, 1, LockKind::Write, 0..u64::MAX, false)
        .await
        .expect("posix");
    assert!(eagain(b.flock(kept, 2, LockKind::Read, false).await));
    // a unlinks the file while it has it open: it stays.
    b.close(ino).await.expect("b closes");
    a.unlink(&Ctx::root(), ROOT_INO, b"f")
        .await
        .expect("unlink");
    assert_eq!(b.getattr(ino).await.expect("still there").nlink, 0);
    // a dies (no more heartbeats, no close). b cleans up.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.clean_dead_sessions().await.expect("clean"), 1);
    assert!(
        matches!(b.getattr(ino).await, Err(MetaError::Errno(libc::ENOENT))),
        "unlinked file removed"
    );
    b.flock(kept, 2, LockKind::Write, false)
        .await
        .expect("a's flock went with its session");
    b.setlk(kept, 2, 2, LockKind::Write, 0..u64::MAX, false)
        .await
        .expect("a's POSIX lock went too");
    let sessions = b.list_sessions().await.expect("sessions");
    assert_eq!(sessions.len(), 1, "only b's session remains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_unlinked_on_one_client_stays_while_another_has_it_open() {
    let (a, b, ino) = two_clients(60).await;
    a.close(ino).await.expect("a closes");
    a.unlink(&Ctx::root(), ROOT_INO, b"f")
        .await
        .expect("unlink");
    // b still has it open: attributes are there, nlink 0.
    assert_eq!(b.getattr(ino).await.expect("kept").nlink, 0);
    b.close(ino).await.expect("b closes");
    assert!(b.getattr(ino).await.is_err(), "gone after the last close");
}

/// A dead session with more open files than one page of its opens: every
/// one is released, page after page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_session_with_many_open_files_releases_them_all() {
    let (a, b, _) = two_clients(1).await;
    let mut inos = Vec::new();
    for i in 0..150 {
        let name = format!("open{i}");
        let (ino, _) = a
            .mknod(
                &Ctx::root(),
                ROOT_INO,
                name.as_bytes(),
                FileKind::File,
                0o644,
                0,
            )
            .await
            .expect("create");
        a.open(&Ctx::root(), ino, R_OK | W_OK).await.expect("open");
        a.unlink(&Ctx::root(), ROOT_INO, name.as_bytes())
            .await
            .expect("unlink");
        inos.push(ino);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.clean_dead_sessions().await.expect("clean"), 1);
    for ino in inos {
        assert!(
            matches!(b.getattr(ino).await, Err(MetaError::Errno(libc::ENOENT))),
            "unlinked open file {ino} removed with the session"
        );
    }
}
