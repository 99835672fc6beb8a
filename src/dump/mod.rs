//! Dump and load: a whole volume as one streaming JSON document, in the
//! layout `juicefs dump` writes (so `jfs-dump load` also takes JuiceFS's
//! dumps, which is how a JuiceFS volume migrates), and back into an empty
//! metadata store on any engine.
//!
//! The document: `Setting` (the volume record; the secret key removed
//! unless asked), `Counters`, `Sustained` (open-but-unlinked inodes, by
//! session), `DelFiles` (files whose data awaits reclaim; jfs adds their
//! chunks), `FSTree` (the tree from the root, each entry with `attr`,
//! `symlink`, `xattrs`, `chunks`, and for directories `entries`), and for
//! JuiceFS's dumps `Trash`. A file with several links appears under each
//! of its names with the same inode. Names, symlink targets and xattr
//! values that are not plain UTF-8 are escaped as JuiceFS does: `%XX` for
//! bytes that are not valid UTF-8, control characters, `%`, `"` and `\`.
//!
//! Both directions stream: a dump holds one page of entries per open
//! directory level; a load holds one entry (its chunks) at a time plus the
//! inodes that have several links. See `schema/README.md`, "Dump".

pub mod load;
pub mod write;

use serde::{Deserialize, Serialize};

use crate::kv::KvError;
use crate::meta::{Attr, FileKind, MetaError, Timestamp};

/// Why a dump or a load stopped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Kv(#[from] KvError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Format(String),
}

/// `Setting.JfsDataFormat` in a jfs dump: blocks are in jfs's block format
/// (`schema/README.md`, "Blocks"). Absent in JuiceFS's dumps, whose blocks
/// are JuiceFS's raw or compressed objects.
pub const JFS_DATA_FORMAT: u32 = 1;

/// JuiceFS numbers its trash directory and hour directories from here.
pub const JUICEFS_TRASH_INODE: u64 = 0x7FFF_FFFF_0000_0000;

/// An inode's attributes in JuiceFS's dump layout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedAttr {
    pub inode: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub atimensec: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub mtimensec: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ctimensec: u32,
    pub nlink: u32,
    pub length: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub rdev: u32,
}

/// One slice record: bytes `[off, off+len)` of slice `id` (`size` bytes in
/// its objects) at `pos` in the chunk. Older JuiceFS dumps say `chunkid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedSlice {
    #[serde(alias = "chunkid")]
    pub id: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub pos: u32,
    pub size: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub off: u32,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedChunk {
    pub index: u32,
    pub slices: Vec<DumpedSlice>,
}

/// An extended attribute, name and value escaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedXattr {
    pub name: String,
    pub value: String,
}

/// A deleted file whose data awaits reclaim. `chunks` is jfs's addition
/// (JuiceFS's dumps leave a deleted file's slices out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedDelFile {
    pub inode: u64,
    pub length: u64,
    pub expire: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<DumpedChunk>,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// JuiceFS's names of the inode kinds.
pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "regular",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::BlockDevice => "blockdev",
        FileKind::CharDevice => "chardev",
        FileKind::Socket => "socket",
    }
}

pub fn kind_from_name(name: &str) -> Option<FileKind> {
    Some(match name {
        "regular" => FileKind::File,
        "directory" => FileKind::Directory,
        "symlink" => FileKind::Symlink,
        "fifo" => FileKind::Fifo,
        "blockdev" => FileKind::BlockDevice,
        "chardev" => FileKind::CharDevice,
        "socket" => FileKind::Socket,
        _ => return None,
    })
}

impl DumpedAttr {
    /// `attr` of inode `ino` as dumped. Lengths of directories and
    /// symlinks are dumped as 0, as JuiceFS does (they follow from the
    /// entry).
    pub fn from_attr(ino: u64, attr: &Attr) -> DumpedAttr {
        DumpedAttr {
            inode: ino,
            kind: kind_name(attr.kind).to_string(),
            mode: attr.mode,
            uid: attr.uid,
            gid: attr.gid,
            atime: attr.atime.sec,
            mtime: attr.mtime.sec,
            ctime: attr.ctime.sec,
            atimensec: attr.atime.nsec,
            mtimensec: attr.mtime.nsec,
            ctimensec: attr.ctime.nsec,
            nlink: attr.nlink,
            length: if attr.kind == FileKind::File {
                attr.length
            } else {
                0
            },
            rdev: attr.rdev,
        }
    }

    /// The attribute record to store; `parent`, `length`, `slice_seq` and
    /// the link count are the loader's to set.
    pub fn to_attr(&self) -> Option<Attr> {
        let kind = kind_from_name(&self.kind)?;
        let mut attr = Attr::new(kind, self.mode, self.uid, self.gid, Timestamp::now());
        attr.atime = Timestamp {
            sec: self.atime,
            nsec: self.atimensec.min(999_999_999),
        };
        attr.mtime = Timestamp {
            sec: self.mtime,
            nsec: self.mtimensec.min(999_999_999),
        };
        attr.ctime = Timestamp {
            sec: self.ctime,
            nsec: self.ctimensec.min(999_999_999),
        };
        attr.nlink = if kind == FileKind::Directory {
            2
        } else {
            self.nlink.max(1)
        };
        if kind == FileKind::File {
            attr.length = self.length;
        }
        attr.rdev = self.rdev;
        Some(attr)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// JuiceFS's escaping of names and values for JSON: bytes that are not
/// valid UTF-8, control characters, `%`, `"` and `\` become `%XX`.
/// Plain names come out unchanged.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // The prefix is valid UTF-8 by the error's own account.
                push_escaped(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for &b in &bad[..n] {
                    push_hex(&mut out, b);
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if (c as u32) < 32 || c == '%' || c == '"' || c == '\\' {
            push_hex(out, c as u8);
        } else {
            out.push(c);
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// The inverse of [`escape`]: `%XX` (upper-case hex) becomes the byte; a
/// `%` not followed by two such digits stays as it is.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_not_escaped() {
        assert_eq!(escape(b"hello world.txt"), "hello world.txt");
        assert_eq!(escape("日本".as_bytes()), "日本");
    }

    #[test]
    fn escaping_matches_juicefs() {
        assert_eq!(escape(b"100%"), "100%25");
        assert_eq!(escape(b"a\"b\\c"), "a%22b%5Cc");
        assert_eq!(escape(b"tab\there"), "tab%09here");
        assert_eq!(escape(b"\xff\xfeok"), "%FF%FEok");
    }

    #[test]
    fn every_byte_string_round_trips() {
        let samples: [&[u8]; 6] = [
            b"",
            b"%",
            b"%4",
            b"%41",
            b"\x00\x01\x7f\x80\xc3",
            "é%\u{1F600}\\".as_bytes(),
        ];
        for s in samples {
            assert_eq!(unescape(&escape(s)), s, "{s:?}");
        }
        for _ in 0..2000 {
            let len = fastrand::usize(0..12);
            let s: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
            assert_eq!(unescape(&escape(&s)), s, "{s:?}");
        }
    }

    #[test]
    fn a_lone_percent_stays() {
        assert_eq!(unescape("50%"), b"50%");
        assert_eq!(unescape("%zz"), b"%zz");
    }
}
