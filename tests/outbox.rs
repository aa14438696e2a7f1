//! The transactional outbox and the booking events stream, against real MariaDB and Redis:
//! every booking change writes its event in its own transaction (and a rolled-back one writes
//! none); the relay publishes each event once, in commit order per reservation, with several
//! instances at work; a gateway process killed between a payment's commit and the revocation
//! loses that access within 2 s through another instance; a queue Redis outage during a
//! booking flow loses no event.
//!
//! The tests here compare process-wide metrics (the lag gauge, relay counters), so they take
//! turns even when the harness runs tests in parallel.

mod common;

use common::servers::{Gateway, RedisServer};
use common::{ADMIN_TOKEN, TestApp, User, metric_sum, spawn_app, spawn_with};
use fred::interfaces::ClientLike;
use queuegate::booking::keys::SeatKeys;
use queuegate::booking::seat_board::SeatBoard;
use queuegate::domain::{ScheduleId, SeatNo};
use queuegate::outbox::stream::Entry;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

async fn created(r: reqwest::Response, what: &str) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "{what}: {body}");
    body
}

async fn hold_id(app: &TestApp, access: &str, schedule: u64, seat: u64) -> u64 {
    let v = created(app.hold(access, schedule, seat).await, "hold").await;
    v["reservation_id"].as_u64().unwrap()
}

/// Makes a hold's end lie in the past (as if its time ran out) and clears its seat marker.
async fn expire_now(app: &TestApp, reservation: u64, schedule: u64, seat: u64) {
    sqlx::query("UPDATE reservations SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE id = ?")
        .bind(reservation)
        .execute(app.app.db.primary())
        .await
        .unwrap();
    let board = SeatBoard::new(
        app.app.queue.store().pool().clone(),
        SeatKeys::new(app.app.settings.redis_key_prefix.clone()),
    );
    board
        .clear(
            ScheduleId::new(schedule).unwrap(),
            SeatNo::new(seat).unwrap(),
        )
        .await;
}

