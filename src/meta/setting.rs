//! The volume record (`Vsetting`): JSON, so that it can grow fields without
//! a format change; unknown fields are kept by older clients that rewrite it.

use serde::{Deserialize, Serialize};

/// The metadata schema version this code reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// Settings fixed at format time, some changeable by `jfs config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub schema_version: u32,
    pub name: String,
    pub uuid: String,
    /// Object storage kind (`file`, `s3`, ...) and bucket (URL or path).
    pub storage: String,
    pub bucket: String,
    /// Object storage credentials, so that every host mounts with the
    /// record alone. Never printed: see [`Volume::redacted`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    pub block_size_bytes: u32,
    pub compression: String,
    /// Days deleted files stay in the trash; 0 disables the trash.
    pub trash_days: u32,
    /// Limits; 0 means unlimited.
    pub capacity_bytes: u64,
    pub inode_limit: u64,
    /// Unix seconds.
    pub created: i64,
    /// Set on a volume loaded from a JuiceFS dump: its older slices are
    /// JuiceFS's objects, read in place (migration without copying data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub juicefs_blocks: Option<JuiceFsBlocks>,
}

/// Which slices of a migrated volume are JuiceFS's objects, and how they
/// are encoded: the whole block, compressed or not, no header, no checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JuiceFsBlocks {
    /// Slices with a smaller id were written by JuiceFS.
    pub slice_ids_below: u64,
    /// `none`, `lz4` or `zstd`.
    pub compression: String,
}

/// JuiceFS's defaults, which our users know: 4 MiB blocks, no
/// compression, one day of trash, no limits.
pub const DEFAULT_BLOCK_SIZE_BYTES: u32 = 4 << 20;
pub const DEFAULT_TRASH_DAYS: u32 = 1;

impl Volume {
    /// A new volume record with a fresh uuid and the defaults.
    pub fn new(name: &str, storage: &str, bucket: &str) -> Volume {
        Volume {
            schema_version: SCHEMA_VERSION,
            name: name.to_string(),
            uuid: new_uuid(),
            storage: storage.to_string(),
            bucket: bucket.to_string(),
            access_key: None,
            secret_key: None,
            block_size_bytes: DEFAULT_BLOCK_SIZE_BYTES,
            compression: "none".to_string(),
            trash_days: DEFAULT_TRASH_DAYS,
            capacity_bytes: 0,
            inode_limit: 0,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            juicefs_blocks: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record as users see it: the secret key replaced by "removed".
    pub fn redacted(&self) -> serde_json::Value {
        let mut shown = self.clone();
        if shown.secret_key.is_some() {
            shown.secret_key = Some("removed".into());
        }
        serde_json::to_value(shown).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Volume, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("volume record is damaged: {e}"))
    }
}

/// Volume names: 3 to 63 characters of lowercase letters, digits and '-',
/// starting and ending with a letter or digit (the rules JuiceFS users know,
/// which also make a valid bucket name).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a != b'-' && z != b'-');
    if (3..=63).contains(&name.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "invalid volume name '{name}': use 3 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
        ))
    }
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_bucket_rules() {
        assert!(validate_name("myjfs").is_ok());
        assert!(validate_name("a-1").is_ok());
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_is_v4_shaped() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
