//! "Still here" marks this instance wrote recently, so a poll need not write one again.
//!
//! A waiting fan who stops polling for `QUEUE_IDLE_SECS` loses the place, so every poll used to
//! read and rewrite the fan's last-seen time in Redis. A mark younger than half the idle limit
//! already proves the fan is not idle and will stay valid past the next poll, so this instance
//! remembers the marks it wrote (after Redis confirmed them) and skips both the read and the
//! write while its own mark is that fresh. Another instance may have marked more recently;
//! that only makes the skip safer. Memory: about 16 bytes per waiting fan this instance serves.

use crate::domain::LineId;
use crate::trusted_hash::DenseMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// seq -> when this instance last marked it. Keyed densely: consecutive joins mark
/// consecutive seqs (see `DenseHasher`).
type SeqMap = DenseMap<u64, u32>;

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
