//! Payment: debit the wallet and confirm the holds, all in one transaction.
//!
//! One payment request covers one hold or a checkout of several (1..=4) of the caller's holds
//! in one concert: all or nothing, one debit of the sum. The same transaction releases the
//! caller's other unpaid holds in that concert — paying ends the access, and a fan who can no
//! longer pay must not block seats.
//!
//! Lock order is reservation rows first (by id), then the wallet row; holds never touch
//! wallets, so no cycle with the hold path exists. After commit the user's admission is revoked
//! in Redis at once (the fast path); a failure there is retried in the background and never
//! turns a completed payment into an error. The guarantee behind it is the outbox: the same
//! transaction writes one `payment.completed` event per payment row, and the outbox relay of
//! any instance revokes that admission when it carries the event out — also when this process
//! died between the commit and the revocation.

use super::catalogue::{Catalogue, CatalogueError};
use super::reservations::{self, ReservationStatus};
use super::seat_board::SeatBoard;
use crate::db::Db;
use crate::domain::{
    ConcertId, IdempotencyKey, LineId, ReservationId, ScheduleId, SeatNo, UserId, rfc3339,
};
use crate::idempotency::{self, Claim, IdempotencyError, Scope, Stored};
use crate::outbox::{self, Event, ReservationFacts};
use crate::queue::store::QueueStore;
use crate::store_error::{StoreError, retry_busy};
use crate::tokens::AccessToken;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The most holds one checkout may pay for (the per-schedule hold limit).
pub const MAX_CHECKOUT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("no such reservation ({0})")]
    NotFound(ReservationId),
    #[error("reservation {0} belongs to another user")]
    NotYours(ReservationId),
    #[error("reservation {0} is for another concert than the access token")]
    OtherConcert(ReservationId),
    #[error("the hold of reservation {0} has expired or was cancelled")]
    HoldExpired(ReservationId),
    #[error("reservation {0} is already paid")]
    AlreadyPaid(ReservationId),
    #[error("not enough balance: {due} due, {balance} available")]
    InsufficientBalance { balance: i64, due: i64 },
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(PayError);

impl From<IdempotencyError> for PayError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::KeyReused => Self::KeyReused,
            IdempotencyError::Store(s) => Self::Store(s),
        }
    }
}

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

/// The answer to a checkout of several holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checkout {
    pub payments: Vec<Payment>,
    pub balance: i64,
}

/// What a payment request asks for: one hold (answered with one `Payment`) or a checkout
/// (answered with a `Checkout`). Ids are distinct, 1..=`MAX_CHECKOUT` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayFor {
    One(ReservationId),
    Checkout(Vec<ReservationId>),
}

impl PayFor {
    fn ids(&self) -> Vec<ReservationId> {
        let mut ids = match self {
            PayFor::One(id) => vec![*id],
            PayFor::Checkout(ids) => ids.clone(),
        };
        // Lock in id order, so two checkouts of overlapping holds cannot deadlock.
        ids.sort();
        ids
    }

    /// What an idempotency key is bound to (the single form keeps its original fingerprint).
    fn fingerprint(&self) -> String {
        match self {
            PayFor::One(id) => format!("reservation={id}"),
            PayFor::Checkout(_) => {
                let ids: Vec<String> = self.ids().iter().map(|i| i.to_string()).collect();
                format!("reservations={}", ids.join(","))
            }
        }
    }
}

/// What a completed payment leaves to do outside the transaction.
struct Paid {
    stored: Stored,
    sold: Vec<(ScheduleId, SeatNo)>,
    released: Vec<(ScheduleId, SeatNo)>,
}

pub struct Payments {
    db: Db,
    board: Arc<SeatBoard>,
    catalogue: Arc<Catalogue>,
    queue: Arc<QueueStore>,
}

impl Payments {
    pub fn new(
        db: Db,
        board: Arc<SeatBoard>,
        catalogue: Arc<Catalogue>,
        queue: Arc<QueueStore>,
    ) -> Self {
        Payments {
            db,
            board,
            catalogue,
            queue,
        }
    }

