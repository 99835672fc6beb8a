//! flock(2) and POSIX byte-range locks, shared by every host. A lock is a
//! key under the inode, per session and lock owner:
//! `A ino F sid owner` (flock: `R` or `W`) and `A ino P sid owner` (POSIX:
//! the owner's pid and its ranges). Taking a lock reads every lock of the
//! inode tracked, so two takers race to one winner.
//!
//! A blocked taker waits without spinning: it sleeps with exponential
//! backoff (5 ms up to 1 s) and is woken at once when a lock of this client
//! is released. Locks go with their session: at the last close of the file
//! on the host, and when a dead session is cleaned up.

use std::time::Duration;

use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino};
use super::Meta;
use crate::kv::{Key, KeyRange, Txn};

const TAG_FLOCK: u8 = b'F';
const TAG_POSIX: u8 = b'P';

/// Waits between attempts of a blocked lock.
const FIRST_WAIT: Duration = Duration::from_millis(5);
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// A POSIX range of one owner: start, end (exclusive), kind.
type LockRange = (u64, u64, LockKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
    Unlock,
}

/// A POSIX lock as F_GETLK reports it. `end` is exclusive; `u64::MAX`
/// means "to the end of the file, however long".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixLock {
    pub kind: LockKind,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
}

fn lock_key(tag: u8, ino: Ino, sid: u64, owner: u64) -> Key {
    let mut k = keys::inode_all(ino).start;
    k.push(tag);
    k.extend_from_slice(&sid.to_be_bytes());
    k.extend_from_slice(&owner.to_be_bytes());
    k
}

fn locks_of(tag: u8, ino: Ino) -> KeyRange {
    let mut k = keys::inode_all(ino).start;
    k.push(tag);
    KeyRange::prefix(&k)
}

fn locks_of_session(tag: u8, ino: Ino, sid: u64) -> KeyRange {
    let mut k = keys::inode_all(ino).start;
    k.push(tag);
    k.extend_from_slice(&sid.to_be_bytes());
    KeyRange::prefix(&k)
}

/// (session, owner) of a lock key.
fn holder(key: &[u8]) -> Option<(u64, u64)> {
    let n = key.len();
    let sid = u64::from_be_bytes(key.get(n - 16..n - 8)?.try_into().ok()?);
    let owner = u64::from_be_bytes(key.get(n - 8..)?.try_into().ok()?);
    Some((sid, owner))
}

fn encode_ranges(pid: u32, ranges: &[LockRange]) -> Vec<u8> {
    let mut v = pid.to_be_bytes().to_vec();
    for (start, end, kind) in ranges {
        v.extend_from_slice(&start.to_be_bytes());
        v.extend_from_slice(&end.to_be_bytes());
        v.push(if *kind == LockKind::Write { b'W' } else { b'R' });
    }
    v
}

fn decode_ranges(v: &[u8]) -> Option<(u32, Vec<LockRange>)> {
    let pid = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    let mut ranges = Vec::new();
    for r in v.get(4..)?.chunks(17) {
        if r.len() != 17 {
            return None;
        }
        let start = u64::from_be_bytes(r[..8].try_into().ok()?);
        let end = u64::from_be_bytes(r[8..16].try_into().ok()?);
        ranges.push((
            start,
            end,
            if r[16] == b'W' {
                LockKind::Write
            } else {
                LockKind::Read
            },
        ));
    }
    Some((pid, ranges))
}

/// The owner's ranges after setting `[start, end)` to `kind` (Unlock
/// removes): what it had outside the range stays, split where needed.
fn apply_range(mut ranges: Vec<LockRange>, start: u64, end: u64, kind: LockKind) -> Vec<LockRange> {
    let mut out = Vec::with_capacity(ranges.len() + 2);
    for (s, e, k) in ranges.drain(..) {
        if e <= start || s >= end {
            out.push((s, e, k));
            continue;
        }
        if s < start {
            out.push((s, start, k));
        }
        if e > end {
            out.push((end, e, k));
        }
    }
    if kind != LockKind::Unlock {
        out.push((start, end, kind));
    }
    out.sort_by_key(|r| r.0);
    // Merge touching ranges of the same kind.
    let mut merged: Vec<LockRange> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last) if last.2 == r.2 && last.1 >= r.0 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    merged
}

impl Meta {
    fn sid(&self) -> MetaResult<u64> {
        self.session_id()
            .ok_or_else(|| MetaError::Volume("no session: call new_session before locking".into()))
    }

    /// flock(2) for `owner` (the open file description). With `block`, waits
    /// until the lock can be taken; otherwise EAGAIN.
    pub async fn flock(&self, ino: Ino, owner: u64, kind: LockKind, block: bool) -> MetaResult<()> {
        let sid = self.sid()?;
        let me = lock_key(TAG_FLOCK, ino, sid, owner);
        self.wait_for(block, || {
            let me = me.clone();
            async move {
                self.txn("flock", |tx| {
                    let me = me.clone();
                    async move {
                        if kind == LockKind::Unlock {
                            tx.delete(me)?;
                            return Ok(true);
                        }
                        let all = tx.scan_all(&locks_of(TAG_FLOCK, ino), 256, false).await?;
                        let blocked = all.iter().any(|(k, v)| {
                            *k != me && (kind == LockKind::Write || v.as_slice() == b"W")
                        });
                        if blocked {
                            return Ok(false);
                        }
                        tx.put(
                            me,
                            if kind == LockKind::Write {
                                b"W".to_vec()
                            } else {
                                b"R".to_vec()
                            },
                        )?;
                        Ok(true)
                    }
                })
                .await
            }
        })
        .await?;
        if kind == LockKind::Unlock {
            self.lock_released.notify_waiters();
        }
        Ok(())
    }

