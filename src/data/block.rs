//! Block format 1 (normative text: `schema/README.md`, "Blocks"): a block
//! object is a 16-byte header, then for uncompressed blocks a CRC-32 per
//! 64 KiB piece and the data, for zstd blocks one zstd frame. The CRC-32 of
//! the data is checked on every read, whole or ranged: a damaged block is an
//! error, never silent garbage.

use std::ops::Range;

use bytes::Bytes;

use super::pages::{Filled, PageBuf};

pub const MAGIC: &[u8; 4] = b"JFSB";
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: u64 = 16;
/// Uncompressed blocks carry one CRC per piece, so a ranged read checks
/// only the pieces it touches.
pub const PIECE_BYTES: u64 = 64 << 10;
/// zstd level: 1 is the fastest, and blocks are written on the hot path.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Zstd = 1,
}

impl Codec {
    pub fn parse(name: &str) -> Option<Codec> {
        match name {
            "none" => Some(Codec::None),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block is damaged: {0}")]
    Corrupt(String),
}

/// The object key of block `index` of slice `id`, `len` bytes of data
/// (JuiceFS's naming, so its tools and habits carry over).
pub fn block_key(id: u64, index: u32, len: u32) -> String {
    format!(
        "chunks/{}/{}/{id}_{index}_{len}",
        id / 1_000_000,
        id / 1_000
    )
}

/// The prefix every block key of slice `id` starts with.
pub fn slice_key_prefix(id: u64) -> String {
    format!("chunks/{}/{}/{id}_", id / 1_000_000, id / 1_000)
}

fn pieces(data_len: u64) -> u64 {
    data_len.div_ceil(PIECE_BYTES)
}

/// Encodes `data` as a block object.
pub fn encode(data: &[u8], codec: Codec) -> Vec<u8> {
    match codec {
        Codec::None => {
            let table = pieces(data.len() as u64) as usize * 4;
            let mut out = vec![0u8; HEADER_BYTES as usize + table];
            let crc = write_table(data, &mut out[HEADER_BYTES as usize..]);
            out[..HEADER_BYTES as usize].copy_from_slice(&header_bytes(Codec::None, data, crc));
            out.extend_from_slice(data);
            out
        }
        Codec::Zstd => {
            // Compressing from memory into memory cannot fail but for
            // allocation; fall back to storing the data uncompressed.
            let Ok(frame) = zstd::bulk::compress(data, ZSTD_LEVEL) else {
                return encode(data, Codec::None);
            };
            let mut out = Vec::with_capacity(HEADER_BYTES as usize + frame.len());
            out.extend_from_slice(&header_bytes(Codec::Zstd, data, crc32fast::hash(data)));
            out.extend_from_slice(&frame);
            out
        }
    }
}

fn header_bytes(codec: Codec, data: &[u8], crc: u32) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5] = codec as u8;
    h[8..12].copy_from_slice(&(data.len() as u32).to_be_bytes());
    h[12..16].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Writes the CRC of each piece of `data` into `table` (4 bytes each) in
/// one pass and returns the CRC of the whole, combined from the pieces'.
fn write_table(data: &[u8], table: &mut [u8]) -> u32 {
    let mut pieces = PieceCrcs::default();
    pieces.update(data);
    pieces.finish();
    pieces.fill(table);
    pieces.whole(data.len() as u64)
}

/// The CRCs of a block's pieces, computed as its bytes go by (the writer
/// copying them in, a reader reading them), while they are in the CPU's
/// caches.
#[derive(Default)]
struct PieceCrcs {
    /// CRCs of the whole pieces so far.
    crcs: Vec<u32>,
    /// The piece under way and its bytes so far.
    piece: crc32fast::Hasher,
    piece_bytes: u64,
}

impl PieceCrcs {
    /// The next bytes of the data.
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((PIECE_BYTES - self.piece_bytes) as usize).min(data.len());
            self.piece.update(&data[..take]);
            self.piece_bytes += take as u64;
            data = &data[take..];
            if self.piece_bytes == PIECE_BYTES {
                self.crcs.push(std::mem::take(&mut self.piece).finalize());
                self.piece_bytes = 0;
            }
        }
    }

    /// Bytes seen so far.
    fn bytes(&self) -> u64 {
        self.crcs.len() as u64 * PIECE_BYTES + self.piece_bytes
    }

    /// Ends the data: the last, partial piece gets its CRC.
    fn finish(&mut self) {
        if self.piece_bytes > 0 {
            self.crcs.push(std::mem::take(&mut self.piece).finalize());
            self.piece_bytes = 0;
        }
    }

    /// Writes the pieces' CRCs into a block's table (4 bytes each).
    fn fill(&self, table: &mut [u8]) {
        for (crc, slot) in self.crcs.iter().zip(table.chunks_exact_mut(4)) {
            slot.copy_from_slice(&crc.to_be_bytes());
        }
    }

    /// The CRC of the whole data (after [`PieceCrcs::finish`]), combined
    /// from the pieces'.
    fn whole(&self, data_len: u64) -> u32 {
        let mut whole = crc32fast::Hasher::new();
        for (i, crc) in self.crcs.iter().enumerate() {
            let len = PIECE_BYTES.min(data_len.saturating_sub(i as u64 * PIECE_BYTES));
            whole.combine(&crc32fast::Hasher::new_with_initial_len(*crc, len));
        }
        whole.finalize()
    }
}

