//! Permission checks: owner, group (including supplementary groups), other,
//! root, and the sticky bit.

use super::attr::Attr;

pub const R_OK: u32 = 4;
pub const W_OK: u32 = 2;
pub const X_OK: u32 = 1;

/// Who is asking: the caller's credentials as FUSE gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub pid: u32,
}

impl Ctx {
    pub fn root() -> Ctx {
        Ctx {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            pid: 0,
        }
    }

    pub fn user(uid: u32, gid: u32) -> Ctx {
        Ctx {
            uid,
            gid,
            groups: Vec::new(),
            pid: 0,
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether `mask` (R_OK | W_OK | X_OK) is allowed on `attr`.
    pub fn can(&self, attr: &Attr, mask: u32) -> bool {
        let mode = attr.mode as u32;
        if self.is_root() {
            // Root may execute only what someone may execute (or a directory).
            return mask & X_OK == 0 || attr.is_dir() || mode & 0o111 != 0;
        }
        let bits = if self.uid == attr.uid {
            mode >> 6
        } else if self.in_group(attr.gid) {
            mode >> 3
        } else {
            mode
        } & 7;
        bits & mask == mask
    }

    /// Whether the sticky bit of `dir` lets this caller remove or rename
    /// `entry` out of it.
    pub fn may_delete_from(&self, dir: &Attr, entry: &Attr) -> bool {
        dir.mode as u32 & libc::S_ISVTX == 0
            || self.is_root()
            || self.uid == dir.uid
            || self.uid == entry.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::attr::{FileKind, Timestamp};

    fn file(mode: u16, uid: u32, gid: u32) -> Attr {
        Attr::new(FileKind::File, mode, uid, gid, Timestamp::default())
    }

    #[test]
    fn owner_group_other_and_supplementary_groups() {
        let f = file(0o640, 10, 20);
        assert!(Ctx::user(10, 99).can(&f, R_OK | W_OK));
        assert!(!Ctx::user(11, 99).can(&f, R_OK));
        assert!(Ctx::user(11, 20).can(&f, R_OK) && !Ctx::user(11, 20).can(&f, W_OK));
        let mut c = Ctx::user(11, 99);
        c.groups.push(20);
        assert!(c.can(&f, R_OK));
        // The owner class applies even when it grants less than the group's.
        assert!(!Ctx::user(10, 20).can(&file(0o070, 10, 20), R_OK));
    }

    #[test]
    fn root_needs_some_execute_bit() {
        assert!(Ctx::root().can(&file(0o000, 1, 1), R_OK | W_OK));
        assert!(!Ctx::root().can(&file(0o600, 1, 1), X_OK));
        assert!(Ctx::root().can(&file(0o001, 1, 1), X_OK));
    }

    #[test]
    fn sticky_bit_protects_others_entries() {
        let dir = Attr::new(FileKind::Directory, 0o1777, 1, 1, Timestamp::default());
        let theirs = file(0o644, 2, 2);
        assert!(!Ctx::user(3, 3).may_delete_from(&dir, &theirs));
        assert!(Ctx::user(2, 3).may_delete_from(&dir, &theirs));
        assert!(Ctx::user(1, 3).may_delete_from(&dir, &theirs));
    }
}
