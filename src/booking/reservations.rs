//! Seat holds: take, read, cancel.
//!
//! Taking a hold runs through four layers, cheapest first:
//! 1. the seat board (Redis marker): a seat already held or sold is refused with no lock and
//!    no database work — this is what keeps a 10,000-request rush on one seat cheap;
//! 2. a single flight per seat inside this instance: concurrent requests for one seat wait for
//!    the first one's outcome instead of all knocking on the lock;
//! 3. a Redlock per seat, so the few requests that get this far reach the database one at a
//!    time (when the lock quorum is unreachable we skip this layer and say so in metrics);
//! 4. one database transaction, where the unique index on live seats is the final arbiter.

use super::flights::Flight;
use super::seat_board::SeatBoard;
use crate::app::App;
use crate::db::Db;
use crate::domain::{ReservationId, ScheduleId, SeatNo, UserId, rfc3339};
use crate::error::{ApiError, is_unique_violation, retry_busy};
use crate::lock::Acquire;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::time::Duration;

/// At most this many live holds per user per schedule.
pub const MAX_HOLDS_PER_SCHEDULE: i64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Expired,
    Cancelled,
}

impl ReservationStatus {
    /// The status a reader should see: a hold past its end is expired, swept or not.
    fn observed(stored: &str, still_live: bool) -> Self {
        match stored {
            "confirmed" => ReservationStatus::Confirmed,
            "cancelled" => ReservationStatus::Cancelled,
            "held" if still_live => ReservationStatus::Held,
            _ => ReservationStatus::Expired,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Reservation {
    pub reservation_id: ReservationId,
    pub schedule_id: ScheduleId,
    pub seat_no: SeatNo,
    pub price: i64,
    pub status: ReservationStatus,
    pub expires_at: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub user_id: UserId,
}

pub async fn hold(
    app: &App,
    user: UserId,
    schedule: ScheduleId,
    seat: SeatNo,
) -> Result<Reservation, ApiError> {
    // 1. The board: refuse a taken seat before any lock or query.
    if app.seats.is_taken(schedule, seat).await {
        metrics::counter!("queuegate_holds_total", "result" => "rejected_early").increment(1);
        return Err(ApiError::SeatUnavailable);
    }
    // 2. One request per seat per instance goes on; the others here wait for its outcome.
    let flight = match app.flights.enter(schedule, seat).await {
        Flight::Leader(guard) => Some(guard),
        Flight::Taken => {
            metrics::counter!("queuegate_holds_total", "result" => "rejected_early").increment(1);
            return Err(ApiError::SeatUnavailable);
        }
        Flight::Open => None,
    };
    let result = lock_and_hold(app, user, schedule, seat).await;
    if let Some(guard) = flight {
        guard.finish(result.is_ok());
    }
    result
}

/// Layers 2 and 3: the Redlock, then the database transaction.
async fn lock_and_hold(
    app: &App,
    user: UserId,
    schedule: ScheduleId,
    seat: SeatNo,
) -> Result<Reservation, ApiError> {
    // The lock, with a few short retries while another request is inside the section.
    let key = format!(
        "{}:lock:{{s:{}}}:seat:{}",
        app.settings.redis_key_prefix,
        schedule,
        seat.get()
    );
    let mut attempt = 0u64;
    let guard = loop {
        match app.redlock.acquire(&key).await {
            Acquire::Acquired(g) => break Some(g),
            Acquire::QuorumUnreachable => {
                metrics::counter!("queuegate_lock_fallback_total").increment(1);
                tracing::warn!(
                    masters = app.redlock.masters(),
                    "Redlock quorum unreachable: taking the hold on the database-only path"
                );
                break None;
            }
            Acquire::Contended if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * attempt + jitter_ms())).await;
                if app.seats.is_taken(schedule, seat).await {
                    metrics::counter!("queuegate_holds_total", "result" => "rejected_early")
                        .increment(1);
                    return Err(ApiError::SeatUnavailable);
                }
            }
            Acquire::Contended => {
                metrics::counter!("queuegate_holds_total", "result" => "contended").increment(1);
                return Err(ApiError::SeatUnavailable);
            }
        }
    };
    // The database decides.
    let ttl_secs = app.settings.hold_ttl_secs;
    let result = retry_busy(|| hold_tx(&app.db, user, schedule, seat, ttl_secs)).await;
    if let Some(g) = guard {
        app.redlock.release(g).await;
    }
    match &result {
        Ok(r) => {
            metrics::counter!("queuegate_holds_total", "result" => "held").increment(1);
            app.seats
                .mark_held(schedule, seat, (ttl_secs * 1000) as i64)
                .await;
            tracing::info!(reservation_id = %r.reservation_id, %schedule, seat = seat.get(), "seat held");
        }
        Err(ApiError::SeatUnavailable) => {
            metrics::counter!("queuegate_holds_total", "result" => "conflict").increment(1);
        }
        Err(ApiError::HoldLimitReached) => {
            metrics::counter!("queuegate_holds_total", "result" => "limit").increment(1);
        }
        Err(_) => metrics::counter!("queuegate_holds_total", "result" => "error").increment(1),
    }
    result
}

fn jitter_ms() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8)
}

