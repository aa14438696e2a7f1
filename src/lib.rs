//! queuegate: a Redis-centric waiting-room gateway for concert ticket sales.
//!
//! Where things live:
//! - `config` — typed settings from the environment;
//! - `http` — server loop, request pipeline, routing; `api` — the handlers;
//! - `tokens` — signed user/queue/access tokens; `gate` — who may call what;
//! - `queue` — the waiting room in Redis (Lua scripts in `lua/`);
//! - `lock` — Redlock over independent Redis masters;
//! - `booking` — concerts, seats, holds, payments, expiry sweep; `wallet` — balances;
//! - `db`, `redis` — connections; `metrics`, `telemetry` — observability;
//! - `check` — the invariant checker; `seed` — demo data; `cli` — subcommands.

pub mod api;
pub mod app;
pub mod booking;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod gate;
pub mod http;
pub mod idempotency;
pub mod lock;
pub mod metrics;
pub mod pages;
pub mod queue;
pub mod ratelimit;
pub mod redis;
pub mod seed;
pub mod telemetry;
pub mod tokens;
pub mod wallet;
