//! What a newcomer and a fan meet first: a fresh database next to an old Redis line, checkout
//! of several holds, holds released when the access ends, errors that say what to do, and
//! single-use stream tickets.

mod common;

use common::{ADMIN_TOKEN, TestApp, User, error_code, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn reservation_status(app: &TestApp, reservation: u64) -> String {
    sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM reservations WHERE id = ?")
        .bind(reservation)
        .fetch_one(app.app.db.primary())
        .await
        .unwrap()
}

async fn held(app: &TestApp, access: &str, schedule: u64, seat: u64) -> u64 {
    let r = app.hold(access, schedule, seat).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["reservation_id"]
        .as_u64()
        .unwrap()
}

/// A fresh database next to an old Redis line starts clean: its concert 1 is another concert,
/// and never inherits the old line's places or its paused settings.
#[tokio::test]
async fn a_fresh_database_never_adopts_an_old_line() {
    let old = spawn_with(&[]).await;
    let prefix = old.app.settings.redis_key_prefix.clone();
    let concert = old.create_concert(1, 10).await;
    let r = old
        .http
        .put(old.url(&format!("/v1/admin/concerts/{}/queue", concert.id)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "admit_per_tick": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for u in old.create_users(3).await {
        old.join_queue(&u, concert.id).await;
    }
    assert_eq!(old.get_queue(concert.id).await["waiting"], 3);

    // A new database, the same Redis and key prefix: the "same" concert id.
    let fresh = spawn_with(&[("REDIS_KEY_PREFIX", prefix.as_str())]).await;
    let again = fresh.create_concert(1, 10).await;
    assert_eq!(again.id, concert.id, "both databases number from 1");
    let view = fresh.get_queue(again.id).await;
    assert_eq!(view["waiting"], 0, "{view}");
    assert_eq!(
        view["admit_per_tick"], 100,
        "the default, not the old pause"
    );
    let fan = fresh.create_user("newcomer").await;
    let joined = fresh.join_queue(&fan, again.id).await;
    assert_eq!(joined["position"], 1, "{joined}");
    // The old line is untouched.
    assert_eq!(old.get_queue(concert.id).await["waiting"], 3);
    old.stop().await;
    fresh.stop().await;
}

/// One payment for three holds; the fourth hold is released by the payment (the access ended),
/// and its seat can be held at once by someone else.
#[tokio::test]
async fn a_checkout_pays_several_holds_once_and_releases_the_rest() {
    let app = spawn_with(&[]).await;
    let concert = app.create_concert(1, 100).await;
    let schedule = concert.schedules[0];
    let fan = app.create_user("checkout").await;
    let other = app.create_user("next").await;
    app.charge(&fan, 1000).await;
    let access = app.admit(&fan, concert.id).await;
    let ids: Vec<u64> =
        futures::future::join_all((1..=4).map(|seat| held(&app, &access, schedule, seat))).await;

    // A repeated id is refused before anything happens.
    let r = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&access)
        .json(&json!({ "reservation_ids": [ids[0], ids[1], ids[2], ids[0]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a repeated id"
    );

    let r = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&access)
        .json(&json!({ "reservation_ids": [ids[2], ids[0], ids[1]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let paid: Value = r.json().await.unwrap();
    let payments = paid["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 3);
    assert_eq!(paid["balance"], 1000 - 300);
    assert_eq!(app.balance(&fan).await, 1000 - 300);
    for id in &ids[..3] {
        assert_eq!(reservation_status(&app, *id).await, "confirmed");
    }
    // The leftover hold was released in the same transaction.
    assert_eq!(reservation_status(&app, ids[3]).await, "cancelled");
    let a2 = app.admit(&other, concert.id).await;
    assert_eq!(
        app.hold(&a2, schedule, 4).await.status(),
        StatusCode::CREATED
    );
    // The access ended because of the payment, and the refusal says so.
    let r = app.hold(&access, schedule, 5).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("paid"),
        "{v}"
    );
    app.assert_invariants().await;
    app.stop().await;
}

/// 402 names the balance and the amount due; holding your own seat again names your hold.
#[tokio::test]
async fn errors_carry_the_facts_a_fan_needs() {
    let app = spawn_with(&[]).await;
    let concert = app.create_concert(1, 500).await;
    let schedule = concert.schedules[0];
    let fan = app.create_user("facts").await;
    app.charge(&fan, 120).await;
    let access = app.admit(&fan, concert.id).await;
    let id = held(&app, &access, schedule, 7).await;

    let r = app.hold(&access, schedule, 7).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "SEAT_UNAVAILABLE");
    assert_eq!(v["error"]["reservation_id"], id, "{v}");

    let r = app.pay(&access, id, None).await;
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["balance"].as_i64(), v["error"]["due"].as_i64()),
        (Some(120), Some(500))
    );

    // A queue token where an access token belongs: the message names the kind needed.
    let joined = app
        .join_queue(&app.create_user("kinds").await, concert.id)
        .await;
    let r = app
        .hold(joined["queue_token"].as_str().unwrap(), schedule, 1)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("access") && message.contains("queue"),
        "{message}"
    );
    app.stop().await;
}

/// Leaving ends the access: unpaid holds are released at once, and the token says why.
#[tokio::test]
async fn leaving_releases_unpaid_holds() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100")]).await;
    let concert = app.create_concert(1, 10).await;
    let fan: User = app.create_user("leaver").await;
    let joined = app.join_queue(&fan, concert.id).await;
    let qt = joined["queue_token"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let access = loop {
        let v: Value = app
            .http
            .get(app.url("/v1/queue/status"))
            .bearer_auth(&qt)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(a) = v["access_token"].as_str() {
            break a.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let a = held(&app, &access, concert.schedules[0], 1).await;
    let b = held(&app, &access, concert.schedules[0], 2).await;
    let r = app.leave(&qt).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(reservation_status(&app, a).await, "cancelled");
    assert_eq!(reservation_status(&app, b).await, "cancelled");
    let r = app.hold(&access, concert.schedules[0], 3).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("left"),
        "{v}"
    );
    app.assert_invariants().await;
    app.stop().await;
}

/// A hold never outlives the admission it was taken under.
#[tokio::test]
async fn a_hold_ends_no_later_than_the_access() {
    let app = spawn_with(&[("ACCESS_TTL_SECS", "20"), ("HOLD_TTL_SECS", "300")]).await;
    let concert = app.create_concert(1, 10).await;
    let fan = app.create_user("short window").await;
    let access = app.admit(&fan, concert.id).await;
    let r = app.hold(&access, concert.schedules[0], 1).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let left = ends.signed_duration_since(chrono::Utc::now());
    assert!(
        left <= chrono::Duration::seconds(21),
        "the hold ends with the 20 s window, not after 300 s: {left}"
    );
    app.stop().await;
}

/// A stream ticket opens one stream, once; a queue token is never accepted in a URL.
#[tokio::test]
async fn stream_tickets_are_single_use() {
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let fan = app.create_user("streamer").await;
    let qt = app.join_queue(&fan, concert.id).await["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ticket = app.stream_ticket(&qt).await;
    let first = app
        .http
        .get(app.url(&format!("/v1/queue/events?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    drop(first);
    let again = app
        .http
        .get(app.url(&format!("/v1/queue/events?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(again).await, "UNAUTHORIZED");
    let r = app
        .http
        .get(app.url(&format!("/v1/queue/events?token={qt}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Past `SSE_MAX_STREAMS` an instance refuses new streams with 503 and `Retry-After` (the page
/// then polls), and takes them again once one closes.
#[tokio::test]
async fn streams_beyond_the_cap_are_refused_with_retry_after() {
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0"), ("SSE_MAX_STREAMS", "1")]).await;
    let concert = app.create_concert(1, 10).await;
    let mut tokens = Vec::new();
    for u in app.create_users(2).await {
        tokens.push(
            app.join_queue(&u, concert.id).await["queue_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A fresh client per stream: each opens its own connection, served on the raw socket.
    let open = |t: String| {
        let url = app.url("/v1/queue/events");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
        }
    };
    let first = open(tokens[0].clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = open(tokens[1].clone()).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key("retry-after"));
    drop(first);
    let started = Instant::now();
    loop {
        // The first stream's end is noticed when its connection closes.
        let again = open(tokens[1].clone()).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slot never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