/// A block being filled by a writer, with room in front of its data for
/// the header and CRC table of a block of the volume's size: encoding it
/// uncompressed writes them in place instead of copying the data. The
/// buffer is a mapping of its own ([`PageBuf`]), not heap memory. Each
/// piece's CRC is computed as the bytes are copied in, while they are in
/// the CPU's caches, so encoding makes no pass over the data.
pub struct BlockBuf {
    buf: PageBuf,
    /// Bytes in use, the room included.
    len: usize,
    room: usize,
    pieces: PieceCrcs,
}

impl BlockBuf {
    pub fn new(block_size: usize) -> BlockBuf {
        let room = HEADER_BYTES as usize + pieces(block_size as u64) as usize * 4;
        BlockBuf {
            buf: PageBuf::or_abort(room + block_size),
            len: room,
            room,
            pieces: PieceCrcs::default(),
        }
    }

    pub fn from_data(data: &[u8]) -> BlockBuf {
        let mut block = BlockBuf::new(data.len());
        block.extend(data);
        block
    }

    pub fn len(&self) -> usize {
        self.len - self.room
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        if end > self.buf.len() {
            let mut bigger = PageBuf::or_abort(end);
            bigger[..self.len].copy_from_slice(&self.buf[..self.len]);
            self.buf = bigger;
        }
        self.buf[self.len..end].copy_from_slice(data);
        self.len = end;
        self.pieces.update(&self.buf[end - data.len()..end]);
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.room..self.len]
    }

    /// The block object. In place when its CRC table fills the room (an
    /// uncompressed block with as many pieces as a full one); otherwise
    /// encoded into a new buffer.
    pub fn encode(mut self, codec: Codec) -> Bytes {
        let table = pieces(self.len() as u64) as usize * 4;
        if codec != Codec::None || HEADER_BYTES as usize + table != self.room {
            return encode(self.data(), codec).into();
        }
        self.pieces.finish();
        let (head, data) = self.buf[..self.len].split_at_mut(self.room);
        self.pieces.fill(&mut head[HEADER_BYTES as usize..]);
        let crc = self.pieces.whole(data.len() as u64);
        head[..HEADER_BYTES as usize].copy_from_slice(&header_bytes(Codec::None, data, crc));
        Bytes::from_owner(Filled {
            buf: self.buf,
            len: self.len,
        })
    }
}

struct Header {
    codec: Codec,
    data_len: u64,
    crc: u32,
}

fn header(object: &[u8]) -> Result<Header, BlockError> {
    if object.len() < HEADER_BYTES as usize || &object[..4] != MAGIC {
        return Err(BlockError::Corrupt("no block header".into()));
    }
    if object[4] != VERSION {
        return Err(BlockError::Corrupt(format!(
            "block format {} is unknown",
            object[4]
        )));
    }
    let codec = match object[5] {
        0 => Codec::None,
        1 => Codec::Zstd,
        other => return Err(BlockError::Corrupt(format!("unknown codec {other}"))),
    };
    let data_len = u32::from_be_bytes([object[8], object[9], object[10], object[11]]) as u64;
    let crc = u32::from_be_bytes([object[12], object[13], object[14], object[15]]);
    Ok(Header {
        codec,
        data_len,
        crc,
    })
}

