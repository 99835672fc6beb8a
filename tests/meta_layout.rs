//! File layout against a byte model: random writes, truncates, fallocate
//! (allocate, punch hole, zero range) and copy_file_range on two files, near
//! the start and across the first chunk boundary. Each slice's bytes are a
//! known pattern, so what the slice records show (overlaid) must equal the
//! model byte for byte. Runs on `mem` with faults injected, strict limits.

mod common;

use std::collections::BTreeMap;

use jfs::kv::FaultConfig;
use jfs::meta::overlay::overlay;
use jfs::meta::{
    Ctx, FileKind, Ino, Meta, SetAttr, SliceRecord, CHUNK_SIZE, FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, ROOT_INO,
};

fn pattern(id: u64, offset: u64) -> u8 {
    ((id * 31 + offset * 7) % 251 + 1) as u8
}

/// Non-zero bytes of a file, and its length.
#[derive(Default, Clone)]
struct FileModel {
    bytes: BTreeMap<u64, u8>,
    length: u64,
}

impl FileModel {
    fn zero(&mut self, from: u64, to: u64) {
        let keys: Vec<u64> = self.bytes.range(from..to).map(|(k, _)| *k).collect();
        for k in keys {
            self.bytes.remove(&k);
        }
    }
    fn truncate(&mut self, size: u64) {
        if size < self.length {
            self.zero(size, u64::MAX);
        }
        self.length = size;
    }
}

async fn content(meta: &Meta, ino: Ino, length: u64, regions: &[(u64, u64)]) -> BTreeMap<u64, u8> {
    let mut out = BTreeMap::new();
    for index in 0..=(length.max(1) - 1) / CHUNK_SIZE {
        let records = meta
            .read_chunk(ino, index as u32)
            .await
            .expect("read chunk");
        for seg in overlay(&records).into_iter().filter(|s| s.id != 0) {
            for i in 0..seg.len as u64 {
                let pos = index * CHUNK_SIZE + seg.pos as u64 + i;
                if pos < length && regions.iter().any(|(a, b)| pos >= *a && pos < *b) {
                    out.insert(pos, pattern(seg.id, seg.offset as u64 + i));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_layout_ops_match_byte_model() {
    let faulty = common::mem_db(Some(FaultConfig::uniform(0.03)));
    let meta = common::format_and_load(faulty, common::volume("layout")).await;
    let ctx = Ctx::root();
    let mut files = Vec::new();
    for name in [b"f0".as_slice(), b"f1"] {
        let (ino, _) = meta
            .mknod(&ctx, ROOT_INO, name, FileKind::File, 0o644, 0)
            .await
            .expect("create");
        files.push((ino, FileModel::default()));
    }
    // Two regions: the start of the file and around the first chunk boundary.
    const SPAN: u64 = 64 << 10;
    let regions = [(0, SPAN), (CHUNK_SIZE - SPAN / 2, CHUNK_SIZE + SPAN / 2)];
    let mut rng = fastrand::Rng::with_seed(42);
    let pick_range = |rng: &mut fastrand::Rng| {
        let (a, b) = regions[rng.usize(..2)];
        let off = rng.u64(a..b);
        let len = rng.u64(1..4096).min(b - off);
        (off, len.max(1))
    };
    for step in 0..600 {
        let which = rng.usize(..2);
        let (ino, _) = files[which];
        let op = rng.u8(..100);
        let (off, len) = pick_range(&mut rng);
        let what;
        if op < 40 {
            // A write never crosses a chunk boundary (the data path splits it).
            let len = len.min(CHUNK_SIZE - off % CHUNK_SIZE);
            let id = meta.new_slice_id().await.expect("slice id");
            let record = SliceRecord {
                pos: (off % CHUNK_SIZE) as u32,
                id,
                size: len as u32,
                offset: 0,
                len: len as u32,
            };
            meta.write_slice(ino, (off / CHUNK_SIZE) as u32, record)
                .await
                .expect("write");
            let m = &mut files[which].1;
            for i in 0..len {
                m.bytes.insert(off + i, pattern(id, i));
            }
            m.length = m.length.max(off + len);
            what = format!("write {off}+{len}");
        } else if op < 52 {
            let size = [0, off, off + len, CHUNK_SIZE + SPAN / 2][rng.usize(..4)];
            meta.setattr(
                &ctx,
                ino,
                &SetAttr {
                    size: Some(size),
                    ..Default::default()
                },
            )
            .await
            .expect("truncate");
            files[which].1.truncate(size);
            what = format!("truncate {size}");
        } else if op < 64 {
            meta.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len)
                .await
                .expect("punch");
            files[which].1.zero(off, off + len);
            what = format!("punch {off}+{len}");
        } else if op < 74 {
            let keep = rng.bool();
            let mode = FALLOC_FL_ZERO_RANGE | if keep { FALLOC_FL_KEEP_SIZE } else { 0 };
            meta.fallocate(ino, mode, off, len)
                .await
                .expect("zero range");
            let m = &mut files[which].1;
            m.zero(off, off + len);
            if !keep {
                m.length = m.length.max(off + len);
            }
            what = format!("zero {off}+{len} keep {keep}");
        } else if op < 80 {
            let keep = rng.bool();
            meta.fallocate(ino, if keep { FALLOC_FL_KEEP_SIZE } else { 0 }, off, len)
                .await
                .expect("allocate");
            if !keep {
                let m = &mut files[which].1;
                m.length = m.length.max(off + len);
            }
            what = format!("allocate {off}+{len} keep {keep}");
        } else {
            let from = rng.usize(..2);
            let (src, _) = files[from];
            let (src_off, _) = pick_range(&mut rng);
            if from == which && src_off < off + len && off < src_off + len {
                assert_eq!(
                    meta.copy_file_range(src, src_off, ino, off, len)
                        .await
                        .map_err(|e| e.errno()),
                    Err(libc::EINVAL)
                );
                continue;
            }
            let copied = meta
                .copy_file_range(src, src_off, ino, off, len)
                .await
                .expect("copy");
            assert!(copied <= len);
            let source = files[from].1.clone();
            let expected_max = len.min(source.length.saturating_sub(src_off));
            assert!(
                copied <= expected_max,
                "copied {copied} past the source end"
            );
            let m = &mut files[which].1;
            m.zero(off, off + copied);
            for i in 0..copied {
                if let Some(b) = source.bytes.get(&(src_off + i)) {
                    m.bytes.insert(off + i, *b);
                }
            }
            if copied > 0 {
                m.length = m.length.max(off + copied);
            }
            what = format!("copy {from}:{src_off} -> {which}:{off} +{len} = {copied}");
        }
        // Check the file just changed.
        let (ino, model) = &files[which];
        let attr = meta.getattr(*ino).await.expect("getattr");
        assert_eq!(attr.length, model.length, "step {step} ({what}): length");
        let got = content(&meta, *ino, attr.length, &regions).await;
        let want: BTreeMap<u64, u8> = model
            .bytes
            .iter()
            .filter(|(k, _)| **k < model.length)
            .map(|(k, v)| (*k, *v))
            .collect();
        if got != want {
            let first = want
                .iter()
                .find(|(k, v)| got.get(k) != Some(v))
                .map(|(k, _)| *k)
                .or_else(|| got.keys().find(|k| !want.contains_key(k)).copied());
            panic!("step {step} ({what}): content differs first at byte {first:?}");
        }
    }
}
