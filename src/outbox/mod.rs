//! The transactional outbox and the booking events it carries.
//!
//! Why: a side effect that must follow a committed change (revoking the access of a user who
//! has paid; telling downstream teams that a seat was held or sold) cannot be done reliably
//! *after* the commit by the same process — it may die in between. So the side effect is
//! written down as a row in the same transaction as the change (`record`), and a relay in every
//! instance carries the rows out afterwards, at least once, idempotently (`relay`), to the
//! Redis Stream `<REDIS_KEY_PREFIX>:events` that consumers read (`stream`).
//!
//! - `record`: inserts events inside a caller's transaction (used by `booking` and `wallet`);
//! - `relay`: the background job — one leader at a time, in id order, revokes after payments,
//!   publishes exactly once per event id, marks, prunes, reports its lag;
//! - `stream`: the stream's keys and reading it (the `events` CLI and the checker).
//!
//! This room imports stores and foundations only (and `queue::store` for the revocation);
//! booking and wallet call into it, never the other way round.

pub mod record;
pub mod relay;
pub mod stream;

pub use record::{Event, EventType, ReservationFacts, record};

use crate::store_error::StoreError;

/// How many events are written but not yet relayed (tests wait for 0; operators may look).
pub async fn pending(pool: &sqlx::MySqlPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE relayed_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
