//! Extended attributes: one key per name (`A ino X name`).

use super::attr::Timestamp;
use super::error::{errno, MetaError, MetaResult};
use super::keys::{self, Ino};
use super::{load_attr, Ctx, Meta, W_OK};

pub const XATTR_CREATE: u32 = libc::XATTR_CREATE as u32;
pub const XATTR_REPLACE: u32 = libc::XATTR_REPLACE as u32;
/// Linux's limits: 255-byte names, 64 KiB values.
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTR_SIZE_MAX: usize = 65536;

fn check_name(name: &[u8]) -> MetaResult<()> {
    if name.is_empty() || name.contains(&0) {
        return errno(libc::EINVAL);
    }
    if name.len() > XATTR_NAME_MAX {
        return errno(libc::ERANGE);
    }
    Ok(())
}

impl Meta {
    pub async fn getxattr(&self, ino: Ino, name: &[u8]) -> MetaResult<Vec<u8>> {
        check_name(name)?;
        self.txn("getxattr", |tx| async move {
            match tx.snapshot_get(&keys::xattr(ino, name)).await? {
                Some(v) => Ok(v),
                None if load_attr(&tx, ino, false).await?.is_none() => errno(libc::ENOENT),
                None => errno(libc::ENODATA),
            }
        })
        .await
    }

    /// Sets `name`; `flags` may hold XATTR_CREATE (fail if it exists) or
    /// XATTR_REPLACE (fail if it does not).
    pub async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> MetaResult<()> {
        check_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return errno(libc::E2BIG);
        }
        let now = Timestamp::now();
        self.txn("setxattr", |tx| async move {
            let mut attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            check_xattr_permission(ctx, &attr, name)?;
            let exists = tx.get(&keys::xattr(ino, name)).await?;
            if tx.after_maybe_committed() && exists.as_deref() == Some(value) {
                return Ok(());
            }
            if flags & XATTR_CREATE != 0 && exists.is_some() {
                return errno(libc::EEXIST);
            }
            if flags & XATTR_REPLACE != 0 && exists.is_none() {
                return errno(libc::ENODATA);
            }
            tx.put(keys::xattr(ino, name), value.to_vec())?;
            attr.ctime = now;
            tx.put(keys::attr(ino), attr.encode())?;
            Ok(())
        })
        .await
    }

    pub async fn listxattr(&self, ino: Ino) -> MetaResult<Vec<Vec<u8>>> {
        self.txn("listxattr", |tx| async move {
            if load_attr(&tx, ino, false).await?.is_none() {
                return errno(libc::ENOENT);
            }
            let entries = tx.scan_all(&keys::xattrs(ino), 256, true).await?;
            Ok(entries
                .into_iter()
                .filter_map(|(k, _)| keys::xattr_name(ino, &k).map(<[u8]>::to_vec))
                .collect())
        })
        .await
    }

    pub async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> MetaResult<()> {
        check_name(name)?;
        let now = Timestamp::now();
        self.txn("removexattr", |tx| async move {
            let mut attr = load_attr(&tx, ino, true)
                .await?
                .ok_or(MetaError::Errno(libc::ENOENT))?;
            check_xattr_permission(ctx, &attr, name)?;
            if tx.get(&keys::xattr(ino, name)).await?.is_none() {
                return if tx.after_maybe_committed() {
                    Ok(())
                } else {
                    errno(libc::ENODATA)
                };
            }
            tx.delete(keys::xattr(ino, name))?;
            attr.ctime = now;
            tx.put(keys::attr(ino), attr.encode())?;
            Ok(())
        })
        .await
    }
}

/// `trusted.` and `security.` names are root's; others need write access.
fn check_xattr_permission(ctx: &Ctx, attr: &super::Attr, name: &[u8]) -> MetaResult<()> {
    if (name.starts_with(b"trusted.") || name.starts_with(b"security.")) && !ctx.is_root() {
        return errno(libc::EPERM);
    }
    if !ctx.is_root() && ctx.uid != attr.uid && !ctx.can(attr, W_OK) {
        return errno(libc::EACCES);
    }
    Ok(())
}
