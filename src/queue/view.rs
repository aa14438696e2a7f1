//! The one answer a queue place gets, wherever it is asked: joining, polling, opening an event
//! stream, or the events pump. Position → ETA and poll interval, admission → access token: this
//! is the only place those translations happen (see `Queue::view`).

use super::eta;
use super::model::Pace;
use crate::config::QueueDefaults;

/// What a place looks like to its holder right now.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    /// Before the sale starts: no position yet (the order is drawn at random and told at the
    /// start).
    PreQueue {
        /// RFC 3339.
        sale_starts_at: String,
        poll_after_ms: u64,
    },
    Waiting {
        position: u64,
        /// `None` while the line is not moving (paused).
        eta_seconds: Option<u64>,
        poll_after_ms: u64,
    },
    Admitted {
        access_token: String,
        /// RFC 3339.
        access_expires_at: String,
    },
}

impl View {
    /// A pre-queue place's view: come back around the start, spread over `PRE_QUEUE_SPREAD` so
    /// that a million fans do not all come back in the same millisecond.
    pub fn pre_queue(starts_ms: u64, now_ms: u64, jitter: f64) -> View {
        let until = starts_ms.saturating_sub(now_ms);
        let spread = PRE_QUEUE_SPREAD_MS as f64 * jitter.clamp(0.0, 1.0);
        let poll_after_ms = if until > PRE_QUEUE_FAR_MS {
            // Far from the start: now and then, so a moved start is noticed.
            PRE_QUEUE_FAR_MS - 10_000 + (spread / 4.0) as u64
        } else {
            until + spread as u64
        };
        View::PreQueue {
            sale_starts_at: expires_at(starts_ms),
            poll_after_ms: poll_after_ms.max(1000),
        }
    }

    /// A waiting place's view, from the line's pace.
    pub fn waiting(position: u64, pace: &Pace, defaults: &QueueDefaults) -> View {
        let eta_seconds = eta::eta_seconds(position, eta::rate_per_sec(pace, defaults));
        View::Waiting {
            position,
            eta_seconds,
            poll_after_ms: eta::poll_after_ms(eta_seconds, defaults.idle_secs),
        }
    }
}

/// Fans in the pre-queue come back within this long after the start, spread evenly.
pub const PRE_QUEUE_SPREAD_MS: u64 = 20_000;
/// Further than this from the start, a pre-queue fan polls every ~30 s.
const PRE_QUEUE_FAR_MS: u64 = 40_000;

/// Formats an admission end (ms since the epoch, Redis clock) as RFC 3339.
pub fn expires_at(ends_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ends_ms.min(i64::MAX as u64) as i64)
        .map(crate::domain::rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_views_carry_eta_and_poll_interval() {
        let d = QueueDefaults {
            tick_ms: 1000,
            admit_per_tick: 100,
            max_active: 1000,
            access_ttl_secs: 600,
            idle_secs: 120,
        };
        assert_eq!(
            View::waiting(250, &Pace::default(), &d),
            View::Waiting {
                position: 250,
                eta_seconds: Some(3),
                poll_after_ms: 1000
            }
        );
        assert_eq!(expires_at(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn pre_queue_fans_come_back_around_the_start_spread_out() {
        let start = 1_000_000_000;
        let poll = |now, jitter| match View::pre_queue(start, now, jitter) {
            View::PreQueue { poll_after_ms, .. } => poll_after_ms,
            v => panic!("{v:?}"),
        };
        // 10 s before the start: back between the start and 20 s after it.
        assert_eq!(poll(start - 10_000, 0.0), 10_000);
        assert_eq!(poll(start - 10_000, 1.0), 30_000);
        // An hour before: every ~30 s.
        assert!((30_000..=35_000).contains(&poll(start - 3_600_000, 0.5)));
        // After the start (the draw is a tick away): soon, still spread.
        assert!((1_000..=20_000).contains(&poll(start + 500, 0.3)));
    }
}
