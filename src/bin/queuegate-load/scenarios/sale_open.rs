//! Sale opening: fans join in the minute before the start (a pre-queue), keep polling as told,
//! and the sale opens. Reports how long the opening took, the longest single Redis call of the
//! whole run (SLOWLOG), and status latency around the start.

use crate::client::{Conn, Error};
use crate::harness::*;
use crate::options::Options;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The window around the start whose status latency is reported.
const AROUND_MS: i64 = 10_000;

type Redis = fred::prelude::Client;
type RedisValue = fred::prelude::Value;

async fn redis(url: &str) -> Result<Redis, Error> {
    use fred::prelude::ClientLike;
    let config = fred::prelude::Config::from_url(url)?;
    let client = fred::prelude::Builder::from_config(config).build()?;
    client.init().await?;
    Ok(client)
}

/// A server command (CONFIG, SLOWLOG) by name.
async fn command(r: &Redis, name: &'static str, args: Vec<String>) -> Result<RedisValue, Error> {
    use fred::prelude::ClientLike;
    let cmd = fred::types::CustomCommand::new_static(name, fred::types::ClusterHash::Random, false);
    Ok(r.custom(cmd, args).await?)
}

fn config_set(key: &str, value: &str) -> Vec<String> {
    vec!["SET".to_owned(), key.to_owned(), value.to_owned()]
}

/// (longest duration in µs, its command) from the queue Redis's SLOWLOG.
async fn slowest(r: &Redis) -> Result<(u64, String), Error> {
    let entries = command(r, "SLOWLOG", vec!["GET".into(), "1000".into()]).await?;
    let mut best = (0u64, String::new());
    for e in entries.into_array() {
        let fields = e.into_array();
        let micros = fields.get(2).and_then(|v| v.as_u64()).unwrap_or(0);
        if micros > best.0 {
            let args: Vec<String> = fields
                .get(3)
                .map(|a| {
                    a.clone()
                        .into_array()
                        .iter()
                        .take(3)
                        .filter_map(|v| v.as_string())
                        .collect()
                })
                .unwrap_or_default();
            best = (micros, args.join(" "));
        }
    }
    Ok(best)
}

