//! Redis: connections (`client`), the watched pool of the queue store (`watch`), Lua scripts
//! (`script`) and reading their replies (`values`).
//!
//! The queue store may be one server, a Redis Cluster or a Sentinel group (`REDIS_URL`); the
//! Redlock masters are always independent plain servers (`REDLOCK_URLS`).

pub mod client;
pub mod script;
pub mod values;
pub mod watch;

pub use client::{Topology, lock_client, ping, request_options, subscriber};
pub use script::Script;
pub use values::{int, value_f64, value_str, value_u64};
