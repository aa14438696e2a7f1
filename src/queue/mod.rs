//! The waiting room: one fair line per concert, kept in Redis and changed only by Lua scripts.
//!
//! - `keys`: the Redis key layout of a concert.
//! - `store`: every read and write of queue state, one script call each.

pub mod keys;
pub mod store;

pub use store::QueueStore;
