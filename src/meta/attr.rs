//! Values of schema v1: inode attributes, dentries, slice records and
//! directory times, with their byte encodings (see `schema/README.md`).

use std::time::{SystemTime, UNIX_EPOCH};

use super::keys::Ino;

/// Encoding version of the attribute record, its first byte.
pub const ATTR_VERSION: u8 = 1;
pub const ATTR_BYTES: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File = 1,
    Directory = 2,
    Symlink = 3,
    Fifo = 4,
    BlockDevice = 5,
    CharDevice = 6,
    Socket = 7,
}

impl FileKind {
    pub fn from_u8(b: u8) -> Option<FileKind> {
        Some(match b {
            1 => FileKind::File,
            2 => FileKind::Directory,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::BlockDevice,
            6 => FileKind::CharDevice,
            7 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

const NANOS: i128 = 1_000_000_000;

impl Timestamp {
    pub fn now() -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(_) => Timestamp::default(),
        }
    }

    /// The time as an unsigned number that sorts like the time:
    /// nanoseconds since the epoch plus 2^63, clamped to the u64 range
    /// (years 1678 to 2262 exactly). Operand of the atomic max on directory
    /// times.
    pub fn to_biased_nanos(self) -> u64 {
        let ns = self.sec as i128 * NANOS + self.nsec as i128 + (1i128 << 63);
        ns.clamp(0, u64::MAX as i128) as u64
    }

    pub fn from_biased_nanos(v: u64) -> Timestamp {
        let ns = v as i128 - (1i128 << 63);
        Timestamp {
            sec: ns.div_euclid(NANOS) as i64,
            nsec: ns.rem_euclid(NANOS) as u32,
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.sec >= 0 {
            UNIX_EPOCH + std::time::Duration::new(self.sec as u64, self.nsec)
        } else {
            UNIX_EPOCH - std::time::Duration::from_secs(self.sec.unsigned_abs())
                + std::time::Duration::from_nanos(self.nsec as u64)
        }
    }
}

/// Attributes of an inode as the file system reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileKind,
    /// Permission bits, including set-uid, set-gid and sticky (07777).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub nlink: u32,
    /// File length in bytes (symlinks: target length; directories: 4096).
    pub length: u64,
    pub rdev: u32,
    /// Parent directory (for directories always; for other kinds while they
    /// have exactly one link, else 0).
    pub parent: Ino,
    /// Sequence of the newest slice record written (files).
    pub slice_seq: u64,
}

impl Attr {
    pub fn new(kind: FileKind, mode: u16, uid: u32, gid: u32, now: Timestamp) -> Attr {
        Attr {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            length: if kind == FileKind::Directory { 4096 } else { 0 },
            rdev: 0,
            parent: 0,
            slice_seq: 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// `st_mode`: kind and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.mode_bits() | self.mode as u32
    }

    /// Byte layout (big-endian): version u8, kind u8, mode u16, uid u32,
    /// gid u32, atime (i64 s, u32 ns), mtime, ctime, nlink u32, length u64,
    /// rdev u32, parent u64, slice_seq u64. 80 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ATTR_BYTES);
        b.push(ATTR_VERSION);
        b.push(self.kind as u8);
        b.extend_from_slice(&self.mode.to_be_bytes());
        b.extend_from_slice(&self.uid.to_be_bytes());
        b.extend_from_slice(&self.gid.to_be_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            b.extend_from_slice(&t.sec.to_be_bytes());
            b.extend_from_slice(&t.nsec.to_be_bytes());
        }
        b.extend_from_slice(&self.nlink.to_be_bytes());
        b.extend_from_slice(&self.length.to_be_bytes());
        b.extend_from_slice(&self.rdev.to_be_bytes());
        b.extend_from_slice(&self.parent.to_be_bytes());
        b.extend_from_slice(&self.slice_seq.to_be_bytes());
        debug_assert_eq!(b.len(), ATTR_BYTES);
        b
    }

    pub fn decode(b: &[u8]) -> Option<Attr> {
        if b.len() != ATTR_BYTES || b[0] != ATTR_VERSION {
            return None;
        }
        let mut r = Reader { b, at: 1 };
        let kind = FileKind::from_u8(r.u8()?)?;
        let mode = r.u16()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let mut t = [Timestamp::default(); 3];
        for slot in &mut t {
            *slot = Timestamp {
                sec: r.u64()? as i64,
                nsec: r.u32()?,
            };
        }
        Some(Attr {
            kind,
            mode,
            uid,
            gid,
            atime: t[0],
            mtime: t[1],
            ctime: t[2],
            nlink: r.u32()?,
            length: r.u64()?,
            rdev: r.u32()?,
            parent: r.u64()?,
            slice_seq: r.u64()?,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take()?))
    }
}

/// A directory entry's value: kind u8, inode u64 (big-endian). 9 bytes.
pub fn encode_dentry(kind: FileKind, ino: Ino) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(kind as u8);
    b.extend_from_slice(&ino.to_be_bytes());
    b
}

pub fn decode_dentry(b: &[u8]) -> Option<(FileKind, Ino)> {
    if b.len() != 9 {
        return None;
    }
    Some((
        FileKind::from_u8(b[0])?,
        u64::from_be_bytes(b[1..9].try_into().ok()?),
    ))
}

/// One slice record: the bytes `[offset, offset + len)` of slice `id`
/// (an object set of `size` bytes) placed at `pos` within the chunk.
/// `id == 0` is a hole: reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceRecord {
    pub pos: u32,
    pub id: u64,
    pub size: u32,
    pub offset: u32,
    pub len: u32,
}

impl SliceRecord {
    /// Byte layout (big-endian): pos u32, id u64, size u32, offset u32,
    /// len u32. 24 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&self.pos.to_be_bytes());
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<SliceRecord> {
        if b.len() != 24 {
            return None;
        }
        let mut r = Reader { b, at: 0 };
        Some(SliceRecord {
            pos: r.u32()?,
            id: r.u64()?,
            size: r.u32()?,
            offset: r.u32()?,
            len: r.u32()?,
        })
    }

    /// A chunk value: the records one after another.
    pub fn decode_list(b: &[u8]) -> Option<Vec<SliceRecord>> {
        if !b.len().is_multiple_of(24) {
            return None;
        }
        b.chunks(24).map(SliceRecord::decode).collect()
    }

    pub fn encode_list(records: &[SliceRecord]) -> Vec<u8> {
        records.iter().flat_map(SliceRecord::encode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_round_trips() {
        let mut a = Attr::new(
            FileKind::Socket,
            0o4755,
            1000,
            100,
            Timestamp { sec: -5, nsec: 7 },
        );
        a.length = 1 << 40;
        a.parent = 77;
        a.slice_seq = 9;
        assert_eq!(Attr::decode(&a.encode()), Some(a));
    }

    #[test]
    fn biased_time_sorts_like_time_and_round_trips() {
        let times = [
            Timestamp { sec: -100, nsec: 5 },
            Timestamp { sec: 0, nsec: 0 },
            Timestamp {
                sec: 1_700_000_000,
                nsec: 999_999_999,
            },
        ];
        for w in times.windows(2) {
            assert!(w[0].to_biased_nanos() < w[1].to_biased_nanos());
        }
        for t in times {
            assert_eq!(Timestamp::from_biased_nanos(t.to_biased_nanos()), t);
        }
    }
}
