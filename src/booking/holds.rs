//! Taking a seat hold.
//!
//! A hold runs through four layers, cheapest first:
//! 1. the seat board (Redis marker): a seat already held or sold is refused with no lock and
//!    no database work — this is what keeps a 10,000-request rush on one seat cheap;
//! 2. a single flight per seat inside this instance: concurrent requests for one seat wait for
//!    the first one's outcome instead of all knocking on the lock;
//! 3. a Redlock per seat, so the few requests that get this far reach the database one at a
//!    time (when the lock quorum is unreachable we skip this layer and say so in metrics);
//! 4. one database transaction, where the unique index on live seats is the final arbiter;
//!    it also writes the `reservation.held` event (and `reservation.expired` for a holder it
//!    retires) to the outbox, so the events exist exactly when the hold does.
//!
//! A hold never outlives the admission it was taken under: it ends at the earlier of
//! `HOLD_TTL_SECS` and the access token's end, so a fan whose window closes blocks no seat.

use super::flights::{Flight, SeatFlights};
use super::keys::SeatKeys;
use super::reservations::{Reservation, ReservationStatus};
use super::seat_board::{Marker, SeatBoard};
use crate::db::Db;
use crate::domain::{ReservationId, ScheduleId, SeatNo, UserId, rfc3339};
use crate::lock::{Acquire, Redlock};
use crate::outbox::{self, Event, ReservationFacts};
use crate::store_error::{StoreError, is_unique_violation, retry_busy};
use crate::tokens::AccessToken;
use chrono::NaiveDateTime;
use std::sync::Arc;
use std::time::Duration;

/// At most this many live holds per user per schedule.
pub const MAX_HOLDS_PER_SCHEDULE: i64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("the seat is already held or sold")]
    SeatUnavailable,
    #[error("you already hold this seat (reservation {0})")]
    AlreadyYours(ReservationId),
    #[error("at most {MAX_HOLDS_PER_SCHEDULE} live holds per user per schedule")]
    HoldLimitReached,
    #[error("no such seat")]
    NoSuchSeat,
    #[error("no such user")]
    NoSuchUser,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(HoldError);

pub struct Holds {
    db: Db,
    board: Arc<SeatBoard>,
    flights: SeatFlights,
    redlock: Arc<Redlock>,
    keys: SeatKeys,
    ttl_secs: u64,
}

impl Holds {
    pub fn new(
        db: Db,
        board: Arc<SeatBoard>,
        redlock: Arc<Redlock>,
        keys: SeatKeys,
        ttl_secs: u64,
    ) -> Self {
        Holds {
            db,
            board,
            flights: SeatFlights::default(),
            redlock,
            keys,
            ttl_secs,
        }
    }

    /// Holds `seat` of `schedule` for the admitted user `who`.
    pub async fn hold(
        &self,
        who: &AccessToken,
        schedule: ScheduleId,
        seat: SeatNo,
    ) -> Result<Reservation, HoldError> {
        // 1. The board: refuse a taken seat before any lock or query (unless it is the
        //    caller's own hold: the database names it).
        if self
            .taken_by_someone_else(who.user_id, schedule, seat)
            .await
        {
            return Err(HoldError::SeatUnavailable);
        }
        // 2. One request per seat per instance goes on; the others here wait for its outcome.
        let flight = match self.flights.enter(schedule, seat).await {
            Flight::Leader(guard) => Some(guard),
            Flight::Taken => {
                metrics::counter!("queuegate_holds_total", "result" => "rejected_early")
                    .increment(1);
                return Err(HoldError::SeatUnavailable);
            }
            Flight::Open => None,
        };
        let result = self.lock_and_hold(who, schedule, seat).await;
        if let Some(guard) = flight {
            guard.finish(result.is_ok());
        }
        result
    }

