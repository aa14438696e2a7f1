//! What the queue store answers: places, join outcomes, tick reports, figures and settings.
//! Plain data, decoded from script replies by `store`.

/// One join: who, and the (seq, epoch) of a queue token they kept, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinItem {
    pub user: crate::domain::UserId,
    pub restore: Option<(u64, String)>,
}

/// The outcome of joining a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    pub seq: u64,
    /// The line's epoch, one allocation shared by every place of the call (and by the queue
    /// tokens minted for them).
    pub epoch: std::sync::Arc<str>,
    pub how: JoinKind,
    pub place: Place,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Existing,
    New,
    Restored,
}

impl JoinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinKind::Existing => "existing",
            JoinKind::New => "new",
            JoinKind::Restored => "restored",
        }
    }
}

/// Where a place stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the pre-queue of a sale that starts at `starts_ms` (Redis clock): no position yet.
    PreQueue { starts_ms: u64 },
    /// Waiting; `position` 1 is next in.
    Waiting { position: u64 },
    /// Admitted until `ends_ms` (Redis clock, ms since the epoch).
    Admitted { ends_ms: u64 },
    /// Left, idle too long, paid, or admission over.
    Gone,
}

impl Place {
    /// Decodes the compact form `status.lua` uses: a positive position, -1 for a pre-queue
    /// place (of a sale starting at `starts_ms`), a negated admission end, or 0 for gone.
    pub fn from_compact(n: i64, starts_ms: u64) -> Place {
        match n {
            p if p > 0 => Place::Waiting { position: p as u64 },
            -1 => Place::PreQueue { starts_ms },
            p if p < 0 => Place::Admitted {
                ends_ms: p.unsigned_abs(),
            },
            _ => Place::Gone,
        }
    }
}

/// Whether an admission still admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Live,
    Ended(Ended),
}

/// Why an admission no longer admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Paid,
    Left,
    Expired,
    /// The user holds a newer admission (queued again); this token belongs to the old one.
    Superseded,
    /// No record is left (e.g. long ago).
    Unknown,
}

impl Ended {
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Paid => "paid",
            Ended::Left => "left",
            Ended::Expired => "expired",
            Ended::Superseded => "superseded",
            Ended::Unknown => "ended",
        }
    }

    pub fn from_reason(s: &str) -> Ended {
        match s {
            "paid" => Ended::Paid,
            "left" => Ended::Left,
            "expired" => Ended::Expired,
            "superseded" => Ended::Superseded,
            _ => Ended::Unknown,
        }
    }
}

/// Upper bounds (s) of the wait-time buckets the tick counts admissions in; the last bucket
/// takes everything longer. Shared with `lua/tick.lua`.
pub const WAIT_LIMITS_SECS: [u64; 16] = [
    1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800,
];

/// Admissions counted by wait time: `counts[i]` waited at most `WAIT_LIMITS_SECS[i]` (and more
/// than the bucket before); the last count waited longer than every limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    pub counts: [u64; 17],
}

