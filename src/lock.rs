//! Redlock over independent Redis masters, for seat holds.
//!
//! The lock is an optimisation, not the safety net: MySQL's unique index on live seats is the
//! final arbiter. What the lock buys is that a rush of requests for one seat reaches the database
//! one at a time instead of piling onto the same index entry. That is why the TTL is short (it
//! guards only the hold transaction) and why, when a majority of masters cannot be reached, the
//! caller falls back to the database-only path instead of failing the request.
//!
//! Algorithm (per redis.io/docs/manual/patterns/distributed-locks): write a random token with
//! `SET NX PX ttl` on every master in parallel; the lock is ours when a majority accepted it and
//! the time left (ttl − elapsed − drift allowance) is positive. Otherwise, and on release, the
//! token is removed by compare-and-delete on every master.

use crate::redis::Script;
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::{Expiration, SetOptions};
use std::time::{Duration, Instant};

pub struct Redlock {
    masters: Vec<Client>,
    ttl: Duration,
    unlock: Script,
}

/// A lock we hold; give it back with [`Redlock::release`].
#[derive(Debug)]
pub struct LockGuard {
    key: String,
    token: String,
    /// After this instant the lock may already belong to someone else.
    pub valid_until: Instant,
}

#[derive(Debug)]
pub enum Acquire {
    Acquired(LockGuard),
    /// Enough masters answered, but someone else holds the lock.
    Contended,
    /// Fewer than a majority of masters answered at all.
    QuorumUnreachable,
}

fn lock_options(ttl: Duration) -> Options {
    Options {
        fail_fast: true,
        max_attempts: Some(1),
        timeout: Some(ttl.min(Duration::from_millis(250))),
        ..Default::default()
    }
}

impl Redlock {
    pub fn new(masters: Vec<Client>, ttl: Duration) -> Self {
        Redlock {
            masters,
            ttl,
            unlock: Script::new("unlock", include_str!("../lua/unlock.lua")),
        }
    }

    pub fn masters(&self) -> usize {
        self.masters.len()
    }

    pub fn quorum(&self) -> usize {
        self.masters.len() / 2 + 1
    }

    /// One attempt at taking `key` on a majority of masters.
    pub async fn acquire(&self, key: &str) -> Acquire {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let ttl_ms = self.ttl.as_millis() as i64;
        let opts = lock_options(self.ttl);
        let attempts = self.masters.iter().map(|m| {
            let m = m.with_options(&opts);
            let token = token.clone();
            async move {
                m.set::<Option<String>, _, _>(
                    key,
                    token,
                    Some(Expiration::PX(ttl_ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let answered = results.iter().filter(|r| r.is_ok()).count();
        let won = results
            .iter()
            .filter(|r| matches!(r, Ok(Some(s)) if s == "OK"))
            .count();
        // Clock drift allowance: 1% of the TTL plus 2 ms, as the algorithm recommends.
        let drift = self.ttl / 100 + Duration::from_millis(2);
        let elapsed = started.elapsed();
        let guard = LockGuard {
            key: key.to_owned(),
            token,
            valid_until: started + self.ttl.saturating_sub(drift),
        };
        if won >= self.quorum() && elapsed + drift < self.ttl {
            metrics::counter!("queuegate_lock_acquire_total", "result" => "acquired").increment(1);
            return Acquire::Acquired(guard);
        }
        // Partial wins must not linger until their TTL: undo them everywhere.
        if won > 0 {
            self.release(guard).await;
        }
        if answered < self.quorum() {
            metrics::counter!("queuegate_lock_acquire_total", "result" => "quorum_unreachable")
                .increment(1);
            Acquire::QuorumUnreachable
        } else {
            metrics::counter!("queuegate_lock_acquire_total", "result" => "contended").increment(1);
            Acquire::Contended
        }
    }

    /// Compare-and-delete on every master. Errors are ignored: an unreleased lock simply
    /// expires after its short TTL.
    pub async fn release(&self, guard: LockGuard) {
        let releases = self.masters.iter().map(|m| {
            let key = guard.key.clone();
            let token = guard.token.clone();
            async move {
                let _ = self
                    .unlock
                    .run::<i64>(m, vec![Key::from(key)], vec![Value::from(token)])
                    .await;
            }
        });
        futures_util::future::join_all(releases).await;
    }

    /// How many masters answer a PING right now.
    pub async fn masters_up(&self) -> usize {
        let pings = self.masters.iter().map(crate::redis::ping);
        futures_util::future::join_all(pings)
            .await
            .into_iter()
            .filter(|up| *up)
            .count()
    }
}
