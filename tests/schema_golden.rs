//! Ties `schema/` to the code: every golden vector must match what the code
//! encodes.

use jfs::kv::{decode_counter, encode_counter, KeyRange};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex in golden vectors"))
        .collect()
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
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["counter", value, bytes] => {
                let value: i64 = value.parse().expect("counter value");
                assert_eq!(
                    hex(&encode_counter(value)),
                    *bytes,
                    "encoding of counter {value}"
                );
                assert_eq!(decode_counter(&unhex(bytes)), value, "decoding of {bytes}");
            }
            ["prefix_end", prefix, end] => {
                let range = KeyRange::prefix(&unhex(prefix));
                let want = (*end != "none").then(|| unhex(end));
                assert_eq!(range.end, want, "end of prefix {prefix}");
            }
            other => panic!("unknown golden vector line: {other:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} vectors found");
}
