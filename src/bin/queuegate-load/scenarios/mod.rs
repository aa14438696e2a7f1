//! The scenarios. Each creates what it needs through the API (a fresh concert, users, places),
//! measures one phase, and ends with a verdict from the API or the database.

pub mod eta;
pub mod flow;
pub mod proxy;
pub mod rush;
pub mod sale_open;
pub mod scale;
pub mod shards;
pub mod sse;
pub mod throughput;
pub mod tunnel;
