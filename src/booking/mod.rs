//! Booking: concerts and their dates, seat maps, seat holds, payments, and the expiry sweep.
//!
//! The database is the final arbiter of every seat (see `migrations/0003_reservations.sql`);
//! the Redlock and the Redis seat board in front of it only keep rushes cheap.

pub mod concerts;
pub mod flights;
pub mod payments;
pub mod reservations;
pub mod seat_board;
pub mod sweep;

use crate::db::Db;
use crate::domain::{ConcertId, ScheduleId};
use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::RwLock;

/// Which concert a schedule belongs to. Never changes once created, so it is cached forever;
/// the booking gate needs it on every seat request to check the access token's concert.
#[derive(Default)]
pub struct ScheduleCache {
    inner: RwLock<HashMap<ScheduleId, ConcertId>>,
}

impl ScheduleCache {
    pub async fn concert_of(
        &self,
        db: &Db,
        schedule: ScheduleId,
    ) -> Result<Option<ConcertId>, ApiError> {
        if let Some(c) = self
            .inner
            .read()
            .ok()
            .and_then(|m| m.get(&schedule).copied())
        {
            return Ok(Some(c));
        }
        // The primary: a schedule created a moment ago may not be on the replica yet.
        let concert: Option<u64> =
            sqlx::query_scalar("SELECT concert_id FROM schedules WHERE id = ?")
                .bind(schedule.get())
                .fetch_optional(db.primary())
                .await?;
        let concert = concert.and_then(ConcertId::new);
        if let (Some(c), Ok(mut m)) = (concert, self.inner.write()) {
            m.insert(schedule, c);
        }
        Ok(concert)
    }
}

/// Concerts known to exist. Concerts are never deleted, so a positive answer is cached forever;
/// joining a queue then costs no database query after the first join per instance.
#[derive(Default)]
pub struct ConcertCache {
    known: RwLock<std::collections::HashSet<ConcertId>>,
}

impl ConcertCache {
    pub async fn exists(&self, db: &Db, concert: ConcertId) -> Result<bool, ApiError> {
        if self.known.read().is_ok_and(|k| k.contains(&concert)) {
            return Ok(true);
        }
        let found = concerts::exists(db, concert).await?;
        if found && let Ok(mut k) = self.known.write() {
            k.insert(concert);
        }
        Ok(found)
    }
}
