//! The waiting room through a Redis failover: the master that owns a busy concert's line is
//! killed (SIGKILL) while fans join and poll, a replica takes over, and the line goes on.
//!
//! These need the topologies of `scripts/redis-topology.sh` (a 3+3 Redis Cluster and a
//! Sentinel group on loopback), so they are ignored by a plain `cargo test`; `scripts/test.sh`
//! starts the topologies and runs them with `--ignored`, one at a time. Each test names the
//! URL it needs in `QG_TEST_REDIS_URL_CLUSTER` / `QG_TEST_REDIS_URL_SENTINEL`.
//!
//! What they show (the figures go to RELIABILITY.md):
//! - joins and polls answer again within `cluster-node-timeout` + 5 s of the kill;
//! - every answer in between is a 503 with `Retry-After` — never a hang, never another 5xx;
//! - places the replica had keep their order; places lost to asynchronous replication come
//!   back through the kept queue token, with their original arrival number;
//! - admission never exceeds `max_active`.

mod common;

use common::{ADMIN_TOKEN, TestApp, User, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
const MAX_ACTIVE: u64 = 25;
const FANS: usize = 150;

/// What the load saw, per answer.
#[derive(Default)]
struct Seen {
    ok: u32,
    unavailable_with_retry_after: u32,
    other: Vec<String>,
    /// When each 503 streak ended: (first 503, first success after it).
    outage: Option<(Instant, Option<Instant>)>,
    max_admitted: u64,
}

fn topology(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/redis-topology.sh"
        ))
        .args(args)
        .output()
        .expect("scripts/redis-topology.sh runs");
    assert!(
        out.status.success(),
        "redis-topology.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn url_from(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run through scripts/test.sh, which starts the topology")
    })
}

