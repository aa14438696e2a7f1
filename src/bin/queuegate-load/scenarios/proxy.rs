//! `proxy`: gateway mode's cost. The same static page is fetched straight from the origin and
//! through a gateway-mode instance (admitted visitors, access token as bearer: signature check,
//! the live-admission script, then the pooled forward), in the same run, with the same number
//! of connections.
//!
//! Two measurements, each alternating direct and gated phases (three rounds) so that the noise
//! of a shared machine falls on both alike:
//! - **closed loop** (every connection sends its next request as soon as the answer arrives):
//!   the throughput each path can carry;
//! - **paced** (every connection sends on a fixed schedule, together half of what the gateway
//!   carried closed-loop, latency counted from the scheduled time so a stall is not hidden):
//!   the latency the gateway adds when neither side is saturated. In a saturated closed loop,
//!   latency is only connections ÷ throughput (Little's law) and says nothing of its own.
//!
//! Pass: every answer 200, gateway throughput at least half the direct one, and at most 2 ms
//! added at p99 (paced).
//!
//! With `--reference HOST:PORT` (`scripts/bench.sh proxy` starts nginx there as a plain reverse
//! proxy with keep-alive to the same origin) a third path runs in every round: what forwarding
//! alone costs on this machine, without a token to check or an identity to sign. It is printed
//! for comparison and is not part of the verdict.

use crate::client::{Conn, Error};
use crate::harness::*;
use crate::options::Options;
use crate::stats::{Recorder, Summary};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Throughput through the gateway relative to direct, at least.
const MIN_RATIO: f64 = 0.5;
/// p99 added by the gateway, at most (ms).
const MAX_ADDED_P99_MS: f64 = 2.0;
/// Alternating rounds per measurement.
const ROUNDS: usize = 3;
/// The measured paths, in the order each round runs them.
const DIRECT: usize = 0;
const GATED: usize = 1;
const REFERENCE: usize = 2;

/// What one phase fetches: where, and with which token (none: direct).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    path: Arc<str>,
    tokens: Option<Arc<Vec<Arc<str>>>>,
}

impl Target {
    fn spec(&self, i: usize) -> Spec {
        let token = self.tokens.as_ref().map(|t| t[i % t.len()].clone());
        Spec::get(self.path.to_string(), token)
    }
}

