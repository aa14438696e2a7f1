//! Fault tests that break things for real: Redis servers SIGKILLed and restarted empty under
//! load, the gateway process SIGKILLed mid-payment, SIGTERM under load. Every test ends by
//! checking the database invariants (the same checks as `queuegate check`).
//!
//! The tests start their own Redis servers and gateway processes and stop them by PID (their
//! `Child` handles, also on drop). They also read process-wide Prometheus counters, so they
//! take turns even when the harness runs tests in parallel.

mod common;

use common::servers::{Gateway, RedisServer};
use common::{ADMIN_TOKEN, TestApp, User, metric_sum, spawn_with};
use futures::future::join_all;
use queuegate::domain::ConcertId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One fault test at a time: they kill processes and compare process-wide metric counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ACQUIRED: Option<(&str, &str)> = Some(("result", "acquired"));

/// Polls `cond` every 20 ms until it holds; fails the test after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let r = app
        .http
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/readyz answers");
    (r.status(), r.json().await.expect("/readyz is JSON"))
}

/// Waits until `/readyz` reports `k/n` lock masters.
async fn wait_redlock(app: &TestApp, expected: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("/readyz redlock = {expected}"),
        || async { readyz(app).await.1["redlock"] == expected },
    )
    .await;
}

async fn admit_all(app: &TestApp, users: &[User], concert: ConcertId) -> Vec<String> {
    let mut tokens = Vec::with_capacity(users.len());
    for u in users {
        tokens.push(app.admit(u, concert).await);
    }
    tokens
}

/// What one hold request got: (seat, status, error code).
type HoldOutcome = (u64, StatusCode, String);

/// Spawns one hold request per (access token, seat) and releases them all together; returns
/// once they are released, with each task answering (outcome, when it was answered).
async fn fire_holds(
    app: &TestApp,
    schedule: u64,
    requests: Vec<(String, u64)>,
) -> Vec<tokio::task::JoinHandle<(HoldOutcome, Instant)>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len() + 1));
    let handles = requests
        .into_iter()
        .map(|(token, seat)| {
            let barrier = barrier.clone();
            let http = app.http.clone();
            let url = app.url("/v1/reservations");
            tokio::spawn(async move {
                barrier.wait().await;
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(20))
                    .json(&json!({ "schedule_id": schedule, "seat_no": seat }))
                    .send()
                    .await
                    .expect("the gateway answers every hold");
                let status = r.status();
                let code = if status == StatusCode::CREATED {
                    String::new()
                } else {
                    let v: Value = r.json().await.unwrap_or_default();
                    v["error"]["code"].as_str().unwrap_or_default().to_owned()
                };
                ((seat, status, code), Instant::now())
            })
        })
        .collect();
    barrier.wait().await;
    handles
}

/// Fires a rush and collects its outcomes.
async fn rush(app: &TestApp, schedule: u64, requests: Vec<(String, u64)>) -> Vec<HoldOutcome> {
    let mut outcomes = Vec::new();
    for h in fire_holds(app, schedule, requests).await {
        outcomes.push(h.await.unwrap().0);
    }
    outcomes
}

/// Spreads the users over `seats`: user i asks for seat `seats[i % len]`.
fn spread(tokens: &[String], seats: &[u64]) -> Vec<(String, u64)> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), seats[i % seats.len()]))
        .collect()
}