/// The data of a whole block object, checked.
pub fn decode(object: &[u8]) -> Result<Bytes, BlockError> {
    decode_owned(Bytes::copy_from_slice(object))
}

/// As [`decode`], reusing the object's memory: an uncompressed block's
/// data is a view into the object, never copied. It is read once: each
/// piece's CRC is computed, compared with the table, and the piece CRCs are
/// combined into the whole block's CRC for the header's.
pub fn decode_owned(object: Bytes) -> Result<Bytes, BlockError> {
    let h = header(&object)?;
    let body_len = object.len() as u64 - HEADER_BYTES;
    match h.codec {
        Codec::None => {
            let table = pieces(h.data_len) * 4;
            if body_len != table + h.data_len {
                return Err(BlockError::Corrupt(format!(
                    "{body_len} bytes of body for {} bytes of data",
                    h.data_len
                )));
            }
            let data_start = (HEADER_BYTES + table) as usize;
            let mut whole = crc32fast::Hasher::new();
            for (i, piece) in object[data_start..]
                .chunks(PIECE_BYTES as usize)
                .enumerate()
            {
                let crc = crc32fast::hash(piece);
                let at = HEADER_BYTES as usize + i * 4;
                if object[at..at + 4] != crc.to_be_bytes() {
                    return Err(BlockError::Corrupt(format!(
                        "checksum mismatch in piece {i}"
                    )));
                }
                whole.combine(&crc32fast::Hasher::new_with_initial_len(
                    crc,
                    piece.len() as u64,
                ));
            }
            if whole.finalize() != h.crc {
                return Err(BlockError::Corrupt("checksum mismatch".into()));
            }
            Ok(object.slice(data_start..))
        }
        Codec::Zstd => {
            let data =
                zstd::bulk::decompress(&object[HEADER_BYTES as usize..], h.data_len as usize)
                    .map_err(|e| BlockError::Corrupt(format!("zstd frame does not decode: {e}")))?;
            if data.len() as u64 != h.data_len || crc32fast::hash(&data) != h.crc {
                return Err(BlockError::Corrupt("checksum mismatch".into()));
            }
            Ok(Bytes::from(data))
        }
    }
}

/// Checks the pieces of a block object while its bytes are read, each
/// part right after it arrives, while it is still in the CPU's caches: a
/// check after the whole 4 MiB were read reads them again from memory
/// (measured on `file` storage: the pass cost a third of the read
/// throughput). Parts come in order from offset 0; a read that starts again
/// (a retry) starts the check again. What the check could not cover (a
/// compressed block, parts out of order, a mismatch) is left to
/// [`decode_owned`]'s full pass, so a damaged block is reported by one
/// path.
#[derive(Default)]
pub struct PieceCheck {
    /// Bytes of the object seen so far.
    at: usize,
    /// Header and CRC table, copied as they pass (at most 16 + 256 bytes
    /// for a 4 MiB block).
    head: Vec<u8>,
    /// Header and table size, once the header is in.
    head_len: Option<usize>,
    data_len: u64,
    pieces: PieceCrcs,
    /// Pieces compared with the table so far.
    checked: usize,
    /// Set when the check cannot vouch for the object: compressed, out of
    /// order, too long, or a mismatch.
    given_up: bool,
}

impl PieceCheck {
    pub fn new() -> PieceCheck {
        PieceCheck::default()
    }

    /// The next `part` of the object, at `offset`.
    pub fn feed(&mut self, offset: usize, mut part: &[u8]) {
        if offset == 0 && self.at != 0 {
            *self = PieceCheck::default();
        }
        if self.given_up {
            return;
        }
        if offset != self.at {
            self.given_up = true;
            return;
        }
        self.at += part.len();
        let head_len = match self.head_len {
            Some(n) => n,
            None => {
                let take = (HEADER_BYTES as usize - self.head.len()).min(part.len());
                self.head.extend_from_slice(&part[..take]);
                part = &part[take..];
                if self.head.len() < HEADER_BYTES as usize {
                    return;
                }
                let Ok(h) = header(&self.head) else {
                    self.given_up = true;
                    return;
                };
                if h.codec != Codec::None {
                    self.given_up = true;
                    return;
                }
                self.data_len = h.data_len;
                let n = HEADER_BYTES as usize + pieces(h.data_len) as usize * 4;
                self.head_len = Some(n);
                n
            }
        };
        if self.head.len() < head_len {
            let take = (head_len - self.head.len()).min(part.len());
            self.head.extend_from_slice(&part[..take]);
            part = &part[take..];
        }
        if self.pieces.bytes() + part.len() as u64 > self.data_len {
            self.given_up = true;
            return;
        }
        self.pieces.update(part);
        if self.pieces.bytes() == self.data_len {
            self.pieces.finish();
        }
        while self.checked < self.pieces.crcs.len() {
            let at = HEADER_BYTES as usize + self.checked * 4;
            if self.head[at..at + 4] != self.pieces.crcs[self.checked].to_be_bytes() {
                self.given_up = true;
                return;
            }
            self.checked += 1;
        }
    }

