//! Ties `schema/` to the code: every golden vector in
//! `schema/golden-vectors.txt` must match what the code encodes and decodes.

use jfs::kv::{decode_counter, encode_counter, KeyRange};
use jfs::meta::{decode_dentry, encode_dentry, keys, Attr, FileKind, SliceRecord, Timestamp};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex in golden vectors"))
        .collect()
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("number expected in golden vectors: {s}"))
}

/// Checks one vector line; hex may be split into several words for reading.
fn check(words: &[&str]) {
    let hex_from = |i: usize| words[i..].concat();
    match words {
        ["counter", value, bytes] => {
            let value: i64 = num(value);
            assert_eq!(
                hex(&encode_counter(value)),
                *bytes,
                "encoding of counter {value}"
            );
            assert_eq!(decode_counter(&unhex(bytes)), value, "decoding of {bytes}");
        }
        ["prefix_end", prefix, end] => {
            let want = (*end != "none").then(|| unhex(end));
            assert_eq!(
                KeyRange::prefix(&unhex(prefix)).end,
                want,
                "end of prefix {prefix}"
            );
        }
        ["key", "attr", ino, ..] => assert_eq!(hex(&keys::attr(num(ino))), hex_from(3)),
        ["key", "dentry", parent, name, ..] => {
            assert_eq!(
                hex(&keys::dentry(num(parent), name.as_bytes())),
                hex_from(4)
            )
        }
        ["key", "chunk", ino, index, ..] => {
            assert_eq!(hex(&keys::chunk(num(ino), num(index))), hex_from(4))
        }
        ["key", "counter", name, shard, ..] => {
            assert_eq!(hex(&keys::counter(name, num(shard))), hex_from(4))
        }
        ["key", "deleted", ino, length, ..] => {
            assert_eq!(hex(&keys::deleted_file(num(ino), num(length))), hex_from(4))
        }
        ["key", "session", sid, ..] => assert_eq!(hex(&keys::session(num(sid))), hex_from(3)),
        ["dentry", "dir", ino, ..] => {
            let bytes = encode_dentry(FileKind::Directory, num(ino));
            assert_eq!(hex(&bytes), hex_from(3));
            assert_eq!(decode_dentry(&bytes), Some((FileKind::Directory, num(ino))));
        }
        ["slice", _, ..] => {
            let s = SliceRecord {
                pos: 4096,
                id: 77,
                size: 8192,
                offset: 0,
                len: 8192,
            };
            assert_eq!(hex(&s.encode()), hex_from(2));
            assert_eq!(SliceRecord::decode(&unhex(&hex_from(2))), Some(s));
        }
        ["chunk", _, ..] => {
            let records = [
                SliceRecord {
                    pos: 4096,
                    id: 77,
                    size: 8192,
                    offset: 0,
                    len: 8192,
                },
                SliceRecord {
                    pos: 0,
                    id: 0,
                    size: 100,
                    offset: 0,
                    len: 100,
                },
            ];
            assert_eq!(hex(&SliceRecord::encode_list(&records)), hex_from(2));
            assert_eq!(
                SliceRecord::decode_list(&unhex(&hex_from(2))),
                Some(records.to_vec())
            );
        }
        ["biased_time", time, ..] => {
            let (sec, tenths) = time.split_once('.').expect("sec.tenths");
            let t = Timestamp {
                sec: num(sec),
                nsec: num::<u32>(tenths) * 100_000_000,
            };
            assert_eq!(
                hex(&encode_counter(t.to_biased_nanos() as i64)),
                hex_from(2),
                "time {time}"
            );
        }
        ["attr", _, ..] => {
            let mut a = Attr::new(
                FileKind::File,
                0o644,
                1000,
                100,
                Timestamp { sec: 1, nsec: 2 },
            );
            a.length = 5;
            a.parent = 1;
            a.slice_seq = 3;
            assert_eq!(hex(&a.encode()), hex_from(2));
            assert_eq!(Attr::decode(&unhex(&hex_from(2))), Some(a));
        }
        ["block_none", text, ..] => {
            let block = jfs::data::block::encode(text.as_bytes(), jfs::data::block::Codec::None);
            assert_eq!(hex(&block), hex_from(2));
            assert_eq!(
                jfs::data::block::decode(&unhex(&hex_from(2))).as_deref(),
                Ok(text.as_bytes())
            );
        }
        ["block_key", id, index, len, key] => {
            assert_eq!(
                jfs::data::block::block_key(num(id), num(index), num(len)),
                *key
            );
        }
        other => panic!("unknown golden vector line: {other:?}"),
    }
}

#[test]
fn golden_vectors_match_the_code() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/golden-vectors.txt"
    ))
    .expect("schema/golden-vectors.txt");
    let mut checked = 0;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        check(&words);
        checked += 1;
    }
    assert!(checked >= 21, "only {checked} vectors found");
}