async fn join(
    app: &TestApp,
    client: &reqwest::Client,
    user: &User,
    keep: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "concert_id": 1 });
    if let Some(t) = keep {
        body["queue_token"] = json!(t);
    }
    client
        .post(app.url("/v1/queue"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("an answer (a hang would time out)")
}

/// Records one answer: 2xx, or 503 with Retry-After (the promise), or anything else.
fn record(seen: &Mutex<Seen>, status: StatusCode, retry_after: bool, what: &str) {
    let Ok(mut s) = seen.lock() else { return };
    let now = Instant::now();
    if status.is_success() {
        s.ok += 1;
        if let Some((_, end @ None)) = &mut s.outage {
            *end = Some(now);
        }
    } else if status == StatusCode::SERVICE_UNAVAILABLE && retry_after {
        s.unavailable_with_retry_after += 1;
        if s.outage.is_none() {
            s.outage = Some((now, None));
        }
    } else {
        s.other.push(format!("{what}: {status}"));
    }
}

/// Runs the failover scenario against `url`; `kill` kills the right master and returns its
/// port (to restart it afterwards).
async fn line_survives_a_failover(url: String, kill: impl FnOnce(&str) -> String) {
    let app = spawn_with(&[
        ("REDIS_URL", url.as_str()),
        ("QUEUE_TICK_MS", "200"),
        ("QUEUE_ADMIT_PER_TICK", "2"),
        ("QUEUE_MAX_ACTIVE", &MAX_ACTIVE.to_string()),
        ("ACCESS_TTL_SECS", "600"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    assert_eq!(concert.id.get(), 1, "a fresh database");
    let line = app.line(concert.id).await;
    let waiting_key = app.app.queue.store().keys(line).waiting.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // The line before the failover: FANS places, in join order.
    let users = app.create_users(FANS).await;
    let mut tokens = Vec::new();
    for u in &users {
        let r = join(&app, &client, u, None).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        tokens.push(v["queue_token"].as_str().unwrap().to_owned());
    }
    let seq_of = |t: &str| app.app.tokens.verify_queue(t).unwrap().seq;
    // Let the replicas catch up before the kill, so what is lost is only what the load adds.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Load: pollers over the first fans, joiners of new fans, and an admin watching `admitted`.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let newcomers = app.create_users(60).await;
    let mut load = Vec::new();
    for worker in 0..8 {
        let (app_url, client, seen, stop) =
            (app.base.clone(), client.clone(), seen.clone(), stop.clone());
        let tokens = tokens.clone();
        load.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = &tokens[i % tokens.len()];
                i += 8;
                match client
                    .get(format!("{app_url}/v1/queue/status"))
                    .bearer_auth(t)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let retry = r.headers().contains_key("retry-after");
                        // A 410 is an answer too: a place lost with the old master (restored below).
                        let status = if r.status() == StatusCode::GONE {
                            StatusCode::OK
                        } else {
                            r.status()
                        };
                        record(&seen, status, retry, "poll");
                    }
                    Err(e) => record(
                        &seen,
                        StatusCode::REQUEST_TIMEOUT,
                        false,
                        &format!("poll {e}"),
                    ),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    {
        let (app_url, client, seen, stop) =
            (app.base.clone(), client.clone(), seen.clone(), stop.clone());
        let newcomers: Vec<(u64, String)> = newcomers
            .iter()
            .map(|u| (u.id.get(), u.token.clone()))
            .collect();
        load.push(tokio::spawn(async move {
            for (_, token) in newcomers {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match client
                    .post(format!("{app_url}/v1/queue"))
                    .bearer_auth(&token)
                    .json(&json!({ "concert_id": 1 }))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let retry = r.headers().contains_key("retry-after");
                        record(&seen, r.status(), retry, "join");
                    }
                    Err(e) => record(
                        &seen,
                        StatusCode::REQUEST_TIMEOUT,
                        false,
                        &format!("join {e}"),
                    ),
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }));
    }
    {
        let (app_url, client, seen, stop) =
            (app.base.clone(), client.clone(), seen.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(r) = client
                    .get(format!("{app_url}/v1/admin/concerts/1/queue"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    && let Ok(v) = r.json::<Value>().await
                    && let Some(a) = v["admitted"].as_u64()
                    && let Ok(mut s) = seen.lock()
                {
                    s.max_admitted = s.max_admitted.max(a);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    // Started again (as a replica) when the test ends, passed or failed.
    let _revive = Revive(kill(&waiting_key));
    // Keep the load on through the failover and a little after.
    let deadline = killed_at + NODE_TIMEOUT + Duration::from_secs(8);
    loop {
        let recovered = seen
            .lock()
            .map(|s| matches!(s.outage, Some((_, Some(end))) if end > killed_at))
            .unwrap_or(false);
        if recovered || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in load {
        h.await.unwrap();
    }

    let (recovery, unavailable, ok, other, max_admitted) = {
        let s = seen.lock().unwrap();
        let recovery = match s.outage {
            Some((_, Some(end))) => end.duration_since(killed_at),
            Some((_, None)) => panic!("joins and polls never answered again"),
            None => Duration::ZERO,
        };
        (
            recovery,
            s.unavailable_with_retry_after,
            s.ok,
            s.other.clone(),
            s.max_admitted,
        )
    };
    assert!(
        other.is_empty(),
        "answers other than 2xx or 503 + Retry-After: {other:?}"
    );
    assert!(
        recovery <= NODE_TIMEOUT + Duration::from_secs(5),
        "answered again {recovery:?} after the kill"
    );
    assert!(
        max_admitted <= MAX_ACTIVE,
        "admitted {max_admitted} > max_active {MAX_ACTIVE}"
    );

    // Pause admission, so positions read one after another describe one moment.
    let r = client
        .put(app.url("/v1/admin/concerts/1/queue"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "admit_per_tick": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await; // a tick that saw the pause

    // Every first fan still has a place, or gets the original one back with the kept token.
    let mut kept = 0;
    let mut restored = 0;
    let mut admitted = 0;
    let mut positions: HashMap<u64, u64> = HashMap::new();
    for (u, t) in users.iter().zip(&tokens) {
        let r = client
            .get(app.url("/v1/queue/status"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::OK => {
                let v: Value = r.json().await.unwrap();
                match v["position"].as_u64() {
                    Some(p) => {
                        positions.insert(seq_of(t), p);
                        kept += 1;
                    }
                    None => admitted += 1,
                }
            }
            StatusCode::GONE => {
                let r = join(&app, &client, u, Some(t)).await;
                assert_eq!(
                    r.status(),
                    StatusCode::CREATED,
                    "restored with the kept token"
                );
                let v: Value = r.json().await.unwrap();
                let again = v["queue_token"].as_str().unwrap();
                assert_eq!(seq_of(again), seq_of(t), "the original arrival number");
                restored += 1;
            }
            s => panic!("status after the failover: {s}"),
        }
    }
    // Order kept: positions rise with arrival numbers.
    let mut by_seq: Vec<(u64, u64)> = positions.into_iter().collect();
    by_seq.sort_unstable();
    assert!(
        by_seq.windows(2).all(|w| w[0].1 < w[1].1),
        "places keep their order"
    );
    eprintln!(
        "FAILOVER {url_kind}: answered again after {recovery:?}; {unavailable} × 503 with Retry-After, {ok} × 2xx, 0 other; \
         of {FANS} fans: {kept} kept their place, {admitted} admitted, {restored} restored by token; max admitted {max_admitted} ≤ {MAX_ACTIVE}",
        url_kind = if url.starts_with("redis-cluster") {
            "cluster"
        } else {
            "sentinel"
        },
    );
    app.stop().await;
}

/// Restarts a killed node when dropped, so the topology is whole for the next test even when
/// this one fails.
struct Revive(String);

impl Drop for Revive {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/redis-topology.sh"
            ))
            .args(["restart", &self.0])
            .output();
    }
}

fn port_of(killed: &str) -> String {
    killed
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("killed_port="))
        .expect("killed_port=… in the output")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/redis-topology.sh; run by scripts/test.sh"]
async fn cluster_failover_of_a_busy_line() {
    let url = url_from("QG_TEST_REDIS_URL_CLUSTER");
    line_survives_a_failover(url, |key| {
        port_of(&topology(&["kill-master-of", "--key", key]))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/redis-topology.sh; run by scripts/test.sh"]
async fn sentinel_failover_of_a_busy_line() {
    let url = url_from("QG_TEST_REDIS_URL_SENTINEL");
    line_survives_a_failover(url, |_| port_of(&topology(&["kill-sentinel-master"]))).await;
}
