//! Sessions and open files. Each client registers a session and keeps it
//! alive with heartbeats. Opening a file leaves a marker under the inode
//! (`A ino O sid`) and under the session (`U sid ino`), so that an unlinked
//! file stays while any host has it open, and a dead session's opens can be
//! found and released by another client.

use serde::{Deserialize, Serialize};

use super::attr::{Attr, FileKind, SliceRecord, Timestamp};
use super::chunks::decode_chunk;
use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino};
use super::{decode_attr, load_attr, load_attrs_from, Ctx, Meta, R_OK, W_OK};
use crate::kv::txn::ScanOpts;
use crate::kv::{decode_counter, encode_counter, KeyRange};

/// What a session says about itself (`jfs status` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub host: String,
    pub pid: u32,
    pub mount_point: String,
    pub version: String,
}

/// The session info record as stored: what the session says of itself and
/// the timeout its heartbeats renew the expiry by, so others can tell when
/// it last beat (absent in records of older versions).
#[derive(Serialize, Deserialize)]
struct StoredInfo {
    #[serde(flatten)]
    info: SessionInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_secs: Option<u64>,
}

/// One session as `list_sessions` finds it.
#[derive(Debug, Clone)]
pub struct Session {
    pub sid: u64,
    /// Unix seconds after which the session is dead unless it beats again.
    pub expiry: i64,
    /// None when the info record is missing or unreadable.
    pub info: Option<SessionInfo>,
    timeout_secs: Option<u64>,
}

impl Session {
    /// Unix seconds of the session's last heartbeat (or its start), when its
    /// record says how long a heartbeat lasts.
    pub fn last_heartbeat(&self) -> Option<i64> {
        self.timeout_secs.map(|t| self.expiry - t as i64)
    }

    pub fn alive_at(&self, now: i64) -> bool {
        self.expiry >= now
    }
}

const SESSION_OPEN: u8 = b'U';

