//! Key layout of schema v1 (see `schema/README.md`, the normative text).
//! Integers in keys are big-endian so that key order is numeric order.

use crate::kv::{Key, KeyRange};

pub type Ino = u64;

/// The root directory.
pub const ROOT_INO: Ino = 1;

/// The trash directory, `/.trash`, when the volume keeps deleted files.
pub const TRASH_INO: Ino = 2;
pub const TRASH_NAME: &[u8] = b".trash";

/// Inode-scoped families: `A` + ino + tag [+ suffix].
const INODE: u8 = b'A';
const TAG_ATTR: u8 = b'I';
const TAG_DIR_MTIME: u8 = b'J';
const TAG_DIR_CTIME: u8 = b'K';
const TAG_SUBDIRS: u8 = b'L';
const TAG_CHUNK: u8 = b'C';
const TAG_DENTRY: u8 = b'D';
const TAG_OPEN: u8 = b'O';
const TAG_SYMLINK: u8 = b'S';
const TAG_XATTR: u8 = b'X';
const TAG_DIR_SPACE: u8 = b'M';
const TAG_DIR_INODES: u8 = b'N';

/// Volume-wide families.
const SETTING: &[u8] = b"Vsetting";
const COUNTER: u8 = b'N';
const DELETED: u8 = b'R';
const SLICE_REFS: u8 = b'K';
const SESSION: u8 = b'E';
const SESSION_INFO: u8 = b'F';

fn inode_key(ino: Ino, tag: u8, extra: usize) -> Key {
    let mut k = Vec::with_capacity(10 + extra);
    k.push(INODE);
    k.extend_from_slice(&ino.to_be_bytes());
    k.push(tag);
    k
}

pub fn setting() -> Key {
    SETTING.to_vec()
}

pub fn attr(ino: Ino) -> Key {
    inode_key(ino, TAG_ATTR, 0)
}

pub fn dir_mtime(ino: Ino) -> Key {
    inode_key(ino, TAG_DIR_MTIME, 0)
}

pub fn dir_ctime(ino: Ino) -> Key {
    inode_key(ino, TAG_DIR_CTIME, 0)
}

pub fn subdirs(ino: Ino) -> Key {
    inode_key(ino, TAG_SUBDIRS, 0)
}

/// Shard `shard` of the space used by the entries of directory `ino`.
pub fn dir_space(ino: Ino, shard: u16) -> Key {
    let mut k = inode_key(ino, TAG_DIR_SPACE, 2);
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

pub fn dir_space_shards(ino: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(ino, TAG_DIR_SPACE, 0))
}

/// Shard `shard` of the number of entries of directory `ino`.
pub fn dir_inodes(ino: Ino, shard: u16) -> Key {
    let mut k = inode_key(ino, TAG_DIR_INODES, 2);
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

pub fn dir_inodes_shards(ino: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(ino, TAG_DIR_INODES, 0))
}

pub fn symlink(ino: Ino) -> Key {
    inode_key(ino, TAG_SYMLINK, 0)
}

pub fn dentry(parent: Ino, name: &[u8]) -> Key {
    let mut k = inode_key(parent, TAG_DENTRY, name.len());
    k.extend_from_slice(name);
    k
}

/// Every entry of directory `parent`, in name order.
pub fn dentries(parent: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(parent, TAG_DENTRY, 0))
}

/// The entries of `parent` after `name`.
pub fn dentries_after(parent: Ino, name: &[u8]) -> KeyRange {
    let mut range = dentries(parent);
    range.start = crate::kv::key_after(&dentry(parent, name));
    range
}

/// The name of a dentry key of `parent`.
pub fn dentry_name(parent: Ino, key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(inode_key(parent, TAG_DENTRY, 0).as_slice())
}

pub fn xattr(ino: Ino, name: &[u8]) -> Key {
    let mut k = inode_key(ino, TAG_XATTR, name.len());
    k.extend_from_slice(name);
    k
}

pub fn xattrs(ino: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(ino, TAG_XATTR, 0))
}

pub fn xattr_name(ino: Ino, key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(inode_key(ino, TAG_XATTR, 0).as_slice())
}

/// The slice records of chunk `index`: one value, the records oldest
/// first, 24 bytes each.
pub fn chunk(ino: Ino, index: u32) -> Key {
    let mut k = inode_key(ino, TAG_CHUNK, 4);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Every chunk of the file.
pub fn chunks(ino: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(ino, TAG_CHUNK, 0))
}