    /// The data of `object`, which must be the bytes fed: without a
    /// second pass if every piece was checked as it arrived, else checked
    /// now by [`decode_owned`].
    pub fn finish(self, object: Bytes) -> Result<Bytes, BlockError> {
        let complete = !self.given_up
            && self.at == object.len()
            && self
                .head_len
                .is_some_and(|n| n as u64 + self.data_len == object.len() as u64)
            && self.checked as u64 == pieces(self.data_len)
            && object.starts_with(&self.head);
        if !complete {
            return decode_owned(object);
        }
        let crc = u32::from_be_bytes([self.head[12], self.head[13], self.head[14], self.head[15]]);
        if self.pieces.whole(self.data_len) != crc {
            return decode_owned(object);
        }
        let start = self.head_len.unwrap_or(0);
        Ok(object.slice(start..))
    }
}

/// How the objects of a slice are encoded: jfs's block format, or, for
/// the slices of a volume migrated from JuiceFS, JuiceFS's (the block
/// compressed whole or stored raw; no header, no checksum, so a damaged
/// object is caught only when it does not decode to its named length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDecoder {
    Jfs,
    JuiceFs(JuiceFsCodec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JuiceFsCodec {
    None,
    Lz4,
    Zstd,
}

impl JuiceFsCodec {
    pub fn parse(name: &str) -> Option<JuiceFsCodec> {
        match name {
            "none" | "" => Some(JuiceFsCodec::None),
            "lz4" => Some(JuiceFsCodec::Lz4),
            "zstd" => Some(JuiceFsCodec::Zstd),
            _ => None,
        }
    }
}

impl BlockDecoder {
    /// The data of a whole object holding `len` bytes of data.
    pub fn decode(self, object: impl Into<Bytes>, len: u32) -> Result<Bytes, BlockError> {
        self.decode_checked(object, len, None)
    }

    /// As [`BlockDecoder::decode`], for an object whose bytes went through
    /// `check` as they were read.
    pub fn decode_checked(
        self,
        object: impl Into<Bytes>,
        len: u32,
        check: Option<PieceCheck>,
    ) -> Result<Bytes, BlockError> {
        let object: Bytes = object.into();
        let data = match self {
            BlockDecoder::Jfs => match check {
                Some(check) => check.finish(object)?,
                None => decode_owned(object)?,
            },
            BlockDecoder::JuiceFs(JuiceFsCodec::None) => object,
            BlockDecoder::JuiceFs(JuiceFsCodec::Lz4) => {
                lz4_flex::block::decompress(&object, len as usize)
                    .map_err(|e| BlockError::Corrupt(format!("lz4 block does not decode: {e}")))?
                    .into()
            }
            BlockDecoder::JuiceFs(JuiceFsCodec::Zstd) => {
                zstd::bulk::decompress(&object, len as usize)
                    .map_err(|e| BlockError::Corrupt(format!("zstd frame does not decode: {e}")))?
                    .into()
            }
        };
        if data.len() != len as usize {
            return Err(BlockError::Corrupt(format!(
                "{} bytes, expected {len}",
                data.len()
            )));
        }
        Ok(data)
    }
}

/// How to read `[offset, offset + len)` of an uncompressed block of
/// `data_len` bytes with two ranged GETs: the CRCs of the pieces touched (or
/// the block's whole table, kept for its next reads) and the pieces
/// themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    pub crc_bytes: Range<u64>,
    /// The block's whole CRC table.
    pub table_bytes: Range<u64>,
    pub data_bytes: Range<u64>,
    first_piece_start: u64,
    want: Range<u64>,
}

