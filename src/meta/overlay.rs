//! What a reader of a chunk sees: the slice records overlaid in order, each
//! later one hiding what it covers of the earlier ones.

use super::attr::SliceRecord;

/// A visible piece of a chunk: `len` bytes at `pos`, taken from slice `id`
/// at `offset` (id 0: zeros). Same fields as a record, cut to what shows.
pub type Segment = SliceRecord;

/// The visible segments of a chunk whose records are `records` (oldest
/// first), sorted by position, not overlapping. Gaps (never written) are
/// absent: they read as zeros, like holes.
pub fn overlay(records: &[SliceRecord]) -> Vec<Segment> {
    let mut visible: Vec<Segment> = Vec::new();
    for r in records.iter().filter(|r| r.len > 0) {
        let (start, end) = (r.pos as u64, r.pos as u64 + r.len as u64);
        let mut next = Vec::with_capacity(visible.len() + 2);
        for s in visible.drain(..) {
            let (s_start, s_end) = (s.pos as u64, s.pos as u64 + s.len as u64);
            if s_end <= start || s_start >= end {
                next.push(s);
                continue;
            }
            if s_start < start {
                next.push(cut(&s, s_start, start));
            }
            if s_end > end {
                next.push(cut(&s, end, s_end));
            }
        }
        next.push(*r);
        next.sort_by_key(|s| s.pos);
        visible = next;
    }
    visible
}

/// The part `[from, to)` (chunk positions) of segment `s`.
pub fn cut(s: &Segment, from: u64, to: u64) -> Segment {
    Segment {
        pos: from as u32,
        id: s.id,
        size: s.size,
        offset: if s.id == 0 {
            0
        } else {
            s.offset + (from - s.pos as u64) as u32
        },
        len: (to - from) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pos: u32, id: u64, len: u32) -> SliceRecord {
        SliceRecord {
            pos,
            id,
            size: len,
            offset: 0,
            len,
        }
    }

    #[test]
    fn later_records_hide_what_they_cover() {
        let segs = overlay(&[rec(0, 1, 100), rec(20, 2, 10), rec(90, 3, 20)]);
        let shown: Vec<(u32, u64, u32, u32)> = segs
            .iter()
            .map(|s| (s.pos, s.id, s.offset, s.len))
            .collect();
        assert_eq!(
            shown,
            vec![
                (0, 1, 0, 20),
                (20, 2, 0, 10),
                (30, 1, 30, 60),
                (90, 3, 0, 20)
            ]
        );
    }

    #[test]
    fn a_hole_over_everything_leaves_only_the_hole() {
        let hole = SliceRecord {
            pos: 0,
            id: 0,
            size: 50,
            offset: 0,
            len: 50,
        };
        let segs = overlay(&[rec(10, 1, 10), rec(30, 2, 10), hole]);
        assert_eq!(segs, vec![hole]);
    }
}
