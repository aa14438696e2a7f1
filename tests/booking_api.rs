//! The booking routes end to end: happy paths, hold expiry, and every contract error case with
//! its code. Each error case also checks that nothing changed.

mod common;

use common::{ADMIN_TOKEN, error_code, spawn_app, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_fan_charges_holds_pays_and_the_seat_is_sold() {
    let app = spawn_app().await;
    let concert = app.create_concert(2, 4500).await;
    let user = app.create_user("Ada").await;
    assert_eq!(app.charge(&user, 10_000).await["balance"], 10_000);
    let access = app.admit(&user, concert.id).await;

    let r = app
        .http
        .get(app.url(&format!("/v1/concerts/{}/schedules", concert.id)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let schedules: Value = r.json().await.unwrap();
    assert_eq!(schedules["name"], "Test Concert");
    assert_eq!(schedules["schedules"].as_array().unwrap().len(), 2);
    assert_eq!(schedules["schedules"][0]["total_seats"], 50);
    assert_eq!(schedules["schedules"][0]["available_seats"], 50);

    let schedule = concert.schedules[0];
    let r = app.hold(&access, schedule, 12).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let hold: Value = r.json().await.unwrap();
    assert_eq!(hold["status"], "held");
    assert_eq!(hold["seat_no"], 12);
    assert_eq!(hold["price"], 4500);
    assert!(hold["expires_at"].as_str().unwrap().ends_with('Z'));
    let reservation = hold["reservation_id"].as_u64().unwrap();

    let seats: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{schedule}/seats")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seats["seats"].as_array().unwrap().len(), 50);
    assert_eq!(
        seats["seats"][11],
        json!({ "seat_no": 12, "price": 4500, "status": "held" })
    );
    assert_eq!(seats["seats"][0]["status"], "available");

    let r = app.pay(&access, reservation, Some("pay-1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let paid: Value = r.json().await.unwrap();
    assert_eq!(paid["status"], "completed");
    assert_eq!(paid["amount"], 4500);
    assert_eq!(paid["balance"], 5500);
    assert_eq!(paid["seat_no"], 12);
    assert_eq!(paid["concert_name"], "Test Concert");
    assert_eq!(paid["reservation_id"], reservation);

    // The payment revoked the access token…
    let mut revoked = false;
    for _ in 0..100 {
        let r = app.hold(&access, schedule, 13).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            assert_eq!(error_code(r).await, "TOKEN_REVOKED");
            revoked = true;
            break;
        }
        // Revocation runs right after commit; give it its moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revoked, "access token still works after payment");
    // …but a retry with the same key still gets the first result.
    let r = app.pay(&access, reservation, Some("pay-1")).await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), paid);

    // A new admission sees the seat sold, and a replay with the newer token still works.
    let access2 = app.admit(&user, concert.id).await;
    let seats: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{schedule}/seats")))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seats["seats"][11]["status"], "sold");
    let r = app.pay(&access2, reservation, Some("pay-1")).await;
    assert_eq!(r.json::<Value>().await.unwrap(), paid);
    let r = app.pay(&access2, reservation, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "ALREADY_PAID");
    let got: Value = app
        .http
        .get(app.url(&format!("/v1/reservations/{reservation}")))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "confirmed");
    assert_eq!(app.balance(&user).await, 5500);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn an_expired_hold_frees_the_seat_before_the_sweep_and_refuses_payment() {
    let app = spawn_with(&[("HOLD_TTL_SECS", "1")]).await;
    let concert = app.create_concert(1, 100).await;
    let schedule = concert.schedules[0];
    let first = app.create_user("slow").await;
    let second = app.create_user("next").await;
    app.charge(&first, 1000).await;
    let a1 = app.admit(&first, concert.id).await;
    let a2 = app.admit(&second, concert.id).await;
    let hold: Value = app.hold(&a1, schedule, 5).await.json().await.unwrap();
    let reservation = hold["reservation_id"].as_u64().unwrap();
    assert_eq!(
        app.hold(&a2, schedule, 5).await.status(),
        StatusCode::CONFLICT
    );

    // Wait for the hold's own end (this tests expiry itself, so time must pass).
    let started = Instant::now();
    loop {
        let got: Value = app
            .http
            .get(app.url(&format!("/v1/reservations/{reservation}")))
            .bearer_auth(&a1)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if got["status"] == "expired" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "hold never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not swept yet: the row still says held, yet the seat shows available…
    let stored: String =
        sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM reservations WHERE id = ?")
            .bind(reservation)
            .fetch_one(app.app.db.primary())
            .await
            .unwrap();
    assert_eq!(stored, "held");
    let seats: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{schedule}/seats")))
        .bearer_auth(&a2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seats["seats"][4]["status"], "available");

    // …payment is refused with no debit…
    let r = app.pay(&a1, reservation, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "HOLD_EXPIRED");
    assert_eq!(app.balance(&first).await, 1000);

    // …and someone else can hold it at once.
    assert_eq!(
        app.hold(&a2, schedule, 5).await.status(),
        StatusCode::CREATED
    );

    // The sweep marks other expired holds.
    let other: Value = app.hold(&a1, schedule, 6).await.json().await.unwrap();
    let other_id = other["reservation_id"].as_u64().unwrap();
    // (Other holds of this test expire a few ms apart, so one sweep may mark only some.)
    let started = Instant::now();
    loop {
        queuegate::booking::sweep::run_once(&app.app.db)
            .await
            .unwrap();
        let stored: String =
            sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM reservations WHERE id = ?")
                .bind(other_id)
                .fetch_one(app.app.db.primary())
                .await
                .unwrap();
        if stored == "expired" {
            break;
        }
        assert_eq!(stored, "held", "only the sweep changes this hold");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sweep never marked the hold"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn insufficient_balance_is_402_and_changes_nothing() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 5000).await;
    let user = app.create_user("short").await;
    app.charge(&user, 4999).await;
    let access = app.admit(&user, concert.id).await;
    let hold: Value = app
        .hold(&access, concert.schedules[0], 1)
        .await
        .json()
        .await
        .unwrap();
    let reservation = hold["reservation_id"].as_u64().unwrap();
    let r = app.pay(&access, reservation, Some("k1")).await;
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(error_code(r).await, "INSUFFICIENT_BALANCE");
    assert_eq!(app.balance(&user).await, 4999);
    let status: String =
        sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM reservations WHERE id = ?")
            .bind(reservation)
            .fetch_one(app.app.db.primary())
            .await
            .unwrap();
    assert_eq!(status, "held");
    // Topping up and retrying with the same key pays.
    app.charge(&user, 1).await;
    assert_eq!(
        app.pay(&access, reservation, Some("k1")).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.balance(&user).await, 0);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn holds_are_limited_to_four_per_user_per_schedule_and_cancel_frees_the_seat() {
    let app = spawn_app().await;
    let concert = app.create_concert(2, 10).await;
    let user = app.create_user("greedy").await;
    let other = app.create_user("other").await;
    let access = app.admit(&user, concert.id).await;
    let other_access = app.admit(&other, concert.id).await;
    let mut ids = Vec::new();
    for seat in 1..=4 {
        let r = app.hold(&access, concert.schedules[0], seat).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(
            r.json::<Value>().await.unwrap()["reservation_id"]
                .as_u64()
                .unwrap(),
        );
    }
    let r = app.hold(&access, concert.schedules[0], 5).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "HOLD_LIMIT_REACHED");
    // Another date has its own limit.
    assert_eq!(
        app.hold(&access, concert.schedules[1], 5).await.status(),
        StatusCode::CREATED
    );

    // Someone else cannot read or cancel my hold.
    let mine = format!("/v1/reservations/{}", ids[0]);
    let r = app
        .http
        .delete(app.url(&mine))
        .bearer_auth(&other_access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .http
        .get(app.url(&mine))
        .bearer_auth(&other_access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Cancelling frees the seat at once and the limit slot with it.
    let r = app
        .http
        .delete(app.url(&mine))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .http
        .delete(app.url(&mine))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "HOLD_EXPIRED");
    let got: Value = app
        .http
        .get(app.url(&mine))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "cancelled");
    assert_eq!(
        app.hold(&other_access, concert.schedules[0], 1)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.hold(&access, concert.schedules[0], 6).await.status(),
        StatusCode::CREATED
    );
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn every_contract_error_has_its_status_and_code() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 10).await;
    let other_concert = app.create_concert(1, 10).await;
    let user = app.create_user("tester").await;
    let stranger = app.create_user("stranger").await;
    let access = app.admit(&user, concert.id).await;
    let schedule = concert.schedules[0];
    let http = &app.http;

    // 401: missing, garbage, forged, wrong kind, expired.
    let r = http
        .post(app.url("/v1/reservations"))
        .json(&json!({"schedule_id": schedule, "seat_no": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    for bad in ["garbage", "a.b.c", user.token.as_str()] {
        let r = app.hold(bad, schedule, 1).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(error_code(r).await, "UNAUTHORIZED");
    }
    let queue_id = app.line(concert.id).await.queue_id;
    let forged = queuegate::tokens::TokenKeys::new(b"not-the-secret-not-the-secret-!!")
        .mint_access(&queuegate::tokens::AccessToken {
            user_id: user.id,
            concert_id: concert.id,
            queue_id,
            seq: 1,
            exp: queuegate::tokens::now_secs() + 600,
        });
    assert_eq!(
        app.hold(&forged, schedule, 1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let expired = app.app.tokens.mint_access(&queuegate::tokens::AccessToken {
        user_id: user.id,
        concert_id: concert.id,
        queue_id,
        seq: 1,
        exp: queuegate::tokens::now_secs() - 60,
    });
    assert_eq!(
        app.hold(&expired, schedule, 1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A genuine token for an admission that was never granted (or already ended).
    let never = app.app.tokens.mint_access(&queuegate::tokens::AccessToken {
        user_id: stranger.id,
        concert_id: concert.id,
        queue_id,
        seq: 999,
        exp: queuegate::tokens::now_secs() + 600,
    });
    let r = app.hold(&never, schedule, 1).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::UNAUTHORIZED, "TOKEN_REVOKED")
    );

    // 403: another user's wallet; another concert's schedule.
    let r = http
        .get(app.url(&format!("/v1/users/{}/balance", stranger.id)))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let r = http
        .post(app.url(&format!("/v1/users/{}/balance/charge", stranger.id)))
        .bearer_auth(&user.token)
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.balance(&stranger).await, 0);
    let r = app.hold(&access, other_concert.schedules[0], 1).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let r = http
        .get(app.url(&format!("/v1/concerts/{}/schedules", other_concert.id)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // 404: unknown schedule, reservation, route; non-numeric ids.
    let r = app.hold(&access, 999_999, 1).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    for path in [
        "/v1/reservations/999999",
        "/v1/reservations/abc",
        "/v1/schedules/999999/seats",
        "/v1/nothing",
    ] {
        let r = http
            .get(app.url(path))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(r).await, "NOT_FOUND");
    }
    let r = app.pay(&access, 999_999, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // 405 with Allow.
    let r = http
        .patch(app.url("/v1/reservations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");

    // 409: taken seat.
    assert_eq!(
        app.hold(&access, schedule, 9).await.status(),
        StatusCode::CREATED
    );
    let other_access = app.admit(&stranger, concert.id).await;
    let r = app.hold(&other_access, schedule, 9).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::CONFLICT, "SEAT_UNAVAILABLE")
    );

    // 422: out-of-range and mistyped values, naming the field; 400: malformed JSON.
    for (body, field) in [
        (json!({"schedule_id": schedule, "seat_no": 0}), "seat_no"),
        (json!({"schedule_id": schedule, "seat_no": 51}), "seat_no"),
        (json!({"schedule_id": schedule, "seat_no": "3"}), "seat_no"),
        (json!({"schedule_id": schedule}), "seat_no"),
        (json!({"schedule_id": -1, "seat_no": 3}), "schedule_id"),
        (json!([1, 2]), "body"),
    ] {
        let r = http
            .post(app.url("/v1/reservations"))
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "VALIDATION_FAILED");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
        assert!(v["error"]["request_id"].as_str().is_some());
    }
    let charge_url = app.url(&format!("/v1/users/{}/balance/charge", user.id));
    for amount in [
        json!(0),
        json!(-5),
        json!(1_000_000_001u64),
        json!(1.5),
        json!("10"),
        json!(1e30),
    ] {
        let r = http
            .post(&charge_url)
            .bearer_auth(&user.token)
            .json(&json!({"amount": amount}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
    }
    for raw in ["{", "", "{\"amount\": }", "\u{0}"] {
        let r = http
            .post(&charge_url)
            .bearer_auth(&user.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{raw:?}");
        assert_eq!(error_code(r).await, "BAD_REQUEST");
    }
    let r = http
        .post(&charge_url)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "has spaces in it")
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = http
        .post(app.url("/v1/users"))
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // 413: a body over 64 KiB, announced or not.
    let big = format!("{{\"amount\": 1, \"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = http
        .post(&charge_url)
        .bearer_auth(&user.token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        app.balance(&user).await,
        0,
        "no error case changed the balance"
    );

    // Admin API: wrong token 401, bad values 422.
    let r = http
        .post(app.url("/v1/admin/concerts"))
        .bearer_auth("wrong-token-wrong-token")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for body in [
        json!({"name": "x", "schedules": []}),
        json!({"name": "x", "schedules": [{"starts_at": "tomorrow", "price": 1}]}),
        json!({"name": "x", "schedules": [{"starts_at": "2030-01-01T00:00:00Z", "price": -1}]}),
        json!({"schedules": [{"starts_at": "2030-01-01T00:00:00Z", "price": 1}]}),
    ] {
        let r = http
            .post(app.url("/v1/admin/concerts"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn request_ids_operations_and_metrics() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let r = app
        .http
        .get(app.url("/nope"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["request_id"], id.as_str());

    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["redis"], "ok");
    assert_eq!(v["database"], "ok");
    let masters = common::test_redlock_urls().split(',').count();
    assert_eq!(v["redlock"], format!("{masters}/{masters}"));

    let text = app.metrics_text().await;
    assert!(text.contains("queuegate_http_requests_total"));
    assert!(text.contains("queuegate_http_request_duration_seconds_bucket"));
    assert!(text.contains("queuegate_db_pool_connections"));
    app.stop().await;
}

#[tokio::test]
async fn listings_read_from_the_replica_when_one_is_configured() {
    // The "replica" is a second, empty database: whatever the listings return must come from
    // it, while writes and the gate's lookups go to the primary.
    let replica_db = format!("qgt_{}", uuid::Uuid::new_v4().simple());
    let replica_url = format!("mysql://root@127.0.0.1:3306/{replica_db}");
    queuegate::db::Db::ensure_database(&replica_url)
        .await
        .unwrap();
    queuegate::db::Db::connect_lazy(&replica_url, None, 1)
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let app = spawn_with(&[("DATABASE_REPLICA_URL", replica_url.as_str())]).await;
    let concert = app.create_concert(1, 10).await;
    let user = app.create_user("reader").await;
    let access = app.admit(&user, concert.id).await;
    let seats = app
        .http
        .get(app.url(&format!("/v1/schedules/{}/seats", concert.schedules[0])))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        seats.status(),
        StatusCode::NOT_FOUND,
        "the seat map was read from the (empty) replica"
    );
    let schedules = app
        .http
        .get(app.url(&format!("/v1/concerts/{}/schedules", concert.id)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedules.status(),
        StatusCode::NOT_FOUND,
        "so were the schedules"
    );
    // Holds go to the primary and work.
    assert_eq!(
        app.hold(&access, concert.schedules[0], 1).await.status(),
        StatusCode::CREATED
    );
    let text = app.metrics_text().await;
    assert!(
        text.contains("pool=\"replica\""),
        "metrics tell the pools apart"
    );
    assert!(text.contains("pool=\"primary\""));
    app.stop().await;
}
