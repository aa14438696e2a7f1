//! Estimated waits and polling intervals.
//!
//! The ETA divides the position by the *measured* admission rate of the concert — a moving
//! average of admissions per second over ticks that left people waiting, kept by the tick
//! script — because the configured rate overstates the pace whenever `max_active` is full and
//! admissions wait for departures. Before anything has been measured, the configured rate
//! (`admit_per_tick / tick_ms`, the concert's override or the default) stands in. A paused
//! line (`admit_per_tick` 0) has no ETA: `null` rather than a made-up number; ticks of a paused
//! line do not count as measurements, so the rate is right again as soon as it resumes.
//!
//! The poll interval grows with the wait, so a fan a million places back asks every 30 s while
//! the next in line asks every second; it stays under a third of the idle limit so polling
//! users are never taken for idle ones.

use super::model::Pace;
use crate::config::QueueDefaults;

pub fn rate_per_sec(pace: &Pace, defaults: &QueueDefaults) -> f64 {
    if pace.admit_per_tick == Some(0) {
        return 0.0; // paused: whatever was measured before, nobody is getting in now
    }
    if let Some(r) = pace.measured_rate {
        return r;
    }
    let per_tick = pace.admit_per_tick.unwrap_or(defaults.admit_per_tick) as f64;
    let tick_ms = pace.tick_ms.unwrap_or(defaults.tick_ms).max(1) as f64;
    per_tick * 1000.0 / tick_ms
}

/// Whole seconds until admission, or `None` when the line is not moving.
pub fn eta_seconds(position: u64, rate_per_sec: f64) -> Option<u64> {
    if rate_per_sec <= 0.001 || !rate_per_sec.is_finite() {
        return None;
    }
    Some((position as f64 / rate_per_sec).ceil() as u64)
}

pub fn poll_after_ms(eta_seconds: Option<u64>, idle_secs: u64) -> u64 {
    let ceiling = (idle_secs * 1000 / 3).clamp(500, 30_000);
    let wanted = match eta_seconds {
        Some(eta) => eta.saturating_mul(1000) / 5,
        None => 5_000,
    };
    wanted.clamp(1_000, ceiling.max(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> QueueDefaults {
        QueueDefaults {
            tick_ms: 1000,
            admit_per_tick: 100,
            max_active: 1000,
            access_ttl_secs: 600,
            idle_secs: 120,
        }
    }

    #[test]
    fn measured_rate_wins_over_configured() {
        let pace = Pace {
            measured_rate: Some(20.0),
            admit_per_tick: Some(500),
            tick_ms: None,
        };
        assert_eq!(rate_per_sec(&pace, &defaults()), 20.0);
        assert_eq!(rate_per_sec(&Pace::default(), &defaults()), 100.0);
        let fast = Pace {
            measured_rate: None,
            admit_per_tick: Some(50),
            tick_ms: Some(100),
        };
        assert_eq!(rate_per_sec(&fast, &defaults()), 500.0);
        let paused = Pace {
            measured_rate: Some(40.0),
            admit_per_tick: Some(0),
            tick_ms: Some(1000),
        };
        assert_eq!(eta_seconds(10, rate_per_sec(&paused, &defaults())), None);
    }

    #[test]
    fn eta_is_position_over_rate_and_none_when_paused() {
        assert_eq!(eta_seconds(1, 100.0), Some(1));
        assert_eq!(eta_seconds(250, 100.0), Some(3));
        assert_eq!(eta_seconds(1_000_000, 100.0), Some(10_000));
        assert_eq!(eta_seconds(5, 0.0), None);
    }

    #[test]
    fn far_back_users_poll_less_but_never_look_idle() {
        assert_eq!(poll_after_ms(Some(1), 120), 1_000);
        assert_eq!(poll_after_ms(Some(60), 120), 12_000);
        assert_eq!(poll_after_ms(Some(10_000), 120), 30_000);
        assert_eq!(poll_after_ms(Some(10_000), 30), 10_000);
        assert_eq!(poll_after_ms(None, 120), 5_000);
        assert!(poll_after_ms(Some(10_000), 5) <= 5_000);
    }
}