    /// Pays for the caller's holds. Returns the response to send and whether it is a replay.
    pub async fn pay(
        &self,
        who: &AccessToken,
        what: &PayFor,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Stored, bool), PayError> {
        let outcome = retry_busy(|| self.pay_tx(who, what, key)).await;
        let label = match &outcome {
            Ok(Ok(_)) => "completed",
            Ok(Err(_)) => "replayed",
            Err(PayError::InsufficientBalance { .. }) => "insufficient_balance",
            Err(PayError::HoldExpired(_)) => "hold_expired",
            Err(PayError::AlreadyPaid(_)) => "already_paid",
            Err(PayError::NotYours(_) | PayError::OtherConcert(_) | PayError::NotFound(_)) => {
                "refused"
            }
            Err(_) => "error",
        };
        metrics::counter!("queuegate_payments_total", "result" => label).increment(1);
        match outcome? {
            Ok(paid) => {
                // Test-only crash point (QG_FAILPOINT): committed, nothing after it has run.
                crate::failpoint::hit("after_payment_commit");
                for (schedule, seat) in &paid.sold {
                    self.board.mark_sold(*schedule, *seat).await;
                }
                for (schedule, seat) in &paid.released {
                    self.board.clear(*schedule, *seat).await;
                }
                if !paid.released.is_empty() {
                    metrics::counter!("queuegate_holds_released_total", "why" => "paid")
                        .increment(paid.released.len() as u64);
                }
                spawn_revocation(self.queue.clone(), who.line(), who.user_id, who.seq);
                Ok((paid.stored, false))
            }
            Err(replay) => Ok((replay, true)),
        }
    }

    /// The stored result of an earlier payment with `key`, for replays sent with the access
    /// token that payment already revoked.
    pub async fn stored_result(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        what: &PayFor,
    ) -> Result<Option<Stored>, PayError> {
        Ok(idempotency::stored(
            self.db.primary(),
            user,
            Scope::Payment,
            key,
            &what.fingerprint(),
        )
        .await?)
    }

