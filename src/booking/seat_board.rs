//! The seat board: a Redis marker per seat that is held or sold, so a rush of requests for a
//! taken seat is answered 409 without a lock or a database query.
//!
//! It is only a cache in front of the database, and it errs one way: a missing marker sends a
//! request on to the lock and the database (which decide correctly); a present marker only ever
//! exists while the seat really is held (its TTL ends with the hold) or sold. Redis failures
//! count as "no marker".

use crate::domain::{ScheduleId, SeatNo};
use fred::prelude::*;
use fred::types::Expiration;

pub struct SeatBoard {
    pool: Pool,
    prefix: String,
}

/// How long a "sold" marker lives; long enough to cover any sale, short enough to clean up.
const SOLD_TTL_SECS: i64 = 7 * 24 * 3600;

impl SeatBoard {
    pub fn new(pool: Pool, prefix: String) -> Self {
        SeatBoard { pool, prefix }
    }

    fn key(&self, schedule: ScheduleId, seat: SeatNo) -> String {
        format!("{}:{{s:{}}}:seat:{}", self.prefix, schedule, seat.get())
    }

    fn client(&self) -> fred::clients::WithOptions<Client> {
        self.pool
            .next_connected()
            .with_options(&crate::redis::request_options())
    }

    /// True only when a marker says the seat is taken right now.
    pub async fn is_taken(&self, schedule: ScheduleId, seat: SeatNo) -> bool {
        matches!(
            self.client()
                .exists::<i64, _>(self.key(schedule, seat))
                .await,
            Ok(1)
        )
    }

    pub async fn mark_held(&self, schedule: ScheduleId, seat: SeatNo, ttl_ms: i64) {
        if ttl_ms > 0 {
            let _ = self
                .client()
                .set::<(), _, _>(
                    self.key(schedule, seat),
                    "held",
                    Some(Expiration::PX(ttl_ms)),
                    None,
                    false,
                )
                .await;
        }
    }

    pub async fn mark_sold(&self, schedule: ScheduleId, seat: SeatNo) {
        let _ = self
            .client()
            .set::<(), _, _>(
                self.key(schedule, seat),
                "sold",
                Some(Expiration::EX(SOLD_TTL_SECS)),
                None,
                false,
            )
            .await;
    }

    /// The seat is free again (hold cancelled). A failure here only costs false 409s until the
    /// marker's TTL, which is the hold's own end.
    pub async fn clear(&self, schedule: ScheduleId, seat: SeatNo) {
        let _ = self.client().del::<i64, _>(self.key(schedule, seat)).await;
    }
}