async fn hold_tx(
    db: &Db,
    user: UserId,
    schedule: ScheduleId,
    seat: SeatNo,
    ttl_secs: u64,
) -> Result<Reservation, ApiError> {
    let mut tx = db.primary().begin().await?;
    // Locking the user's row serialises this user's holds, so the per-user limit below cannot
    // be raced past by parallel requests. NOW(6) is the database clock: one clock for all
    // instances decides every expiry.
    let now: Option<NaiveDateTime> =
        sqlx::query_scalar("SELECT NOW(6) FROM users WHERE id = ? FOR UPDATE")
            .bind(user.get())
            .fetch_optional(&mut *tx)
            .await?;
    let now = now.ok_or(ApiError::NotFound("no such user"))?;
    let live_holds: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reservations
          WHERE user_id = ? AND schedule_id = ? AND status = 'held' AND expires_at > ?",
    )
    .bind(user.get())
    .bind(schedule.get())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if live_holds >= MAX_HOLDS_PER_SCHEDULE {
        return Err(ApiError::HoldLimitReached);
    }
    // Who holds the seat now, through the unique index on live seats. A live holder means 409
    // with no write at all; a hold past its end never blocks anyone: it is retired here, by
    // primary key (no range or gap locks that concurrent holds could deadlock on).
    let holder: Option<(u64, i64)> = sqlx::query_as(
        "SELECT id, status = 'held' AND expires_at <= ? FROM reservations
          WHERE schedule_id = ? AND live_seat_no = ?",
    )
    .bind(now)
    .bind(schedule.get())
    .bind(seat.get())
    .fetch_optional(&mut *tx)
    .await?;
    match holder {
        None => {}
        Some((id, 1)) => {
            sqlx::query(
                "UPDATE reservations SET status = 'expired' WHERE id = ? AND status = 'held'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        Some(_) => return Err(ApiError::SeatUnavailable),
    }
    let price: Option<i64> =
        sqlx::query_scalar("SELECT price FROM seats WHERE schedule_id = ? AND seat_no = ?")
            .bind(schedule.get())
            .bind(seat.get())
            .fetch_optional(&mut *tx)
            .await?;
    let price = price.ok_or(ApiError::NotFound("no such seat"))?;
    let expires_at = now + chrono::Duration::seconds(ttl_secs as i64);
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
        Err(e) if is_unique_violation(&e) => return Err(ApiError::SeatUnavailable),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(Reservation {
        reservation_id: ReservationId::new(id)
            .ok_or_else(|| ApiError::internal("id out of range"))?,
        schedule_id: schedule,
        seat_no: seat,
        price,
        status: ReservationStatus::Held,
        expires_at: rfc3339(expires_at.and_utc()),
        user_id: user,
    })
}

type ReservationRow = (u64, u64, u8, i64, String, NaiveDateTime, i64);

macro_rules! select_reservation {
    () => {
        "SELECT user_id, schedule_id, seat_no, price, CAST(status AS CHAR), expires_at,
                expires_at > NOW(6) FROM reservations WHERE id = ?"
    };
}
const SELECT_RESERVATION: &str = select_reservation!();
const SELECT_RESERVATION_FOR_UPDATE: &str = concat!(select_reservation!(), " FOR UPDATE");

fn from_row(id: ReservationId, row: ReservationRow) -> Result<Reservation, ApiError> {
    let (user_id, schedule_id, seat_no, price, status, expires_at, live) = row;
    let bad = || ApiError::internal("reservation row out of range");
    Ok(Reservation {
        reservation_id: id,
        schedule_id: ScheduleId::new(schedule_id).ok_or_else(bad)?,
        seat_no: SeatNo::new(u64::from(seat_no)).ok_or_else(bad)?,
        price,
        status: ReservationStatus::observed(&status, live == 1),
        expires_at: rfc3339(expires_at.and_utc()),
        user_id: UserId::new(user_id).ok_or_else(bad)?,
    })
}

/// Reads a reservation with its current status (from the primary: owners read their writes).
pub async fn get(db: &Db, id: ReservationId) -> Result<Reservation, ApiError> {
    let row: Option<ReservationRow> = sqlx::query_as(SELECT_RESERVATION)
        .bind(id.get())
        .fetch_optional(db.primary())
        .await?;
    from_row(id, row.ok_or(ApiError::NotFound("no such reservation"))?)
}

/// Cancels the owner's live hold; the seat is free at once.
pub async fn cancel(
    db: &Db,
    board: &SeatBoard,
    user: UserId,
    id: ReservationId,
) -> Result<(), ApiError> {
    let mut tx = db.primary().begin().await?;
    let row: Option<ReservationRow> = sqlx::query_as(SELECT_RESERVATION_FOR_UPDATE)
        .bind(id.get())
        .fetch_optional(&mut *tx)
        .await?;
    let r = from_row(id, row.ok_or(ApiError::NotFound("no such reservation"))?)?;
    if r.user_id != user {
        return Err(ApiError::Forbidden(
            "this reservation belongs to another user",
        ));
    }
    match r.status {
        ReservationStatus::Held => {}
        ReservationStatus::Confirmed => return Err(ApiError::AlreadyPaid),
        ReservationStatus::Expired | ReservationStatus::Cancelled => {
            return Err(ApiError::HoldExpired);
        }
    }
    sqlx::query("UPDATE reservations SET status = 'cancelled' WHERE id = ?")
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    board.clear(r.schedule_id, r.seat_no).await;
    tracing::info!(reservation_id = %id, "hold cancelled");
    Ok(())
}