/// Marks that session `sid` has `ino` open.
pub fn open(ino: Ino, sid: u64) -> Key {
    let mut k = inode_key(ino, TAG_OPEN, 8);
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn opens(ino: Ino) -> KeyRange {
    KeyRange::prefix(&inode_key(ino, TAG_OPEN, 0))
}

/// The keys of `ino` from its open markers to its extended attributes
/// (with, between them, a symlink's target): what decides whether an inode
/// losing its last link can go, and what goes with it, in one read.
pub fn opens_to_xattrs(ino: Ino) -> KeyRange {
    KeyRange::new(
        inode_key(ino, TAG_OPEN, 0),
        inode_key(ino, TAG_XATTR + 1, 0),
    )
}

/// All keys of one inode.
pub fn inode_all(ino: Ino) -> KeyRange {
    let mut k = vec![INODE];
    k.extend_from_slice(&ino.to_be_bytes());
    KeyRange::prefix(&k)
}

/// Shard `shard` of the volume counter `name`.
pub fn counter(name: &str, shard: u16) -> Key {
    let mut k = counter_prefix(name);
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

pub fn counter_shards(name: &str) -> KeyRange {
    KeyRange::prefix(&counter_prefix(name))
}

fn counter_prefix(name: &str) -> Key {
    let mut k = vec![COUNTER];
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// A file whose data awaits reclaim: inode and its length at deletion.
pub fn deleted_file(ino: Ino, length: u64) -> Key {
    let mut k = vec![DELETED];
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(&length.to_be_bytes());
    k
}

pub fn deleted_files() -> KeyRange {
    KeyRange::prefix(&[DELETED])
}

/// Extra references to slice `id` (of `size` bytes) beyond its first
/// record: copies share slices.
pub fn slice_refs(id: u64, size: u32) -> Key {
    let mut k = vec![SLICE_REFS];
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&size.to_be_bytes());
    k
}

/// Heartbeat expiry of session `sid`.
pub fn session(sid: u64) -> Key {
    let mut k = vec![SESSION];
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn sessions() -> KeyRange {
    KeyRange::prefix(&[SESSION])
}

pub fn session_info(sid: u64) -> Key {
    let mut k = vec![SESSION_INFO];
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

/// Session id of a session key.
pub fn parse_session(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.strip_prefix(&[SESSION])?.try_into().ok()?,
    ))
}

/// Every `'U' sid ino` key: the inodes each session has open.
pub fn session_opens_all() -> KeyRange {
    KeyRange::prefix(b"U")
}

/// Every `'W' id` key: slices being uploaded.
pub fn pending_uploads_all() -> KeyRange {
    KeyRange::prefix(b"W")
}

/// Every `'K' id size` key: extra slice references.
pub fn slice_refs_all() -> KeyRange {
    KeyRange::prefix(&[SLICE_REFS])
}

/// Every `'A'` key: the inode-scoped families of all inodes.
pub fn inodes_all() -> KeyRange {
    KeyRange::prefix(&[INODE])
}

/// The inode and tag of an inode-scoped key (`'A' ino tag ...`), and what
/// follows the tag.
pub fn parse_inode_key(key: &[u8]) -> Option<(Ino, u8, &[u8])> {
    if key.len() < 10 || key[0] != INODE {
        return None;
    }
    let ino = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((ino, key[9], &key[10..]))
}

/// Tags of the inode-scoped families, for tools that walk the key space.
pub mod tag {
    pub const ATTR: u8 = super::TAG_ATTR;
    pub const DIR_MTIME: u8 = super::TAG_DIR_MTIME;
    pub const DIR_CTIME: u8 = super::TAG_DIR_CTIME;
    pub const SUBDIRS: u8 = super::TAG_SUBDIRS;
    pub const CHUNK: u8 = super::TAG_CHUNK;
    pub const DENTRY: u8 = super::TAG_DENTRY;
    pub const OPEN: u8 = super::TAG_OPEN;
    pub const SYMLINK: u8 = super::TAG_SYMLINK;
    pub const XATTR: u8 = super::TAG_XATTR;
    pub const DIR_SPACE: u8 = super::TAG_DIR_SPACE;
    pub const DIR_INODES: u8 = super::TAG_DIR_INODES;
}