fn session_open(sid: u64, ino: Ino) -> Vec<u8> {
    let mut k = vec![SESSION_OPEN];
    k.extend_from_slice(&sid.to_be_bytes());
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

fn session_opens(sid: u64) -> KeyRange {
    let mut k = vec![SESSION_OPEN];
    k.extend_from_slice(&sid.to_be_bytes());
    KeyRange::prefix(&k)
}

/// Records in `tx` that session `sid` has `ino` open.
pub(crate) fn mark_open(tx: &crate::kv::Txn, ino: Ino, sid: u64) -> MetaResult<()> {
    tx.put(keys::open(ino, sid), Vec::new())?;
    tx.put(session_open(sid, ino), Vec::new())?;
    Ok(())
}

impl Meta {
    /// Registers this client as a session that expires `timeout_secs` after
    /// its last heartbeat.
    pub async fn new_session(&self, info: &SessionInfo, timeout_secs: u64) -> MetaResult<u64> {
        let sid = super::ids::IdAllocator::new("session")
            .next(&self.db)
            .await?;
        let info = serde_json::to_vec(&StoredInfo {
            info: info.clone(),
            timeout_secs: Some(timeout_secs),
        })
        .unwrap_or_default();
        let expiry = Timestamp::now().sec + timeout_secs as i64;
        self.txn("new_session", |tx| {
            let info = info.clone();
            async move {
                tx.put(keys::session(sid), encode_counter(expiry))?;
                tx.put(keys::session_info(sid), info)?;
                Ok(())
            }
        })
        .await?;
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
        Ok(sid)
    }

    pub fn session_id(&self) -> Option<u64> {
        *self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn require_session(&self) -> MetaResult<u64> {
        self.session_id().ok_or_else(|| {
            MetaError::Volume("no session: call new_session before opening files".into())
        })
    }

    /// Pushes this session's expiry `timeout_secs` into the future.
    pub async fn heartbeat(&self, timeout_secs: u64) -> MetaResult<()> {
        let sid = self.require_session()?;
        let expiry = Timestamp::now().sec + timeout_secs as i64;
        self.txn("heartbeat", |tx| async move {
            tx.put(keys::session(sid), encode_counter(expiry))?;
            Ok(())
        })
        .await
    }

    /// Opens `ino` for this session (the first open on this host; the vfs
    /// counts the rest). `mask` is R_OK and/or W_OK. Returns fresh
    /// attributes (close-to-open).
    pub async fn open(&self, ctx: &Ctx, ino: Ino, mask: u32) -> MetaResult<Attr> {
        Ok(self.open_reading(ctx, ino, mask).await?.0)
    }

    /// As [`Meta::open`], with the slice records of a file's first chunk,
    /// read in the same round trip as its attributes: a small file opened
    /// to be read needs no other read before its data.
    ///
    /// Both reads are tracked, so the commit that marks the file open also
    /// proves them current: an engine that remembers the keys (etcd, from
    /// the lookup that led to this open, or this client's own writes)
    /// answers them without a round trip, and its commit fails and the
    /// open reads afresh if either changed since. The open then costs one
    /// round trip, its commit, and still sees every change committed
    /// before it began (close-to-open).
    pub async fn open_reading(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mask: u32,
    ) -> MetaResult<(Attr, Option<Vec<SliceRecord>>)> {
        let sid = self.require_session()?;
        self.txn("open", |tx| async move {
            let mut raws = tx
                .batch_get(&[keys::attr(ino), keys::chunk(ino, 0)])
                .await?;
            let first_chunk = raws.pop().flatten();
            let attr = load_attrs_from(&tx, &[ino], raws)
                .await?
                .pop()
                .flatten()
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            if attr.kind == FileKind::Directory && mask & W_OK != 0 {
                return errno(libc::EISDIR);
            }
            if !ctx.can(&attr, mask & (R_OK | W_OK)) {
                return errno(libc::EACCES);
            }
            mark_open(&tx, ino, sid)?;
            let records = match (attr.kind, first_chunk) {
                (FileKind::File, Some(raw)) => Some(decode_chunk(ino, 0, &raw)?),
                (FileKind::File, None) => Some(Vec::new()),
                _ => None,
            };
            Ok((attr, records))
        })
        .await
    }

    /// The last close of `ino` on this host. An unlinked file is deleted
    /// when no session has it open any more.
    pub async fn close(&self, ino: Ino) -> MetaResult<()> {
        let sid = self.require_session()?;
        self.release_open(sid, ino).await?;
        self.lock_released.notify_waiters();
        Ok(())
    }

    /// The last close of each of `inos` on this host, in one transaction
    /// (a mount closes files in batches). Unlike [`Meta::close`] it leaves
    /// locks alone: the caller closes files that hold none this way.
    pub async fn close_many(&self, inos: &[Ino]) -> MetaResult<()> {
        let sid = self.require_session()?;
        self.txn("close", |tx| async move {
            let attr_keys: Vec<_> = inos.iter().map(|&ino| keys::attr(ino)).collect();
            let raws = tx.batch_get(&attr_keys).await?;
            for (&ino, raw) in inos.iter().zip(raws) {
                let attr = raw.map(|raw| decode_attr(ino, &raw)).transpose()?;
                self.forget_open(&tx, ino, sid, attr).await?;
            }
            Ok(())
        })
        .await
    }

    /// Inside `tx`: removes session `sid`'s open marker of `ino` (whose
    /// attributes, read tracked, are `attr`) and deletes the inode if it is
    /// unlinked and no other session has it open.
    async fn forget_open(
        &self,
        tx: &crate::kv::Txn,
        ino: Ino,
        sid: u64,
        attr: Option<Attr>,
    ) -> MetaResult<()> {
        tx.delete(keys::open(ino, sid))?;
        tx.delete(session_open(sid, ino))?;
        if let Some(attr) = attr {
            if attr.nlink == 0 {
                self.delete_unless_open(tx, ino, &attr, Some(sid)).await?;
            }
        }
        Ok(())
    }

    async fn release_open(&self, sid: u64, ino: Ino) -> MetaResult<()> {
        self.txn("close", |tx| async move {
            self.drop_session_locks(&tx, ino, sid).await?;
            let attr = load_attr(&tx, ino, true).await?;
            self.forget_open(&tx, ino, sid, attr).await
        })
        .await
    }

    /// Ends session `sid` (this client's at unmount, or a dead one's): its
    /// opens are released page by page, each page after the last (see
    /// [`crate::kv::KeyRange::resumed`]), then the session is removed.
    pub async fn close_session(&self, sid: u64) -> MetaResult<()> {
        if self.session_id() == Some(sid) {
            self.release_reserved_slices().await?;
        }
        let mut start: Option<crate::kv::Key> = None;
        loop {
            let range = &session_opens(sid).resumed(start.as_ref());
            let page = self
                .txn("session_opens", |tx| async move {
                    Ok(tx
                        .scan(range, ScanOpts::limit(64).snapshot())
                        .await?
                        .entries)
                })
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = Some(crate::kv::key_after(last));
            for (key, _) in page {
                let ino = u64::from_be_bytes(
                    key[9..17]
                        .try_into()
                        .map_err(|_| MetaError::Errno(libc::EIO))?,
                );
                self.release_open(sid, ino).await?;
            }
        }
        self.lock_released.notify_waiters();
        self.txn("close_session", |tx| async move {
            tx.delete(keys::session(sid))?;
            tx.delete(keys::session_info(sid))?;
            Ok(())
        })
        .await?;
        let mut own = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if *own == Some(sid) {
            *own = None;
        }
        Ok(())
    }

    /// Sessions with their expiry (Unix seconds) and info.
    pub async fn list_sessions(&self) -> MetaResult<Vec<Session>> {
        self.txn("list_sessions", |tx| async move {
            let mut out = Vec::new();
            for (key, value) in tx.scan_all(&keys::sessions(), 256, true).await? {
                let Some(sid) = keys::parse_session(&key) else {
                    continue;
                };
                let stored: Option<StoredInfo> = tx
                    .snapshot_get(&keys::session_info(sid))
                    .await?
                    .and_then(|raw| serde_json::from_slice(&raw).ok());
                let (info, timeout_secs) = match stored {
                    Some(s) => (Some(s.info), s.timeout_secs),
                    None => (None, None),
                };
                out.push(Session {
                    sid,
                    expiry: decode_counter(&value),
                    info,
                    timeout_secs,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Cleans up every session whose heartbeat expired before now; returns
    /// how many.
    pub async fn clean_dead_sessions(&self) -> MetaResult<usize> {
        let now = Timestamp::now().sec;
        let own = self.session_id();
        let mut cleaned = 0;
        for s in self.list_sessions().await? {
            if !s.alive_at(now) && Some(s.sid) != own {
                self.close_session(s.sid).await?;
                cleaned += 1;
            }
        }
        Ok(cleaned)
    }
}
