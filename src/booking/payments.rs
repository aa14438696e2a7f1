//! Payment: debit the wallet and confirm the hold, all in one transaction.
//!
//! Lock order is reservation row first, then the wallet row; holds never touch wallets, so no
//! cycle with the hold path exists. After commit the user's admission is revoked in Redis; a
//! failure there is retried in the background and never turns a completed payment into an error.

use crate::app::App;
use crate::domain::{
    ConcertId, IdempotencyKey, ReservationId, ScheduleId, SeatNo, UserId, rfc3339,
};
use crate::error::{ApiError, retry_busy};
use crate::idempotency::{self, Claim, Scope, Stored};
use crate::tokens::AccessToken;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub payment_id: u64,
    pub reservation_id: ReservationId,
    pub amount: i64,
    pub balance: i64,
    #[schema(value_type = String, example = "completed")]
    pub status: &'static str,
    pub concert_name: String,
    pub starts_at: String,
    pub seat_no: SeatNo,
}

/// What a completed payment leaves to do outside the transaction.
struct Paid {
    stored: Stored,
    schedule: ScheduleId,
    seat: SeatNo,
}

/// Pays for a held reservation. Returns the response to send and whether it is a replay.
pub async fn pay(
    app: &Arc<App>,
    token: &AccessToken,
    reservation: ReservationId,
    key: Option<&IdempotencyKey>,
) -> Result<(Stored, bool), ApiError> {
    let outcome = retry_busy(|| pay_tx(app, token, reservation, key)).await;
    match outcome {
        Ok(Ok(paid)) => {
            metrics::counter!("queuegate_payments_total", "result" => "completed").increment(1);
            app.seats.mark_sold(paid.schedule, paid.seat).await;
            spawn_revocation(app.clone(), token.concert_id, token.user_id, token.seq);
            Ok((paid.stored, false))
        }
        Ok(Err(replay)) => {
            metrics::counter!("queuegate_payments_total", "result" => "replayed").increment(1);
            Ok((replay, true))
        }
        Err(e) => {
            let result = match &e {
                ApiError::InsufficientBalance => "insufficient_balance",
                ApiError::HoldExpired => "hold_expired",
                ApiError::AlreadyPaid => "already_paid",
                ApiError::Forbidden(_) | ApiError::NotFound(_) => "refused",
                _ => "error",
            };
            metrics::counter!("queuegate_payments_total", "result" => result).increment(1);
            Err(e)
        }
    }
}

