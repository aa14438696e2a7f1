//! Throughput of the hot routes against the machine's HTTP ceiling: `baseline` (/healthz),
//! `poll` (queue status) and `join`.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn baseline(o: &Options) -> Result<bool, Error> {
    let (mut rec, elapsed) =
        measure_as_asked(o, o.requests, o.duration, |_| Spec::get("/healthz", None)).await?;
    let s = rec.summary("baseline: GET /healthz", elapsed);
    s.print();
    let ok = rec.status(200) == rec.count() && rec.transport_errors == 0;
    println!(
        "verdict     {}",
        if ok { "PASS every answer 200" } else { "FAIL" }
    );
    Ok(ok)
}

pub async fn poll(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = minted_users(o, n)?;
    let t = Instant::now();
    let tokens = Arc::new(join_all(o, concert.id, &users).await?);
    println!(
        "setup: {n} users joined in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let tk = tokens.clone();
    let (mut rec, elapsed) = measure_as_asked(o, o.requests, o.duration, move |i| {
        Spec::get("/v1/queue/status", Some(tk[i % tk.len()].clone()))
    })
    .await?;
    rec.summary(
        &format!("poll: {n} waiting users, {} connections", o.connections),
        elapsed,
    )
    .print();
    let view = set_queue(o, concert.id, json!({})).await?;
    let ok = rec.status(200) == rec.count() && view["waiting"] == n as u64;
    println!(
        "verdict     {} (all 200: {}, still waiting: {})",
        if ok { "PASS" } else { "FAIL" },
        rec.status(200) == rec.count(),
        view["waiting"]
    );
    Ok(ok)
}

/// Sets up `poll`'s line for an outside client: the users join a paused concert and their
/// queue tokens are written to `--out`. The verdict is that every one of them is waiting.
pub async fn waiting(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(1_000);
    let out = o.out.as_deref().ok_or("waiting needs --out FILE")?;
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = minted_users(o, n)?;
    let tokens = join_all(o, concert.id, &users).await?;
    let lines: Vec<&str> = tokens.iter().map(|t| &**t).collect();
    std::fs::write(out, lines.join("\n") + "\n").map_err(|e| format!("{out}: {e}"))?;
    let view = set_queue(o, concert.id, json!({})).await?;
    let ok = view["waiting"] == n as u64;
    println!(
        "waiting: concert {} with {} waiting; {n} queue tokens in {out}",
        concert.id, view["waiting"]
    );
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

pub async fn join(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(100_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = Arc::new(minted_users(o, n)?);
    let id = concert.id;
    let body = Bytes::from(json!({ "concert_id": id }).to_string());
    let u = users.clone();
    let (mut rec, elapsed) =
        measure_as_asked(o, n, o.duration.max(Duration::from_secs(120)), move |i| {
            Spec {
                method: Method::POST,
                path: "/v1/queue".into(),
                token: Some(u[i].clone()),
                body: Some(body.clone()),
            }
        })
        .await?;
    rec.summary(
        &format!("join: {n} distinct users, {} connections", o.connections),
        elapsed,
    )
    .print();
    let view = set_queue(o, concert.id, json!({})).await?;
    let ok = rec.status(201) == n as u64 && view["waiting"] == n as u64;
    println!(
        "verdict     {} (201s: {}, waiting now: {})",
        if ok {
            "PASS every join is one place"
        } else {
            "FAIL"
        },
        rec.status(201),
        view["waiting"]
    );
    Ok(ok)
}