    async fn taken_by_someone_else(
        &self,
        user: UserId,
        schedule: ScheduleId,
        seat: SeatNo,
    ) -> bool {
        let taken = match self.board.marker(schedule, seat).await {
            Marker::Free => false,
            Marker::HeldBy(holder) => holder != user,
            Marker::Sold => true,
        };
        if taken {
            metrics::counter!("queuegate_holds_total", "result" => "rejected_early").increment(1);
        }
        taken
    }

    /// Layers 3 and 4: the Redlock, then the database transaction.
    async fn lock_and_hold(
        &self,
        who: &AccessToken,
        schedule: ScheduleId,
        seat: SeatNo,
    ) -> Result<Reservation, HoldError> {
        let key = self.keys.lock(schedule, seat);
        let mut attempt = 0u64;
        let guard = loop {
            match self.redlock.acquire(&key).await {
                Acquire::Acquired(g) => break Some(g),
                Acquire::QuorumUnreachable => {
                    metrics::counter!("queuegate_lock_fallback_total").increment(1);
                    tracing::warn!(
                        masters = self.redlock.masters(),
                        "Redlock quorum unreachable: taking the hold on the database-only path"
                    );
                    break None;
                }
                Acquire::Contended if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * attempt + jitter_ms())).await;
                    if self
                        .taken_by_someone_else(who.user_id, schedule, seat)
                        .await
                    {
                        return Err(HoldError::SeatUnavailable);
                    }
                }
                Acquire::Contended => {
                    metrics::counter!("queuegate_holds_total", "result" => "contended")
                        .increment(1);
                    return Err(HoldError::SeatUnavailable);
                }
            }
        };
        // The database decides.
        let result = retry_busy(|| self.hold_tx(who, schedule, seat)).await;
        if let Some(g) = guard {
            self.redlock.release(g).await;
        }
        let label = match &result {
            Ok(r) => {
                let ttl_ms = chrono::DateTime::parse_from_rfc3339(&r.expires_at)
                    .map(|end| {
                        (end.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(1)
                    })
                    .unwrap_or(1);
                self.board
                    .mark_held(schedule, seat, who.user_id, ttl_ms)
                    .await;
                tracing::info!(reservation_id = %r.reservation_id, %schedule, seat = seat.get(), "seat held");
                "held"
            }
            Err(HoldError::SeatUnavailable) => "conflict",
            Err(HoldError::AlreadyYours(_)) => "already_yours",
            Err(HoldError::HoldLimitReached) => "limit",
            Err(_) => "error",
        };
        metrics::counter!("queuegate_holds_total", "result" => label).increment(1);
        result
    }

    async fn hold_tx(
        &self,
        who: &AccessToken,
        schedule: ScheduleId,
        seat: SeatNo,
    ) -> Result<Reservation, HoldError> {
        let user = who.user_id;
        let mut tx = self.db.primary().begin().await?;
        // Locking the user's row serialises this user's holds, so the per-user limit below
        // cannot be raced past by parallel requests. NOW(6) is the database clock: one clock
        // for all instances decides every expiry.
        let now: Option<NaiveDateTime> =
            sqlx::query_scalar("SELECT NOW(6) FROM users WHERE id = ? FOR UPDATE")
                .bind(user.get())
                .fetch_optional(&mut *tx)
                .await?;
        let now = now.ok_or(HoldError::NoSuchUser)?;
        let live_holds: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reservations
              WHERE user_id = ? AND schedule_id = ? AND status = 'held' AND expires_at > ?",
        )
        .bind(user.get())
        .bind(schedule.get())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // Who holds the seat now, through the unique index on live seats. A live holder means
        // 409 with no write at all; a hold past its end never blocks anyone: it is retired
        // here, by primary key (no range or gap locks that concurrent holds could deadlock on).
        let holder: Option<(u64, u64, i64, i64)> = sqlx::query_as(
            "SELECT id, user_id, price, status = 'held' AND expires_at <= ? FROM reservations
              WHERE schedule_id = ? AND live_seat_no = ?",
        )
        .bind(now)
        .bind(schedule.get())
        .bind(seat.get())
        .fetch_optional(&mut *tx)
        .await?;
        match holder {
            None => {}
            Some((id, owner, price, 1)) => {
                let retired = sqlx::query(
                    "UPDATE reservations SET status = 'expired' WHERE id = ? AND status = 'held'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Only if this transaction expired it (a sweep may just have): one event per
                // change, in the transaction that made it.
                if retired == 1 {
                    let bad = || StoreError::bug("reservation row out of range");
                    let facts = ReservationFacts {
                        reservation_id: ReservationId::new(id).ok_or_else(bad)?,
                        user_id: UserId::new(owner).ok_or_else(bad)?,
                        concert_id: who.concert_id,
                        schedule_id: schedule,
                        seat_no: seat,
                        amount: price,
                    };
                    outbox::record(&mut tx, &[Event::expired(&facts)?]).await?;
                }
            }
            Some((id, owner, _, _)) if owner == user.get() => {
                return Err(ReservationId::new(id)
                    .map(HoldError::AlreadyYours)
                    .unwrap_or(HoldError::SeatUnavailable));
            }
            Some(_) => return Err(HoldError::SeatUnavailable),
        }
        if live_holds >= MAX_HOLDS_PER_SCHEDULE {
            return Err(HoldError::HoldLimitReached);
        }
        let price: Option<i64> =
            sqlx::query_scalar("SELECT price FROM seats WHERE schedule_id = ? AND seat_no = ?")
                .bind(schedule.get())
                .bind(seat.get())
                .fetch_optional(&mut *tx)
                .await?;
        let price = price.ok_or(HoldError::NoSuchSeat)?;
        let expires_at = hold_end(now, self.ttl_secs, who.exp);
        let inserted = sqlx::query(
            "INSERT INTO reservations (user_id, schedule_id, seat_no, price, status, expires_at)
             VALUES (?, ?, ?, ?, 'held', ?)",
        )
        .bind(user.get())
        .bind(schedule.get())
        .bind(seat.get())
        .bind(price)
        .bind(expires_at)
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(done) => done.last_insert_id(),
            // The unique index on live seats: someone else holds or bought it.
            Err(e) if is_unique_violation(&e) => return Err(HoldError::SeatUnavailable),
            Err(e) => return Err(e.into()),
        };
        let reservation_id =
            ReservationId::new(id).ok_or_else(|| StoreError::bug("id out of range"))?;
        let facts = ReservationFacts {
            reservation_id,
            user_id: user,
            concert_id: who.concert_id,
            schedule_id: schedule,
            seat_no: seat,
            amount: price,
        };
        outbox::record(&mut tx, &[Event::held(&facts)?]).await?;
        tx.commit().await?;
        Ok(Reservation {
            reservation_id,
            schedule_id: schedule,
            seat_no: seat,
            price,
            status: ReservationStatus::Held,
            expires_at: rfc3339(expires_at.and_utc()),
            user_id: user,
        })
    }
}

/// When a hold taken at `now` ends: after `ttl_secs`, but never after the admission it was
/// taken under (`access_exp`, unix seconds), and at least a second from now.
fn hold_end(now: NaiveDateTime, ttl_secs: u64, access_exp: u64) -> NaiveDateTime {
    let by_ttl = now + chrono::Duration::seconds(ttl_secs.min(i64::MAX as u64 / 2) as i64);
    let by_access = chrono::DateTime::from_timestamp(access_exp.min(i64::MAX as u64 / 2) as i64, 0)
        .map(|t| t.naive_utc())
        .unwrap_or(by_ttl);
    by_ttl
        .min(by_access)
        .max(now + chrono::Duration::seconds(1))
}

fn jitter_ms() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_ends_with_the_admission_if_that_comes_first() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0)
            .unwrap()
            .naive_utc();
        let ttl_end = now + chrono::Duration::seconds(300);
        assert_eq!(hold_end(now, 300, 1_000_000 + 600), ttl_end);
        assert_eq!(
            hold_end(now, 300, 1_000_000 + 60),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(
            hold_end(now, 300, 999_000),
            now + chrono::Duration::seconds(1)
        );
    }
}
