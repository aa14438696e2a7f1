//! Seat rushes: everyone after the same seat (`rush-one`) or random seats (`rush-many`); the
//! verdict comes from the database.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 10,000 admitted users hold seats at once: all the same seat (`one`), or random seats.
pub async fn rush(o: &Options, one: bool) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 1000).await?;
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    let t = Instant::now();
    let users = created_users(o, n).await?;
    let user_tokens: Vec<Arc<str>> = users.iter().map(|(_, t)| t.clone()).collect();
    let queue_tokens = join_all(o, concert.id, &user_tokens).await?;
    let access = Arc::new(wait_admitted(o, &queue_tokens).await?);
    println!(
        "setup: {n} users created, queued and admitted in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let before = metrics_page(o).await?;
    let schedule = concert.schedules[0];
    // Seats for rush-many: a fixed pseudo-random pick per user.
    let seat_of = move |i: usize| {
        if one {
            7
        } else {
            (i.wrapping_mul(2654435761) >> 7) % 50 + 1
        }
    };
    let conns = o.connections.max(256).min(n);
    let a = access.clone();
    let (mut rec, elapsed) = measure(o.addr, conns, n, o.duration, move |i| Spec {
        method: Method::POST,
        path: "/v1/reservations".into(),
        token: Some(a[i].clone()),
        body: Some(Bytes::from(
            json!({"schedule_id": schedule, "seat_no": seat_of(i)}).to_string(),
        )),
    })
    .await?;
    let after = metrics_page(o).await?;
    let title = if one {
        "rush-one: every user holds seat 7"
    } else {
        "rush-many: every user holds a random seat"
    };
    rec.summary(
        &format!("{title} ({n} users, {conns} connections)"),
        elapsed,
    )
    .print();

    let locks = metric_sum(&after, "queuegate_lock_acquire_total", None)
        - metric_sum(&before, "queuegate_lock_acquire_total", None);
    let early = metric_sum(&after, "queuegate_holds_total", Some("rejected_early"))
        - metric_sum(&before, "queuegate_holds_total", Some("rejected_early"));
    let fallbacks = metric_sum(&after, "queuegate_lock_fallback_total", None)
        - metric_sum(&before, "queuegate_lock_fallback_total", None);
    println!(
        "cost        lock attempts {locks:.0}, rejected before any lock {early:.0}, db-only fallbacks {fallbacks:.0}"
    );

    let wanted = if one { 1 } else { 50 };
    let mut ok = rec.status(201) == wanted
        && rec.status(409) == n as u64 - wanted
        && rec.server_errors() == 0;
    if one {
        ok &= elapsed <= Duration::from_secs(2);
    }
    if let Some(url) = &o.database_url {
        let db = queuegate::db::Db::connect_lazy(url, None, 2)?;
        let live: Vec<(u8, i64)> = sqlx::query_as(
            "SELECT seat_no, COUNT(*) FROM reservations WHERE schedule_id = ? AND status IN ('held', 'confirmed') GROUP BY seat_no",
        )
        .bind(schedule)
        .fetch_all(db.primary())
        .await?;
        let total: i64 = live.iter().map(|(_, c)| c).sum();
        let one_each = live.iter().all(|(_, c)| *c == 1);
        println!(
            "database    {} seats held, {} live reservations, one per seat: {one_each}",
            live.len(),
            total
        );
        ok &= total == wanted as i64 && one_each;
        ok &= invariants_hold(&db).await?;
    }
    println!(
        "verdict     {} ({} x 201, {} x 409, {} x 5xx, all answered in {:.2} s)",
        if ok { "PASS" } else { "FAIL" },
        rec.status(201),
        rec.status(409),
        rec.server_errors(),
        elapsed.as_secs_f64()
    );
    Ok(ok)
}
