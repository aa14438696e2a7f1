//! The one answer a queue place gets, wherever it is asked: joining, polling, opening an event
//! stream, or the events pump. Position → ETA and poll interval, admission → access token: this
//! is the only place those translations happen (see `Queue::view`).

use super::eta;
use super::model::Pace;
use crate::config::QueueDefaults;

/// What a place looks like to its holder right now.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
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
}