pub async fn sale_open(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(100_000);
    let lead = o.duration.max(Duration::from_secs(20));
    let users = minted_users(o, n)?;
    let r = redis(&o.redis_url).await?;
    // Every call slower than 1 ms goes to the SLOWLOG; the longest of the run is reported.
    command(&r, "CONFIG", config_set("slowlog-log-slower-than", "1000")).await?;
    command(&r, "CONFIG", config_set("slowlog-max-len", "1024")).await?;
    command(&r, "SLOWLOG", vec!["RESET".into()]).await?;

    let start_ms = wall_ms() + lead.as_millis() as i64 + 5_000;
    let starts_at = chrono::DateTime::from_timestamp_millis(start_ms)
        .ok_or("bad start")?
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut admin = Conn::open(o.addr).await?;
    let (s, b) = admin
        .post_json(
            "/v1/admin/concerts",
            Some(&o.admin_token),
            &json!({"name": "sale opening", "sale_starts_at": starts_at,
                    "schedules": [{"starts_at": "2031-06-01T19:00:00Z", "price": 100}]}),
        )
        .await?;
    expect(s, StatusCode::CREATED, &b, "create concert")?;
    let concert = json_body(&b)?["concert_id"]
        .as_u64()
        .ok_or("no concert_id")?;
    println!(
        "sale-open: {n} fans join in the {} s before the start",
        lead.as_secs()
    );

    let pool = Shared::open(o.addr, o.connections).await?;
    let latencies: Arc<Mutex<Vec<(i64, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    let positions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let end_ms = start_ms + 30_000;
    let pace = lead.as_secs_f64() / n as f64;
    let began = Instant::now();
    let fans = users.into_iter().enumerate().map(|(i, user)| {
        let (pool, latencies, positions) = (pool.clone(), latencies.clone(), positions.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until((began + Duration::from_secs_f64(pace * i as f64)).into())
                .await;
            let Ok((s, b)) = pool
                .send(
                    Method::POST,
                    "/v1/queue",
                    Some(&user),
                    Some(json!({"concert_id": concert})),
                )
                .await
            else {
                return Err::<(), Error>("join failed".into());
            };
            let v = json_body(&b)?;
            if s != StatusCode::CREATED || v["status"] != "pre_queue" {
                return Err(format!("join before the start: {s} {v}").into());
            }
            let token = v["queue_token"].as_str().ok_or("no token")?.to_owned();
            let mut wait = v["poll_after_ms"].as_u64().unwrap_or(5000);
            let mut counted = false;
            while wall_ms() + (wait as i64) < end_ms {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let t0 = Instant::now();
                let Ok((s, b)) = pool
                    .send(Method::GET, "/v1/queue/status", Some(&token), None)
                    .await
                else {
                    continue;
                };
                if let Ok(mut l) = latencies.lock() {
                    l.push((wall_ms(), t0.elapsed().as_micros() as u32));
                }
                if s != StatusCode::OK {
                    return Err(format!("status: {s}").into());
                }
                let v = json_body(&b)?;
                if (v["position"].is_u64() || v["status"] == "admitted") && !counted {
                    positions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    counted = true;
                }
                wait = v["poll_after_ms"].as_u64().unwrap_or(5000).max(1000);
            }
            Ok(())
        })
    });
    // Watch the opening from the admin API.
    let watcher = {
        let o_addr = o.addr;
        let token = o.admin_token.clone();
        tokio::spawn(async move {
            let mut c = Conn::open(o_addr).await?;
            let mut opened_ms = None;
            let mut first_admission_ms = None;
            while wall_ms() < end_ms && first_admission_ms.is_none() {
                let (_, b) = c
                    .get(&format!("/v1/admin/concerts/{concert}/queue"), Some(&token))
                    .await?;
                let v = json_body(&b)?;
                if opened_ms.is_none() && v["draws"] == 1 {
                    opened_ms = Some(wall_ms());
                }
                if v["admitted_total"].as_u64().unwrap_or(0) > 0 {
                    first_admission_ms = Some(wall_ms());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, Error>((opened_ms, first_admission_ms))
        })
    };
    let mut failures = 0;
    for r in futures_util::future::join_all(fans).await {
        if !matches!(r, Ok(Ok(()))) {
            failures += 1;
        }
    }
    let (opened_ms, first_admission_ms) = watcher.await??;
    let (slow_us, slow_cmd) = slowest(&r).await?;
    command(&r, "CONFIG", config_set("slowlog-log-slower-than", "10000")).await?;

    let mut around: Vec<f64> = latencies
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .filter(|(at, _)| (at - start_ms).abs() <= AROUND_MS)
        .map(|(_, us)| f64::from(*us) / 1000.0)
        .collect();
    let polls_around = around.len();
    let p99 = quantile(&mut around, 0.99);
    let seen = positions.load(std::sync::atomic::Ordering::Relaxed);
    let after = |t: Option<i64>| {
        t.map_or("never".to_owned(), |t| {
            format!("{:.2} s", (t - start_ms) as f64 / 1000.0)
        })
    };
    println!(
        "sale-open: the draw was recorded {} after the start (admin API, 20 ms polls); first admission {}",
        after(opened_ms),
        after(first_admission_ms)
    );
    println!(
        "           longest Redis call of the run: {:.2} ms ({slow_cmd})",
        slow_us as f64 / 1000.0
    );
    println!(
        "           status p99 within ±10 s of the start: {:.2} ms over {polls_around} polls; {seen}/{n} fans saw a position or admission; {failures} fans failed",
        p99.unwrap_or(f64::NAN)
    );
    let ok = failures == 0 && opened_ms.is_some() && slow_us <= 50_000 && seen == n;
    println!(
        "verdict     {} (no Redis call over 50 ms; every fan in; the draw recorded)",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}
