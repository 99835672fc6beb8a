//! Directory attributes as this mount last read them, with its own entry
//! changes applied since.
//!
//! The kernel drops its cached attributes of a directory after every
//! create, unlink or rename in it and asks again before the next one (it
//! checks permissions itself, `default_permissions`). That GETATTR would be
//! a KV round trip per operation. It is answered here instead from the last
//! read of the directory with this mount's changes since applied (times
//! raised to the change's, link count moved by its subdirectories), as an
//! NFS client applies the post-operation attributes its replies carry.
//!
//! An answer is good only for what is left of the attribute timeout of the
//! read it came from, so it is never older than the kernel's own cache of
//! that read could have been: another host's changes show as they would
//! without this (`--attr-cache`). Any other change this mount makes to a
//! directory drops what is known of it; renames and rmdirs drop
//! everything. A read that was under way while a change was applied is
//! not kept (tickets), so a slow read cannot hide a change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::meta::{Attr, Ino, Timestamp};

/// Directories remembered at most; beyond it everything is dropped.
const KNOWN_LIMIT: usize = 10_000;

pub(super) struct DirAttrs {
    /// The attribute timeout given to the kernel; zero keeps nothing.
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    known: HashMap<Ino, Known>,
    /// Moves whenever everything is dropped.
    epoch: u64,
}

#[derive(Default)]
struct Known {
    /// The attributes and until when they may be given out.
    attr: Option<(Attr, Instant)>,
    /// Changes applied to this directory since it was first remembered.
    changes: u64,
}

/// What was known of a directory before a read of its attributes: the read
/// is kept only if nothing changed in between.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    epoch: u64,
    changes: u64,
}

impl DirAttrs {
    pub(super) fn new(ttl: Duration) -> DirAttrs {
        DirAttrs {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attributes of `ino` and how long the kernel may keep them, if
    /// known and still good; otherwise the ticket for reading them.
    pub(super) fn get(&self, ino: Ino) -> Result<(Attr, Duration), Ticket> {
        let inner = self.inner();
        let known = inner.known.get(&ino);
        if let Some((attr, until)) = known.and_then(|k| k.attr.as_ref()) {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Ok((attr.clone(), left));
            }
        }
        Err(Ticket {
            epoch: inner.epoch,
            changes: known.map_or(0, |k| k.changes),
        })
    }

    /// The ticket for reading the attributes of `ino` now.
    pub(super) fn ticket(&self, ino: Ino) -> Ticket {
        let inner = self.inner();
        Ticket {
            epoch: inner.epoch,
            changes: inner.known.get(&ino).map_or(0, |k| k.changes),
        }
    }

    /// Keeps the attributes of directory `ino` read from the KV store,
    /// starting at `read_at`, unless it changed since `ticket` was taken.
    pub(super) fn learn(&self, ino: Ino, attr: &Attr, read_at: Instant, ticket: Ticket) {
        if self.ttl.is_zero() || !attr.is_dir() {
            return;
        }
        let mut inner = self.inner();
        let changes = inner.known.get(&ino).map_or(0, |k| k.changes);
        if inner.epoch != ticket.epoch || changes != ticket.changes {
            return;
        }
        if inner.known.len() >= KNOWN_LIMIT {
            inner.forget_all();
            return;
        }
        inner.known.insert(
            ino,
            Known {
                attr: Some((attr.clone(), read_at + self.ttl)),
                changes,
            },
        );
    }

    /// This mount changed the entries of `dir`: its mtime and ctime were
    /// raised to at least `at`, its subdirectory count moved by `subdirs`.
    pub(super) fn entry_changed(&self, dir: Ino, at: Timestamp, subdirs: i64) {
        self.change(dir, |known| {
            if let Some((attr, _)) = &mut known.attr {
                attr.mtime = attr.mtime.max(at);
                attr.ctime = attr.ctime.max(at);
                attr.nlink = (attr.nlink as i64 + subdirs).max(2) as u32;
            }
        });
    }

    /// This mount changed `ino` in a way not followed here (or cannot tell
    /// whether it did): what is known of it is dropped.
    pub(super) fn forget(&self, ino: Ino) {
        self.change(ino, |known| known.attr = None);
    }

    /// Counts a change of `ino` (so reads under way are not kept) and
    /// applies it to what is known.
    fn change(&self, ino: Ino, apply: impl FnOnce(&mut Known)) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner();
        if inner.known.len() >= KNOWN_LIMIT {
            inner.forget_all();
        }
        let known = inner.known.entry(ino).or_default();
        known.changes += 1;
        apply(known);
    }

    /// Drops everything (after a rename or rmdir, which can change the
    /// attributes of directories not named in the request).
    pub(super) fn forget_all(&self) {
        if !self.ttl.is_zero() {
            self.inner().forget_all();
        }
    }
}

impl Inner {
    fn forget_all(&mut self) {
        self.known.clear();
        self.epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FileKind;

    fn dir_attr(sec: i64) -> Attr {
        Attr::new(FileKind::Directory, 0o755, 0, 0, Timestamp { sec, nsec: 0 })
    }

    fn ticket(dirs: &DirAttrs, ino: Ino) -> Ticket {
        dirs.get(ino).expect_err("nothing known yet")
    }

    #[test]
    fn a_change_is_applied_to_the_last_read() {
        let dirs = DirAttrs::new(Duration::from_secs(60));
        let t = ticket(&dirs, 5);
        dirs.learn(5, &dir_attr(100), Instant::now(), t);
        dirs.entry_changed(5, Timestamp { sec: 200, nsec: 7 }, 1);
        let (attr, left) = dirs.get(5).expect("known");
        assert_eq!(attr.mtime, Timestamp { sec: 200, nsec: 7 });
        assert_eq!(attr.ctime, Timestamp { sec: 200, nsec: 7 });
        assert_eq!(attr.nlink, 3);
        assert!(left <= Duration::from_secs(60));
        // A change older than what was read does not move the times back.
        dirs.entry_changed(5, Timestamp { sec: 150, nsec: 0 }, -1);
        let (attr, _) = dirs.get(5).expect("known");
        assert_eq!(attr.mtime, Timestamp { sec: 200, nsec: 7 });
        assert_eq!(attr.nlink, 2);
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let dirs = DirAttrs::new(Duration::from_secs(60));
        let t = ticket(&dirs, 5);
        dirs.entry_changed(5, Timestamp { sec: 200, nsec: 0 }, 0);
        dirs.learn(5, &dir_attr(100), Instant::now(), t);
        assert!(dirs.get(5).is_err(), "the read began before the change");

        let t = ticket(&dirs, 6);
        dirs.forget_all();
        dirs.learn(6, &dir_attr(100), Instant::now(), t);
        assert!(dirs.get(6).is_err(), "the read began before a rename");

        let t = ticket(&dirs, 7);
        dirs.learn(7, &dir_attr(100), Instant::now(), t);
        dirs.forget(7);
        assert!(dirs.get(7).is_err(), "forgotten");
    }

    #[test]
    fn a_read_is_good_only_for_its_timeout() {
        let dirs = DirAttrs::new(Duration::from_millis(50));
        let t = ticket(&dirs, 5);
        let long_ago = Instant::now() - Duration::from_millis(80);
        dirs.learn(5, &dir_attr(100), long_ago, t);
        assert!(dirs.get(5).is_err(), "read 80 ms ago with a 50 ms timeout");

        let off = DirAttrs::new(Duration::ZERO);
        let t = ticket(&off, 5);
        off.learn(5, &dir_attr(100), Instant::now(), t);
        assert!(off.get(5).is_err(), "no attribute cache: nothing kept");
    }
}