impl RangeRead {
    pub fn plan(data_len: u64, offset: u64, len: u64) -> RangeRead {
        let end = (offset + len).min(data_len);
        let offset = offset.min(end);
        let first = offset / PIECE_BYTES;
        let last = end
            .div_ceil(PIECE_BYTES)
            .max(first + 1)
            .min(pieces(data_len).max(1));
        let data_start = HEADER_BYTES + pieces(data_len) * 4;
        RangeRead {
            crc_bytes: HEADER_BYTES + first * 4..HEADER_BYTES + last * 4,
            table_bytes: HEADER_BYTES..data_start,
            data_bytes: data_start + first * PIECE_BYTES
                ..data_start + (last * PIECE_BYTES).min(data_len),
            first_piece_start: first * PIECE_BYTES,
            want: offset..end,
        }
    }

    /// The wanted bytes, after checking every piece fetched against its CRC.
    pub fn extract(&self, crcs: &[u8], data: &[u8]) -> Result<Vec<u8>, BlockError> {
        Ok(data[self.check(crcs, data)?].to_vec())
    }

    /// Where the wanted bytes are in `data` (the pieces fetched), after
    /// checking every piece against its CRC.
    pub fn check(&self, crcs: &[u8], data: &[u8]) -> Result<std::ops::Range<usize>, BlockError> {
        if crcs.len() as u64 != self.crc_bytes.end - self.crc_bytes.start
            || data.len() as u64 != self.data_bytes.end - self.data_bytes.start
        {
            return Err(BlockError::Corrupt("short read of a block".into()));
        }
        for (i, piece) in data.chunks(PIECE_BYTES as usize).enumerate() {
            let want = u32::from_be_bytes([
                crcs[i * 4],
                crcs[i * 4 + 1],
                crcs[i * 4 + 2],
                crcs[i * 4 + 3],
            ]);
            if crc32fast::hash(piece) != want {
                return Err(BlockError::Corrupt(format!(
                    "checksum mismatch in piece {}",
                    i as u64 + self.first_piece_start / PIECE_BYTES
                )));
            }
        }
        let from = (self.want.start - self.first_piece_start) as usize;
        let to = (self.want.end - self.first_piece_start) as usize;
        Ok(from..to)
    }

