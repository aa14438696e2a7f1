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
    pub epoch: String,
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
    /// Waiting; `position` 1 is next in.
    Waiting { position: u64 },
    /// Admitted until `ends_ms` (Redis clock, ms since the epoch).
    Admitted { ends_ms: u64 },
    /// Left, idle too long, paid, or admission over.
    Gone,
}

impl Place {
    /// Decodes the compact form `status_many.lua` uses: a positive position, a negated
    /// admission end, or 0 for gone.
    pub fn from_compact(n: i64) -> Place {
        match n {
            p if p > 0 => Place::Waiting { position: p as u64 },
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
}

/// Per-concert admission settings (overrides; `None` = the instance default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub admit_per_tick: Option<u64>,
    pub tick_ms: Option<u64>,
    pub max_active: Option<u64>,
    pub access_ttl_secs: Option<u64>,
}

/// A concert's live figures and effective settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_total: u64,
    pub settings: SettingsPatch,
    pub rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_places_decode() {
        assert_eq!(Place::from_compact(3), Place::Waiting { position: 3 });
        assert_eq!(
            Place::from_compact(-1_700_000_000_000),
            Place::Admitted {
                ends_ms: 1_700_000_000_000
            }
        );
        assert_eq!(Place::from_compact(0), Place::Gone);
    }
}
