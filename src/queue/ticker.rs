//! The admission timer. Every instance runs one; the tick script decides which instance's call
//! does the work in each tick period, so admission runs at the configured rate in total.
//!
//! Each call returns how long until the next period begins, so an instance sleeps exactly that
//! long (plus a few ms, to land past the boundary) instead of polling. With many concerts the
//! due ones are ticked concurrently.

use super::model::{TickReport, WAIT_LIMITS_SECS};
use super::store::QueueStore;
use crate::config::QueueDefaults;
use crate::domain::LineId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the list of concerts is re-read from Redis.
const REFRESH: Duration = Duration::from_secs(1);
/// After an error, try that concert again this soon.
const RETRY: Duration = Duration::from_millis(250);

pub async fn run(store: Arc<QueueStore>, defaults: QueueDefaults, mut stop: watch::Receiver<bool>) {
    let mut lines: Vec<LineId> = Vec::new();
    // Concerts whose last tick saw people waiting or admitted. If the store loses its data,
    // the timer's set comes back empty; these are put back so restored places get admitted
    // even if nobody joins afresh.
    let mut active: HashMap<LineId, bool> = HashMap::new();
    let mut refreshed: Option<Instant> = None;
    let mut due: HashMap<LineId, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        if refreshed.is_none_or(|t| now.duration_since(t) >= REFRESH) {
            match store.lines().await {
                Ok(mut list) => {
                    for (c, busy) in &active {
                        if *busy && !list.contains(c) {
                            tracing::warn!(line = %c, "line missing from the admission set (store lost data?); adding it back");
                            if store.add_to_timer(*c).await.is_ok() {
                                list.push(*c);
                            }
                        }
                    }
                    active.retain(|c, _| list.contains(c));
                    lines = list;
                }
                Err(e) => tracing::debug!(error = %e, "could not list lines for admission"),
            }
            refreshed = Some(now);
        }
        let ready: Vec<LineId> = lines
            .iter()
            .copied()
            .filter(|c| due.get(c).is_none_or(|t| *t <= now))
            .collect();
        let ticks = ready.iter().map(|c| store.tick(*c, &defaults));
        let results = futures_util::future::join_all(ticks).await;
        let now = Instant::now();
        for (line, result) in ready.into_iter().zip(results) {
            match result {
                Ok(report) => {
                    record(line, &report);
                    if report.ran {
                        active.insert(line, report.waiting > 0 || report.admitted > 0);
                    }
                    // Land a few ms past the period boundary; instances differ by a random ms.
                    let jitter = 2 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 4);
                    due.insert(
                        line,
                        now + Duration::from_millis(report.next_due_ms + jitter),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, %line, "admission tick failed");
                    due.insert(line, now + RETRY);
                }
            }
        }
        let next = lines
            .iter()
            .filter_map(|c| due.get(c))
            .min()
            .copied()
            .unwrap_or(now + REFRESH)
            .min(now + REFRESH);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stop.changed() => return,
        }
    }
}

fn record(line: LineId, r: &TickReport) {
    let concert = line.concert;
    let c = concert.to_string();
    if !r.ran {
        // Before the sale starts the tick claims nothing and only counts the pre-queue.
        if r.before_start {
            metrics::gauge!("queuegate_queue_pre_queue", "concert" => c).set(r.waiting as f64);
        }
        return;
    }
    metrics::gauge!("queuegate_queue_pre_queue", "concert" => c.clone()).set(0.0);
    if let Some(drawn) = r.drawn_now {
        tracing::info!(%concert, drawn, "the sale opened: the pre-queue's order was drawn");
    }
    // Published (at 0) for every ticked concert, so dashboards see the series before a draw.
    metrics::counter!("queuegate_queue_draws_total", "concert" => c.clone())
        .increment(u64::from(r.drawn_now.is_some()));
    let wait = metrics::histogram!("queuegate_queue_wait_seconds", "concert" => c.clone());
    for (i, n) in r.waits.counts.iter().enumerate() {
        if *n > 0 {
            // Each admission lands in its bucket; the bucket's upper bound stands for it.
            let value = WAIT_LIMITS_SECS
                .get(i)
                .map_or(2.0 * 10_800.0, |l| *l as f64);
            wait.record_many(value, *n as usize);
        }
    }
    metrics::counter!("queuegate_queue_ticks_total", "concert" => c.clone()).increment(1);
    metrics::counter!("queuegate_queue_admissions_total", "concert" => c.clone())
        .increment(r.admitted_now);
    metrics::counter!("queuegate_queue_expired_total", "concert" => c.clone())
        .increment(r.expired_now);
    metrics::counter!("queuegate_queue_idle_removals_total", "concert" => c.clone())
        .increment(r.idle_now);
    metrics::gauge!("queuegate_queue_waiting", "concert" => c.clone()).set(r.waiting as f64);
    metrics::gauge!("queuegate_queue_admitted", "concert" => c.clone()).set(r.admitted as f64);
    metrics::gauge!("queuegate_queue_max_active", "concert" => c.clone()).set(r.max_active as f64);
    metrics::gauge!("queuegate_queue_admit_per_tick", "concert" => c.clone())
        .set(r.admit_per_tick as f64);
    let rate = r.rate.unwrap_or(0.0);
    metrics::gauge!("queuegate_queue_admission_rate", "concert" => c.clone()).set(rate);
    let tail_eta = super::eta::eta_seconds(r.waiting, rate).map_or(0.0, |s| s as f64);
    metrics::gauge!("queuegate_queue_eta_seconds", "concert" => c).set(tail_eta);
    if r.admitted > r.max_active {
        // Only a direct grant (ops/tests) can do this; the tick itself never admits past the cap.
        tracing::warn!(%concert, admitted = r.admitted, max_active = r.max_active, "admitted above max_active");
    }
}
