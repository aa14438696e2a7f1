//! The admission side of the queue store: ticks, live figures, per-line settings, and the
//! timer's set of lines. (Places — joins, polls, leaving, grants — are in `store.rs`.)

use super::keys::concerts_key;
use super::model::{Figures, Pace, SettingsPatch, TickReport, WAIT_LIMITS_SECS, Waits};
use super::store::{QueueStore, keys};
use crate::config::QueueDefaults;
use crate::domain::LineId;
use crate::redis::{int, request_options, value_f64, value_u64};
use crate::store_error::StoreError;
use fred::prelude::*;
use std::time::{Duration, Instant};

/// How often an instance re-adds a concert it serves to the timer's set.
const REREGISTER: Duration = Duration::from_secs(1);

/// The most places one `scan.lua` call looks at. Every other command of the line's shard waits
/// while a chunk runs: a place costs ~1.7 µs in Redis when it is fresh and ~2.7 µs when it goes
/// (BENCHMARKS.md), so a chunk holds the shard for about 2 ms even when a long line's fans
/// have all left at once.
const SCAN_CHUNK: u64 = 1_000;

/// Where the scan's share follows the wait buckets in a tick's reply: after the 14 figures and
/// one count per bucket (`WAIT_LIMITS_SECS` and one for longer waits). After it: whether the
/// tick has work left for another call.
const SCAN_DUE_AT: usize = 14 + WAIT_LIMITS_SECS.len() + 1;

/// The most places one `tick.lua` call admits, and the most admissions it ends; a tick with
/// more to do goes on in further calls of the same period (`tick.lua`, ARGV[7]). Every other
/// command of the line's shard waits while a call runs: a place costs ~7 µs of Redis to admit
/// and later expire (BENCHMARKS.md), so a call holds the shard for ~7 ms, where a tick of
/// 100,000 (the most `admit_per_tick` allows) used to hold it for ~0.7 s in one call.
const ADMIT_CHUNK: u64 = 1_000;

/// The most calls one tick makes: the biggest tick (100,000 admissions, ending as many beside
/// them) takes 100 calls of `ADMIT_CHUNK`; past this bound what is left lapses with its period.
const MAX_TICK_CALLS: usize = 200;

/// Wait buckets read from a reply, `at(i)` being bucket i.
fn waits_from(at: impl Fn(usize) -> u64) -> Waits {
    let mut w = Waits::default();
    for (i, c) in w.counts.iter_mut().enumerate() {
        *c = at(i);
    }
    w
}

impl QueueStore {
    /// The concert's pace as last seen by this instance's timer (default before its first tick).
    pub fn pace(&self, line: LineId) -> Pace {
        self.paces
            .read()
            .ok()
            .and_then(|p| p.get(&line).copied())
            .unwrap_or_default()
    }

    /// One admission tick for a concert (a no-op unless this tick period is still unclaimed):
    /// the claiming call, then as many more as its work needs (see `ADMIT_CHUNK`), then the
    /// idle scan. The report adds up what every call did; its figures are the last call's.
    pub async fn tick(&self, line: LineId, d: &QueueDefaults) -> Result<TickReport, StoreError> {
        let (mut report, mut left, mut scan_due) = self.tick_call(line, d, false).await?;
        let mut calls = 1;
        while left && calls < MAX_TICK_CALLS {
            calls += 1;
            match self.tick_call(line, d, true).await {
                // A later period began (or an operator changed its length): what was left
                // lapses, and the next claim starts afresh.
                Ok((next, _, _)) if !next.ran => break,
                Ok((next, more, due)) => {
                    report.absorb(next);
                    left = more;
                    scan_due = due;
                }
                // The admissions already made stand and are reported; the rest lapses.
                Err(e) => {
                    tracing::warn!(error = %e, %line, calls, "an admission tick stopped part way");
                    break;
                }
            }
        }
        let report = self.idle_scan(line, d.idle_secs, scan_due, report).await?;
        if let Ok(mut paces) = self.paces.write() {
            paces.insert(
                line,
                Pace {
                    measured_rate: report.rate,
                    admit_per_tick: Some(report.admit_per_tick),
                    tick_ms: Some(report.tick_ms),
                },
            );
        }
        Ok(report)
    }

    /// One `tick.lua` call: the claim of the period, or (`more`) a further call of the period
    /// this instance claimed. Also whether work is left, and the idle scan's due share.
    async fn tick_call(
        &self,
        line: LineId,
        d: &QueueDefaults,
        more: bool,
    ) -> Result<(TickReport, bool, u64), StoreError> {
        let k = self.keys(line);
        let r: Vec<i64> = self
            .scripts
            .tick
            .run(
                self.client(),
                keys(k.tick_keys()),
                vec![
                    int(d.admit_per_tick),
                    int(d.tick_ms),
                    int(d.max_active),
                    int(d.access_ttl_secs),
                    int(d.idle_secs),
                    int(ADMIT_CHUNK),
                    (if more { "more" } else { "claim" }).into(),
                ],
            )
            .await?;
        let at = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        let report = TickReport {
            ran: at(0) == 1,
            admitted_now: at(1),
            expired_now: at(2),
            idle_now: at(3),
            waiting: at(4),
            admitted: at(5),
            admitted_total: at(6),
            next_due_ms: at(7),
            tick_ms: at(8),
            max_active: at(9),
            rate: r
                .get(10)
                .map(|milli| *milli as f64 / 1000.0)
                .filter(|r| *r >= 0.0),
            admit_per_tick: at(11),
            sale_start_ms: at(12),
            before_start: r.get(13).copied() == Some(-2),
            drawn_now: r.get(13).and_then(|d| u64::try_from(*d).ok()),
            waits: waits_from(|i| at(14 + i)),
        };
        Ok((report, at(SCAN_DUE_AT + 1) == 1, at(SCAN_DUE_AT)))
    }