    /// `Ok(Ok(paid))` for a new payment, `Ok(Err(stored))` for an idempotent replay.
    async fn pay_tx(
        &self,
        who: &AccessToken,
        what: &PayFor,
        key: Option<&IdempotencyKey>,
    ) -> Result<Result<Paid, Stored>, PayError> {
        let user = who.user_id;
        let mut tx = self.db.primary().begin().await?;
        if let Some(key) = key
            && let Claim::Replay(stored) =
                idempotency::claim(&mut tx, user, Scope::Payment, key, &what.fingerprint()).await?
        {
            tx.rollback().await?;
            return Ok(Err(stored));
        }
        let mut holds = Vec::new();
        for id in what.ids() {
            let r = reservations::read(&mut tx, id, true)
                .await?
                .ok_or(PayError::NotFound(id))?;
            if r.user_id != user {
                return Err(PayError::NotYours(id));
            }
            if self.concert_of(r.schedule_id).await? != who.concert_id {
                return Err(PayError::OtherConcert(id));
            }
            match r.status {
                ReservationStatus::Held => {}
                ReservationStatus::Confirmed => return Err(PayError::AlreadyPaid(id)),
                _ => return Err(PayError::HoldExpired(id)),
            }
            holds.push(r);
        }
        let due: i64 = holds.iter().map(|r| r.price).sum();
        // The conditional debit: never below zero, no read-modify-write.
        let debited = sqlx::query(
            "UPDATE wallets SET balance = balance - ? WHERE user_id = ? AND balance >= ?",
        )
        .bind(due)
        .bind(user.get())
        .bind(due)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if debited == 0 {
            let balance = crate::wallet::balance_in(&mut tx, user).await.unwrap_or(0);
            return Err(PayError::InsufficientBalance { balance, due });
        }
        let mut confirmed = Vec::with_capacity(holds.len());
        let mut paid_events = Vec::with_capacity(holds.len());
        for r in &holds {
            let payment_id = sqlx::query(
                "INSERT INTO payments (reservation_id, user_id, amount) VALUES (?, ?, ?)",
            )
            .bind(r.reservation_id.get())
            .bind(user.get())
            .bind(r.price)
            .execute(&mut *tx)
            .await?
            .last_insert_id();
            sqlx::query(
                "INSERT INTO ledger (user_id, kind, amount, payment_id) VALUES (?, 'payment', ?, ?)",
            )
            .bind(user.get())
            .bind(-r.price)
            .bind(payment_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE reservations SET status = 'confirmed' WHERE id = ?")
                .bind(r.reservation_id.get())
                .execute(&mut *tx)
                .await?;
            confirmed.push(payment_id);
            // One `payment.completed` per payment row; it carries the paying admission, which
            // the outbox relay revokes even if this process dies right after the commit.
            paid_events.push(Event::paid(
                &ReservationFacts {
                    reservation_id: r.reservation_id,
                    user_id: user,
                    concert_id: who.concert_id,
                    schedule_id: r.schedule_id,
                    seat_no: r.seat_no,
                    amount: r.price,
                },
                who.seq,
            )?);
        }
        outbox::record(&mut tx, &paid_events).await?;
        // Paying ends the access: the caller's other holds in this concert are released now.
        let others = reservations::live_holds(&mut tx, user, who.concert_id).await?;
        let released = reservations::cancel_holds(&mut tx, user, who.concert_id, &others).await?;
        let balance = crate::wallet::balance_in(&mut tx, user).await?;
        let mut payments = Vec::with_capacity(holds.len());
        for (r, payment_id) in holds.iter().zip(confirmed) {
            let (concert_name, starts_at): (String, NaiveDateTime) = sqlx::query_as(
                "SELECT c.name, s.starts_at FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = ?",
            )
            .bind(r.schedule_id.get())
            .fetch_one(&mut *tx)
            .await?;
            payments.push(Payment {
                payment_id,
                reservation_id: r.reservation_id,
                amount: r.price,
                balance,
                status: "completed",
                concert_name,
                starts_at: rfc3339(starts_at.and_utc()),
                seat_no: r.seat_no,
            });
        }
        let body = match what {
            PayFor::One(_) => serde_json::to_string(&payments.first()),
            PayFor::Checkout(_) => serde_json::to_string(&Checkout { payments, balance }),
        };
        let stored = Stored {
            status: 201,
            body: body.map_err(StoreError::bug)?,
        };
        if let Some(key) = key {
            idempotency::complete(&mut tx, user, Scope::Payment, key, &stored).await?;
        }
        tx.commit().await?;
        tracing::info!(%user, holds = holds.len(), amount = due, "payment completed");
        Ok(Ok(Paid {
            stored,
            sold: holds.iter().map(|r| (r.schedule_id, r.seat_no)).collect(),
            released,
        }))
    }

    async fn concert_of(&self, schedule: ScheduleId) -> Result<ConcertId, PayError> {
        match self.catalogue.concert_of(schedule).await {
            Ok(c) => Ok(c),
            Err(CatalogueError::Store(e)) => Err(e.into()),
            Err(e) => Err(StoreError::bug(e).into()),
        }
    }
}

/// Ends the user's admission after payment, retrying in the background: the payment is done
/// whatever Redis says, and the admission also ends by itself at its TTL.
fn spawn_revocation(queue: Arc<QueueStore>, line: LineId, user: UserId, seq: u64) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=6 {
            match queue.revoke(line, user, Some(seq)).await {
                Ok(_) => {
                    metrics::counter!("queuegate_revocations_total", "result" => "ok").increment(1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, %user, %line, "revoking access after payment failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        metrics::counter!("queuegate_revocations_total", "result" => "gave_up").increment(1);
        tracing::error!(%user, %line, "could not revoke access after payment; it ends at its TTL");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ReservationId {
        ReservationId::new(n).unwrap()
    }

    #[test]
    fn checkouts_lock_in_id_order_and_fingerprint_stably() {
        let c = PayFor::Checkout(vec![id(9), id(3), id(5)]);
        assert_eq!(c.ids(), vec![id(3), id(5), id(9)]);
        assert_eq!(c.fingerprint(), "reservations=3,5,9");
        assert_eq!(
            PayFor::Checkout(vec![id(5), id(9), id(3)]).fingerprint(),
            c.fingerprint()
        );
        assert_eq!(PayFor::One(id(4)).fingerprint(), "reservation=4");
    }
}
