//! The seat board: a Redis marker per seat that is held or sold, so a rush of requests for a
//! taken seat is answered 409 without a lock or a database query.
//!
//! It is only a cache in front of the database, and it errs one way: a missing marker sends a
//! request on to the lock and the database (which decide correctly); a present marker only ever
//! exists while the seat really is held (its TTL ends with the hold) or sold. Redis failures
//! count as "no marker".

use super::keys::SeatKeys;
use crate::domain::{ScheduleId, SeatNo, UserId};
use fred::prelude::*;
use fred::types::Expiration;

/// A seat's marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// No marker: the lock and the database decide.
    Free,
    HeldBy(UserId),
    Sold,
}

pub struct SeatBoard {
    pool: Pool,
    keys: SeatKeys,
}

/// How long a "sold" marker lives; long enough to cover any sale, short enough to clean up.
const SOLD_TTL_SECS: i64 = 7 * 24 * 3600;

impl SeatBoard {
    pub fn new(pool: Pool, keys: SeatKeys) -> Self {
        SeatBoard { pool, keys }
    }

    fn key(&self, schedule: ScheduleId, seat: SeatNo) -> String {
        self.keys.board(schedule, seat)
    }

    fn client(&self) -> fred::clients::WithOptions<Client> {
        self.pool
            .next_connected()
            .with_options(&crate::redis::request_options())
    }

    /// What the board says of a seat right now (a Redis failure reads as `Free`).
    pub async fn marker(&self, schedule: ScheduleId, seat: SeatNo) -> Marker {
        match self
            .client()
            .get::<Option<String>, _>(self.key(schedule, seat))
            .await
        {
            Ok(Some(v)) if v == "sold" => Marker::Sold,
            Ok(Some(v)) => match v.strip_prefix("held:").and_then(UserId::from_path) {
                Some(user) => Marker::HeldBy(user),
                None => Marker::Sold, // an unknown marker still means "taken"
            },
            _ => Marker::Free,
        }
    }

    pub async fn mark_held(&self, schedule: ScheduleId, seat: SeatNo, holder: UserId, ttl_ms: i64) {
        if ttl_ms > 0 {
            let _ = self
                .client()
                .set::<(), _, _>(
                    self.key(schedule, seat),
                    format!("held:{holder}"),
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
