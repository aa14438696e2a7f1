//! `proxy`: gateway mode's cost. The same static page is fetched straight from the origin and
//! through a gateway-mode instance (admitted visitors, access token as bearer: signature check,
//! the live-admission script, then the pooled forward), in the same run, with the same number
//! of connections. Pass: every answer 200, throughput through the gateway at least half of the
//! direct one, and at most 2 ms added at p99.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use crate::stats::Summary;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Throughput through the gateway relative to direct, at least.
const MIN_RATIO: f64 = 0.5;
/// p99 added by the gateway, at most (ms).
const MAX_ADDED_P99_MS: f64 = 2.0;

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

    let direct = |label: &str| {
        let p = path.clone();
        let label = label.to_owned();
        async move {
            let (mut rec, elapsed) =
                measure(origin, o.connections, o.requests, o.duration, move |_| {
                    Spec::get(p.to_string(), None)
                })
                .await?;
            Ok::<_, Error>((rec.summary(&label, elapsed), rec.transport_errors))
        }
    };
    let gated = |label: &str| {
        let (p, a) = (path.clone(), access.clone());
        let label = label.to_owned();
        async move {
            let (mut rec, elapsed) =
                measure(o.addr, o.connections, o.requests, o.duration, move |i| {
                    Spec::get(p.to_string(), Some(a[i % a.len()].clone()))
                })
                .await?;
            Ok::<_, Error>((rec.summary(&label, elapsed), rec.transport_errors))
        }
    };

    // Warm both paths (pools, caches) briefly, then measure each.
    let warm = Duration::from_secs(2);
    let _ = measure(origin, o.connections, o.requests, warm, {
        let p = path.clone();
        move |_| Spec::get(p.to_string(), None)
    })
    .await?;
    let _ = measure(o.addr, o.connections, o.requests, warm, {
        let (p, a) = (path.clone(), access.clone());
        move |i| Spec::get(p.to_string(), Some(a[i % a.len()].clone()))
    })
    .await?;

    let (d, d_err) = direct(&format!(
        "proxy: GET {path} straight from the origin, {} connections",
        o.connections
    ))
    .await?;
    d.print();
    let (g, g_err) = gated(&format!(
        "proxy: GET {path} through the gateway, {} connections",
        o.connections
    ))
    .await?;
    g.print();

    let ratio = g.throughput / d.throughput.max(1e-9);
    let added = g.p99_ms - d.p99_ms;
    let all_ok = all_200(&d) && all_200(&g) && d_err == 0 && g_err == 0;
    let ok = all_ok && ratio >= MIN_RATIO && added <= MAX_ADDED_P99_MS;
    println!(
        "ratio       {ratio:.2} of direct throughput (need >= {MIN_RATIO}); p99 added {added:.2} ms (need <= {MAX_ADDED_P99_MS}); p50 added {:.2} ms",
        g.p50_ms - d.p50_ms
    );
    println!(
        "verdict     {} (all 200: {all_ok})",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}

fn all_200(s: &Summary) -> bool {
    s.requests > 0 && s.statuses.get(&200).copied() == Some(s.requests)
}
