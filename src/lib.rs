//! queuegate: a Redis-centric waiting-room gateway for concert ticket sales.
//!
//! The layers, top to bottom; each room imports only from rooms below it (see ARCHITECTURE.md):
//! - `cli` — subcommands; `app` — builds the services and wires them to the server;
//!   `check`, `seed` — invariant checker and demo data for the CLI;
//! - `api` — routes, the gate, the error table, one handler per route (`api::state::Api` is
//!   the handler the server runs);
//! - `http` — a generic HTTP/1.1 server: pipeline, requests, responses, raw-socket streams;
//! - services: `queue` (the waiting room in Redis), `booking` (catalogue, holds, payments),
//!   `wallet`, `health` (dependency probes), `outbox` (booking events: written in the
//!   booking and wallet transactions, relayed to a Redis Stream) — each owns its dependencies
//!   and background jobs;
//! - stores and clients: `redis`, `db`, `lock` (Redlock), `tokens`, `idempotency`,
//!   `ratelimit`, `store_error`;
//! - `domain` (newtypes that parse), `config`, `metrics`, `telemetry`, `failpoint` (test-only
//!   crash points).
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod booking;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod failpoint;
pub mod gateway;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod json_out;
pub mod lock;
pub mod metrics;
pub mod outbox;
pub mod queue;
pub mod ratelimit;
pub mod redis;
pub mod seed;
pub mod store_error;
pub mod telemetry;
pub mod tokens;
pub mod trusted_hash;
pub mod wallet;