/// Asserts a rush ended with exactly one 201 per seat, 409 SEAT_UNAVAILABLE for the rest and
/// exactly one live reservation per seat in the database.
async fn assert_one_winner_per_seat(
    app: &TestApp,
    schedule: u64,
    seats: &[u64],
    outcomes: &[HoldOutcome],
) {
    let server_errors: Vec<_> = outcomes.iter().filter(|o| o.1.is_server_error()).collect();
    assert!(
        server_errors.is_empty(),
        "5xx in the rush: {server_errors:?}"
    );
    let odd: Vec<_> = outcomes
        .iter()
        .filter(|(_, s, c)| {
            *s != StatusCode::CREATED && !(*s == StatusCode::CONFLICT && c == "SEAT_UNAVAILABLE")
        })
        .collect();
    assert!(
        odd.is_empty(),
        "only 201 or 409 SEAT_UNAVAILABLE expected: {odd:?}"
    );
    for seat in seats {
        let winners = outcomes
            .iter()
            .filter(|(s, st, _)| s == seat && *st == StatusCode::CREATED)
            .count();
        assert_eq!(winners, 1, "seat {seat}: exactly one 201");
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reservations
              WHERE schedule_id = ? AND seat_no = ? AND status IN ('held', 'confirmed')",
        )
        .bind(schedule)
        .bind(seat)
        .fetch_one(app.app.db.primary())
        .await
        .unwrap();
        assert_eq!(live, 1, "seat {seat}: exactly one live reservation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_three_lock_masters_dies_mid_rush_and_bookings_stay_exactly_once() {
    let _serial = SERIAL.lock().await;
    let mut masters = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    let app = spawn_with(&[("REDLOCK_URLS", &urls.join(","))]).await;
    wait_redlock(&app, "3/3").await;
    let concert = app.create_concert(1, 500).await;
    let schedule = concert.schedules[0];
    let users = app.create_users(200).await;
    let tokens = admit_all(&app, &users, concert.id).await;

    // Rush 1: 200 users on seats 1..=10 (20 per seat). The first half goes out, and while it
    // is in flight master 0 is SIGKILLed; then the second half goes out.
    let seats_1: Vec<u64> = (1..=10).collect();
    let plan = spread(&tokens, &seats_1);
    let (first, second) = plan.split_at(plan.len() / 2);
    let first_half = fire_holds(&app, schedule, first.to_vec()).await;
    let killed_at = Instant::now();
    masters[0].kill();
    let second_half = fire_holds(&app, schedule, second.to_vec()).await;
    let mut outcomes = Vec::new();
    let mut answered_after_kill = 0;
    for h in first_half {
        let (o, done) = h.await.unwrap();
        if done > killed_at {
            answered_after_kill += 1;
        }
        outcomes.push(o);
    }
    for h in second_half {
        outcomes.push(h.await.unwrap().0);
    }
    assert!(
        answered_after_kill > 0,
        "the kill should land while first-half requests are in flight"
    );
    assert_one_winner_per_seat(&app, schedule, &seats_1, &outcomes).await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    wait_redlock(&app, "2/3").await;

    // Rush 2 with 2 of 3 masters: the lock path still works (a majority answers), no fallback.
    let before = app.metrics_text().await;
    let seats_2: Vec<u64> = (11..=20).collect();
    let outcomes = rush(&app, schedule, spread(&tokens, &seats_2)).await;
    assert_one_winner_per_seat(&app, schedule, &seats_2, &outcomes).await;
    let after = app.metrics_text().await;
    let acquired = metric_sum(&after, "queuegate_lock_acquire_total", ACQUIRED)
        - metric_sum(&before, "queuegate_lock_acquire_total", ACQUIRED);
    let fallbacks = metric_sum(&after, "queuegate_lock_fallback_total", None)
        - metric_sum(&before, "queuegate_lock_fallback_total", None);
    assert!(
        acquired >= seats_2.len() as f64,
        "every winner took the Redlock with 2/3 masters (acquired {acquired})"
    );
    assert_eq!(fallbacks, 0.0, "2/3 masters is a quorum: no fallback");
    let (_, ready) = readyz(&app).await;
    assert_eq!(ready["redlock"], "2/3");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_three_lock_masters_down_falls_back_to_the_database_then_recovers() {
    let _serial = SERIAL.lock().await;
    let mut masters = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    let app = spawn_with(&[("REDLOCK_URLS", &urls.join(","))]).await;
    wait_redlock(&app, "3/3").await;
    let concert = app.create_concert(1, 500).await;
    let schedule = concert.schedules[0];
    let users = app.create_users(100).await;
    let tokens = admit_all(&app, &users, concert.id).await;

    masters[1].kill();
    masters[2].kill();
    wait_redlock(&app, "1/3").await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "readiness depends on the queue store and the database only: {ready}"
    );
    assert_eq!(ready["redis"], "ok");
    assert_eq!(ready["database"], "ok");

    // No quorum: every hold takes the database-only path, and the database alone still lets
    // exactly one request win each seat.
    let before = app.metrics_text().await;
    let seats_a: Vec<u64> = (1..=5).collect();
    let outcomes = rush(&app, schedule, spread(&tokens, &seats_a)).await;
    assert_one_winner_per_seat(&app, schedule, &seats_a, &outcomes).await;
    let after = app.metrics_text().await;
    let fallbacks = metric_sum(&after, "queuegate_lock_fallback_total", None)
        - metric_sum(&before, "queuegate_lock_fallback_total", None);
    assert!(
        fallbacks >= seats_a.len() as f64,
        "each winning hold took the fallback path (fallbacks {fallbacks})"
    );

    // The masters come back empty on the same ports; the lock path resumes by itself.
    masters[1].restart();
    masters[2].restart();
    wait_redlock(&app, "3/3").await;
    let before = app.metrics_text().await;
    let seats_b: Vec<u64> = (6..=10).collect();
    let outcomes = rush(&app, schedule, spread(&tokens, &seats_b)).await;
    assert_one_winner_per_seat(&app, schedule, &seats_b, &outcomes).await;
    let after = app.metrics_text().await;
    let acquired = metric_sum(&after, "queuegate_lock_acquire_total", ACQUIRED)
        - metric_sum(&before, "queuegate_lock_acquire_total", ACQUIRED);
    let fallbacks = metric_sum(&after, "queuegate_lock_fallback_total", None)
        - metric_sum(&before, "queuegate_lock_fallback_total", None);
    assert!(
        acquired >= seats_b.len() as f64,
        "after recovery every winner took the Redlock (acquired {acquired})"
    );
    assert_eq!(fallbacks, 0.0, "no fallback once the quorum is back");
    app.assert_invariants().await;
    app.stop().await;
}

async fn join_queue(app: &TestApp, user: &User, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/queue"))
        .bearer_auth(&user.token)
        .timeout(Duration::from_secs(5))
        .json(&body)
        .send()
        .await
        .expect("join answers")
}

async fn queue_status(app: &TestApp, queue_token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/queue/status"))
        .bearer_auth(queue_token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("status answers")
}

/// A waiting user's kept queue token and arrival number.
struct Kept {
    token: String,
    seq: u64,
}

/// Joins every user in order (admission paused) and returns their tokens and seqs.
async fn join_in_order(app: &TestApp, users: &[User], concert: ConcertId) -> Vec<Kept> {
    let mut kept = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let r = join_queue(app, u, json!({ "concert_id": concert.get() })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["position"], i as u64 + 1);
        let token = v["queue_token"].as_str().unwrap().to_owned();
        let seq = app.app.tokens.verify_queue(&token).unwrap().seq;
        kept.push(Kept { token, seq });
    }
    kept
}

/// Rejoins with the kept token once the store is back (polling through 503s, bounded);
/// asserts 201 and the original seq; returns the new queue token.
async fn restore(app: &TestApp, user: &User, concert: ConcertId, kept: &Kept) -> String {
    let body = json!({ "concert_id": concert.get(), "queue_token": kept.token });
    let started = Instant::now();
    loop {
        let r = join_queue(app, user, body.clone()).await;
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the queue store did not come back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(r.status(), StatusCode::CREATED, "a restored place is new");
        let v: Value = r.json().await.unwrap();
        let token = v["queue_token"].as_str().unwrap().to_owned();
        let seq = app.app.tokens.verify_queue(&token).unwrap().seq;
        assert_eq!(seq, kept.seq, "the original arrival number comes back");
        return token;
    }
}

/// An app whose queue store is a Redis server of our own, with 12 users waiting in line
/// (admission paused) and one more admitted to book.
struct QueueFixture {
    store: RedisServer,
    app: TestApp,
    concert: ConcertId,
    users: Vec<User>,
    kept: Vec<Kept>,
    access: String,
}

async fn queue_fixture(extra: &[(&str, &str)]) -> QueueFixture {
    let store = RedisServer::start();
    let url = store.url();
    let mut env = vec![
        ("REDIS_URL", url.as_str()),
        ("REDLOCK_URLS", url.as_str()),
        ("QUEUE_ADMIT_PER_TICK", "0"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_with(&env).await;
    let concert = app.create_concert(1, 100).await.id;
    let users = app.create_users(12).await;
    let kept = join_in_order(&app, &users, concert).await;
    let booker = app.create_user("booker").await;
    let access = app.admit(&booker, concert).await;
    QueueFixture {
        store,
        app,
        concert,
        users,
        kept,
        access,
    }
}

/// With the queue store down, sends at once what fans send (status polls, joins with and
/// without a kept token, a hold behind the booking gate, a leave); asserts every answer is 503
/// SERVICE_UNAVAILABLE with `Retry-After`. Returns each request's latency.
async fn send_while_store_down(f: &QueueFixture) -> Vec<(String, Duration)> {
    let app = &f.app;
    let cid = f.concert.get();
    let mut reqs: Vec<(String, reqwest::RequestBuilder)> = Vec::new();
    for (i, k) in f.kept.iter().enumerate() {
        let rb = app.http.get(app.url("/v1/queue/status"));
        reqs.push((format!("status {i}"), rb.bearer_auth(&k.token)));
    }
    for (i, u) in f.users.iter().enumerate().take(4) {
        let rb = app.http.post(app.url("/v1/queue")).bearer_auth(&u.token);
        let body = json!({ "concert_id": cid, "queue_token": f.kept[i].token });
        reqs.push((format!("join {i} with its token"), rb.json(&body)));
        let rb = app.http.post(app.url("/v1/queue")).bearer_auth(&u.token);
        reqs.push((format!("join {i}"), rb.json(&json!({ "concert_id": cid }))));
    }
    let rb = app
        .http
        .post(app.url("/v1/reservations"))
        .bearer_auth(&f.access);
    let body = json!({ "schedule_id": 1, "seat_no": 1 });
    reqs.push(("hold".into(), rb.json(&body)));
    let rb = app.http.delete(app.url("/v1/queue"));
    reqs.push(("leave".into(), rb.bearer_auth(&f.kept[11].token)));
    join_all(reqs.into_iter().map(|(what, rb)| async move {
        let started = Instant::now();
        let r = rb
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer while the store is down: {e}"));
        let elapsed = started.elapsed();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(
            r.headers().contains_key("retry-after"),
            "{what}: 503 without Retry-After"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "SERVICE_UNAVAILABLE", "{what}: {v}");
        (what, elapsed)
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_redis_restart_answers_503_then_restores_seats_from_tokens() {
    let _serial = SERIAL.lock().await;
    let mut f = queue_fixture(&[]).await;
    f.store.kill();
    let latencies = send_while_store_down(&f).await;
    let slowest = latencies.iter().map(|(_, d)| *d).max().unwrap();
    eprintln!("queue store down: slowest 503 after {slowest:?}");
    let QueueFixture {
        mut store,
        app,
        concert,
        users,
        kept,
        ..
    } = f;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["redis"], "down");
    assert_eq!(ready["database"], "ok");

    // Back, empty. A newcomer joins first; then the kept tokens come back in reverse order.
    store.restart();
    let newcomer = app.create_user("after the loss").await;
    let back = Instant::now();
    let newcomer_token = loop {
        let r = join_queue(&app, &newcomer, json!({ "concert_id": concert.get() })).await;
        if r.status() == StatusCode::CREATED {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["position"], 1, "alone in the emptied line");
            break v["queue_token"].as_str().unwrap().to_owned();
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "the queue store did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut restored = vec![String::new(); users.len()];
    for i in (0..users.len()).rev() {
        restored[i] = restore(&app, &users[i], concert, &kept[i]).await;
    }
    // Positions follow the original order, ahead of the newcomer.
    for (i, t) in restored.iter().enumerate() {
        let r = queue_status(&app, t).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "waiting", "user {i}");
        assert_eq!(
            v["position"],
            i as u64 + 1,
            "user {i} keeps the original turn"
        );
    }
    let v: Value = queue_status(&app, &newcomer_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["position"], users.len() as u64 + 1, "newcomer after them");
    // Restoring is idempotent: the same token again is the place the user has (200, same seq).
    let body = json!({ "concert_id": concert.get(), "queue_token": kept[0].token });
    let r = join_queue(&app, &users[0], body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["position"], 1);
    let again = app
        .app
        .tokens
        .verify_queue(v["queue_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(again.seq, kept[0].seq);
    eventually(Duration::from_secs(5), "/readyz 200 again", || async {
        readyz(&app).await.0 == StatusCode::OK
    })
    .await;
    app.assert_invariants().await;
    app.stop().await;
}

/// The contract's "503 with Retry-After, not a hang" means fail fast: a fan's request must
/// not wait out a Redis command timeout while the queue store is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_redis_down_answers_503_within_a_second() {
    let _serial = SERIAL.lock().await;
    let mut f = queue_fixture(&[]).await;
    f.store.kill();
    let slow: Vec<(String, Duration)> = send_while_store_down(&f)
        .await
        .into_iter()
        .filter(|(_, d)| *d >= Duration::from_secs(1))
        .collect();
    assert!(slow.is_empty(), "503s must come within 1 s: {slow:?}");
    let started = Instant::now();
    let (status, _) = readyz(&f.app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/readyz is quick"
    );
    // The queue Redis stays down: the events stream cannot be read, the database can.
    f.app.assert_db_invariants().await;
    f.app.stop().await;
}

/// After the queue store lost its data the line must move again once places are restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_resumes_after_the_queue_redis_lost_its_data() {
    let _serial = SERIAL.lock().await;
    let mut f = queue_fixture(&[("QUEUE_TICK_MS", "100")]).await;
    f.store.restart();
    let mut restored = Vec::new();
    for (u, k) in f.users.iter().zip(&f.kept).take(3) {
        restored.push(restore(&f.app, u, f.concert, k).await);
    }
    let r = f
        .app
        .http
        .put(
            f.app
                .url(&format!("/v1/admin/concerts/{}/queue", f.concert)),
        )
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "admit_per_tick": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (i, t) in restored.iter().enumerate() {
        eventually(
            Duration::from_secs(3),
            &format!("restored user {i} admitted"),
            || async {
                let v: Value = queue_status(&f.app, t).await.json().await.unwrap();
                v["status"] == "admitted"
            },
        )
        .await;
    }
    f.app.assert_invariants().await;
    f.app.stop().await;
}

/// The environment a child gateway needs to share `app`'s database, Redis keys and signing key.
fn shared_env(app: &TestApp, redis: &RedisServer) -> Vec<(&'static str, String)> {
    let s = &app.app.settings;
    vec![
        ("DATABASE_URL", app.database_url()),
        ("REDIS_URL", redis.url()),
        ("REDLOCK_URLS", redis.url()),
        ("REDIS_KEY_PREFIX", s.redis_key_prefix.clone()),
        ("JWT_SECRET", s.jwt_secret.expose().to_owned()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "40".to_owned()),
        ("SWEEP_INTERVAL_SECS", "3600".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_killed_mid_payment_leaves_no_half_payment_and_retries_complete_cleanly() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let app = spawn_with(&[("REDIS_URL", &redis.url()), ("REDLOCK_URLS", &redis.url())]).await;
    let mut child = Gateway::start(&shared_env(&app, &redis)).await;

    const N: usize = 30;
    const PRICE: i64 = 2_500;
    const FUNDS: i64 = 10_000;
    let concert = app.create_concert(1, PRICE).await;
    let schedule = concert.schedules[0];
    let users = app.create_users(N).await;
    join_all(users.iter().map(|u| app.charge(u, FUNDS))).await;
    let tokens = admit_all(&app, &users, concert.id).await;
    let mut reservations = Vec::with_capacity(N);
    for (i, t) in tokens.iter().enumerate() {
        let r = app.hold(t, schedule, i as u64 + 1).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        reservations.push(v["reservation_id"].as_u64().unwrap());
    }
    let keys: Vec<String> = (0..N)
        .map(|i| format!("pay-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();

    // All payments at once against the child; SIGKILL it as soon as the first one is answered.
    let http = reqwest::Client::new();
    let (answered, mut first_answer) = tokio::sync::mpsc::unbounded_channel::<()>();
    let barrier = Arc::new(tokio::sync::Barrier::new(N + 1));
    let attempts: Vec<_> = (0..N)
        .map(|i| {
            let (http, barrier, answered) = (http.clone(), barrier.clone(), answered.clone());
            let url = child.url("/v1/payments");
            let (token, key, reservation) = (tokens[i].clone(), keys[i].clone(), reservations[i]);
            tokio::spawn(async move {
                barrier.wait().await;
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", key)
                    .timeout(Duration::from_secs(20))
                    .json(&json!({ "reservation_id": reservation }))
                    .send()
                    .await
                    .ok()?;
                let status = r.status();
                let body: Value = r.json().await.ok()?;
                let _ = answered.send(());
                Some((status, body))
            })
        })
        .collect();
    barrier.wait().await;
    tokio::time::timeout(Duration::from_secs(20), first_answer.recv())
        .await
        .expect("the child answers a payment")
        .expect("an answer");
    child.kill();
    let firsts: Vec<Option<(StatusCode, Value)>> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (i, f) in firsts.iter().enumerate() {
        if let Some((status, body)) = f {
            assert_eq!(*status, StatusCode::CREATED, "payment {i}: {body}");
        }
    }

    // What the database says the child committed before it died, once the server has ended
    // every transaction of the dead process (a COMMIT already on the wire still commits).
    wait_transactions(
        &app,
        "the dead gateway's transactions end",
        <[String]>::is_empty,
    )
    .await;
    let rows: Vec<(u64, u64)> = sqlx::query_as("SELECT reservation_id, id FROM payments")
        .fetch_all(app.app.db.primary())
        .await
        .unwrap();
    let committed: HashMap<u64, u64> = rows.into_iter().collect();
    for (i, f) in firsts.iter().enumerate() {
        if let Some((_, body)) = f {
            assert_eq!(
                committed.get(&reservations[i]).copied(),
                body["payment_id"].as_u64(),
                "payment {i} was answered 201, so it is committed"
            );
        }
    }
    let answered_n = firsts.iter().filter(|f| f.is_some()).count();
    eprintln!(
        "mid-payment kill: {answered_n} of {N} answered, {} committed, {} cut before commit",
        committed.len(),
        N - committed.len()
    );
    assert!(
        committed.len() < N || answered_n < N,
        "the kill landed after everything was done; the test proved nothing"
    );

    // Retry every payment with its key on the surviving instance.
    for i in 0..N {
        let r = app.pay(&tokens[i], reservations[i], Some(&keys[i])).await;
        let status = r.status();
        let replayed = r
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let body: Value = r.json().await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "retry {i}: {status} {body}"
        );
        let was_committed = committed.get(&reservations[i]).copied();
        assert_eq!(
            replayed,
            was_committed.is_some(),
            "retry {i} replays iff the first attempt committed: {body}"
        );
        if let Some(id) = was_committed {
            assert_eq!(
                body["payment_id"].as_u64(),
                Some(id),
                "retry {i}: first result"
            );
        }
        if let Some((_, first)) = &firsts[i] {
            assert_eq!(&body, first, "retry {i}: the very first answer, verbatim");
        }
        let paid: Vec<u64> = sqlx::query_scalar("SELECT id FROM payments WHERE reservation_id = ?")
            .bind(reservations[i])
            .fetch_all(app.app.db.primary())
            .await
            .unwrap();
        assert_eq!(paid.len(), 1, "reservation {i}: exactly one payment");
        assert_eq!(body["payment_id"].as_u64(), Some(paid[0]));
        assert_eq!(body["amount"], PRICE);
        assert_eq!(body["balance"], FUNDS - PRICE);
        // Once more: now certainly a replay of the same result.
        let r = app.pay(&tokens[i], reservations[i], Some(&keys[i])).await;
        assert!(r.headers().contains_key("idempotent-replayed"));
        assert_eq!(r.json::<Value>().await.unwrap(), body, "retry {i} again");
    }
    let confirmed: i64 = app
        .scalar_i64(
            "SELECT COUNT(*) FROM reservations WHERE schedule_id = ? AND status = 'confirmed'",
            schedule,
        )
        .await;
    assert_eq!(confirmed, N as i64, "every reservation is confirmed once");
    for u in &users {
        assert_eq!(app.balance(u).await, FUNDS - PRICE, "debited exactly once");
    }
    app.assert_invariants().await;
    app.stop().await;
}

/// States of the open InnoDB transactions on this app's database (`RUNNING`, `LOCK WAIT`, …).
///
/// InnoDB refreshes the INNODB_TRX snapshot only once the table went unread for 100 ms, so
/// callers poll this no faster than every 150 ms.
async fn db_transactions(app: &TestApp) -> Vec<String> {
    let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT CAST(t.trx_state AS CHAR), CAST(p.DB AS CHAR)
           FROM information_schema.INNODB_TRX t
           JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id",
    )
    .fetch_all(app.app.db.primary())
    .await
    .unwrap();
    rows.into_iter()
        .filter(|(_, db)| db.as_deref() == Some(app.db_name.as_str()))
        .filter_map(|(state, _)| state)
        .collect()
}

/// Polls (every 150 ms, bounded) until `cond` holds for the app's open transactions.
async fn wait_transactions(app: &TestApp, what: &str, cond: impl Fn(&[String]) -> bool) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let trx = db_transactions(app).await;
        if cond(&trx) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what} (open transactions: {trx:?})"
        );
    }
}

/// One request of the SIGTERM load.
struct Sent {
    id: String,
    hold: bool,
    at: Instant,
    /// The status, or `None` when the connection failed before a full answer.
    status: Option<StatusCode>,
    refused: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_in_flight_requests_without_5xx() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let app = spawn_with(&[
        ("REDIS_URL", &redis.url()),
        ("REDLOCK_URLS", &redis.url()),
        ("QUEUE_ADMIT_PER_TICK", "0"),
    ])
    .await;
    let mut env = shared_env(&app, &redis);
    env.push(("SHUTDOWN_GRACE_SECS", "3".to_owned()));
    env.push(("QUEUE_ADMIT_PER_TICK", "0".to_owned()));
    let mut child = Gateway::start(&env).await;

    const WORKERS: usize = 32;
    // Workers use the first four dates; the fifth is the slow request's.
    let concert = app.create_concert(5, 100).await;
    let users = app.create_users(WORKERS).await;
    // Even workers poll their place in line; odd ones hold random seats.
    let mut creds = Vec::new();
    for (w, u) in users.iter().enumerate() {
        if w % 2 == 0 {
            let r = join_queue(&app, u, json!({ "concert_id": concert.id.get() })).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let v: Value = r.json().await.unwrap();
            creds.push(v["queue_token"].as_str().unwrap().to_owned());
        } else {
            creds.push(app.admit(u, concert.id).await);
        }
    }

    // One request certainly in a handler when the signal comes: a hold whose user row this
    // test keeps locked in the database until the shutdown has begun.
    let slow_user = app.create_user("slow").await;
    let slow_access = app.admit(&slow_user, concert.id).await;
    let mut row_lock = app.app.db.primary().begin().await.unwrap();
    sqlx::query("SELECT id FROM users WHERE id = ? FOR UPDATE")
        .bind(slow_user.id.get())
        .execute(&mut *row_lock)
        .await
        .unwrap();
    let slow = {
        let url = child.url("/v1/reservations");
        let body = json!({ "schedule_id": concert.schedules[4], "seat_no": 1 });
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(slow_access)
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await
                .expect("the request in flight at SIGTERM is answered");
            (r.status(), Instant::now())
        })
    };
    wait_transactions(&app, "the slow hold waits on the row lock", |trx| {
        trx.iter().filter(|s| *s == "LOCK WAIT").count() == 1
    })
    .await;

    let answered = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = creds
        .into_iter()
        .enumerate()
        .map(|(w, cred)| {
            let base = child.base.clone();
            let schedules = concert.schedules.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                // One client per worker: its own keep-alive connection.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut sent = Vec::new();
                for n in 0u64.. {
                    // Bounded whatever happens to the server.
                    if started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    let id = format!("w{w}-{n}");
                    let hold = w % 2 == 1;
                    let req = if hold {
                        let pick = (w as u64 * 7919 + n * 104_729) % 200;
                        http.post(format!("{base}/v1/reservations")).json(&json!({
                            "schedule_id": schedules[(pick / 50) as usize],
                            "seat_no": pick % 50 + 1,
                        }))
                    } else {
                        http.get(format!("{base}/v1/queue/status"))
                    };
                    let at = Instant::now();
                    let result = req
                        .bearer_auth(&cred)
                        .header("x-request-id", &id)
                        .send()
                        .await;
                    let (status, refused) = match result {
                        // A full answer: status and the whole body.
                        Ok(r) => {
                            let s = r.status();
                            (r.bytes().await.ok().map(|_| s), false)
                        }
                        Err(e) => (None, e.is_connect()),
                    };
                    if status.is_some() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.push(Sent {
                        id,
                        hold,
                        at,
                        status,
                        refused,
                    });
                    if refused {
                        break;
                    }
                }
                sent
            })
        })
        .collect();

    // About a second of steady load, then SIGTERM.
    eventually(Duration::from_secs(10), "a second of load", || async {
        started.elapsed() >= Duration::from_secs(1) && answered.load(Ordering::Relaxed) >= 200
    })
    .await;
    let signalled = Instant::now();
    child.terminate();
    // Once the gateway has begun shutting down, let the slow hold go on.
    eventually(Duration::from_secs(3), "the shutdown is logged", || async {
        child.log_text().contains("shutdown requested")
    })
    .await;
    row_lock.rollback().await.unwrap();
    let (slow_status, slow_answered) = slow.await.unwrap();
    assert_eq!(
        slow_status,
        StatusCode::CREATED,
        "the hold in flight at SIGTERM completes"
    );
    assert!(slow_answered > signalled);
    let exit = child.wait_exit(Duration::from_secs(3 + 2)).await;
    let exit_after = signalled.elapsed();
    let sent: Vec<Sent> = join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let exit = exit.unwrap_or_else(|| panic!("still running {exit_after:?} after SIGTERM"));
    assert!(exit.success(), "exit status after SIGTERM: {exit}");
    assert!(
        std::net::TcpStream::connect(child.addr).is_err(),
        "connections are refused once it is gone"
    );

    // What the server says it answered, and which of those it answered while draining.
    let log = child.log_json();
    let shutdown_line = log
        .iter()
        .position(|l| l["message"] == "shutdown requested")
        .expect("the shutdown is logged");
    let served: Vec<(usize, String)> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l["message"] == "served")
        .filter_map(|(i, l)| Some((i, l["span"]["request_id"].as_str()?.to_owned())))
        .collect();
    let served_ids: HashSet<&str> = served.iter().map(|(_, id)| id.as_str()).collect();
    let drained = served.iter().filter(|(i, _)| *i > shutdown_line).count();

    let before: Vec<&Sent> = sent.iter().filter(|s| s.at < signalled).collect();
    let answered_before = before.iter().filter(|s| s.status.is_some()).count();
    let server_errors: Vec<_> = sent
        .iter()
        .filter_map(|s| {
            s.status
                .filter(|st| st.is_server_error())
                .map(|st| (&s.id, st))
        })
        .collect();
    let lost: Vec<&str> = sent
        .iter()
        .filter(|s| s.status.is_none() && !s.refused)
        .map(|s| s.id.as_str())
        .collect();
    let lost_before: Vec<&str> = before
        .iter()
        .filter(|s| s.status.is_none())
        .map(|s| s.id.as_str())
        .collect();
    eprintln!(
        "SIGTERM under load: {} requests, {answered_before} answered before the signal, \
         {drained} served while draining, {} cut on idle connections, exit after {exit_after:?}",
        sent.len(),
        lost.len()
    );
    assert!(answered_before >= 200, "the load was real");
    assert!(
        server_errors.is_empty(),
        "5xx during shutdown: {server_errors:?}"
    );
    assert!(
        drained > 0,
        "requests in flight at the signal (at least the slow hold) finish after it"
    );
    // The log names exactly the requests that were answered (so the checks below have teeth) ...
    let not_logged: Vec<&str> = sent
        .iter()
        .filter(|s| s.status.is_some() && !served_ids.contains(s.id.as_str()))
        .map(|s| s.id.as_str())
        .collect();
    assert!(
        not_logged.is_empty(),
        "answered but not in the server's log: {not_logged:?}"
    );
    // ... every request a handler served reached its client (nothing cut off mid-flight) ...
    let unanswered_but_served: Vec<&str> = lost
        .iter()
        .copied()
        .filter(|id| served_ids.contains(id))
        .collect();
    assert!(
        unanswered_but_served.is_empty(),
        "served but never delivered: {unanswered_but_served:?}"
    );
    // ... and the only requests sent before the signal without an answer are those that were
    // still in transit on an idle keep-alive connection when the server closed it (HTTP/1.1
    // lets a server close an idle connection; the request never reached a handler). That is
    // at most one per connection.
    assert!(
        lost_before.len() <= WORKERS,
        "more unanswered requests than connections: {lost_before:?}"
    );
    let refused_before: Vec<&str> = before
        .iter()
        .filter(|s| s.refused)
        .map(|s| s.id.as_str())
        .collect();
    assert!(
        refused_before.is_empty(),
        "refused before the signal: {refused_before:?}"
    );
    // Holds: every reservation in the database was answered 201 to its client.
    let holds_201 = sent
        .iter()
        .filter(|s| s.hold && s.status == Some(StatusCode::CREATED))
        .count();
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reservations")
        .fetch_one(app.app.db.primary())
        .await
        .unwrap();
    assert_eq!(
        held,
        holds_201 as i64 + 1,
        "every hold the database took was answered 201 (the workers' and the slow one)"
    );
    app.assert_invariants().await;
    app.stop().await;
}
