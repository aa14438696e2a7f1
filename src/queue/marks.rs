//! "Still here" marks this instance wrote recently, so a poll need not write one again.
//!
//! A waiting fan who stops polling for `QUEUE_IDLE_SECS` loses the place, so every poll used to
//! read and rewrite the fan's last-seen time in Redis. A mark younger than half the idle limit
//! already proves the fan is not idle and will stay valid past the next poll, so this instance
//! remembers the marks it wrote (after Redis confirmed them) and skips both the read and the
//! write while its own mark is that fresh. Another instance may have marked more recently;
//! that only makes the skip safer. Memory: about 16 bytes per waiting fan this instance serves.

use crate::domain::LineId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::Instant;

/// Hashes a seq so that consecutive seqs land in consecutive buckets. Seqs are numbered by
/// Redis in the order fans join, and every join marks its new place: with a mixing hash each
/// mark went to a random bucket of a table of one entry per waiting fan (16 MB at 500,000),
/// a cache miss per join (the insert and the lock's release waiting on it were ~2.5 % of a
/// join's gateway samples, `perf record`). Here the seq's own low bits pick the bucket, so a
/// burst of joins writes one cache line per four marks, and a contiguous run of seqs (what a
/// line holds) never collides. hashbrown takes the bucket from the low bits and a 7-bit tag
/// from the top ones, so the top seven bits carry a mix of the seq, keeping tags distinct.
/// The other seqs — pre-queue draws, 1..2^50 from the OS's randomness — spread evenly either
/// way. Nobody chooses a seq: they reach us only inside tokens we signed.
#[derive(Default)]
struct SeqHasher(u64);

/// hashbrown's tag bits.
const TAG_BITS: u64 = 0xFE00_0000_0000_0000;

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (self.0.rotate_left(7) ^ n) ^ (mixed & TAG_BITS);
    }
}

type SeqMap = HashMap<u64, u32, BuildHasherDefault<SeqHasher>>;

pub struct Marks {
    started: Instant,
    /// A mark this young (s) needs no refresh; 0 = always mark.
    fresh_for: u32,
    /// line -> seq -> when this instance last marked it (s since `started`).
    lines: Mutex<HashMap<LineId, SeqMap>>,
}

impl Marks {
    pub fn new(idle_secs: u64) -> Self {
        Marks {
            started: Instant::now(),
            fresh_for: u32::try_from(idle_secs / 2).unwrap_or(u32::MAX),
            lines: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Does the place (line, seq) need its mark checked and written on this call?
    pub fn needs_mark(&self, line: LineId, seq: u64) -> bool {
        let now = self.now();
        let Ok(lines) = self.lines.lock() else {
            return true;
        };
        match lines.get(&line).and_then(|m| m.get(&seq)) {
            Some(at) => now.saturating_sub(*at) >= self.fresh_for,
            None => true,
        }
    }

    /// Redis confirmed a mark of (line, seq) written now.
    pub fn marked(&self, line: LineId, seq: u64) {
        let now = self.now();
        if let Ok(mut lines) = self.lines.lock() {
            lines.entry(line).or_default().insert(seq, now);
        }
    }

    /// Forgets marks too old to save anything.
    pub fn prune(&self) {
        let now = self.now();
        if let Ok(mut lines) = self.lines.lock() {
            lines.retain(|_, marks| {
                marks.retain(|_, at| now.saturating_sub(*at) < self.fresh_for);
                !marks.is_empty()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConcertId;

    #[test]
    fn consecutive_seqs_get_consecutive_buckets_and_varied_tags() {
        let hash = |n: u64| {
            let mut h = SeqHasher::default();
            h.write_u64(n);
            h.finish()
        };
        let mask = (1u64 << 20) - 1;
        for n in 1_000u64..1_100 {
            assert_eq!(hash(n) & mask, n & mask);
        }
        let tags: std::collections::HashSet<u64> =
            (1_000u64..1_512).map(|n| hash(n) >> 57).collect();
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn a_fresh_mark_is_not_rewritten_and_unknown_places_always_are() {
        let line = LineId {
            concert: ConcertId::new(1).unwrap(),
            queue_id: 2,
        };
        let m = Marks::new(120);
        assert!(m.needs_mark(line, 5));
        m.marked(line, 5);
        assert!(!m.needs_mark(line, 5));
        assert!(m.needs_mark(line, 6));
        let other = LineId {
            queue_id: 3,
            ..line
        };
        assert!(m.needs_mark(other, 5));
        // With an idle limit under 2 s there is no safe skip.
        let strict = Marks::new(1);
        strict.marked(line, 5);
        assert!(strict.needs_mark(line, 5));
        strict.prune();
        assert!(strict.lines.lock().unwrap().is_empty());
    }
}
