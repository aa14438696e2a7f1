//! The booking guarantees under real concurrency: one seat, one holder; charges never lost;
//! one payment per hold. Every test ends by checking the invariants in the database.

mod common;

use common::{User, spawn_app, spawn_with};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Fires one hold per user at the same seat, all at once; returns the status counts.
async fn rush_one_seat(
    app: &common::TestApp,
    users: &[User],
    concert: queuegate::domain::ConcertId,
    schedule: u64,
) -> (usize, usize, usize) {
    let mut tokens = Vec::with_capacity(users.len());
    for u in users {
        tokens.push(app.admit(u, concert).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(tokens.len()));
    let requests = tokens.into_iter().map(|t| {
        let barrier = barrier.clone();
        let http = app.http.clone();
        let url = app.url("/v1/reservations");
        tokio::spawn(async move {
            barrier.wait().await;
            http.post(url)
                .bearer_auth(t)
                .json(&json!({ "schedule_id": schedule, "seat_no": 7 }))
                .send()
                .await
                .map(|r| r.status())
        })
    });
    let statuses: Vec<StatusCode> = join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("request"))
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    let server_errors = statuses.iter().filter(|s| s.is_server_error()).count();
    (created, conflicts, server_errors)
}

async fn live_reservations_of_seat(app: &common::TestApp, schedule: u64) -> i64 {
    app.scalar_i64(
        "SELECT COUNT(*) FROM reservations WHERE schedule_id = ? AND seat_no = 7 AND status IN ('held', 'confirmed')",
        schedule,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_users_rush_one_seat_and_exactly_one_wins() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 1000).await;
    let users = app.create_users(500).await;
    let (created, conflicts, server_errors) =
        rush_one_seat(&app, &users, concert.id, concert.schedules[0]).await;
    assert_eq!(created, 1, "exactly one hold");
    assert_eq!(conflicts, 499, "everyone else 409");
    assert_eq!(server_errors, 0);
    assert_eq!(
        live_reservations_of_seat(&app, concert.schedules[0]).await,
        1
    );
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_lock_quorum_the_database_alone_still_allows_one_winner() {
    // Three "masters" on ports where nothing listens: every lock attempt is unreachable.
    let app = spawn_with(&[(
        "REDLOCK_URLS",
        "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3",
    )])
    .await;
    let concert = app.create_concert(1, 1000).await;
    let users = app.create_users(500).await;
    let (created, conflicts, server_errors) =
        rush_one_seat(&app, &users, concert.id, concert.schedules[0]).await;
    assert_eq!(created, 1, "exactly one hold");
    assert_eq!(conflicts, 499);
    assert_eq!(server_errors, 0);
    assert_eq!(
        live_reservations_of_seat(&app, concert.schedules[0]).await,
        1
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("queuegate_lock_fallback_total"),
        "fallbacks are counted"
    );
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redlock"], "0/3");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_charges_are_all_counted() {
    let app = spawn_app().await;
    let user = app.create_user("saver").await;
    let url = app.url(&format!("/v1/users/{}/balance/charge", user.id));
    let requests = (0..200).map(|_| {
        app.http
            .post(&url)
            .bearer_auth(&user.token)
            .json(&json!({ "amount": 1 }))
            .send()
    });
    let results = join_all(requests).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::OK)
    );
    assert_eq!(app.balance(&user).await, 200);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_with_one_idempotency_key_charge_once() {
    let app = spawn_app().await;
    let user = app.create_user("careful").await;
    let url = app.url(&format!("/v1/users/{}/balance/charge", user.id));
    let requests = (0..20).map(|_| {
        app.http
            .post(&url)
            .bearer_auth(&user.token)
            .header("Idempotency-Key", "top-up-1")
            .json(&json!({ "amount": 500 }))
            .send()
    });
    let mut bodies = Vec::new();
    for r in join_all(requests).await {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        bodies.push(r.json::<Value>().await.unwrap());
    }
    assert!(
        bodies
            .iter()
            .all(|b| b == &json!({ "user_id": user.id.get(), "balance": 500 })),
        "{bodies:?}"
    );
    assert_eq!(app.balance(&user).await, 500);
    let rows = app
        .scalar_i64(
            "SELECT COUNT(*) FROM ledger WHERE user_id = ?",
            user.id.get(),
        )
        .await;
    assert_eq!(rows, 1);
    // The same key with another amount is refused, and charges nothing.
    let r = app
        .http
        .post(&url)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "top-up-1")
        .json(&json!({ "amount": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.balance(&user).await, 500);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_paid_twice_at_once_is_paid_once() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 3000).await;
    let user = app.create_user("eager").await;
    app.charge(&user, 10_000).await;
    let access = app.admit(&user, concert.id).await;
    let hold: Value = app
        .hold(&access, concert.schedules[0], 3)
        .await
        .json()
        .await
        .unwrap();
    let reservation = hold["reservation_id"].as_u64().unwrap();
    let payments = (0..10).map(|_| app.pay(&access, reservation, None));
    let statuses: Vec<StatusCode> = join_all(payments)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    // The rest lose either in the database (409 ALREADY_PAID) or at the gate once the payment
    // revoked the token (401); never a 5xx.
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s.as_u16(), 201 | 409 | 401)),
        "{statuses:?}"
    );
    assert_eq!(app.balance(&user).await, 7_000);
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM payments WHERE reservation_id = ?",
            reservation
        )
        .await,
        1
    );
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rush_on_random_seats_fills_each_seat_exactly_once() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 100).await;
    let schedule = concert.schedules[0];
    let users = app.create_users(300).await;
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(app.admit(u, concert.id).await);
    }
    let requests = tokens.iter().enumerate().map(|(i, t)| {
        let seat = (i * 7919) % 50 + 1;
        let http = app.http.clone();
        let url = app.url("/v1/reservations");
        let t = t.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(t)
                .json(&json!({ "schedule_id": schedule, "seat_no": seat }))
                .send()
                .await
                .map(|r| r.status())
        })
    });
    let statuses: Vec<StatusCode> = join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("request"))
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        50
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        250
    );
    let per_seat: Vec<(u8, i64)> = sqlx::query_as(
        "SELECT seat_no, COUNT(*) FROM reservations WHERE schedule_id = ? AND status IN ('held', 'confirmed') GROUP BY seat_no",
    )
    .bind(schedule)
    .fetch_all(app.app.db.primary())
    .await
    .unwrap();
    assert_eq!(per_seat.len(), 50);
    assert!(per_seat.iter().all(|(_, n)| *n == 1));
    app.assert_invariants().await;
    app.stop().await;
}
