//! Redis key names of one seat: its board marker (on the queue Redis) and its lock (on each
//! Redlock master). Both carry the schedule's hash tag `{s:ID}`, so a cluster keeps a date's
//! seats together, apart from any concert's queue keys.

use crate::domain::{ScheduleId, SeatNo};

#[derive(Clone, Debug)]
pub struct SeatKeys {
    prefix: String,
}

impl SeatKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        SeatKeys {
            prefix: prefix.into(),
        }
    }

    /// STRING "held"/"sold" with a TTL: the seat board's marker.
    pub fn board(&self, schedule: ScheduleId, seat: SeatNo) -> String {
        format!("{}:{{s:{}}}:seat:{}", self.prefix, schedule, seat.get())
    }

    /// The Redlock key guarding the hold transaction of one seat.
    pub fn lock(&self, schedule: ScheduleId, seat: SeatNo) -> String {
        format!(
            "{}:lock:{{s:{}}}:seat:{}",
            self.prefix,
            schedule,
            seat.get()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_keys_share_the_schedule_tag() {
        let k = SeatKeys::new("qg");
        let (s, n) = (ScheduleId::new(7).unwrap(), SeatNo::new(3).unwrap());
        assert_eq!(k.board(s, n), "qg:{s:7}:seat:3");
        assert_eq!(k.lock(s, n), "qg:lock:{s:7}:seat:3");
    }
}