pub async fn proxy(o: &Options) -> Result<bool, Error> {
    let origin = o
        .origin
        .ok_or("proxy needs --origin HOST:PORT (the origin, reached directly)")?;
    let concert = o
        .concert
        .ok_or("proxy needs --concert ID (the gateway's UPSTREAM_CONCERT_ID)")?;
    let path: Arc<str> = Arc::from(o.path.as_deref().unwrap_or("/shop/index.html"));

    // Admitted visitors, one per connection: joined through the API, let in by the ticker.
    let n = o.users.unwrap_or(o.connections).max(1);
    let t = Instant::now();
    let users = minted_users(o, n)?;
    let queue_tokens = join_all(o, concert, &users).await?;
    let access = Arc::new(wait_admitted(o, &queue_tokens).await?);
    println!(
        "setup: {n} visitors admitted in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let direct = Target {
        addr: origin,
        path: path.clone(),
        tokens: None,
    };
    let gated = Target {
        addr: o.addr,
        path: path.clone(),
        tokens: Some(access),
    };

    // A plain reverse proxy in front of the same origin, when given: the same page and
    // connections, no token (it checks nothing).
    let reference = o.reference.map(|addr| Target {
        addr,
        path: path.clone(),
        tokens: None,
    });
    let mut targets = vec![
        ("straight from the origin", direct),
        ("through the gateway", gated),
    ];
    if let Some(r) = reference {
        targets.push(("through the reference proxy", r));
    }

    // Warm every path (pools, caches) briefly.
    for (_, t) in &targets {
        let t = t.clone();
        measure(
            t.addr,
            o.connections,
            o.requests,
            Duration::from_secs(2),
            move |i| t.spec(i),
        )
        .await?;
    }

    // Closed loop, alternating.
    let phase = (o.duration / ROUNDS as u32).max(Duration::from_secs(2));
    let per_phase = (o.requests / ROUNDS).max(1);
    let mut closed: Vec<(Recorder, Duration)> = targets
        .iter()
        .map(|_| (Recorder::default(), Duration::ZERO))
        .collect();
    // CPU of the process in the middle of each path: the gateway, the reference proxy.
    let middle = |k: usize| match k {
        GATED => o.gateway_pid.and_then(cpu_time),
        REFERENCE => o.reference_pid.and_then(cpu_time_with_children),
        _ => None,
    };
    let mut cpu = [Duration::ZERO; 3];
    for _ in 0..ROUNDS {
        for (k, (_, t)) in targets.iter().enumerate() {
            let cpu0 = middle(k);
            let t = t.clone();
            let (rec, el) =
                measure(t.addr, o.connections, per_phase, phase, move |i| t.spec(i)).await?;
            if let (Some(a), Some(b)) = (cpu0, middle(k)) {
                cpu[k] += b.saturating_sub(a);
            }
            closed[k].0.merge(rec);
            closed[k].1 += el;
        }
    }
    let mut errors = 0;
    let summaries = summarise(closed, &targets, &mut errors, |name| {
        format!(
            "proxy closed loop: GET {path} {name}, {} connections",
            o.connections
        )
    });
    for (k, who) in [(GATED, "gateway"), (REFERENCE, "reference proxy")] {
        let pid = if k == GATED {
            o.gateway_pid
        } else {
            o.reference_pid
        };
        if let Some(s) = summaries.get(k).filter(|s| s.requests > 0 && pid.is_some()) {
            println!(
                "{who} CPU {:.1} µs per forwarded request",
                cpu[k].as_secs_f64() * 1e6 / s.requests as f64
            );
        }
    }

    // Paced, alternating, every path at half of what the gateway carried.
    let rate = (summaries[GATED].throughput / 2.0).max(100.0);
    let mut paced_recs: Vec<(Recorder, Duration)> = targets
        .iter()
        .map(|_| (Recorder::default(), Duration::ZERO))
        .collect();
    for _ in 0..ROUNDS {
        for (k, (_, t)) in targets.iter().enumerate() {
            let (rec, el) = paced(t, o.connections, rate, phase).await?;
            paced_recs[k].0.merge(rec);
            paced_recs[k].1 += el;
        }
    }
    let paced_summaries = summarise(paced_recs, &targets, &mut errors, |name| {
        format!(
            "proxy paced at {rate:.0} req/s: {name}, {} connections",
            o.connections
        )
    });

    let (ds, gs, dps, gps) = (
        &summaries[DIRECT],
        &summaries[GATED],
        &paced_summaries[DIRECT],
        &paced_summaries[GATED],
    );
    let ratio = gs.throughput / ds.throughput.max(1e-9);
    let added = gps.p99_ms - dps.p99_ms;
    let all_ok = summaries.iter().chain(&paced_summaries).all(all_200) && errors == 0;
    let ok = all_ok && ratio >= MIN_RATIO && added <= MAX_ADDED_P99_MS;
    println!(
        "ratio       {ratio:.2} of direct throughput (need >= {MIN_RATIO}); closed-loop p99 {:.2} vs {:.2} ms",
        gs.p99_ms, ds.p99_ms
    );
    println!(
        "added       paced p50 +{:.2} ms, p99 +{added:.2} ms (need <= {MAX_ADDED_P99_MS})",
        gps.p50_ms - dps.p50_ms
    );
    if let (Some(rs), Some(rps)) = (summaries.get(REFERENCE), paced_summaries.get(REFERENCE)) {
        println!(
            "reference   {:.2} of direct throughput; paced p50 +{:.2} ms, p99 +{:.2} ms (for comparison, not in the verdict)",
            rs.throughput / ds.throughput.max(1e-9),
            rps.p50_ms - dps.p50_ms,
            rps.p99_ms - dps.p99_ms
        );
    }
    println!(
        "verdict     {} (all 200: {all_ok})",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}

/// Each path's measurements merged over the rounds, summarised and printed under
/// `title(path name)`; their transport errors are added to `errors`.
fn summarise(
    recs: Vec<(Recorder, Duration)>,
    targets: &[(&str, Target)],
    errors: &mut u64,
    title: impl Fn(&str) -> String,
) -> Vec<Summary> {
    recs.into_iter()
        .zip(targets)
        .map(|((mut rec, took), (name, _))| {
            *errors += rec.transport_errors;
            let s = rec.summary(&title(name), took);
            s.print();
            s
        })
        .collect()
}

fn all_200(s: &Summary) -> bool {
    s.requests > 0 && s.statuses.get(&200).copied() == Some(s.requests)
}

/// The CPU time of a process and its children (nginx's workers under its master).
fn cpu_time_with_children(pid: u32) -> Option<Duration> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut total = cpu_time(pid)?;
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += cpu_time(child).unwrap_or_default();
    }
    Some(total)
}

/// Open loop: `conns` connections together send `rate` requests a second on a fixed schedule
/// for `limit`; each latency counts from the request's scheduled time.
async fn paced(
    t: &Target,
    conns: usize,
    rate: f64,
    limit: Duration,
) -> Result<(Recorder, Duration), Error> {
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(Conn::open(t.addr).await?);
    }
    let started = Instant::now();
    let workers = opened.into_iter().enumerate().map(|(w, mut conn)| {
        let t = t.clone();
        tokio::spawn(async move {
            let mut rec = Recorder::default();
            // Spread the connections' schedules over one interval.
            let mut due = started + interval.mul_f64(w as f64 / conns as f64);
            let mut i = w;
            while due < started + limit {
                tokio::time::sleep_until(due.into()).await;
                let s = t.spec(i);
                match conn
                    .send(s.method, &s.path, s.token.as_deref(), s.body)
                    .await
                {
                    Ok((status, body)) => rec.record(due.elapsed(), status, &body),
                    Err(_) => {
                        rec.transport_errors += 1;
                        match Conn::open(t.addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
                due += interval;
                i += conns;
            }
            rec
        })
    });
    let mut all = Recorder::default();
    for r in futures_util::future::join_all(workers).await {
        all.merge(r?);
    }
    Ok((all, started.elapsed()))
}
