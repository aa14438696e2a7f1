//! The waiting room: one fair line per concert, kept in Redis and changed only by Lua scripts.
//!
//! - `keys`: the Redis key layout of a concert;
//! - `store`: every read and write of queue state, one script call each;
//! - `ticker`: the admission timer every instance runs (the script makes each tick happen once);
//! - `eta`: estimated waits and polling intervals;
//! - `events`: Server-Sent Events, batched per concert.

pub mod eta;
pub mod events;
pub mod keys;
pub mod store;
pub mod ticker;

pub use store::QueueStore;

/// Formats an admission end (ms since the epoch, Redis clock) as RFC 3339.
pub fn expires_at(ends_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ends_ms.min(i64::MAX as u64) as i64)
        .map(crate::domain::rfc3339)
        .unwrap_or_default()
}
