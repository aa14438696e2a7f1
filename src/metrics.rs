//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.
//!
//! Histograms get explicit buckets so Grafana can compute p50/p95/p99 across instances (a
//! summary cannot be aggregated). The recorder is global, so it is installed once per process
//! and shared by every `App` built in that process (tests build many).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: fine-grained under 10 ms, where the hot paths live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Wait-time buckets in seconds: the tick's own (see `queue::model::WAIT_LIMITS_SECS`).
const WAIT_BUCKETS: [f64; 16] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0,
    7200.0, 10800.0,
];

/// Adds one to the counter `name{label="value"}`, on a path every request takes. The handle of
/// each series is looked up in the registry once per thread — a lookup hashes the name and
/// labels under a lock, hundreds of instructions, and two of them per forward were a measurable
/// share of gateway mode's cost. Series are told apart by where their static strings live, so a
/// lookup is a short scan of pointers.
pub fn count_hot(name: &'static str, label: &'static str, value: &'static str) {
    use std::cell::RefCell;
    // (The strings are static, so the series are few and the list stays short.)
    type Series = ((*const u8, usize, *const u8, usize), metrics::Counter);
    thread_local! {
        static HOT: RefCell<Vec<Series>> = const { RefCell::new(Vec::new()) };
    }
    // A string is told apart by its address and its length (the linker may let one literal
    // start another). A name always comes with the same label, so the label is not compared.
    let id = (name.as_ptr(), name.len(), value.as_ptr(), value.len());
    HOT.with_borrow_mut(|hot| match hot.iter().find(|(k, _)| *k == id) {
        Some((_, counter)) => counter.increment(1),
        None => {
            let counter = metrics::counter!(name, label => value);
            counter.increment(1);
            hot.push((id, counter));
        }
    });
}

pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("queuegate_queue_wait_seconds".into()),
                    &WAIT_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("queuegate_queue_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                })
                .map(|b| b.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    // Another recorder may already be installed (embedding apps); then ours
                    // still renders what passes through it, which is nothing, but never panics.
                    let _ = metrics::set_global_recorder(recorder);
                    describe();
                    handle
                }
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "queuegate_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "queuegate_http_request_duration_seconds",
        "HTTP request latency"
    );
    describe_gauge!(
        "queuegate_db_pool_connections",
        "Database pool connections by pool and state"
    );
    describe_counter!(
        "queuegate_lock_acquire_total",
        "Redlock acquisition attempts by result"
    );
    describe_counter!(
        "queuegate_lock_fallback_total",
        "Seat holds taken on the database-only path"
    );
    describe_gauge!(
        "queuegate_redlock_masters_up",
        "Redlock masters answering PING"
    );
    describe_counter!("queuegate_holds_total", "Seat hold attempts by result");
    describe_counter!("queuegate_payments_total", "Payments by result");
    describe_counter!("queuegate_wallet_charges_total", "Wallet charges by result");
    describe_counter!(
        "queuegate_holds_expired_total",
        "Holds marked expired by the sweep"
    );
    describe_counter!(
        "queuegate_revocations_total",
        "Access revocations after payment by result"
    );
    describe_gauge!("queuegate_queue_waiting", "Users waiting, per concert");
    describe_gauge!(
        "queuegate_queue_admitted",
        "Users admitted now, per concert"
    );
    describe_gauge!(
        "queuegate_queue_admission_rate",
        "Measured admissions per second, per concert"
    );
    describe_gauge!(
        "queuegate_queue_eta_seconds",
        "ETA of the last user in line, per concert"
    );
    describe_counter!(
        "queuegate_queue_joins_total",
        "Queue joins by concert and result"
    );
    describe_counter!(
        "queuegate_queue_admissions_total",
        "Users admitted, per concert"
    );
    describe_counter!(
        "queuegate_queue_idle_removals_total",
        "Places lost to idleness, per concert"
    );
    describe_counter!(
        "queuegate_queue_leaves_total",
        "Places given up, per concert"
    );
    describe_counter!(
        "queuegate_queue_expired_total",
        "Admissions that ran out, per concert"
    );
    describe_counter!(
        "queuegate_queue_ticks_total",
        "Admission ticks run, per concert"
    );
    describe_counter!("queuegate_queue_status_total", "Status answers by result");
    describe_gauge!(
        "queuegate_sse_streams",
        "Open event streams on this instance"
    );
    describe_counter!(
        "queuegate_rate_limited_total",
        "Requests refused by a rate limit, by scope"
    );
    describe_counter!(
        "queuegate_sse_events_total",
        "Events pushed to streams, by kind"
    );
    describe_gauge!(
        "queuegate_sse_streams_limit",
        "Most event streams this instance keeps open (0 = no cap)"
    );
    describe_counter!(
        "queuegate_sse_refused_total",
        "Event streams refused at SSE_MAX_STREAMS"
    );
    describe_gauge!(
        "queuegate_dependency_up",
        "1 when a dependency answers its probe, by dependency"
    );
    describe_gauge!(
        "queuegate_db_replica_lag_seconds",
        "How far the read replica is behind (infinite while replication is stopped)"
    );
    describe_gauge!(
        "queuegate_sweep_last_success_timestamp_seconds",
        "When the hold-expiry sweep last succeeded (unix time)"
    );
    describe_gauge!(
        "queuegate_queue_max_active",
        "Effective cap on admitted users, per concert"
    );
    describe_gauge!(
        "queuegate_queue_admit_per_tick",
        "Effective admissions per tick, per concert (0 = paused)"
    );
    describe_histogram!(
        "queuegate_queue_wait_seconds",
        "How long admitted fans waited: from joining, or from the sale's start for pre-queue places"
    );
    describe_gauge!(
        "queuegate_queue_pre_queue",
        "Places in a sale's pre-queue before it starts, per concert"
    );
    describe_counter!(
        "queuegate_queue_draws_total",
        "Pre-queue draws (one per sale that had a start), per concert"
    );
    describe_histogram!(
        "queuegate_queue_batch_size",
        "Places carried by one coalesced script call, by call"
    );
    describe_counter!(
        "queuegate_holds_released_total",
        "Unpaid holds released because the access ended, by why"
    );
    describe_counter!(
        "queuegate_gateway_requests_total",
        "Gateway mode: requests for protected paths by guarding line (concert) and decision (forwarded, tunnelled: an upgrade passed to the origin, redirected to the line, refused as not admitted, bad_path)"
    );
    describe_gauge!(
        "queuegate_gateway_tunnels_open",
        "Gateway mode: upgraded connections (WebSockets) open between admitted visitors and the origin"
    );
    describe_counter!(
        "queuegate_gateway_tunnels_closed_total",
        "Gateway mode: tunnels closed, by reason (closed by either side; revoked: paid, left or superseded; expired: the admission ran out; unconfirmed: the queue store could not confirm the grant)"
    );
    describe_counter!(
        "queuegate_upstream_requests_total",
        "Gateway mode: forwarded requests by the origin's status code, or timeout / unreachable / bad_answer / client_aborted"
    );
    describe_histogram!(
        "queuegate_upstream_duration_seconds",
        "Gateway mode: time from forwarding a request until the origin's response head (or the failure)"
    );
    describe_gauge!(
        "queuegate_outbox_oldest_unrelayed_age_seconds",
        "Age of the oldest booking event not yet relayed to the events stream (0 when none): the relay's lag"
    );
    describe_counter!(
        "queuegate_outbox_published_total",
        "Booking events appended to the events stream, by type"
    );
    describe_counter!(
        "queuegate_outbox_duplicates_total",
        "Relay retries of events already in the stream (skipped by the dedup key)"
    );
    describe_counter!(
        "queuegate_outbox_failed_total",
        "Relay attempts that failed and will be retried, by step (revoke, publish)"
    );
    describe_counter!(
        "queuegate_outbox_revocations_total",
        "Revocations by the relay after payment: ended (the request path had not) or already_ended"
    );
    describe_counter!(
        "queuegate_outbox_pruned_total",
        "Relayed outbox rows deleted after the retention period"
    );
    describe_gauge!(
        "queuegate_outbox_relay_leader",
        "1 on the instance whose relay held the lease at its last tick"
    );
    // Counters that may stay at zero for a long time are published from the start, so
    // dashboards and alerts see 0 rather than "no data".
    metrics::counter!("queuegate_lock_fallback_total").increment(0);
    metrics::counter!("queuegate_holds_expired_total").increment(0);
    metrics::counter!("queuegate_holds_total", "result" => "error").increment(0);
    metrics::counter!("queuegate_lock_acquire_total", "result" => "quorum_unreachable")
        .increment(0);
    metrics::gauge!("queuegate_sse_streams").increment(0.0);
    metrics::gauge!("queuegate_gateway_tunnels_open").increment(0.0);
    metrics::counter!("queuegate_gateway_tunnels_closed_total", "reason" => "revoked").increment(0);
    // 0 until the first sweep succeeds, so "no sweep for a minute" alerts from the start.
    metrics::gauge!("queuegate_sweep_last_success_timestamp_seconds").set(0.0);
    metrics::gauge!("queuegate_outbox_oldest_unrelayed_age_seconds").increment(0.0);
    metrics::counter!("queuegate_outbox_failed_total", "step" => "publish").increment(0);
    metrics::counter!("queuegate_outbox_duplicates_total").increment(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_series_count_into_their_own_series() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // The handles are kept per thread: this test's thread binds them to its recorder.
        metrics::with_local_recorder(&recorder, || {
            count_hot("qg_test_hot_total", "k", "a");
            count_hot("qg_test_hot_total", "k", "a");
            count_hot("qg_test_hot_total", "k", "ab");
        });
        let text = handle.render();
        assert!(text.contains("qg_test_hot_total{k=\"a\"} 2"), "{text}");
        assert!(text.contains("qg_test_hot_total{k=\"ab\"} 1"), "{text}");
    }
}
