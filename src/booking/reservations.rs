//! Reservations as their owners see them: the one way a reservation row is read (and its
//! status derived), reading one, cancelling one, and releasing a user's unpaid holds when their
//! access ends. Every cancellation writes its `reservation.cancelled` event to the outbox in
//! the same transaction.

use super::catalogue::Catalogue;
use super::seat_board::SeatBoard;
use crate::db::Db;
use crate::domain::{ConcertId, ReservationId, ScheduleId, SeatNo, UserId, rfc3339};
use crate::outbox::{self, Event, ReservationFacts};
use crate::store_error::StoreError;
use crate::tokens::AccessToken;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("no such reservation")]
    NotFound,
    #[error("this reservation belongs to another user")]
    NotYours,
    #[error("this reservation is for another concert than the access token")]
    OtherConcert,
    #[error("this reservation is already paid")]
    AlreadyPaid,
    #[error("the hold has expired or was cancelled")]
    HoldExpired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(ReservationError);

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

type Row = (u64, u64, u8, i64, String, NaiveDateTime, i64);

macro_rules! select_reservation {
    () => {
        "SELECT user_id, schedule_id, seat_no, price, CAST(status AS CHAR), expires_at,
                expires_at > NOW(6) FROM reservations WHERE id = ?"
    };
}
const SELECT: &str = select_reservation!();
const SELECT_FOR_UPDATE: &str = concat!(select_reservation!(), " FOR UPDATE");

/// Reads a reservation with its observed status; `lock` takes the row for this transaction.
pub async fn read(
    conn: &mut sqlx::MySqlConnection,
    id: ReservationId,
    lock: bool,
) -> Result<Option<Reservation>, StoreError> {
    let row: Option<Row> = sqlx::query_as(if lock { SELECT_FOR_UPDATE } else { SELECT })
        .bind(id.get())
        .fetch_optional(conn)
        .await?;
    row.map(|row| from_row(id, row)).transpose()
}

fn from_row(id: ReservationId, row: Row) -> Result<Reservation, StoreError> {
    let (user_id, schedule_id, seat_no, price, status, expires_at, live) = row;
    let bad = || StoreError::bug("reservation row out of range");
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

/// The one ownership rule: a reservation answers only to its owner, through an access token
/// of the reservation's own concert.
pub async fn check_owner(
    catalogue: &Catalogue,
    r: &Reservation,
    who: &AccessToken,
) -> Result<(), ReservationError> {
    if r.user_id != who.user_id {
        return Err(ReservationError::NotYours);
    }
    match catalogue.concert_of(r.schedule_id).await {
        Ok(c) if c == who.concert_id => Ok(()),
        Ok(_) => Err(ReservationError::OtherConcert),
        Err(super::catalogue::CatalogueError::Store(e)) => Err(e.into()),
        Err(_) => Err(ReservationError::NotFound),
    }
}

/// One of a user's live holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveHold {
    pub id: ReservationId,
    pub schedule: ScheduleId,
    pub seat: SeatNo,
    pub price: i64,
}

/// A user's live holds in one concert.
pub async fn live_holds(
    conn: &mut sqlx::MySqlConnection,
    user: UserId,
    concert: ConcertId,
) -> Result<Vec<LiveHold>, StoreError> {
    let rows: Vec<(u64, u64, u8, i64)> = sqlx::query_as(
        "SELECT r.id, r.schedule_id, r.seat_no, r.price FROM reservations r
           JOIN schedules s ON s.id = r.schedule_id
          WHERE r.user_id = ? AND s.concert_id = ? AND r.status = 'held' AND r.expires_at > NOW(6)",
    )
    .bind(user.get())
    .bind(concert.get())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, s, n, price)| {
            Some(LiveHold {
                id: ReservationId::new(id)?,
                schedule: ScheduleId::new(s)?,
                seat: SeatNo::new(u64::from(n))?,
                price,
            })
        })
        .collect())
}

