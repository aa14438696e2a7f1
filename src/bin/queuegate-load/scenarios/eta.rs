//! ETA accuracy: thousands of waiting fans under a steady admission; each records the ETA it
//! was shown at joining and at every poll, and the moment it was actually admitted (the
//! admission's start, read from its end minus the access TTL). The error of a prediction made
//! at time t is |ETA − (admitted − t)| / (admitted − t).

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use hyper::Method;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Predictions made this long after the drain started are judged (the estimator warms up).
const WARM_UP_MS: i64 = 30_000;
/// Predictions of admission sooner than this are left out: a relative error of a 1 s wait
/// measures rounding, not the estimator.
const MIN_ACTUAL_MS: i64 = 5_000;

pub async fn eta(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(20_000);
    let per_tick = 200u64;
    let ttl_secs = 86_400i64;
    let concert = create_concert(o, 1, 100).await?;
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 0, "tick_ms": 1000, "max_active": 1_000_000, "access_ttl_secs": ttl_secs}),
    )
    .await?;
    let users = minted_users(o, n)?;
    let pool = Shared::open(o.addr, o.connections).await?;
    // (at, eta seconds) per fan, and when it was admitted.
    let observations: Arc<Mutex<Vec<(usize, i64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let admitted: Arc<Mutex<Vec<Option<i64>>>> = Arc::new(Mutex::new(vec![None; n]));

    let tokens = join_all(o, concert.id, &users).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": per_tick})).await?;
    let drain_start = wall_ms();
    println!("eta: {n} fans waiting; admission opened at {per_tick} per 1 s tick");

    let fans = tokens.into_iter().enumerate().map(|(i, token)| {
        let (pool, observations, admitted) = (pool.clone(), observations.clone(), admitted.clone());
        tokio::spawn(async move {
            loop {
                let at = wall_ms();
                let Ok((status, body)) = pool
                    .send(Method::GET, "/v1/queue/status", Some(&token), None)
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                if !status.is_success() {
                    return;
                }
                let Ok(v) = json_body(&body) else { return };
                if v["status"] == "admitted" {
                    let start = v["access_expires_at"]
                        .as_str()
                        .and_then(rfc3339_ms)
                        .map(|e| e - ttl_secs * 1000);
                    if let Ok(mut a) = admitted.lock() {
                        a[i] = start;
                    }
                    return;
                }
                if let Some(eta) = v["eta_seconds"].as_u64()
                    && let Ok(mut obs) = observations.lock()
                {
                    obs.push((i, at, eta));
                }
                let wait = v["poll_after_ms"].as_u64().unwrap_or(5000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        })
    });
    let limit = Duration::from_secs(n as u64 / per_tick + 120);
    tokio::time::timeout(limit, futures_util::future::join_all(fans))
        .await
        .map_err(|_| "fans still waiting at the time limit")?;

    let admitted = admitted.lock().map_err(|_| "poisoned")?.clone();
    let observations = observations.lock().map_err(|_| "poisoned")?.clone();
    let mut errors = Vec::new();
    let mut early = Vec::new();
    for (i, at, eta) in observations {
        let Some(got_in) = admitted[i] else { continue };
        let actual = got_in - at;
        if actual < MIN_ACTUAL_MS {
            continue;
        }
        let error = ((eta as f64 * 1000.0) - actual as f64).abs() / actual as f64;
        if at >= drain_start + WARM_UP_MS {
            errors.push(error);
        } else {
            early.push(error);
        }
    }
    let all_in = admitted.iter().all(Option::is_some);
    let judged = errors.len();
    let median = quantile(&mut errors, 0.5);
    let p90 = quantile(&mut errors, 0.9);
    let early_median = quantile(&mut early, 0.5);
    println!(
        "eta: {} admitted; {judged} predictions judged (made ≥ 30 s into the drain, ≥ 5 s before admission)",
        admitted.iter().flatten().count()
    );
    println!(
        "     |predicted − actual| / actual: median {:.1} %, p90 {:.1} % (first 30 s: median {:.1} %)",
        median.unwrap_or(f64::NAN) * 100.0,
        p90.unwrap_or(f64::NAN) * 100.0,
        early_median.unwrap_or(f64::NAN) * 100.0,
    );
    let ok =
        all_in && judged > 0 && median.is_some_and(|m| m <= 0.10) && p90.is_some_and(|p| p <= 0.20);
    println!(
        "verdict     {} (target: median ≤ 10 %, p90 ≤ 20 %)",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}
