//! Writing booking events: rows in the outbox, inserted inside the caller's transaction so an
//! event exists if and only if the change it describes committed.
//!
//! Callers insert an event *after* the reservation row it is about has been inserted or
//! updated in the same transaction (so the row is locked): a later transaction about the same
//! reservation waits for that lock, and its event gets a larger id. That is what lets the
//! relay keep each reservation's events in commit order by relaying in id order.

use crate::domain::{ConcertId, ReservationId, ScheduleId, SeatNo, UserId};
use crate::store_error::StoreError;
use serde::Serialize;
use sqlx::MySqlConnection;

/// The contract's event types (API.md, "Booking events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    ReservationHeld,
    ReservationCancelled,
    ReservationExpired,
    PaymentCompleted,
    WalletCharged,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::ReservationHeld,
        EventType::ReservationCancelled,
        EventType::ReservationExpired,
        EventType::PaymentCompleted,
        EventType::WalletCharged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ReservationHeld => "reservation.held",
            EventType::ReservationCancelled => "reservation.cancelled",
            EventType::ReservationExpired => "reservation.expired",
            EventType::PaymentCompleted => "payment.completed",
            EventType::WalletCharged => "wallet.charged",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every reservation event says about its reservation (`amount` is the seat's price).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReservationFacts {
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub schedule_id: ScheduleId,
    pub seat_no: SeatNo,
    pub amount: i64,
}

#[derive(Serialize)]
struct ChargeFacts {
    user_id: UserId,
    amount: i64,
}

/// One event to record. Built by the constructors below, which fix the `data` shape per type.
#[derive(Clone, Debug)]
pub struct Event {
    kind: EventType,
    user: UserId,
    reservation: Option<ReservationId>,
    data: String,
    /// payment.completed: the admission (concert, seq) the relay revokes.
    revoke: Option<(ConcertId, u64)>,
}

impl Event {
    fn about(kind: EventType, facts: &ReservationFacts) -> Result<Event, StoreError> {
        Ok(Event {
            kind,
            user: facts.user_id,
            reservation: Some(facts.reservation_id),
            data: serde_json::to_string(facts).map_err(StoreError::bug)?,
            revoke: None,
        })
    }

    pub fn held(facts: &ReservationFacts) -> Result<Event, StoreError> {
        Self::about(EventType::ReservationHeld, facts)
    }

    pub fn cancelled(facts: &ReservationFacts) -> Result<Event, StoreError> {
        Self::about(EventType::ReservationCancelled, facts)
    }

    pub fn expired(facts: &ReservationFacts) -> Result<Event, StoreError> {
        Self::about(EventType::ReservationExpired, facts)
    }

    /// A paid reservation; `admission_seq` is the paying access token's `seq`, so the relay
    /// revokes exactly that admission (a newer one of the same user is left alone).
    pub fn paid(facts: &ReservationFacts, admission_seq: u64) -> Result<Event, StoreError> {
        let mut e = Self::about(EventType::PaymentCompleted, facts)?;
        e.revoke = Some((facts.concert_id, admission_seq));
        Ok(e)
    }

    pub fn charged(user: UserId, amount: i64) -> Result<Event, StoreError> {
        Ok(Event {
            kind: EventType::WalletCharged,
            user,
            reservation: None,
            data: serde_json::to_string(&ChargeFacts {
                user_id: user,
                amount,
            })
            .map_err(StoreError::bug)?,
            revoke: None,
        })
    }

    pub fn kind(&self) -> EventType {
        self.kind
    }
}

const COLUMNS: &str = "INSERT INTO outbox
    (event_id, event_type, user_id, reservation_id, data, revoke_concert_id, revoke_seq) VALUES ";
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";

/// Inserts `events` (in this order, one statement) within the caller's transaction.
pub async fn record(conn: &mut MySqlConnection, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!("{COLUMNS}{}", vec![ROW; events.len()].join(", "));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for e in events {
        q = q
            // UUIDv7: unique without coordination, and time-ordered for whoever stores them.
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(e.kind.as_str())
            .bind(e.user.get())
            .bind(e.reservation.map(ReservationId::get))
            .bind(&e.data)
            .bind(e.revoke.map(|(c, _)| c.get()))
            .bind(e.revoke.map(|(_, seq)| seq));
    }
    q.execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ReservationFacts {
        ReservationFacts {
            reservation_id: ReservationId::new(7).unwrap(),
            user_id: UserId::new(3).unwrap(),
            concert_id: ConcertId::new(2).unwrap(),
            schedule_id: ScheduleId::new(5).unwrap(),
            seat_no: SeatNo::new(12).unwrap(),
            amount: 2500,
        }
    }

    #[test]
    fn event_data_has_the_contract_fields_and_numbers() {
        let e = Event::held(&facts()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"reservation_id": 7, "user_id": 3, "concert_id": 2,
                               "schedule_id": 5, "seat_no": 12, "amount": 2500})
        );
        assert!(e.revoke.is_none());
        let p = Event::paid(&facts(), 41).unwrap();
        assert_eq!(p.kind(), EventType::PaymentCompleted);
        assert_eq!(p.revoke, Some((ConcertId::new(2).unwrap(), 41)));
        let c = Event::charged(UserId::new(3).unwrap(), 900).unwrap();
        let v: serde_json::Value = serde_json::from_str(&c.data).unwrap();
        assert_eq!(v, serde_json::json!({"user_id": 3, "amount": 900}));
        assert_eq!(c.reservation, None);
    }

    #[test]
    fn event_types_round_trip_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("reservation.sold"), None);
    }
}