    /// The rolling idle scan due after a tick that ran: `due` places, in chunks of at most
    /// `SCAN_CHUNK`, each its own script call, so that no call walks much of a long line (one
    /// call for the whole share blocked Redis for ~100 ms with 1,000,000 waiting). Places
    /// removed are added to the report's idle count, and its waiting count follows.
    async fn idle_scan(
        &self,
        line: LineId,
        idle_secs: u64,
        due: u64,
        mut report: TickReport,
    ) -> Result<TickReport, StoreError> {
        let k = self.keys(line);
        let mut left = if report.ran { due } else { 0 };
        while left > 0 {
            let chunk = left.min(SCAN_CHUNK);
            let r: Vec<i64> = self
                .scripts
                .scan
                .run(
                    self.client(),
                    keys([&k.waiting, &k.seen, &k.stats, &k.settings]),
                    vec![int(idle_secs), int(chunk)],
                )
                .await?;
            let at = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
            report.idle_now += at(1);
            report.waiting = at(2);
            // A short window means the scan reached the end of the line (it starts over at the
            // front next time) or the line is empty: enough for this period.
            if at(0) < chunk {
                break;
            }
            left -= chunk;
        }
        Ok(report)
    }

    /// Live figures and the concert's overrides.
    pub async fn figures(&self, line: LineId) -> Result<Figures, StoreError> {
        let k = self.keys(line);
        let r: Vec<Value> = self
            .scripts
            .figures
            .run(
                self.client(),
                keys([&k.waiting, &k.admitted, &k.stats, &k.settings, &k.waits]),
                Vec::new(),
            )
            .await?;
        let opt = |i: usize| r.get(i).and_then(value_u64);
        let sale_start_ms = opt(8).unwrap_or(0);
        Ok(Figures {
            waiting: opt(0).unwrap_or(0),
            admitted: opt(1).unwrap_or(0),
            admitted_total: opt(2).unwrap_or(0),
            settings: SettingsPatch {
                admit_per_tick: opt(3),
                tick_ms: opt(4),
                max_active: opt(5),
                access_ttl_secs: opt(6),
                sale_start_ms: Some((sale_start_ms > 0).then_some(sale_start_ms)),
            },
            rate: r.get(7).map(value_f64).unwrap_or(0.0),
            sale_start_ms,
            pre_queue: opt(9).unwrap_or(0),
            draws_total: opt(10).unwrap_or(0),
            waits: waits_from(|i| opt(11 + i).unwrap_or(0)),
        })
    }

    /// Stores overrides (all fields at once: one HSET, so a change is never half applied).
    pub async fn put_settings(
        &self,
        line: LineId,
        patch: &SettingsPatch,
    ) -> Result<(), StoreError> {
        let k = self.keys(line);
        let fields: Vec<(&str, Value)> = [
            ("admit_per_tick", patch.admit_per_tick),
            ("tick_ms", patch.tick_ms),
            ("max_active", patch.max_active),
            ("access_ttl_secs", patch.access_ttl_secs),
            // Opening a sale now stores 0: "no start" to every script.
            ("sale_start_ms", patch.sale_start_ms.map(|s| s.unwrap_or(0))),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, int(v))))
        .collect();
        if fields.is_empty() {
            return Ok(());
        }
        self.client()
            .with_options(&request_options())
            .hset::<i64, _, _>(&k.settings, fields)
            .await?;
        Ok(())
    }

    /// The lines the admission timer should tick.
    pub async fn lines(&self) -> Result<Vec<LineId>, StoreError> {
        let members: Vec<String> = self
            .client()
            .with_options(&request_options())
            .smembers(concerts_key(&self.prefix))
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| LineId::from_member(m))
            .collect())
    }

    /// Makes the admission timer aware of a line. Repeated at most every
    /// `REREGISTER` per concert and instance: cheap on the join path, and after the store lost
    /// its data the concert is back on the timer's list within that time.
    pub async fn register_line(&self, line: LineId) -> Result<(), StoreError> {
        let now = Instant::now();
        if self.registered.lock().is_ok_and(|r| {
            r.get(&line)
                .is_some_and(|t| now.duration_since(*t) < REREGISTER)
        }) {
            return Ok(());
        }
        // Boxed: a Redis command's future is kilobytes; the registered case, above, is the
        // one every join takes.
        Box::pin(self.add_to_timer(line)).await?;
        if let Ok(mut r) = self.registered.lock() {
            r.insert(line, now);
        }
        Ok(())
    }

    /// SADD the line to the timer's set, unconditionally.
    pub async fn add_to_timer(&self, line: LineId) -> Result<(), StoreError> {
        self.client()
            .with_options(&request_options())
            .sadd::<i64, _, _>(concerts_key(&self.prefix), line.member())
            .await?;
        Ok(())
    }
}