    /// F_GETLK: the first lock of another owner that conflicts with `kind`
    /// over `[start, end)`, if any.
    pub async fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> MetaResult<Option<PosixLock>> {
        let sid = self.sid()?;
        self.txn("getlk", |tx| async move {
            conflicting(&tx, ino, (sid, owner), kind, start, end).await
        })
        .await
    }

    /// F_SETLK / F_SETLKW: sets `range` of `owner`'s locks to `kind`.
    pub async fn setlk(
        &self,
        ino: Ino,
        owner: u64,
        pid: u32,
        kind: LockKind,
        range: std::ops::Range<u64>,
        block: bool,
    ) -> MetaResult<()> {
        let (start, end) = (range.start, range.end);
        if end <= start {
            return errno(libc::EINVAL);
        }
        let sid = self.sid()?;
        let me = lock_key(TAG_POSIX, ino, sid, owner);
        self.wait_for(block, || {
            let me = me.clone();
            async move {
                self.txn("setlk", |tx| {
                    let me = me.clone();
                    async move {
                        if kind != LockKind::Unlock
                            && conflicting(&tx, ino, (sid, owner), kind, start, end)
                                .await?
                                .is_some()
                        {
                            return Ok(false);
                        }
                        let mine = match tx.get(&me).await? {
                            Some(v) => decode_ranges(&v).ok_or(MetaError::Errno(libc::EIO))?.1,
                            None => Vec::new(),
                        };
                        let ranges = apply_range(mine, start, end, kind);
                        if ranges.is_empty() {
                            tx.delete(me)?;
                        } else {
                            tx.put(me, encode_ranges(pid, &ranges))?;
                        }
                        Ok(true)
                    }
                })
                .await
            }
        })
        .await?;
        if kind == LockKind::Unlock {
            self.lock_released.notify_waiters();
        }
        Ok(())
    }

    /// Removes every lock `sid` holds on `ino` inside `tx`.
    pub(crate) async fn drop_session_locks(&self, tx: &Txn, ino: Ino, sid: u64) -> MetaResult<()> {
        for tag in [TAG_FLOCK, TAG_POSIX] {
            for (key, _) in tx
                .scan_all(&locks_of_session(tag, ino, sid), 256, true)
                .await?
            {
                tx.delete(key)?;
            }
        }
        Ok(())
    }

    /// Tries `attempt` until it succeeds (true); without `block`, one try
    /// and EAGAIN.
    async fn wait_for<F, Fut>(&self, block: bool, attempt: F) -> MetaResult<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = MetaResult<bool>>,
    {
        let mut wait = FIRST_WAIT;
        loop {
            // Register for wake-ups before trying, so a release between the
            // try and the wait is not missed.
            let released = self.lock_released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if attempt().await? {
                return Ok(());
            }
            if !block {
                return errno(libc::EAGAIN);
            }
            tokio::select! {
                _ = released => {}
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(LONGEST_WAIT);
        }
    }
}

/// The first POSIX lock of another holder on `ino` that overlaps
/// `[start, end)` and conflicts with `kind`.
async fn conflicting(
    tx: &Txn,
    ino: Ino,
    me: (u64, u64),
    kind: LockKind,
    start: u64,
    end: u64,
) -> MetaResult<Option<PosixLock>> {
    for (key, value) in tx.scan_all(&locks_of(TAG_POSIX, ino), 256, false).await? {
        if holder(&key) == Some(me) {
            continue;
        }
        let (pid, ranges) = decode_ranges(&value).ok_or(MetaError::Errno(libc::EIO))?;
        for (s, e, k) in ranges {
            let overlaps = s < end && start < e;
            if overlaps && (kind == LockKind::Write || k == LockKind::Write) {
                return Ok(Some(PosixLock {
                    kind: k,
                    start: s,
                    end: e,
                    pid,
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_a_range_splits_and_merges() {
        let r = apply_range(Vec::new(), 0, 100, LockKind::Write);
        let r = apply_range(r, 40, 60, LockKind::Unlock);
        assert_eq!(
            r,
            vec![(0, 40, LockKind::Write), (60, 100, LockKind::Write)]
        );
        let r = apply_range(r, 40, 60, LockKind::Write);
        assert_eq!(r, vec![(0, 100, LockKind::Write)]);
        let r = apply_range(r, 50, u64::MAX, LockKind::Read);
        assert_eq!(
            r,
            vec![(0, 50, LockKind::Write), (50, u64::MAX, LockKind::Read)]
        );
    }
}
