//! The trash (`--trash-days`): a file whose last link is removed goes to
//! `/.trash/YYYY-MM-DD-HH/PARENT-INODE-NAME` (UTC hour of deletion) instead
//! of being deleted, and hour directories older than the trash days are
//! removed by [`Meta::clean_trash`]. Only root may look inside (mode 0700,
//! owned by root); removing a file from the trash deletes it.

use super::attr::{encode_dentry, Attr, FileKind, Timestamp};
use super::error::MetaResult;
use super::keys::{self, ROOT_INO, TRASH_INO, TRASH_NAME};
use super::{Ctx, Meta, MIN_SPACE_BYTES};
use crate::kv::{encode_counter, KvResult, Txn};

const SECS_PER_HOUR: i64 = 3600;
const SECS_PER_DAY: i64 = 86_400;

/// `YYYY-MM-DD-HH` of the UTC hour holding `secs`.
pub fn hour_name(secs: i64) -> String {
    let days = secs.div_euclid(SECS_PER_DAY);
    let hour = secs.rem_euclid(SECS_PER_DAY) / SECS_PER_HOUR;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}-{hour:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) of `secs`.
pub fn utc_time(secs: i64) -> String {
    let days = secs.div_euclid(SECS_PER_DAY);
    let in_day = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s) = (
        in_day / SECS_PER_HOUR,
        in_day % SECS_PER_HOUR / 60,
        in_day % 60,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
}

/// Start (Unix seconds) of the hour an hour directory's name gives.
pub fn parse_hour_name(name: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(name).ok()?;
    let parts: Vec<i64> = text
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [y, m, d, h] = parts.as_slice() else {
        return None;
    };
    Some(days_from_civil(*y, *m, *d) * SECS_PER_DAY + h * SECS_PER_HOUR)
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Makes `/.trash` inside the format transaction.
pub fn create_trash_dir(tx: &Txn) -> KvResult<()> {
    let now = Timestamp::now();
    let mut attr = Attr::new(FileKind::Directory, 0o700, 0, 0, now);
    attr.parent = ROOT_INO;
    let t = encode_counter(now.to_biased_nanos() as i64);
    tx.put(keys::attr(TRASH_INO), attr.encode())?;
    tx.put(keys::dir_mtime(TRASH_INO), t.clone())?;
    tx.put(keys::dir_ctime(TRASH_INO), t)?;
    tx.put(
        keys::dentry(ROOT_INO, TRASH_NAME),
        encode_dentry(FileKind::Directory, TRASH_INO),
    )?;
    tx.add(keys::subdirs(ROOT_INO), 1)?;
    tx.add(keys::counter("inodes", 0), 1)?;
    tx.add(keys::counter("space", 0), MIN_SPACE_BYTES as i64)?;
    tx.add(keys::dir_space(ROOT_INO, 0), MIN_SPACE_BYTES as i64)?;
    tx.add(keys::dir_inodes(ROOT_INO, 0), 1)?;
    Ok(())
}

impl Meta {
    /// Removes the trash's hour directories older than the volume's trash
    /// days at `now_secs`, with everything in them; returns the entries
    /// removed. Run periodically by one client (each hour directory goes in
    /// bounded transactions, so several running at once is harmless).
    pub async fn clean_trash(&self, now_secs: i64) -> MetaResult<u64> {
        let keep_secs = self.volume.trash_days as i64 * SECS_PER_DAY;
        let ctx = Ctx::root();
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = match self
                .readdir(&ctx, TRASH_INO, after.as_deref(), 100, false)
                .await
            {
                Ok(page) => page,
                Err(super::MetaError::Errno(libc::ENOENT)) => return Ok(0),
                Err(e) => return Err(e),
            };
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for entry in page {
                let Some(hour_start) = parse_hour_name(&entry.name) else {
                    continue;
                };
                // Hour directories are named in order: the rest are newer.
                if hour_start + SECS_PER_HOUR + keep_secs > now_secs {
                    return Ok(removed);
                }
                removed += self.remove_tree(&ctx, TRASH_INO, &entry.name).await?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_rfc3339() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(1_795_561_944), "2026-11-24T23:12:24Z");
        assert_eq!(utc_time(951_782_399), "2000-02-28T23:59:59Z");
        assert_eq!(utc_time(951_782_400 + 86_400), "2000-03-01T00:00:00Z");
    }

    #[test]
    fn hour_names_round_trip() {
        assert_eq!(hour_name(0), "1970-01-01-00");
        assert_eq!(hour_name(1_795_467_600), "2026-11-23-21");
        for secs in [0i64, 951_782_400, 1_795_467_600, 4_102_444_800] {
            let start = secs - secs.rem_euclid(3600);
            assert_eq!(parse_hour_name(hour_name(secs).as_bytes()), Some(start));
        }
    }
}