/// `Ok(Ok(paid))` for a new payment, `Ok(Err(stored))` for an idempotent replay.
async fn pay_tx(
    app: &App,
    token: &AccessToken,
    reservation: ReservationId,
    key: Option<&IdempotencyKey>,
) -> Result<Result<Paid, Stored>, ApiError> {
    let user = token.user_id;
    let mut tx = app.db.primary().begin().await?;
    if let Some(key) = key {
        let fingerprint = format!("reservation={reservation}");
        if let Claim::Replay(stored) =
            idempotency::claim(&mut tx, user, Scope::Payment, key, &fingerprint).await?
        {
            tx.rollback().await?;
            return Ok(Err(stored));
        }
    }
    let row: Option<(u64, u64, u8, i64, String, i64)> = sqlx::query_as(
        "SELECT user_id, schedule_id, seat_no, price, CAST(status AS CHAR), expires_at > NOW(6)
           FROM reservations WHERE id = ? FOR UPDATE",
    )
    .bind(reservation.get())
    .fetch_optional(&mut *tx)
    .await?;
    let (owner, schedule, seat_no, price, status, live) =
        row.ok_or(ApiError::NotFound("no such reservation"))?;
    if owner != user.get() {
        return Err(ApiError::Forbidden(
            "this reservation belongs to another user",
        ));
    }
    let schedule =
        ScheduleId::new(schedule).ok_or_else(|| ApiError::internal("bad schedule id"))?;
    if app.schedules.concert_of(&app.db, schedule).await? != Some(token.concert_id) {
        return Err(ApiError::Forbidden(
            "this reservation is for another concert",
        ));
    }
    match status.as_str() {
        "held" if live == 1 => {}
        "confirmed" => return Err(ApiError::AlreadyPaid),
        _ => return Err(ApiError::HoldExpired),
    }
    // The conditional debit: never below zero, no read-modify-write.
    let debited =
        sqlx::query("UPDATE wallets SET balance = balance - ? WHERE user_id = ? AND balance >= ?")
            .bind(price)
            .bind(user.get())
            .bind(price)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if debited == 0 {
        return Err(ApiError::InsufficientBalance);
    }
    let payment_id =
        sqlx::query("INSERT INTO payments (reservation_id, user_id, amount) VALUES (?, ?, ?)")
            .bind(reservation.get())
            .bind(user.get())
            .bind(price)
            .execute(&mut *tx)
            .await?
            .last_insert_id();
    sqlx::query(
        "INSERT INTO ledger (user_id, kind, amount, payment_id) VALUES (?, 'payment', ?, ?)",
    )
    .bind(user.get())
    .bind(-price)
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE reservations SET status = 'confirmed' WHERE id = ?")
        .bind(reservation.get())
        .execute(&mut *tx)
        .await?;
    let balance = crate::wallet::balance_in(&mut tx, user).await?;
    let (concert_name, starts_at): (String, NaiveDateTime) = sqlx::query_as(
        "SELECT c.name, s.starts_at FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = ?",
    )
    .bind(schedule.get())
    .fetch_one(&mut *tx)
    .await?;
    let seat = SeatNo::new(u64::from(seat_no)).ok_or_else(|| ApiError::internal("bad seat"))?;
    let body = Payment {
        payment_id,
        reservation_id: reservation,
        amount: price,
        balance,
        status: "completed",
        concert_name,
        starts_at: rfc3339(starts_at.and_utc()),
        seat_no: seat,
    };
    let stored = Stored {
        status: 201,
        body: serde_json::to_string(&body).map_err(ApiError::internal)?,
    };
    if let Some(key) = key {
        idempotency::complete(&mut tx, user, Scope::Payment, key, &stored).await?;
    }
    tx.commit().await?;
    tracing::info!(payment_id, reservation_id = %reservation, amount = price, "payment completed");
    Ok(Ok(Paid {
        stored,
        schedule,
        seat,
    }))
}

/// Ends the user's admission after payment, retrying in the background: the payment is done
/// whatever Redis says, and the admission also ends by itself at its TTL.
fn spawn_revocation(app: Arc<App>, concert: ConcertId, user: UserId, seq: u64) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=6 {
            match app.queue.revoke(concert, user, Some(seq)).await {
                Ok(_) => {
                    metrics::counter!("queuegate_revocations_total", "result" => "ok").increment(1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, %user, %concert, "revoking access after payment failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        metrics::counter!("queuegate_revocations_total", "result" => "gave_up").increment(1);
        tracing::error!(%user, %concert, "could not revoke access after payment; it ends at its TTL");
    });
}

/// Looks up a stored payment result by key, for replays sent with an already-revoked token.
pub async fn stored_result(
    app: &App,
    user: UserId,
    key: &IdempotencyKey,
    reservation: ReservationId,
) -> Result<Option<Stored>, ApiError> {
    let row: Option<(String, Option<u16>, Option<String>)> = sqlx::query_as(
        "SELECT request_fingerprint, status_code, response_body FROM idempotency_keys
          WHERE user_id = ? AND scope = 'payment' AND idem_key = ?",
    )
    .bind(user.get())
    .bind(key.as_str())
    .fetch_optional(app.db.primary())
    .await?;
    Ok(match row {
        Some((fp, Some(status), Some(body))) if fp == format!("reservation={reservation}") => {
            Some(Stored { status, body })
        }
        _ => None,
    })
}
