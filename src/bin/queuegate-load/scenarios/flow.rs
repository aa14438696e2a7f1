//! The whole journey, many fans at once: join, admitted, dates, seats, hold, charge, pay.

use crate::client::{Conn, Error};
use crate::harness::*;
use crate::options::Options;
use hyper::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub async fn flow(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(1000);
    let dates = n.div_ceil(40).max(1);
    let concert = Arc::new(create_concert(o, dates, 700).await?);
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    let started = Instant::now();
    let requests = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let (req, lim) = (requests.clone(), limited.clone());
    let c2 = concert.clone();
    let paid = each(o.addr, o.connections, n, move |i, mut c| {
        let concert = c2.clone();
        let (requests, limited) = (req.clone(), lim.clone());
        async move {
            let r = journey(&mut c, &concert, i, &requests, &limited).await;
            (c, r)
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let paid = paid.into_iter().filter(|p| *p).count();
    let total = requests.load(Ordering::Relaxed);
    println!("== flow: {n} users, join -> admitted -> dates -> seats -> hold -> charge -> pay ==");
    println!(
        "journeys {n} in {:.2} s = {:.0} journeys/s, {total} requests = {:.0} req/s, {paid} seats paid",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "holds refused by the rate limit (waited Retry-After, went on): {}",
        limited.load(Ordering::Relaxed)
    );
    let mut ok = paid == n;
    if let Some(url) = &o.database_url {
        let db = queuegate::db::Db::connect_lazy(url, None, 2)?;
        ok &= invariants_hold(&db).await?;
    }
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// One fan's whole journey; true when a seat was paid.
async fn journey(
    c: &mut Conn,
    concert: &Concert,
    i: usize,
    requests: &AtomicUsize,
    limited: &AtomicUsize,
) -> Result<bool, Error> {
    let count = |k: usize| requests.fetch_add(k, Ordering::Relaxed);
    let (s, b) = c
        .post_json("/v1/users", None, &json!({"name": format!("flow fan {i}")}))
        .await?;
    expect(s, StatusCode::CREATED, &b, "create user")?;
    let u = json_body(&b)?;
    let (uid, utoken) = (
        u["user_id"].as_u64().ok_or("no id")?,
        u["user_token"].as_str().ok_or("no token")?.to_owned(),
    );
    let (s, b) = c
        .post_json(
            &format!("/v1/users/{uid}/balance/charge"),
            Some(&utoken),
            &json!({"amount": 5000}),
        )
        .await?;
    expect(s, StatusCode::OK, &b, "charge")?;
    let (s, b) = c
        .post_json(
            "/v1/queue",
            Some(&utoken),
            &json!({"concert_id": concert.id}),
        )
        .await?;
    expect(s, StatusCode::CREATED, &b, "join")?;
    let qt = json_body(&b)?["queue_token"]
        .as_str()
        .ok_or("no queue token")?
        .to_owned();
    count(3);
    let access = loop {
        let (s, b) = c.get("/v1/queue/status", Some(&qt)).await?;
        count(1);
        expect(s, StatusCode::OK, &b, "status")?;
        let v = json_body(&b)?;
        if v["status"] == "admitted" {
            break v["access_token"]
                .as_str()
                .ok_or("no access token")?
                .to_owned();
        }
        tokio::time::sleep(Duration::from_millis(
            v["poll_after_ms"].as_u64().unwrap_or(1000).min(200),
        ))
        .await;
    };
    let (s, b) = c
        .get(
            &format!("/v1/concerts/{}/schedules", concert.id),
            Some(&access),
        )
        .await?;
    expect(s, StatusCode::OK, &b, "schedules")?;
    count(1);
    // Spread fans over dates; within a date, try seats until one is free.
    let schedule = concert.schedules[i % concert.schedules.len()];
    for attempt in 0..60 {
        let (s, b) = c
            .get(&format!("/v1/schedules/{schedule}/seats"), Some(&access))
            .await?;
        expect(s, StatusCode::OK, &b, "seats")?;
        count(1);
        let seats = json_body(&b)?;
        let free: Vec<u64> = seats["seats"]
            .as_array()
            .ok_or("no seats")?
            .iter()
            .filter(|s| s["status"] == "available")
            .filter_map(|s| s["seat_no"].as_u64())
            .collect();
        let Some(&seat) = free.get((i + attempt) % free.len().max(1)) else {
            return Ok(false);
        };
        let (s, b) = c
            .post_json(
                "/v1/reservations",
                Some(&access),
                &json!({"schedule_id": schedule, "seat_no": seat}),
            )
            .await?;
        count(1);
        if s == StatusCode::CONFLICT {
            continue;
        }
        // A fan whose seat map is stale (listings come from a replica, which may lag) can
        // lose many seats in a row and reach the hold rate limit: like a real client, wait
        // as long as the answer says and go on.
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(c.retry_after.unwrap_or(1).min(10))).await;
            continue;
        }
        expect(s, StatusCode::CREATED, &b, "hold")?;
        let reservation = json_body(&b)?["reservation_id"]
            .as_u64()
            .ok_or("no reservation")?;
        let (s, b) = c
            .post_json(
                "/v1/payments",
                Some(&access),
                &json!({"reservation_id": reservation}),
            )
            .await?;
        count(1);
        expect(s, StatusCode::CREATED, &b, "pay")?;
        return Ok(true);
    }
    Ok(false)
}
