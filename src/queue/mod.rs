//! The waiting room: one fair line per concert, kept in Redis and changed only by Lua scripts.
//!
//! - `service`: what the API calls — join, status, streams, leave, the admission check;
//! - `view`: a place as its holder sees it (position, ETA, or the access token);
//! - `store` and `admission`: every read and write of queue state, one script call each —
//!   places in `store`, ticks, figures and settings in `admission` (`scripts`, `keys` and
//!   `model` hold the scripts, the key layout and the reply types);
//! - `ticker`: the admission timer every instance runs (the script makes each tick happen once);
//! - `batch` and `marks`: what keeps a poll cheap in Redis — concurrent polls (and joins) of a
//!   line share one script call, and a fresh "still here" mark is not rewritten;
//! - `hub` and `pump`: Server-Sent Event streams, refreshed in one call per concert;
//! - `eta`: estimated waits and polling intervals;
//! - `ends`: notices that an admission ended early (paid, left, replaced), for grants that
//!   outlive their check (gateway mode's tunnels) on every instance.

pub mod admission;
pub mod batch;
pub mod ends;
pub mod eta;
pub mod hub;
pub mod keys;
pub mod marks;
pub mod model;
pub mod pump;
pub mod scripts;
pub mod service;
pub mod store;
pub mod ticker;
pub mod view;