/// The stream holds exactly the outbox's events, each once, and every reservation's events in
/// the order of its outbox rows (= commit order). Returns the number of events.
async fn assert_stream_matches_outbox(app: &TestApp) -> usize {
    let rows: Vec<(String, String, Option<u64>)> = sqlx::query_as(
        "SELECT event_id, CAST(event_type AS CHAR), reservation_id FROM outbox ORDER BY id",
    )
    .fetch_all(app.app.db.primary())
    .await
    .unwrap();
    let entries = app.events().all().await.unwrap();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        *times.entry(e.event_id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events in the stream twice: {twice:?}");
    let missing: Vec<_> = rows
        .iter()
        .filter(|(id, _, _)| !times.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "events not in the stream: {missing:?}");
    assert_eq!(
        entries.len(),
        rows.len(),
        "nothing in the stream but the outbox's events"
    );
    let mut by_outbox: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (_, kind, r) in &rows {
        if let Some(r) = r {
            by_outbox.entry(*r).or_default().push(kind.as_str());
        }
    }
    let mut by_stream: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for e in &entries {
        if let Some(r) = e.reservation_id() {
            by_stream.entry(r).or_default().push(e.kind.as_str());
        }
    }
    assert_eq!(
        by_stream, by_outbox,
        "each reservation's events in commit order"
    );
    rows.len()
}

fn kinds(entries: &[Entry]) -> Vec<(String, u64)> {
    entries
        .iter()
        .map(|e| {
            let subject = e.reservation_id().or(e.user_id()).unwrap_or(0);
            (e.kind.clone(), subject)
        })
        .collect()
}

fn ev(kind: &str, subject: u64) -> (String, u64) {
    (kind.to_owned(), subject)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_booking_change_is_one_event_written_in_its_own_transaction() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let concert = app.create_concert(1, 1000).await;
    let s = concert.schedules[0];
    let (u, v, w) = (
        app.create_user("u").await,
        app.create_user("v").await,
        app.create_user("w").await,
    );
    app.charge(&u, 5000).await;
    app.charge(&v, 300).await;
    app.charge(&w, 2000).await;
    let (au, av, aw) = (
        app.admit(&u, concert.id).await,
        app.admit(&v, concert.id).await,
        app.admit(&w, concert.id).await,
    );
    // Held, then cancelled by its owner.
    let r1 = hold_id(&app, &au, s, 1).await;
    let r = app.cancel(&au, r1).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Held; someone else's attempt on the same seat rolls back and leaves no event.
    let r2 = hold_id(&app, &au, s, 2).await;
    assert_eq!(app.hold(&av, s, 2).await.status(), StatusCode::CONFLICT);
    // Expired by the sweep.
    let r3 = hold_id(&app, &au, s, 3).await;
    expire_now(&app, r3, s, 3).await;
    assert_eq!(
        queuegate::booking::sweep::run_once(&app.app.db)
            .await
            .unwrap(),
        1
    );
    // Expired by the next hold of the seat, which retires it in its own transaction.
    let r4 = hold_id(&app, &au, s, 4).await;
    expire_now(&app, r4, s, 4).await;
    let r4v = hold_id(&app, &av, s, 4).await;
    // Not enough money: the payment rolls back, no event.
    assert_eq!(
        app.pay(&av, r4v, None).await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    // Paying r2 ends u's access: u's other hold (r5) is released in the same transaction.
    let r5 = hold_id(&app, &au, s, 5).await;
    created(app.pay(&au, r2, None).await, "pay r2").await;
    // A checkout of two holds: one payment.completed per payment row.
    let r6 = hold_id(&app, &aw, s, 6).await;
    let r7 = hold_id(&app, &aw, s, 7).await;
    let r = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&aw)
        .json(&json!({ "reservation_ids": [r7, r6] }))
        .send()
        .await
        .unwrap();
    created(r, "checkout").await;

    app.wait_outbox_drained(Duration::from_secs(10)).await;
    let entries = app.events().all().await.unwrap();
    let expected = vec![
        ev("wallet.charged", u.id.get()),
        ev("wallet.charged", v.id.get()),
        ev("wallet.charged", w.id.get()),
        ev("reservation.held", r1),
        ev("reservation.cancelled", r1),
        ev("reservation.held", r2),
        ev("reservation.held", r3),
        ev("reservation.expired", r3),
        ev("reservation.held", r4),
        ev("reservation.expired", r4),
        ev("reservation.held", r4v),
        ev("reservation.held", r5),
        ev("payment.completed", r2),
        ev("reservation.cancelled", r5),
        ev("reservation.held", r6),
        ev("reservation.held", r7),
        // The checkout locks (and pays) in id order.
        ev("payment.completed", r6),
        ev("payment.completed", r7),
    ];
    assert_eq!(kinds(&entries), expected);

    // The data fields, exactly as the contract names them.
    let cid = concert.id.get();
    let held = &entries[5].data;
    let at = held["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(
        held,
        &json!({"reservation_id": r2, "user_id": u.id.get(), "concert_id": cid,
                "schedule_id": s, "seat_no": 2, "amount": 1000, "at": at})
    );
    let paid = &entries[12].data;
    assert_eq!(paid["reservation_id"], r2);
    assert_eq!(paid["amount"], 1000);
    assert_eq!(paid["concert_id"], cid);
    assert_eq!(
        paid.as_object().unwrap().len(),
        7,
        "no internal fields leak: {paid}"
    );
    let charged = &entries[0].data;
    assert_eq!(charged["user_id"], u.id.get());
    assert_eq!(charged["amount"], 5000);
    assert_eq!(charged.as_object().unwrap().len(), 3, "{charged}");
    let ids: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), entries.len(), "event ids are unique");

    assert_stream_matches_outbox(&app).await;
    app.assert_invariants().await;
    app.stop().await;
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_queuegate"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_events_command_prints_and_follows_the_stream_and_check_verifies_it() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let prefix = app.app.settings.redis_key_prefix.clone();
    let users = app.create_users(3).await;
    for (i, u) in users.iter().enumerate() {
        app.charge(u, 100 * (i as i64 + 1)).await;
    }
    app.wait_outbox_drained(Duration::from_secs(10)).await;
    let entries = app.events().all().await.unwrap();
    assert_eq!(entries.len(), 3);

    let run = |args: &[&str]| {
        let out = bin()
            .arg("events")
            .args(args)
            .env("REDIS_KEY_PREFIX", &prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<Value>>()
    };
    let printed = run(&[]);
    let as_json: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(printed, as_json);
    assert_eq!(printed[0]["type"], "wallet.charged");
    assert_eq!(printed[0]["data"]["amount"], 100);
    assert!(
        printed[0]["event_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36)
    );
    // --from is exclusive.
    assert_eq!(run(&["--from", &entries[0].id]), as_json[1..].to_vec());
    assert_eq!(run(&["--from", "$"]), Vec::<Value>::new());
    let bad = bin()
        .args(["events", "--from", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    // --follow: new events arrive as they are published.
    let mut follower = bin()
        .args(["events", "--follow", "--from", "$"])
        .env("REDIS_KEY_PREFIX", &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The follower must be blocked in XREAD before the new event exists (`$` = from now on):
    // wait until Redis lists a blocked client on this stream's connection.
    let redis = app.app.queue.store().pool().clone();
    eventually(Duration::from_secs(10), "the follower blocks", || {
        let redis = redis.clone();
        async move {
            let info: String = redis
                .next()
                .custom(
                    fred::types::CustomCommand::new_static(
                        "CLIENT",
                        fred::types::ClusterHash::Random,
                        false,
                    ),
                    vec!["LIST"],
                )
                .await
                .unwrap_or_default();
            info.lines().any(|l| l.contains("cmd=xread"))
        }
    })
    .await;
    app.charge(&users[0], 777).await;
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the follower prints the new event");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "wallet.charged");
    assert_eq!(v["data"]["amount"], 777);
    let _ = follower.kill();
    let _ = follower.wait();

    // `check` verifies the stream next to the database.
    let out = bin()
        .arg("check")
        .env("DATABASE_URL", app.database_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok    one wallet.charged per charge"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    // A phantom (an event whose row never committed) is caught.
    let stream = app.events();
    let _: String = redis
        .next()
        .custom(
            fred::types::CustomCommand::new_static("XADD", fred::types::ClusterHash::Random, false),
            vec![
                stream.key().to_owned(),
                "*".into(),
                "event_id".into(),
                "00000000-0000-7000-8000-000000000000".into(),
                "type".into(),
                "reservation.held".into(),
                "data".into(),
                r#"{"reservation_id":999999,"user_id":1,"concert_id":1,"schedule_id":1,"seat_no":1,"amount":1,"at":"2030-01-01T00:00:00.000Z"}"#.into(),
            ],
        )
        .await
        .unwrap();
    let out = bin()
        .arg("check")
        .env("DATABASE_URL", app.database_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  no event without its row"), "{text}");
    assert!(text.contains("reservation 999999 does not exist"), "{text}");
    // Without the queue Redis the stream part is skipped, loudly; the database part still runs.
    let out = bin()
        .arg("check")
        .env("DATABASE_URL", app.database_url())
        .env(
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", common::servers::free_port()),
        )
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the stream was NOT checked"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ok")).count(), 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_relay_publishes_nothing_twice() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let concert = app.create_concert(1, 100).await;
    let users = app.create_users(4).await;
    for (i, u) in users.iter().enumerate() {
        app.charge(u, 1000).await;
        let access = app.admit(u, concert.id).await;
        let r = hold_id(&app, &access, concert.schedules[0], i as u64 + 1).await;
        created(app.pay(&access, r, None).await, "pay").await;
    }
    app.wait_outbox_drained(Duration::from_secs(10)).await;
    let before = app.events().all().await.unwrap();
    assert_eq!(before.len(), 12);
    let dups = metric_sum(
        &app.metrics_text().await,
        "queuegate_outbox_duplicates_total",
        None,
    );
    // As if every publish had happened but no mark had been committed (a relay that died, or
    // lost the database, between XADD and COMMIT): everything is carried again.
    sqlx::query("UPDATE outbox SET relayed_at = NULL")
        .execute(app.app.db.primary())
        .await
        .unwrap();
    app.wait_outbox_drained(Duration::from_secs(10)).await;
    assert_eq!(app.events().all().await.unwrap(), before, "nothing new");
    let after = metric_sum(
        &app.metrics_text().await,
        "queuegate_outbox_duplicates_total",
        None,
    );
    assert_eq!(after - dups, 12.0, "each retry recognised as a duplicate");
    assert_stream_matches_outbox(&app).await;
    app.assert_invariants().await;
    app.stop().await;
}

/// Another in-process instance on `app`'s database and key prefix.
async fn another_instance(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let url = app.database_url();
    let mut env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", url.as_str()),
        (
            "REDIS_KEY_PREFIX",
            app.app.settings.redis_key_prefix.as_str(),
        ),
    ];
    env.extend_from_slice(extra);
    spawn_with(&env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_relay_each_event_once_in_commit_order() {
    let _serial = SERIAL.lock().await;
    let a = spawn_app().await;
    let b = another_instance(&a, &[]).await;
    let c = another_instance(&a, &[]).await;
    let dups_before = metric_sum(
        &a.metrics_text().await,
        "queuegate_outbox_duplicates_total",
        None,
    );
    let concert = a.create_concert(2, 100).await;
    let users = a.create_users(24).await;
    let instances = [&a, &b, &c];
    // Each user on its own instance: charge, hold two seats, cancel one, pay the other —
    // all users at once, so the three relays see a stream of commits from three writers.
    let journeys = users.iter().enumerate().map(|(i, u)| {
        let app = instances[i % 3];
        let concert = &concert;
        async move {
            app.charge(u, 1000).await;
            let access = app.admit(u, concert.id).await;
            let s = concert.schedules[i % 2];
            let seat = (i / 2) as u64 * 2 + 1;
            let keep = hold_id(app, &access, s, seat).await;
            let drop = hold_id(app, &access, s, seat + 1).await;
            let r = app.cancel(&access, drop).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            created(app.pay(&access, keep, None).await, "pay").await;
        }
    });
    futures::future::join_all(journeys).await;
    a.wait_outbox_drained(Duration::from_secs(15)).await;
    let events = assert_stream_matches_outbox(&a).await;
    assert_eq!(events, 24 * 5, "charge, 2 × held, cancelled, paid per user");
    let dups_after = metric_sum(
        &a.metrics_text().await,
        "queuegate_outbox_duplicates_total",
        None,
    );
    assert_eq!(
        dups_after, dups_before,
        "no event was carried by two relays (the lease admits one at a time)"
    );
    a.assert_invariants().await;
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

/// The environment of a child gateway sharing `app`'s database, keys and signing key.
fn child_env(app: &TestApp, redis_url: &str) -> Vec<(&'static str, String)> {
    let s = &app.app.settings;
    vec![
        ("DATABASE_URL", app.database_url()),
        ("REDIS_URL", redis_url.to_owned()),
        ("REDLOCK_URLS", s.redlock_urls.join(",")),
        ("REDIS_KEY_PREFIX", s.redis_key_prefix.clone()),
        ("JWT_SECRET", s.jwt_secret.expose().to_owned()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "20".to_owned()),
        ("SWEEP_INTERVAL_SECS", s.sweep_interval_secs.to_string()),
        ("HOLD_TTL_SECS", s.hold_ttl_secs.to_string()),
        ("RATE_JOIN_PER_MIN", "0".to_owned()),
        ("RATE_CHARGE_PER_MIN", "0".to_owned()),
        ("RATE_HOLD_PER_MIN", "0".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_between_payment_commit_and_revocation_loses_the_access_within_2s() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let app = spawn_with(&[("REDIS_URL", &redis.url())]).await;
    let concert = app.create_concert(1, 500).await;
    let schedule = concert.schedules[0];
    let mut env = child_env(&app, &redis.url());
    env.push(("QG_FAILPOINT", "after_payment_commit".to_owned()));
    let ended_before = metric_sum(
        &app.metrics_text().await,
        "queuegate_outbox_revocations_total",
        Some(("result", "ended")),
    );
    const ROUNDS: usize = 3;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Gateway::start(&env).await;
        let user: User = app.create_user(&format!("buyer {round}")).await;
        app.charge(&user, 1000).await;
        let access = app.admit(&user, concert.id).await;
        let reservation = hold_id(&app, &access, schedule, round as u64 + 1).await;
        let read = || {
            app.http
                .get(app.url(&format!("/v1/reservations/{reservation}")))
                .bearer_auth(&access)
                .send()
        };
        assert_eq!(read().await.unwrap().status(), StatusCode::OK);

        // Pay on the child: it commits, then dies before revoking anything.
        let paid = reqwest::Client::new()
            .post(child.url("/v1/payments"))
            .bearer_auth(&access)
            .timeout(Duration::from_secs(20))
            .json(&json!({ "reservation_id": reservation }))
            .send()
            .await;
        let died = Instant::now();
        assert!(
            paid.is_err(),
            "the child answered instead of dying: {paid:?}"
        );
        let status = child
            .wait_exit(Duration::from_secs(5))
            .await
            .expect("the child died at the failpoint");
        assert!(!status.success(), "{status}");
        let payments: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE reservation_id = ?")
                .bind(reservation)
                .fetch_one(app.app.db.primary())
                .await
                .unwrap();
        assert_eq!(payments, 1, "the payment committed before the crash");

        // Through the other instance, the access token stops working by itself.
        loop {
            let r = read().await.unwrap();
            if r.status() == StatusCode::UNAUTHORIZED {
                assert_eq!(common::error_code(r).await, "TOKEN_REVOKED");
                break;
            }
            assert_eq!(r.status(), StatusCode::OK);
            assert!(
                died.elapsed() < Duration::from_secs(5),
                "round {round}: the access still works {:?} after the crash",
                died.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(died.elapsed());
        drop(child);
    }
    eprintln!("crash after payment commit: access revoked by another instance after {times:?}");
    let slowest = times.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= Duration::from_secs(2),
        "time to revoke must be ≤ 2 s: {times:?}"
    );
    let ended = metric_sum(
        &app.metrics_text().await,
        "queuegate_outbox_revocations_total",
        Some(("result", "ended")),
    );
    assert_eq!(
        ended - ended_before,
        ROUNDS as f64,
        "each revocation was the relay's (the request path never got to it)"
    );
    app.assert_invariants().await;
    app.stop().await;
}

/// How long the queue Redis stays down during the flow (the issue asks for 30 s; a shorter
/// outage can be asked for with QG_TEST_OUTAGE_SECS when iterating locally).
fn outage() -> Duration {
    let secs = std::env::var("QG_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// One worker's view of the flow.
struct Flow {
    http: reqwest::Client,
    bases: Vec<String>,
    concert: u64,
    schedules: Vec<u64>,
    deadline: Instant,
    paid: AtomicUsize,
    cancelled: AtomicUsize,
    abandoned: AtomicUsize,
    charged_only: AtomicUsize,
}

impl Flow {
    /// Sends until the answer is not a 503 and the connection held (the queue Redis may be
    /// down), pausing 100 ms between tries; bounded by the test's deadline.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        loop {
            if let Ok(r) = make().timeout(Duration::from_secs(10)).send().await
                && r.status() != StatusCode::SERVICE_UNAVAILABLE
            {
                let status = r.status();
                return (status, r.json::<Value>().await.unwrap_or_default());
            }
            assert!(Instant::now() < self.deadline, "{what}: no answer in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One fan: create, charge, (join, wait, hold, then pay, cancel or walk away).
    async fn journey(&self, worker: usize, n: usize) {
        let base = &self.bases[worker % self.bases.len()];
        let url = |p: &str| format!("{base}{p}");
        let (s, u) = self
            .send("create user", || {
                self.http
                    .post(url("/v1/users"))
                    .json(&json!({ "name": format!("fan {worker}/{n}") }))
            })
            .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        let (uid, utoken) = (
            u["user_id"].as_u64().unwrap(),
            u["user_token"].as_str().unwrap().to_owned(),
        );
        let key = format!("charge-{uid}");
        let (s, b) = self
            .send("charge", || {
                self.http
                    .post(url(&format!("/v1/users/{uid}/balance/charge")))
                    .bearer_auth(&utoken)
                    .header("Idempotency-Key", &key)
                    .json(&json!({ "amount": 1000 }))
            })
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if worker % 4 == 3 {
            // Wallet-only fans: they keep writing events while the queue Redis is away (paced,
            // about 25 a second per worker, like fans topping up rather than a flood).
            self.charged_only.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(40)).await;
            return;
        }
        let access = loop {
            let (s, b) = self
                .send("join", || {
                    self.http
                        .post(url("/v1/queue"))
                        .bearer_auth(&utoken)
                        .json(&json!({ "concert_id": self.concert }))
                })
                .await;
            assert!(s.is_success(), "join: {s} {b}");
            let qt = b["queue_token"].as_str().unwrap().to_owned();
            let admitted = loop {
                let (s, b) = self
                    .send("status", || {
                        self.http.get(url("/v1/queue/status")).bearer_auth(&qt)
                    })
                    .await;
                if s == StatusCode::GONE {
                    break None;
                }
                assert_eq!(s, StatusCode::OK, "status: {b}");
                if b["status"] == "admitted" {
                    break Some(b["access_token"].as_str().unwrap().to_owned());
                }
                let wait = b["poll_after_ms"].as_u64().unwrap_or(100).min(200);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            };
            if let Some(a) = admitted {
                break a;
            }
        };
        let schedule = self.schedules[worker % self.schedules.len()];
        let mut reservation = None;
        for attempt in 0..50u64 {
            let seat = (worker as u64 * 7 + n as u64 * 13 + attempt) % 50 + 1;
            let (s, b) = self
                .send("hold", || {
                    self.http
                        .post(url("/v1/reservations"))
                        .bearer_auth(&access)
                        .json(&json!({ "schedule_id": schedule, "seat_no": seat }))
                })
                .await;
            match s {
                StatusCode::CREATED => {
                    reservation = b["reservation_id"].as_u64();
                    break;
                }
                StatusCode::CONFLICT => continue,
                other => panic!("hold: {other} {b}"),
            }
        }
        let Some(r) = reservation else { return };
        match n % 6 {
            0 => {
                let (s, b) = self
                    .send("cancel", || {
                        self.http
                            .delete(url(&format!("/v1/reservations/{r}")))
                            .bearer_auth(&access)
                    })
                    .await;
                assert!(
                    s == StatusCode::NO_CONTENT || s == StatusCode::CONFLICT,
                    "cancel: {s} {b}"
                );
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                // Walks away: the hold expires (HOLD_TTL_SECS) and the sweep marks it.
                self.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let key = format!("pay-{r}");
                let (s, b) = self
                    .send("pay", || {
                        self.http
                            .post(url("/v1/payments"))
                            .bearer_auth(&access)
                            .header("Idempotency-Key", &key)
                            .json(&json!({ "reservation_id": r }))
                    })
                    .await;
                match s {
                    StatusCode::CREATED | StatusCode::OK => {
                        self.paid.fetch_add(1, Ordering::Relaxed);
                    }
                    // The hold ran out while the queue Redis was down.
                    StatusCode::CONFLICT => assert_eq!(b["error"]["code"], "HOLD_EXPIRED"),
                    other => panic!("pay: {other} {b}"),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_queue_redis_down_for_30s_during_a_flow_every_event_arrives_afterwards_in_order() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start_persistent();
    let app = spawn_with(&[
        ("REDIS_URL", &redis.url()),
        ("HOLD_TTL_SECS", "3"),
        ("SWEEP_INTERVAL_SECS", "1"),
        ("QUEUE_TICK_MS", "100"),
    ])
    .await;
    let child = Gateway::start(&child_env(&app, &redis.url())).await;
    let concert = app.create_concert(4, 100).await;
    const WORKERS: usize = 12;
    let flow = Arc::new(Flow {
        http: reqwest::Client::new(),
        bases: vec![app.base.clone(), child.base.clone()],
        concert: concert.id.get(),
        schedules: concert.schedules.clone(),
        deadline: Instant::now() + outage() + Duration::from_secs(120),
        paid: AtomicUsize::new(0),
        cancelled: AtomicUsize::new(0),
        abandoned: AtomicUsize::new(0),
        charged_only: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (flow, stop) = (flow.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    flow.journey(w, n).await;
                    n += 1;
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "the flow is under way", || async {
        flow.paid.load(Ordering::Relaxed) >= 10
    })
    .await;

    // The queue Redis dies (SIGKILL) and stays away.
    redis.kill();
    let down = Instant::now();
    let pending_at_kill = queuegate::outbox::pending(app.app.db.primary())
        .await
        .unwrap();
    let mut max_lag = 0.0f64;
    while down.elapsed() < outage() {
        let lag = metric_sum(
            &app.metrics_text().await,
            "queuegate_outbox_oldest_unrelayed_age_seconds",
            None,
        );
        max_lag = max_lag.max(lag);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waiting: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CAST(event_type AS CHAR), COUNT(*) FROM outbox WHERE relayed_at IS NULL GROUP BY 1",
    )
    .fetch_all(app.app.db.primary())
    .await
    .unwrap();
    let waiting: HashMap<String, i64> = waiting.into_iter().collect();
    let pending_at_restart: i64 = waiting.values().sum();
    let last_before_restart: u64 =
        sqlx::query_scalar::<_, Option<u64>>("SELECT MAX(id) FROM outbox")
            .fetch_one(app.app.db.primary())
            .await
            .unwrap()
            .unwrap_or(0);

    // Back, with its data (AOF).
    redis.restart();
    let back = Instant::now();
    let paid_at_restart = flow.paid.load(Ordering::Relaxed);
    // The backlog goes out while the flow goes on.
    eventually(
        Duration::from_secs(60),
        "the backlog is relayed",
        || async {
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox WHERE relayed_at IS NULL AND id <= ?",
            )
            .bind(last_before_restart)
            .fetch_one(app.app.db.primary())
            .await
            .unwrap();
            left == 0
        },
    )
    .await;
    let backlog_drained = back.elapsed();
    eventually(Duration::from_secs(60), "bookings resume", || async {
        flow.paid.load(Ordering::Relaxed) >= paid_at_restart + 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    // Abandoned holds expire (HOLD_TTL_SECS) and the sweep marks them; then all is relayed.
    eventually(Duration::from_secs(30), "every hold decided", || async {
        let live: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE status = 'held'")
                .fetch_one(app.app.db.primary())
                .await
                .unwrap();
        live == 0
    })
    .await;
    app.wait_outbox_drained(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(5),
        "the lag gauge returns to 0",
        || async {
            metric_sum(
                &app.metrics_text().await,
                "queuegate_outbox_oldest_unrelayed_age_seconds",
                None,
            ) == 0.0
        },
    )
    .await;

    let events = assert_stream_matches_outbox(&app).await;
    eprintln!(
        "queue Redis down {:?} during the flow: {} events waited at the restart ({:?}; {} at the kill), \
         max lag {:.1} s; the backlog was in the stream {:.2} s after the restart; in the end all {} \
         events in the stream, each once and in commit order per reservation; journeys: {} paid, \
         {} cancelled, {} walked away, {} wallet-only",
        outage(),
        pending_at_restart,
        waiting,
        pending_at_kill,
        max_lag,
        backlog_drained.as_secs_f64(),
        events,
        flow.paid.load(Ordering::Relaxed),
        flow.cancelled.load(Ordering::Relaxed),
        flow.abandoned.load(Ordering::Relaxed),
        flow.charged_only.load(Ordering::Relaxed),
    );
    assert!(
        waiting.get("wallet.charged").copied().unwrap_or(0) > 0,
        "events were written during the outage: {waiting:?}"
    );
    assert!(
        max_lag >= outage().as_secs_f64() / 2.0,
        "the lag gauge showed the outage: {max_lag}"
    );
    app.assert_invariants().await;
    drop(child);
    app.stop().await;
}