impl Waits {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q`-quantile (0..1) in seconds, interpolated within its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            let lower = if i == 0 { 0 } else { WAIT_LIMITS_SECS[i - 1] } as f64;
            let Some(upper) = WAIT_LIMITS_SECS.get(i) else {
                return Some(lower); // the open-ended bucket: at least its lower bound
            };
            if *n > 0 && (below + n) as f64 >= rank {
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + within * (*upper as f64 - lower));
            }
            below += n;
        }
        WAIT_LIMITS_SECS.last().map(|l| *l as f64)
    }
}

/// What the line's speed is known to be: the measured admission rate (users/s, a moving
/// average over ticks that left people waiting) and the concert's overrides, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    pub measured_rate: Option<f64>,
    pub admit_per_tick: Option<u64>,
    pub tick_ms: Option<u64>,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickReport {
    pub ran: bool,
    pub admitted_now: u64,
    pub expired_now: u64,
    pub idle_now: u64,
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_total: u64,
    pub next_due_ms: u64,
    pub tick_ms: u64,
    pub max_active: u64,
    /// Measured admissions per second (moving average); `None` before any measurement.
    pub rate: Option<f64>,
    pub admit_per_tick: u64,
    /// When the sale starts (ms, Redis clock); 0 when it has no start.
    pub sale_start_ms: u64,
    /// The sale has not started: nothing was claimed, `waiting` counts the pre-queue.
    pub before_start: bool,
    /// Pre-queue places drawn, when this tick was the sale's first.
    pub drawn_now: Option<u64>,
    /// This tick's admissions by how long they waited.
    pub waits: Waits,
}

impl TickReport {
    /// Adds a further call of the same tick: its counts add up, its figures are the newer.
    pub fn absorb(&mut self, later: TickReport) {
        let mut waits = self.waits;
        for (mine, theirs) in waits.counts.iter_mut().zip(later.waits.counts) {
            *mine += theirs;
        }
        *self = TickReport {
            ran: self.ran,
            admitted_now: self.admitted_now + later.admitted_now,
            expired_now: self.expired_now + later.expired_now,
            idle_now: self.idle_now + later.idle_now,
            before_start: self.before_start,
            drawn_now: self.drawn_now.or(later.drawn_now),
            waits,
            ..later
        };
    }
}

/// Per-concert admission settings (overrides; `None` = the instance default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub admit_per_tick: Option<u64>,
    pub tick_ms: Option<u64>,
    pub max_active: Option<u64>,
    pub access_ttl_secs: Option<u64>,
    /// `Some(Some(ms))` moves the sale start; `Some(None)` opens the sale now.
    pub sale_start_ms: Option<Option<u64>>,
}

/// A concert's live figures and effective settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_total: u64,
    pub settings: SettingsPatch,
    pub rate: f64,
    /// When the sale starts (ms); 0 when it has no start.
    pub sale_start_ms: u64,
    /// Places in the pre-queue (before the start; 0 after it).
    pub pre_queue: u64,
    /// How often the sale's draw happened (at most once).
    pub draws_total: u64,
    /// Admissions of the last 15 minutes by wait.
    pub waits: Waits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_in_several_calls_adds_their_counts_and_keeps_the_last_figures() {
        let mut first = TickReport {
            ran: true,
            admitted_now: 1000,
            expired_now: 1000,
            idle_now: 3,
            waiting: 9000,
            admitted: 1000,
            admitted_total: 1000,
            drawn_now: Some(12),
            rate: None,
            ..TickReport::default()
        };
        first.waits.counts[0] = 600;
        first.waits.counts[16] = 400;
        let mut later = TickReport {
            ran: true,
            admitted_now: 500,
            expired_now: 20,
            idle_now: 1,
            waiting: 8499,
            admitted: 1500,
            admitted_total: 1500,
            rate: Some(150.0),
            ..TickReport::default()
        };
        later.waits.counts[0] = 500;
        first.absorb(later);
        assert_eq!(
            (first.admitted_now, first.expired_now, first.idle_now),
            (1500, 1020, 4)
        );
        assert_eq!(
            (first.waiting, first.admitted, first.admitted_total),
            (8499, 1500, 1500)
        );
        assert_eq!(
            (first.rate, first.drawn_now, first.ran),
            (Some(150.0), Some(12), true)
        );
        assert_eq!((first.waits.counts[0], first.waits.counts[16]), (1100, 400));
        assert_eq!(first.waits.total(), first.admitted_now);
    }

    #[test]
    fn compact_places_decode() {
        assert_eq!(Place::from_compact(3, 0), Place::Waiting { position: 3 });
        assert_eq!(
            Place::from_compact(-1_700_000_000_000, 0),
            Place::Admitted {
                ends_ms: 1_700_000_000_000
            }
        );
        assert_eq!(
            Place::from_compact(-1, 77),
            Place::PreQueue { starts_ms: 77 }
        );
        assert_eq!(Place::from_compact(0, 0), Place::Gone);
    }

    #[test]
    fn wait_quantiles_interpolate_within_buckets() {
        assert_eq!(Waits::default().quantile(0.5), None);
        let mut w = Waits::default();
        w.counts[3] = 10; // 10 admissions that waited 10..30 s
        assert_eq!(w.quantile(0.5), Some(20.0));
        assert_eq!(w.quantile(1.0), Some(30.0));
        w.counts[16] = 10; // and 10 that waited more than 3 hours
        assert_eq!(w.quantile(0.9), Some(10800.0));
        assert_eq!(w.quantile(0.25), Some(20.0));
    }
}