/// Marks `user`'s given holds in `concert` cancelled (only those still held), with a
/// `reservation.cancelled` event each, in the caller's transaction; returns the seats freed.
pub async fn cancel_holds(
    conn: &mut sqlx::MySqlConnection,
    user: UserId,
    concert: ConcertId,
    holds: &[LiveHold],
) -> Result<Vec<(ScheduleId, SeatNo)>, StoreError> {
    let mut freed = Vec::with_capacity(holds.len());
    let mut events = Vec::with_capacity(holds.len());
    for h in holds {
        let changed = sqlx::query(
            "UPDATE reservations SET status = 'cancelled' WHERE id = ? AND status = 'held'",
        )
        .bind(h.id.get())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 1 {
            freed.push((h.schedule, h.seat));
            events.push(Event::cancelled(&ReservationFacts {
                reservation_id: h.id,
                user_id: user,
                concert_id: concert,
                schedule_id: h.schedule,
                seat_no: h.seat,
                amount: h.price,
            })?);
        }
    }
    outbox::record(conn, &events).await?;
    Ok(freed)
}

/// Reading and cancelling reservations.
pub struct Reservations {
    db: Db,
    board: Arc<SeatBoard>,
    catalogue: Arc<Catalogue>,
}

impl Reservations {
    pub fn new(db: Db, board: Arc<SeatBoard>, catalogue: Arc<Catalogue>) -> Self {
        Reservations {
            db,
            board,
            catalogue,
        }
    }

    /// The caller's reservation with its current status (from the primary: owners read their
    /// own writes).
    pub async fn get(
        &self,
        who: &AccessToken,
        id: ReservationId,
    ) -> Result<Reservation, ReservationError> {
        let mut conn = self.db.primary().acquire().await?;
        let r = read(&mut conn, id, false)
            .await?
            .ok_or(ReservationError::NotFound)?;
        check_owner(&self.catalogue, &r, who).await?;
        Ok(r)
    }

    /// Cancels the caller's live hold; the seat is free at once.
    pub async fn cancel(
        &self,
        who: &AccessToken,
        id: ReservationId,
    ) -> Result<(), ReservationError> {
        let mut tx = self.db.primary().begin().await?;
        let r = read(&mut tx, id, true)
            .await?
            .ok_or(ReservationError::NotFound)?;
        check_owner(&self.catalogue, &r, who).await?;
        match r.status {
            ReservationStatus::Held => {}
            ReservationStatus::Confirmed => return Err(ReservationError::AlreadyPaid),
            ReservationStatus::Expired | ReservationStatus::Cancelled => {
                return Err(ReservationError::HoldExpired);
            }
        }
        sqlx::query("UPDATE reservations SET status = 'cancelled' WHERE id = ?")
            .bind(id.get())
            .execute(&mut *tx)
            .await?;
        let facts = ReservationFacts {
            reservation_id: id,
            user_id: r.user_id,
            concert_id: who.concert_id,
            schedule_id: r.schedule_id,
            seat_no: r.seat_no,
            amount: r.price,
        };
        outbox::record(&mut tx, &[Event::cancelled(&facts)?]).await?;
        tx.commit().await?;
        self.board.clear(r.schedule_id, r.seat_no).await;
        tracing::info!(reservation_id = %id, "hold cancelled");
        Ok(())
    }

    /// Releases every unpaid hold of `user` in `concert` (their access ended: they left).
    /// Returns how many seats were freed.
    pub async fn release_unpaid(
        &self,
        user: UserId,
        concert: ConcertId,
    ) -> Result<usize, ReservationError> {
        let mut tx = self.db.primary().begin().await?;
        let holds = live_holds(&mut tx, user, concert).await?;
        let freed = cancel_holds(&mut tx, user, concert, &holds).await?;
        tx.commit().await?;
        for (schedule, seat) in &freed {
            self.board.clear(*schedule, *seat).await;
        }
        if !freed.is_empty() {
            metrics::counter!("queuegate_holds_released_total", "why" => "left")
                .increment(freed.len() as u64);
            tracing::info!(%user, %concert, released = freed.len(), "unpaid holds released");
        }
        Ok(freed.len())
    }
}
