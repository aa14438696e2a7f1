//! Sale opening: a scheduled start, a pre-queue whose order is drawn fairly at the start,
//! arrival order behind it, and wait-time figures.

mod common;

use common::{ADMIN_TOKEN, TestApp, metric_sum, spawn_with};
use queuegate::domain::{ConcertId, UserId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn rfc3339_in(secs: f64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds((secs * 1000.0) as i64);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn create_sale(app: &TestApp, starts_in_secs: f64) -> (ConcertId, u64) {
    let r = app
        .http
        .post(app.url("/v1/admin/concerts"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "name": "Opening night",
            "sale_starts_at": rfc3339_in(starts_in_secs),
            "schedules": [{ "starts_at": "2031-05-01T19:00:00Z", "price": 100 }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (
        ConcertId::new(v["concert_id"].as_u64().unwrap()).unwrap(),
        v["schedules"][0]["schedule_id"].as_u64().unwrap(),
    )
}

async fn status(app: &TestApp, token: &str) -> Value {
    app.queue_status(token).await.json().await.unwrap()
}

/// Waits (bounded) until the sale has opened, as the admin API sees it.
async fn until_drawn(app: &TestApp, concert: ConcertId, limit: Duration) {
    let started = Instant::now();
    while app.get_queue(concert).await["draws"] != 1 {
        assert!(started.elapsed() < limit, "the sale never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_sale_starts_are_refused_and_change_nothing() {
    let app = spawn_with(&[]).await;
    for (bad, why) in [
        (json!("tomorrow"), "not RFC 3339"),
        (json!(rfc3339_in(-60.0)), "in the past"),
        (json!(42), "not a string"),
    ] {
        let r = app
            .http
            .post(app.url("/v1/admin/concerts"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "name": "Bad", "sale_starts_at": bad,
                "schedules": [{ "starts_at": "2031-05-01T19:00:00Z", "price": 1 }],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], "sale_starts_at", "{why}");
    }
    let listed: Value = app
        .http
        .get(app.url("/v1/concerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["concerts"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    // A sale that has not started may move; once it has, it may not.
    let (concert, _) = create_sale(&app, 60.0).await;
    let later = rfc3339_in(120.0);
    let r = app
        .put_queue(concert, json!({ "sale_starts_at": later }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .put_queue(concert, json!({ "sale_starts_at": "soon" }))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v = app.get_queue(concert).await;
    assert_eq!(
        v["sale_starts_at"].as_str().map(|s| &s[..19]),
        Some(&later[..19])
    );
    // null opens the sale now (the start becomes this moment)…
    let r = app
        .put_queue(concert, json!({ "sale_starts_at": null }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let opened = app.get_queue(concert).await["sale_starts_at"].clone();
    let at = chrono::DateTime::parse_from_rfc3339(opened.as_str().unwrap()).unwrap();
    assert!(at <= chrono::Utc::now(), "{opened}");
    // …and then it has started: 409, nothing changes.
    let r = app
        .put_queue(
            concert,
            json!({ "sale_starts_at": rfc3339_in(60.0), "tick_ms": 500 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "SALE_STARTED");
    let v = app.get_queue(concert).await;
    assert_eq!(
        (v["sale_starts_at"].clone(), v["tick_ms"].clone()),
        (opened, json!(1000))
    );
    // A concert created without a start is open from creation.
    let open = app.create_concert(1, 10).await;
    let r = app
        .put_queue(open.id, json!({ "sale_starts_at": rfc3339_in(60.0) }))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    app.stop().await;
}

/// Before the start: pre-queue places (no position, never idle, nothing to book); at the
/// start every one of them is ahead of everyone who joins later, and admission begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pre_queue_goes_first_and_nobody_books_before_the_start() {
    let app = spawn_with(&[
        ("QUEUE_TICK_MS", "200"),
        ("QUEUE_ADMIT_PER_TICK", "5"),
        ("QUEUE_IDLE_SECS", "1"),
    ])
    .await;
    let (concert, _) = create_sale(&app, 3.0).await;
    let early = app.create_users(30).await;
    let mut early_tokens = Vec::new();
    for u in &early {
        let (s, v) = app.join(u, concert).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(v["status"], "pre_queue", "{v}");
        assert_eq!(
            (v["position"].clone(), v["eta_seconds"].clone()),
            (Value::Null, Value::Null)
        );
        assert!(v["sale_starts_at"].is_string() && v["poll_after_ms"].as_u64().unwrap() >= 1000);
        early_tokens.push(v["queue_token"].as_str().unwrap().to_owned());
    }
    // Joining again changes nothing.
    let (s, again) = app.join(&early[0], concert).await;
    assert_eq!(s, StatusCode::OK);
    let seq = |t: &str| app.app.tokens.verify_queue(t).unwrap().seq;
    assert_eq!(
        seq(again["queue_token"].as_str().unwrap()),
        seq(&early_tokens[0])
    );
    let v = status(&app, &early_tokens[3]).await;
    assert_eq!(v["status"], "pre_queue", "{v}");
    assert_eq!(app.get_queue(concert).await["pre_queue"], 30);
    // Longer than the idle limit, without a poll: pre-queue places are never idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    until_drawn(&app, concert, Duration::from_secs(10)).await;
    let late = app.create_users(10).await;
    let mut late_tokens = Vec::new();
    for u in &late {
        let (s, v) = app.join(u, concert).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(v["status"], "waiting");
        late_tokens.push(v["queue_token"].as_str().unwrap().to_owned());
    }
    // Poll everyone until all are admitted; record the order of admission (by poll round).
    let mut admitted_at: Vec<Option<usize>> = vec![None; 40];
    let all: Vec<&String> = early_tokens.iter().chain(&late_tokens).collect();
    let started = Instant::now();
    let mut round = 0;
    while admitted_at.iter().any(Option::is_none) {
        for (i, t) in all.iter().enumerate() {
            if admitted_at[i].is_none() {
                let v = status(&app, t).await;
                assert_ne!(v["status"], "pre_queue", "the sale has started: {v}");
                if v["status"] == "admitted" {
                    admitted_at[i] = Some(round);
                }
            }
        }
        round += 1;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not everyone got in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_early = admitted_at[..30].iter().flatten().max().unwrap();
    let first_late = admitted_at[30..].iter().flatten().min().unwrap();
    assert!(
        first_late >= last_early,
        "someone who joined after the start got in before a pre-queue fan"
    );
    let v = app.get_queue(concert).await;
    assert_eq!(v["draws"], 1);
    assert!(
        v["wait_p50_secs"].is_number() && v["wait_p90_secs"].is_number(),
        "{v}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("queuegate_queue_wait_seconds_bucket{concert="),
        "the wait histogram"
    );
    app.stop().await;
}

/// The draw happens once however many instances run, and the stream says `pre_queue`, then
/// positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_draw_once_and_streams_follow_the_opening() {
    let first = spawn_with(&[("QUEUE_TICK_MS", "200"), ("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let db = first.database_url();
    let prefix = first.app.settings.redis_key_prefix.clone();
    let shared = [
        ("QUEUE_TICK_MS", "200"),
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("DATABASE_URL", db.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let second = spawn_with(&shared).await;
    let third = spawn_with(&shared).await;
    let (concert, _) = create_sale(&first, 2.5).await;
    let fans = first.create_users(20).await;
    let mut tokens = Vec::new();
    for (i, u) in fans.iter().enumerate() {
        let app = [&first, &second, &third][i % 3];
        tokens.push(
            app.join(u, concert).await.1["queue_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let ticket = second.stream_ticket(&tokens[0]).await;
    let r = second
        .http
        .get(second.url(&format!("/v1/queue/events?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: position") {
        let chunk = tokio::time::timeout_at(deadline.into(), body.chunk())
            .await
            .expect("a position after the opening")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let pre = seen
        .find("event: pre_queue")
        .expect("a pre_queue event first");
    assert!(pre < seen.find("event: position").unwrap(), "{seen}");
    // Positions need only the clock; the draw is recorded by the sale's first tick, which on a
    // busy machine can come a moment after the first position. Wait for it, then for three
    // more ticks (on any instance), and check it was recorded exactly once.
    let apps = [&first, &second, &third];
    let ticks = || async {
        let mut sum = 0.0;
        for app in apps {
            let c = concert.to_string();
            sum += metric_sum(
                &app.metrics_text().await,
                "queuegate_queue_ticks_total",
                Some(("concert", c.as_str())),
            );
        }
        sum
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.get_queue(concert).await["draws"] == 0 {
        assert!(Instant::now() < deadline, "the draw was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drawn_at = ticks().await;
    while ticks().await < drawn_at + 3.0 {
        assert!(
            Instant::now() < deadline,
            "the ticks stopped after the draw"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for app in apps {
        assert_eq!(app.get_queue(concert).await["draws"], 1);
    }
    // Everyone sees the same drawn order from every instance.
    let positions = |app: &TestApp| {
        let tokens = tokens.clone();
        let app = app.base.clone();
        async move {
            let http = reqwest::Client::new();
            let mut out = Vec::new();
            for t in tokens {
                let v: Value = http
                    .get(format!("{app}/v1/queue/status"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                out.push(v["position"].as_u64().unwrap());
            }
            out
        }
    };
    let seen_first = positions(&first).await;
    assert_eq!(seen_first, positions(&third).await);
    let mut sorted = seen_first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<_>>());
    for app in [first, second, third] {
        app.stop().await;
    }
}

/// Spearman's rank correlation of two equal-length rankings (no ties).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// The 0.999 quantile of chi-square with `k` degrees of freedom (Wilson–Hilferty).
fn chi2_999(k: f64) -> f64 {
    let z = 3.0902; // the standard normal's 0.999 quantile
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// Fairness is tested, not assumed: over repeated draws the drawn position is independent of
/// join order (|Spearman ρ| < 0.1, and a chi-square test of join-order deciles × position
/// deciles that does not reject uniformity at p = 0.001).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_draw_is_independent_of_join_order() {
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0"), ("QUEUE_TICK_MS", "200")]).await;
    const N: usize = 3000;
    for draw in 0..3 {
        // A start far off, so every join lands in the pre-queue however slow the machine…
        let (concert, _) = create_sale(&app, 600.0).await;
        let line = app.line(concert).await;
        // N fans join in a known order (through the queue service: the same path as the API).
        let mut seqs = Vec::with_capacity(N);
        for i in 0..N {
            let user = UserId::new((draw * N + i + 1) as u64).unwrap();
            let joined = app.app.queue.join(line, user, None).await.unwrap();
            let q = app.app.tokens.verify_queue(&joined.queue_token).unwrap();
            seqs.push(q.seq);
        }
        // …then the sale opens now.
        let r = app
            .put_queue(concert, json!({ "sale_starts_at": null }))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        until_drawn(&app, concert, Duration::from_secs(10)).await;
        // The drawn position of each fan: the rank of its arrival number.
        let mut order: Vec<(u64, usize)> = seqs.iter().copied().zip(0..).collect();
        order.sort_unstable();
        let mut position = vec![0usize; N];
        for (p, (_, i)) in order.iter().enumerate() {
            position[*i] = p;
        }
        // Spot-check the API agrees with the ranks for a few fans.
        for i in [0, N / 2, N - 1] {
            let user = UserId::new((draw * N + i + 1) as u64).unwrap();
            let view = app.app.queue.join(line, user, None).await.unwrap().view;
            match view {
                queuegate::queue::view::View::Waiting { position: p, .. } => {
                    assert_eq!(p as usize, position[i] + 1)
                }
                v => panic!("{v:?}"),
            }
        }
        let joined: Vec<f64> = (0..N).map(|i| i as f64).collect();
        let drawn: Vec<f64> = position.iter().map(|p| *p as f64).collect();
        let rho = spearman(&joined, &drawn);
        let mut cells = [[0f64; 10]; 10];
        for i in 0..N {
            cells[i * 10 / N][position[i] * 10 / N] += 1.0;
        }
        let expected = N as f64 / 100.0;
        let chi2: f64 = cells
            .iter()
            .flatten()
            .map(|o| (o - expected).powi(2) / expected)
            .sum();
        eprintln!(
            "draw {draw}: Spearman rho {rho:.4}, chi-square {chi2:.1} (critical {:.1})",
            chi2_999(81.0)
        );
        assert!(rho.abs() < 0.1, "draw {draw}: rho {rho}");
        assert!(chi2 < chi2_999(81.0), "draw {draw}: chi-square {chi2}");
    }
    app.stop().await;
}

/// A queue store that loses its data before the start loses the line's settings with it. The
/// next join must not treat the sale as open: it puts the database's sale start back first, so
/// fans who join after the loss still get pre-queue places, and the start is the one recorded.
/// A concert without a sale start stays open after the same loss.
#[tokio::test]
async fn a_store_that_lost_its_data_before_the_start_keeps_the_pre_queue() {
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let (sale, _) = create_sale(&app, 600.0).await;
    let open = app.create_concert(1, 10).await.id;
    let starts_at = app.get_queue(sale).await["sale_starts_at"].clone();
    assert!(starts_at.is_string());
    let early = app.create_user("early").await;
    assert_eq!(app.join(&early, sale).await.1["status"], "pre_queue");

    // The store loses everything about both concerts, their settings included.
    for concert in [sale, open] {
        app.lose_line_data(concert).await;
    }
    assert!(
        app.get_queue(sale).await["sale_starts_at"].is_null(),
        "the store's copy is gone"
    );

    // Fans who come after the loss: the sale is still closed, with the start it had.
    let fans = app.create_users(3).await;
    let joins = futures::future::join_all(fans.iter().map(|f| app.join(f, sale))).await;
    for (s, v) in joins {
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "pre_queue", "{v}");
        assert_eq!(v["position"], Value::Null, "{v}");
        assert_eq!(
            v["sale_starts_at"].as_str().map(|s| &s[..19]),
            starts_at.as_str().map(|s| &s[..19])
        );
    }
    assert_eq!(
        app.get_queue(sale).await["sale_starts_at"]
            .as_str()
            .map(|s| &s[..19]),
        starts_at.as_str().map(|s| &s[..19]),
        "the store has the recorded start again"
    );

    // A concert without a sale start is open after the loss as before.
    let (s, v) = app.join(&fans[0], open).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "waiting", "{v}");
    assert_eq!(v["position"], 1, "{v}");
}

#[tokio::test]
async fn a_sale_start_can_still_move_after_the_store_lost_its_data() {
    let app = spawn_with(&[]).await;
    let (sale, _) = create_sale(&app, 600.0).await;
    let r = app.put_queue(sale, json!({ "max_active": 5 })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let open = app.create_concert(1, 10).await.id;
    for concert in [sale, open] {
        app.lose_line_data(concert).await;
    }

    // The store reads "no start"; the database knows the sale has not started: it may move,
    // and the line gets its recorded settings back with it.
    let later = rfc3339_in(1200.0);
    let r = app
        .put_queue(sale, json!({ "sale_starts_at": later }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = app.get_queue(sale).await;
    assert_eq!(
        v["sale_starts_at"].as_str().map(|s| &s[..19]),
        Some(&later[..19]),
        "{v}"
    );
    assert_eq!(v["max_active"], 5, "{v}");
    let fan = app.create_user("fan").await;
    let (s, v) = app.join(&fan, sale).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "pre_queue", "{v}");
    assert_eq!(
        v["sale_starts_at"].as_str().map(|s| &s[..19]),
        Some(&later[..19])
    );

    // A concert that was open from the start still refuses a start after the loss.
    let r = app
        .put_queue(open, json!({ "sale_starts_at": rfc3339_in(600.0) }))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    app.stop().await;
}