    /// As [`RangeRead::extract`], with the block's whole CRC table.
    pub fn extract_with_table(&self, table: &[u8], data: &[u8]) -> Result<Vec<u8>, BlockError> {
        if table.len() as u64 != self.table_bytes.end - self.table_bytes.start {
            return Err(BlockError::Corrupt(
                "short read of a block's CRC table".into(),
            ));
        }
        let crcs = (self.crc_bytes.start - HEADER_BYTES) as usize
            ..(self.crc_bytes.end - HEADER_BYTES) as usize;
        self.extract(&table[crcs], data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_block_encoded_in_place_is_the_same_object() {
        let block_size = 4 << 20;
        for len in [1, 65_536, (4 << 20) - 65_536, (4 << 20) - 100, 4 << 20] {
            for codec in [Codec::None, Codec::Zstd] {
                let data = sample(len);
                // Parts across piece boundaries, of one byte, of exactly a
                // piece, and the whole at once.
                for part in [100_000, 1, 65_536, 4 << 20] {
                    if part == 1 && len > 65_536 {
                        continue;
                    }
                    let mut buf = BlockBuf::new(block_size);
                    for p in data.chunks(part) {
                        buf.extend(p);
                    }
                    assert_eq!(buf.data(), &data[..]);
                    let object = buf.encode(codec);
                    assert_eq!(
                        &object[..],
                        &encode(&data, codec)[..],
                        "{len} {codec:?} parts of {part}"
                    );
                    assert_eq!(decode(&object).expect("decode"), data);
                }
            }
        }
    }

    #[test]
    fn whole_blocks_round_trip_with_both_codecs() {
        for len in [0, 1, 65_535, 65_536, 65_537, 4 << 20] {
            for codec in [Codec::None, Codec::Zstd] {
                let data = sample(len);
                assert_eq!(
                    decode(&encode(&data, codec)).expect("decode"),
                    data,
                    "len {len} {codec:?}"
                );
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let data = sample(200_000);
        for codec in [Codec::None, Codec::Zstd] {
            let block = encode(&data, codec);
            for at in [0, 5, 9, 13, 20, block.len() / 2, block.len() - 1] {
                let mut bad = block.clone();
                bad[at] ^= 0x40;
                assert!(
                    decode(&bad).is_err(),
                    "{codec:?}: flip at {at} not detected"
                );
            }
            assert!(
                decode(&block[..block.len() - 1]).is_err(),
                "truncated block accepted"
            );
        }
    }

    /// Feeds `object` to a check in parts of `part` bytes.
    fn fed(object: &[u8], part: usize) -> PieceCheck {
        let mut check = PieceCheck::new();
        for (i, p) in object.chunks(part).enumerate() {
            check.feed(i * part, p);
        }
        check
    }

    #[test]
    fn pieces_checked_while_read_give_the_data_or_the_damage() {
        for len in [0, 1, 65_536, 65_537, 200_000, 4 << 20] {
            let data = sample(len);
            let block = encode(&data, Codec::None);
            for part in [1, 7, 16, 300, 65_536, 262_144, block.len().max(1)] {
                if part == 1 && len > 200_000 {
                    continue;
                }
                let check = fed(&block, part);
                assert!(
                    !check.given_up,
                    "len {len}, parts of {part}: not checked as read"
                );
                let got = check
                    .finish(Bytes::from(block.clone()))
                    .expect("intact block");
                assert_eq!(got, data, "len {len}, parts of {part}");
            }
            for at in [0, 5, 13, 17, block.len() / 2, block.len() - 1] {
                if at >= block.len() {
                    continue;
                }
                let mut bad = block.clone();
                bad[at] ^= 0x40;
                let check = fed(&bad, 4096);
                assert!(
                    check.finish(Bytes::from(bad)).is_err(),
                    "len {len}: flip at {at} not detected"
                );
            }
            let short = &block[..block.len() - 1];
            assert!(fed(short, 4096)
                .finish(Bytes::copy_from_slice(short))
                .is_err());
        }
    }

    #[test]
    fn a_check_fed_out_of_order_or_again_still_decides_rightly() {
        let data = sample(300_000);
        let block = encode(&data, Codec::None);
        // A retried read starts again from 0 after a broken first try.
        let mut check = PieceCheck::new();
        check.feed(0, &block[..1000]);
        check.feed(0, &block[..70_000]);
        check.feed(70_000, &block[70_000..]);
        assert!(!check.given_up);
        assert_eq!(check.finish(Bytes::from(block.clone())).unwrap(), data);
        // A gap: the check gives up and the full pass decides.
        let mut check = PieceCheck::new();
        check.feed(0, &block[..1000]);
        check.feed(2000, &block[2000..]);
        assert!(check.given_up);
        assert_eq!(check.finish(Bytes::from(block.clone())).unwrap(), data);
        // Nothing fed (a store that does not feed): the full pass.
        assert_eq!(
            PieceCheck::new()
                .finish(Bytes::from(block.clone()))
                .unwrap(),
            data
        );
        // Compressed: left to the full pass.
        let zstd = encode(&data, Codec::Zstd);
        let check = fed(&zstd, 4096);
        assert!(check.given_up);
        assert_eq!(check.finish(Bytes::from(zstd)).unwrap(), data);
    }

    #[test]
    fn ranged_reads_check_only_their_pieces() {
        let data = sample(300_000);
        let block = encode(&data, Codec::None);
        for (off, len) in [
            (0, 10),
            (65_530, 20),
            (299_990, 100),
            (100_000, 150_000),
            (0, 300_000),
        ] {
            let plan = RangeRead::plan(data.len() as u64, off, len);
            let crcs = &block[plan.crc_bytes.start as usize..plan.crc_bytes.end as usize];
            let got = &block[plan.data_bytes.start as usize..plan.data_bytes.end as usize];
            let end = (off + len).min(300_000) as usize;
            assert_eq!(
                plan.extract(crcs, got).expect("extract"),
                data[off as usize..end]
            );
        }
        let plan = RangeRead::plan(300_000, 70_000, 10);
        let mut bad = block[plan.data_bytes.start as usize..plan.data_bytes.end as usize].to_vec();
        bad[3] ^= 1;
        let crcs = &block[plan.crc_bytes.start as usize..plan.crc_bytes.end as usize];
        assert!(plan.extract(crcs, &bad).is_err());
    }

    #[test]
    fn keys_follow_juicefs_naming() {
        assert_eq!(
            block_key(1_234_567, 3, 4 << 20),
            "chunks/1/1234/1234567_3_4194304"
        );
    }
}
