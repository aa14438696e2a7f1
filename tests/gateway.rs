//! Gateway mode end to end: a real origin on loopback (Debian's nginx serving static files, or
//! a small hyper origin in this process that echoes and streams) behind a real gateway with its
//! own database and key prefix.

mod common;
#[path = "support/origins.rs"]
mod origins;

use bytes::Bytes;
use common::servers::{Gateway, RedisServer, free_port};
use common::{ADMIN_TOKEN, TestApp, User, error_code, metric_sum, spawn_with};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use origins::{EchoOrigin, Nginx};
use queuegate::domain::{ConcertId, UserId};
use queuegate::tokens::{AccessToken, TokenKeys, now_secs};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};
use sha2::Sha256;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDENTITY_KEY: &str = "origin-shared-key-0123456789abcdef";
const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";
const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A gateway in front of `origin`, guarding `/shop` with the line of concert 1 (each test's
/// database is fresh, so its first concert is 1).
async fn gateway_app(origin: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("UPSTREAM_URL", origin),
        ("UPSTREAM_CONCERT_ID", "1"),
        ("UPSTREAM_PATHS", "/shop"),
        ("UPSTREAM_IDENTITY_KEY", IDENTITY_KEY),
        ("QUEUE_TICK_MS", "100"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_with(&env).await;
    let concert = app.create_concert(1, 100).await;
    assert_eq!(concert.id, concert1(), "a fresh database's first concert");
    app
}

fn concert1() -> ConcertId {
    ConcertId::new(1).unwrap()
}

/// A client that shows redirects instead of following them (and keeps no cookies).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A user admitted to concert 1 at once (the real admission record), with the access token.
async fn admitted_user(app: &TestApp) -> (User, String) {
    let user = app.create_user("visitor").await;
    let access = app.admit(&user, concert1()).await;
    (user, access)
}

/// Polls the queue status until admitted (the ticker admits every 100 ms); the access token.
async fn wait_admitted(app: &TestApp, queue_token: &str) -> String {
    let started = Instant::now();
    loop {
        let r = app
            .http
            .get(app.url("/v1/queue/status"))
            .bearer_auth(queue_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        if v["status"] == "admitted" {
            return v["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not admitted: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second instance (not in gateway mode) on `app`'s database and queue store, as behind the
/// same load balancer.
async fn second_instance(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let db = app.database_url();
    let prefix = app.app.settings.redis_key_prefix.clone();
    let mut env = vec![
        ("DATABASE_URL", db.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    env.extend_from_slice(extra);
    spawn_with(&env).await
}

/// Trades an access token for the grant cookie; returns the cookie pair and the answer.
async fn session(app: &TestApp, access: &str, back: Option<&str>) -> (String, Value, String) {
    let r = client()
        .post(app.url("/v1/gateway/session"))
        .bearer_auth(access)
        .json(&json!({ "return": back }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, r.json().await.unwrap(), set)
}

#[tokio::test]
async fn a_browser_waits_in_line_then_reaches_the_origins_page() {
    let nginx = Nginx::start(&[
        (
            "shop/index.html",
            b"<!doctype html><title>Shop</title><h1>The Shop</h1>",
        ),
        ("shop/checkout.html", b"<h1>Checkout</h1>"),
    ]);
    let app = gateway_app(&nginx.base(), &[]).await;
    let http = client();

    // Unadmitted: the shop's page sends the browser to the line, with the way back.
    let r = http
        .get(app.url("/shop/checkout.html?x=1"))
        .header(ACCEPT, HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, "/concerts/1?return=/shop/checkout.html%3Fx%3D1");
    assert_eq!(r.headers()["cache-control"], "no-store");

    // The waiting page is queuegate's own.
    let r = http
        .get(app.url(&location))
        .header(ACCEPT, HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("app.js"));

    // What the page does: join, wait, get admitted, trade the token for the cookie.
    let fan = app.create_user("fan").await;
    let joined = app.join_queue(&fan, concert1()).await;
    let access = wait_admitted(&app, joined["queue_token"].as_str().unwrap()).await;
    let (cookie, answer, set_cookie) =
        session(&app, &access, Some("/shop/checkout.html?x=1")).await;
    assert_eq!(answer["return_to"], "/shop/checkout.html?x=1");
    assert!(answer["access_expires_at"].is_string());
    assert!(set_cookie.starts_with("qg_grant="), "{set_cookie}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP, no trusted proxy"
    );

    // Back at the return path, the origin's page comes through.
    let r = http
        .get(app.url("/shop/checkout.html?x=1"))
        .header(ACCEPT, HTML)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert!(r.headers().contains_key("x-request-id"));
    // nginx set no caching rules for the page: no shared cache may keep what one admitted
    // visitor got.
    assert_eq!(r.headers()["cache-control"], "private");
    assert_eq!(r.text().await.unwrap(), "<h1>Checkout</h1>");
    // An API client with the access token passes too; an unknown page is the origin's 404.
    let r = http
        .get(app.url("/shop/index.html"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("The Shop"));
    let r = http
        .get(app.url("/shop/missing.html"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("nginx"));
    // Paths outside the protected prefixes are not the origin's business.
    let r = http
        .get(app.url("/shopping"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NOT_FOUND");
    let text = app.metrics_text().await;
    assert!(
        metric_sum(
            &text,
            "queuegate_upstream_requests_total",
            Some(("status", "200"))
        ) >= 2.0
    );
    assert!(metric_sum(&text, "queuegate_upstream_duration_seconds_count", None) >= 3.0);
    assert!(
        metric_sum(
            &text,
            "queuegate_gateway_requests_total",
            Some(("decision", "redirected"))
        ) >= 1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn api_clients_get_the_json_envelope_never_a_redirect() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let http = client();
    let cases = [
        ("GET", None),
        ("GET", Some("application/json")),
        ("POST", Some(HTML)),
        ("DELETE", Some(HTML)),
        ("PUT", None),
    ];
    for (method, accept) in cases {
        let mut rb = http.request(method.parse().unwrap(), app.url("/shop/echo?a=1"));
        if let Some(a) = accept {
            rb = rb.header(ACCEPT, a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {accept:?}");
        assert!(r.headers().get(LOCATION).is_none());
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "NOT_ADMITTED");
        assert_eq!(
            v["error"]["queue_url"],
            "/concerts/1?return=/shop/echo%3Fa%3D1"
        );
        assert_eq!(v["error"]["concert_id"], 1);
        assert!(v["error"]["request_id"].is_string());
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("/concerts/1")
        );
    }
    // A browser's HEAD is a navigation too.
    let r = http
        .head(app.url("/shop/echo"))
        .header(ACCEPT, HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A bearer that is not ours (the origin's own credential) admits nobody.
    let r = http
        .get(app.url("/shop/echo"))
        .bearer_auth("origin-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NOT_ADMITTED");
    assert_eq!(origin.requests(), 0, "nothing reached the origin");
    // The session endpoint wants a live access token of this line.
    let r = http
        .post(app.url("/v1/gateway/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let user = app.create_user("other line").await;
    let second = app.create_concert(1, 100).await;
    let other = app.admit(&user, second.id).await;
    let r = http
        .post(app.url("/v1/gateway/session"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "FORBIDDEN");
    // …and it exists only in gateway mode.
    let plain = spawn_with(&[]).await;
    let r = http
        .post(plain.url("/v1/gateway/session"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    plain.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn leaving_stops_forwarding_at_once() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let http = client();
    let fan = app.create_user("fan").await;
    let joined = app.join_queue(&fan, concert1()).await;
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_admitted(&app, &queue_token).await;
    let (cookie, _, _) = session(&app, &access, None).await;

    let r = http
        .get(app.url("/shop/echo"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(app.url("/shop/echo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let served = origin.requests();

    let r = app.leave(&queue_token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // The very next requests: the browser goes back to the line and loses the cookie, the API
    // client is refused; nothing more reaches the origin.
    let r = http
        .get(app.url("/shop/echo"))
        .header(ACCEPT, HTML)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cleared = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("qg_grant=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let r = http
        .post(app.url("/shop/echo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "NOT_ADMITTED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("you left the queue")
    );
    let r = http
        .post(app.url("/v1/gateway/session"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "TOKEN_REVOKED");
    assert_eq!(origin.requests(), served);
    app.stop().await;
}

#[tokio::test]
async fn forged_expired_and_foreign_grants_are_refused() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let http = client();
    let (user, _) = admitted_user(&app).await;
    let queue_id = app.line(concert1()).await.queue_id;
    let claims = |concert: u64, exp: u64| AccessToken {
        user_id: user.id,
        concert_id: ConcertId::new(concert).unwrap(),
        queue_id,
        seq: 1,
        exp,
    };
    let ours = TokenKeys::new(TEST_SECRET.as_bytes());
    let forged = TokenKeys::new(b"another-secret-another-secret-xx")
        .mint_access(&claims(1, now_secs() + 600));
    let expired = ours.mint_access(&claims(1, now_secs() - 60));
    let second = app.create_concert(1, 100).await;
    let other_concert = app.admit(&user, second.id).await;
    let user_token = ours.mint_user(user.id);
    // Genuine claims, but no such admission in the store (seq 999).
    let never_admitted = ours.mint_access(&AccessToken {
        seq: 999,
        ..claims(1, now_secs() + 600)
    });
    for (what, token) in [
        ("forged", forged.as_str()),
        ("expired", expired.as_str()),
        ("another concert", other_concert.as_str()),
        ("a user token", user_token.as_str()),
        ("never admitted", never_admitted.as_str()),
        ("garbage", "not-a-token"),
    ] {
        let r = http
            .get(app.url("/shop/echo"))
            .header(ACCEPT, HTML)
            .header(COOKIE, format!("qg_grant={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{what}");
        assert!(
            r.headers()[SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0"),
            "{what}: the refused cookie is cleared"
        );
        let r = http
            .get(app.url("/shop/echo"))
            .header(COOKIE, format!("qg_grant={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, "NOT_ADMITTED", "{what}");
        let r = http
            .get(app.url("/shop/echo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, "NOT_ADMITTED", "{what} as bearer");
    }
    assert_eq!(origin.requests(), 0);
    app.stop().await;
}

/// The concert the identity header of an echoed request names, after checking its signature.
async fn identity_concert(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), StatusCode::OK);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let echo: Value = r.json().await.unwrap();
    verify_identity(
        echo["headers"]["x-queuegate-identity"][0].as_str().unwrap(),
        &rid,
    )
    .1
}

/// The value a `Set-Cookie` header gives `qg_grant`.
fn grant_value(set_cookie: &str) -> &str {
    set_cookie
        .strip_prefix("qg_grant=")
        .and_then(|v| v.split(';').next())
        .expect("a qg_grant cookie")
}

/// A GET of `path` with the grant cookie `cookie` (a `name=value` pair), as a browser
/// navigating (`html`) or as an API client.
async fn browse(app: &TestApp, path: &str, cookie: Option<&str>, html: bool) -> reqwest::Response {
    let mut r = client().get(app.url(path));
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    if html {
        r = r.header(ACCEPT, HTML);
    }
    r.send().await.unwrap()
}

/// `POST /v1/gateway/session` with `access`, carrying the grant cookie `cookie` if any.
async fn trade(app: &TestApp, access: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client()
        .post(app.url("/v1/gateway/session"))
        .bearer_auth(access);
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn two_sales_on_one_shop_each_behind_its_own_line() {
    let origin = EchoOrigin::start().await;
    // `/shop` is line 1's (the default), `/shop/vip` line 2's: the longest prefix decides.
    let app = gateway_app(&origin.base(), &[("UPSTREAM_PATHS", "/shop,/shop/vip=2")]).await;
    let vip = app.create_concert(1, 100).await;
    assert_eq!(vip.id.get(), 2, "a fresh database's second concert");
    let fan = app.create_user("fan").await;
    let first = app.admit(&fan, concert1()).await;

    // Admitted to line 1 only: line 1's paths pass, line 2's send the visitor to line 2.
    let r = get_with_bearer(&app, "/shop/echo", &first).await;
    assert_eq!(identity_concert(r).await, 1);
    let r = get_with_bearer(&app, "/shop/vip/echo", &first).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "NOT_ADMITTED");
    assert_eq!(v["error"]["concert_id"], 2);
    assert_eq!(v["error"]["queue_url"], "/concerts/2?return=/shop/vip/echo");
    let r = browse(&app, "/shop/vip/seats?row=A", None, true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        "/concerts/2?return=/shop/vip/seats%3Frow%3DA"
    );

    // The browser's cookie carries a grant per line: the second session keeps the first's.
    let (cookie1, _, _) = session(&app, &first, None).await;
    assert_eq!(
        cookie1,
        format!("qg_grant={first}"),
        "one line: the token itself"
    );
    let joined = app.join_queue(&fan, vip.id).await;
    let vip_queue = joined["queue_token"].as_str().unwrap().to_owned();
    let second = wait_admitted(&app, &vip_queue).await;
    let r = trade(&app, &second, Some(&cookie1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_eq!(grant_value(&set), format!("{first}~{second}"));
    let both = format!("qg_grant={}", grant_value(&set));
    for (path, line) in [("/shop/echo", 1), ("/shop/vip/echo", 2), ("/shop/vipx", 1)] {
        let r = browse(&app, path, Some(&both), false).await;
        assert_eq!(identity_concert(r).await, line, "{path}");
    }
    // Trading the same line's token again replaces its grant, never doubles it.
    let r = trade(&app, &second, Some(&both)).await;
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_eq!(grant_value(&set), format!("{first}~{second}"));

    // Leaving line 2 ends that grant only: the cookie loses it and keeps line 1's.
    assert_eq!(app.leave(&vip_queue).await.status(), StatusCode::NO_CONTENT);
    let r = browse(&app, "/shop/vip/echo", Some(&both), true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_eq!(grant_value(&set), first, "{set}");
    assert!(!set.contains("Max-Age=0"), "{set}");
    let r = browse(&app, "/shop/echo", Some(&both), false).await;
    assert_eq!(
        identity_concert(r).await,
        1,
        "line 1's grant still opens line 1's paths"
    );
    // A cookie holding only another line's live grant is left as it is.
    let r = browse(&app, "/shop/vip/echo", Some(&cookie1), false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!r.headers().contains_key(SET_COOKIE));

    // Each line's decisions are counted under its own concert.
    let text = app.metrics_text().await;
    let counted = |concert: &str, decision: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("queuegate_gateway_requests_total{"))
            .filter(|l| l.contains(&format!("concert=\"{concert}\"")))
            .filter(|l| l.contains(&format!("decision=\"{decision}\"")))
            .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
            .sum()
    };
    assert!(counted("2", "redirected") >= 2.0, "{text}");
    assert!(counted("2", "refused") >= 2.0, "{text}");
    assert!(counted("2", "forwarded") >= 1.0, "{text}");
    assert!(counted("1", "forwarded") >= 3.0, "{text}");

    // A token for a concert whose line guards nothing here buys no cookie.
    let third = app.create_concert(1, 100).await;
    let elsewhere = app.admit(&fan, third.id).await;
    let r = trade(&app, &elsewhere, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!r.headers().contains_key(SET_COOKIE));
    app.stop().await;
}

/// The identity header's fields, after checking its signature the way an origin would.
fn verify_identity(header: &str, request_id: &str) -> (u64, u64, u64) {
    let (fields, sig) = header.rsplit_once(";sig=").expect("sig");
    let get = |name: &str| -> String {
        fields
            .split(';')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let (user, concert, exp, rid) = (get("user"), get("concert"), get("exp"), get("rid"));
    assert_eq!(rid, request_id);
    let mut mac = Hmac::<Sha256>::new_from_slice(IDENTITY_KEY.as_bytes()).unwrap();
    mac.update(format!("{user}|{concert}|{exp}|{rid}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sig, want,
        "the identity header verifies with the shared key"
    );
    (
        user.parse().unwrap(),
        concert.parse().unwrap(),
        exp.parse().unwrap(),
    )
}

#[tokio::test]
async fn forwarded_requests_carry_exactly_the_specified_headers() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let (user, access) = admitted_user(&app).await;
    let http = client();

    // A grant in the cookie; an Authorization meant for the origin passes untouched.
    let r = http
        .get(app.url("/shop/echo?q=1&r=%2F"))
        .header(COOKIE, format!("a=1; qg_grant={access}; b=2"))
        .header(AUTHORIZATION, "Basic b3JpZ2luOmNyZWQ=")
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "trailers")
        .header("upgrade", "websocket")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header(
            "x-queuegate-identity",
            "user=1;concert=1;exp=9999999999;rid=x;sig=00",
        )
        .header("x-request-id", "client-req-1")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The origin's hop-by-hop headers do not come back; its own do.
    for gone in ["keep-alive", "x-origin-hop", "proxy-authenticate"] {
        assert!(r.headers().get(gone).is_none(), "{gone} came back");
    }
    assert_eq!(r.headers()["x-origin"], "echo");
    assert_eq!(r.headers()["x-request-id"], "client-req-1");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/shop/echo");
    assert_eq!(echo["query"], "q=1&r=%2F");
    let h = |name: &str| -> Vec<String> {
        echo["headers"][name]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            h(gone).is_empty(),
            "{gone} reached the origin: {:?}",
            h(gone)
        );
    }
    // `connection` is the origin connection's own (hyper's keep-alive), never the client's list.
    assert!(h("connection").iter().all(|v| !v.contains("x-client-hop")));
    assert_eq!(h("cookie"), vec!["a=1; b=2"], "our cookie stays with us");
    assert_eq!(h("authorization"), vec!["Basic b3JpZ2luOmNyZWQ="]);
    assert_eq!(h("x-end-to-end"), vec!["kept"]);
    assert_eq!(
        h("x-forwarded-for"),
        vec!["127.0.0.1"],
        "a client's own claim is dropped"
    );
    assert_eq!(
        h("x-forwarded-proto"),
        vec!["http"],
        "only a trusted proxy may say https"
    );
    assert_eq!(h("x-forwarded-host"), vec![app.addr.to_string()]);
    assert_eq!(h("host"), vec![origin.addr.to_string()]);
    assert_eq!(h("x-request-id"), vec!["client-req-1"]);
    let identity = h("x-queuegate-identity");
    assert_eq!(identity.len(), 1, "the client's copy is replaced");
    let (u, c, exp) = verify_identity(&identity[0], "client-req-1");
    assert_eq!((u, c), (user.id.get(), 1));
    assert!(exp > now_secs());

    // A grant in Authorization is ours: it does not reach the origin.
    let r = http
        .post(app.url("/shop/echo"))
        .bearer_auth(&access)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert!(echo["headers"]["authorization"].is_null());
    assert_eq!(echo["headers"]["content-length"][0], "5");
    verify_identity(
        echo["headers"]["x-queuegate-identity"][0].as_str().unwrap(),
        &rid,
    );
    app.stop().await;

    // Behind a trusted proxy: its chain is extended, its word on TLS taken, the cookie Secure.
    let app = gateway_app(&origin.base(), &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let (_, access) = admitted_user(&app).await;
    let r = http
        .get(app.url("/shop/echo"))
        .bearer_auth(&access)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "tickets.example")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        echo["headers"]["x-forwarded-for"][0],
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(echo["headers"]["x-forwarded-host"][0], "tickets.example");
    let r = http
        .post(app.url("/v1/gateway/session"))
        .bearer_auth(&access)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
    app.stop().await;
}

#[tokio::test]
async fn queuegates_own_routes_are_never_forwarded() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[("UPSTREAM_PATHS", "/")]).await;
    let (_, access) = admitted_user(&app).await;
    let http = client();
    for path in [
        "/",
        "/concerts/1",
        "/assets/app.js",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        let r = http
            .get(app.url(path))
            .bearer_auth(&access)
            .header(ACCEPT, HTML)
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("x-origin").is_none(),
            "{path} was forwarded"
        );
        assert!(
            r.status() == StatusCode::OK || path == "/readyz",
            "{path}: {}",
            r.status()
        );
    }
    let r = http
        .get(app.url("/v1/nope"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NOT_FOUND");
    assert_eq!(origin.requests(), 0);
    // Everything else is the origin's.
    let r = http
        .get(app.url("/index.html"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-origin"], "echo");
    assert_eq!(origin.requests(), 1);
    app.stop().await;
}

/// Sends one raw request line and returns the status code and the `Location`, if any.
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, Option<String>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_owned())
    });
    (status, location)
}

#[tokio::test]
async fn the_return_path_cannot_become_an_open_redirect() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[("UPSTREAM_PATHS", "/")]).await;
    let (_, access) = admitted_user(&app).await;
    let http = client();
    for bad in [
        "//evil.example",
        "//evil.example/shop",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\r\n/evil.example",
        "evil.example",
        "",
    ] {
        let r = http
            .post(app.url("/v1/gateway/session"))
            .bearer_auth(&access)
            .json(&json!({ "return": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(r.headers().get(SET_COOKIE).is_none(), "{bad:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], "return");
    }
    // Paths a browser would read as another host never produce a redirect to themselves.
    for target in [
        "//evil.example/shop",
        "//evil.example",
        "/\\evil.example/x",
        "/shop/..%2f..%2fevil",
        "/x/%2e%2e/v1/queue",
    ] {
        let (status, location) = raw_get(app.addr, target).await;
        assert!(
            status == 400 || status == 404,
            "{target}: {status} {location:?}"
        );
        assert!(location.is_none(), "{target}: {location:?}");
    }
    // A redirect's return path is always one same-origin path, even with a hostile query.
    let (status, location) = raw_get(app.addr, "/shop?next=//evil.example").await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    // The whole path and query is one encoded value, starting with a single `/`.
    assert_eq!(location, "/concerts/1?return=/shop%3Fnext%3D//evil.example");
    assert_eq!(origin.requests(), 0);
    app.stop().await;
}

#[tokio::test]
async fn origin_down_is_502_and_origin_stalled_is_504_within_the_timeout() {
    // Nothing listens on this port: connection refused.
    let down = format!("http://127.0.0.1:{}", free_port());
    let app = gateway_app(&down, &[]).await;
    let (_, access) = admitted_user(&app).await;
    let http = client();
    let started = Instant::now();
    let r = http
        .get(app.url("/shop/anything"))
        .bearer_auth(&access)
        .header(ACCEPT, HTML)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers().contains_key(RETRY_AFTER));
    assert_eq!(error_code(r).await, "BAD_GATEWAY");
    assert!(took < Duration::from_secs(2), "502 took {took:?}");
    println!("origin down: 502 in {took:?}");
    app.stop().await;

    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "400")]).await;
    let (_, access) = admitted_user(&app).await;
    let started = Instant::now();
    let r = http
        .get(app.url("/shop/stall"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(r.headers().contains_key(RETRY_AFTER));
    assert_eq!(error_code(r).await, "GATEWAY_TIMEOUT");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1500),
        "504 took {took:?}"
    );
    println!("origin stalled: 504 in {took:?} (timeout 400 ms)");
    // The pool is not poisoned: the next request is served.
    let r = http
        .get(app.url("/shop/echo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = app.metrics_text().await;
    assert!(
        metric_sum(
            &text,
            "queuegate_upstream_requests_total",
            Some(("status", "timeout"))
        ) >= 1.0
    );
    assert!(
        metric_sum(
            &text,
            "queuegate_upstream_requests_total",
            Some(("status", "unreachable"))
        ) >= 1.0
    );
    app.stop().await;
}

/// An origin that answers one request per connection and then, after `linger`, closes it
/// without having said so (no `Connection: close`), as an origin does whose keep-alive timeout
/// ran out. Counts the connections it accepted and those it closed.
struct ClosingOrigin {
    base: String,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    closed: Arc<std::sync::atomic::AtomicUsize>,
}

async fn closing_origin(linger: Duration) -> ClosingOrigin {
    use std::sync::atomic::AtomicUsize;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                if !linger.is_zero() {
                    tokio::time::sleep(linger).await;
                }
                drop(stream);
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    ClosingOrigin {
        base,
        accepted,
        closed,
    }
}

#[tokio::test]
async fn origin_connections_are_reused_and_replaced_when_the_origin_closes_them() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let (_, access) = admitted_user(&app).await;
    let http = client();
    let get = |path: &'static str| {
        let (http, url, access) = (http.clone(), app.url(path), access.clone());
        async move {
            let r = http.get(url).bearer_auth(access).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    // One after another: one kept-alive connection carries them all.
    for _ in 0..30 {
        assert_eq!(get("/shop/echo").await.0, StatusCode::OK);
    }
    assert_eq!(origin.requests(), 30);
    assert_eq!(
        origin.connections(),
        1,
        "sequential forwards share one connection"
    );
    // At once: more connections, each back in the pool afterwards.
    let answers = futures::future::join_all((0..8).map(|_| get("/shop/echo"))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
    let after_burst = origin.connections();
    assert!((1..=9).contains(&after_burst), "{after_burst} connections");
    for _ in 0..10 {
        assert_eq!(get("/shop/echo").await.0, StatusCode::OK);
    }
    assert_eq!(
        origin.connections(),
        after_burst,
        "pooled connections are reused"
    );
    app.stop().await;

    // An origin that closes each connection after one answer — at once, or a moment later
    // while the connection sits idle in the pool: no visitor sees the close, and a closed
    // connection is never used again.
    for linger in [Duration::ZERO, Duration::from_millis(20)] {
        let origin = closing_origin(linger).await;
        let app = gateway_app(&origin.base, &[]).await;
        let (_, access) = admitted_user(&app).await;
        for i in 0..10 {
            let r = http
                .get(app.url("/shop/page"))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "request {i}, linger {linger:?}");
            assert_eq!(r.text().await.unwrap(), "ok");
            // The next request comes once the origin has closed this one's connection.
            let started = Instant::now();
            while origin.closed.load(Ordering::SeqCst) < i + 1 {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "origin never closed"
                );
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(
            origin.accepted.load(Ordering::SeqCst),
            10,
            "linger {linger:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_origin_never_holds_more_admitted_visitors_than_max_active() {
    const MAX_ACTIVE: usize = 2;
    const FANS: usize = 5;
    let origin = Arc::new(EchoOrigin::start().await);
    let app = gateway_app(
        &origin.base(),
        &[("QUEUE_MAX_ACTIVE", "2"), ("QUEUE_ADMIT_PER_TICK", "10")],
    )
    .await;
    let http = client();
    let mut fans = Vec::new();
    for i in 0..FANS {
        let user = app.create_user(&format!("fan {i}")).await;
        let joined = app.join_queue(&user, concert1()).await;
        fans.push((user.id, joined["queue_token"].as_str().unwrap().to_owned()));
    }
    let mut inside: Vec<(UserId, String, String, tokio::task::JoinHandle<StatusCode>)> = Vec::new();
    let mut done = 0;
    let started = Instant::now();
    while done < FANS {
        assert!(started.elapsed() < Duration::from_secs(30), "line stuck");
        // Every waiting fan asks: the admitted ones go in (and stay inside the origin until
        // released); nobody else gets through.
        let mut i = 0;
        while i < fans.len() {
            let (id, queue_token) = fans[i].clone();
            let r = app
                .http
                .get(app.url("/v1/queue/status"))
                .bearer_auth(&queue_token)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            if v["status"] == "admitted" {
                let access = v["access_token"].as_str().unwrap().to_owned();
                let (h, url, a) = (http.clone(), app.url("/shop/hold"), access.clone());
                let visit = tokio::spawn(async move {
                    h.get(url).bearer_auth(a).send().await.unwrap().status()
                });
                assert_eq!(origin.next_entered().await, id.get());
                inside.push((id, queue_token, access, visit));
                fans.remove(i);
            } else {
                i += 1;
            }
        }
        let (now, max) = origin.inside();
        assert!(
            now <= MAX_ACTIVE && max <= MAX_ACTIVE,
            "{now} inside, {max} at most"
        );
        if inside.len() == MAX_ACTIVE || (fans.is_empty() && !inside.is_empty()) {
            // One visitor finishes and leaves the line: their grant stops, a place opens.
            let (id, queue_token, access, visit) = inside.remove(0);
            origin.release(id.get());
            assert_eq!(visit.await.unwrap(), StatusCode::OK);
            let r = app.leave(&queue_token).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            let r = http
                .get(app.url("/shop/hold"))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            done += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, max) = origin.inside();
    assert_eq!(max, MAX_ACTIVE, "the origin was full, never over-full");
    app.stop().await;
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples a process's RSS every 10 ms until stopped; the highest value seen.
fn watch_rss(pid: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut max = 0;
        while !s.load(Ordering::Relaxed) {
            max = max.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        max.max(rss_kib(pid))
    });
    (stop, task)
}

const BIG: u64 = 50 * 1024 * 1024;

#[tokio::test]
async fn fifty_megabytes_stream_up_and_down_in_flat_memory() {
    let origin = EchoOrigin::start().await;
    // The database, the key prefix and the admission live in this process's app; the gateway
    // measured is a separate `queuegate` process sharing them.
    let app = spawn_with(&[]).await;
    assert_eq!(app.create_concert(1, 100).await.id, concert1());
    let prefix = app.app.settings.redis_key_prefix.clone();
    let redlock = common::test_redlock_urls();
    let db = app.database_url();
    let base = origin.base();
    let gw = Gateway::start(&[
        ("DATABASE_URL", db.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("REDLOCK_URLS", redlock.as_str()),
        ("JWT_SECRET", TEST_SECRET),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("AUTO_MIGRATE", "false"),
        ("SHUTDOWN_DRAIN_MS", "0"),
        ("SWEEP_INTERVAL_SECS", "3600"),
        ("UPSTREAM_URL", base.as_str()),
        ("UPSTREAM_CONCERT_ID", "1"),
        ("UPSTREAM_PATHS", "/shop"),
    ])
    .await;
    let (_, access) = admitted_user(&app).await;
    let auth = format!("Bearer {access}");

    // Warm up (pools, buffers, allocator arenas), then take the baseline.
    for _ in 0..20 {
        let r = client()
            .get(gw.url("/shop/big?bytes=1048576"))
            .header(AUTHORIZATION, &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
    }
    let baseline = rss_kib(gw.pid());

    // Download: the origin sends as fast as it can, the client reads slowly — if the gateway
    // buffered, the whole 50 MiB would pile up in it.
    let (stop, peak) = watch_rss(gw.pid());
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/shop/big?bytes={BIG}"))
        .header("host", gw.addr.to_string())
        .header("authorization", &auth)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut got, mut frames) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got += d.len() as u64;
        }
        frames += 1;
        if frames % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let down_peak = peak.await.unwrap();
    assert_eq!(got, BIG);
    let down_secs = started.elapsed().as_secs_f64();

    // Upload: the client sends as fast as it can, the origin reads slowly.
    let (stop, peak) = watch_rss(gw.pid());
    let started = Instant::now();
    static BLOCK: [u8; 64 * 1024] = [b'u'; 64 * 1024];
    let chunks = (BIG / BLOCK.len() as u64) as usize;
    let frames = futures::stream::iter(
        (0..chunks).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&BLOCK)))),
    );
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/shop/upload?pause_us=300")
        .header("host", gw.addr.to_string())
        .header("authorization", &auth)
        .header("content-length", BIG.to_string())
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    stop.store(true, Ordering::Relaxed);
    let up_peak = peak.await.unwrap();
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["received"], BIG);
    let up_secs = started.elapsed().as_secs_f64();

    let down_growth = down_peak.saturating_sub(baseline);
    let up_growth = up_peak.saturating_sub(baseline);
    println!(
        "gateway RSS: baseline {baseline} KiB; 50 MiB download peak {down_peak} KiB (+{down_growth} KiB, {down_secs:.1} s); 50 MiB upload peak {up_peak} KiB (+{up_growth} KiB, {up_secs:.1} s)"
    );
    assert!(
        down_growth < 10 * 1024,
        "download grew RSS by {down_growth} KiB"
    );
    assert!(up_growth < 10 * 1024, "upload grew RSS by {up_growth} KiB");
    drop(gw);
    app.stop().await;
}

#[tokio::test]
async fn a_body_framed_twice_reaches_the_origin_framed_once_and_client_faults_are_not_5xx() {
    let origin = EchoOrigin::start().await;
    let app = gateway_app(&origin.base(), &[]).await;
    let (_, access) = admitted_user(&app).await;
    let send = |raw: String| async move {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    // Transfer-Encoding and a contradicting Content-Length: chunked framing wins, the origin
    // gets the five bytes with no Content-Length of 3 beside them (or hyper refuses it: 400).
    let answer = send(format!(
        "POST /shop/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {access}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ))
    .await;
    let status = answer.split(' ').nth(1).unwrap_or("");
    assert!(status == "200" || status == "400", "{answer}");
    if status == "200" {
        assert!(answer.contains(r#"{"received":5}"#), "{answer}");
    }
    // A body that breaks off (announced 1000 bytes, sends 10, then half-closes): the client's
    // fault, never a 502.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /shop/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {access}\r\nContent-Length: 1000\r\n\r\n0123456789"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    println!(
        "TE + CL: {status}; a body that broke off: {:?}",
        answer.lines().next()
    );
    assert!(!answer.starts_with("HTTP/1.1 5"), "{answer}");
    app.stop().await;
}

/// An origin that speaks WebSocket's handshake and nothing more: a request asking to upgrade
/// to `websocket` gets `101` and then every byte it sends comes back; anything else gets
/// `426`. Keeps the request heads it received and counts the tunnels that ended on its side.
struct UpgradeOrigin {
    base: String,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    /// One permit for each tunnel that ended on the origin's side.
    ended: Arc<tokio::sync::Semaphore>,
}

async fn upgrade_origin() -> UpgradeOrigin {
    serve_upgrades(None).await
}

/// The same origin over https, with a certificate for 127.0.0.1 from the CA at the returned
/// path (Debian's `openssl` makes both, as for the https nginx origin).
async fn upgrade_origin_tls() -> (UpgradeOrigin, origins::Certificates) {
    let certs = origins::Certificates::make();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs.chain(), certs.key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    (serve_upgrades(Some(acceptor)).await, certs)
}

async fn serve_upgrades(tls: Option<tokio_rustls::TlsAcceptor>) -> UpgradeOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ended = Arc::new(tokio::sync::Semaphore::new(0));
    let (h, e) = (heads.clone(), ended.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (h, e, tls) = (h.clone(), e.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer_upgrade(stream, h, e).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer_upgrade(stream, h, e).await;
                        }
                    }
                }
            });
        }
    });
    UpgradeOrigin { base, heads, ended }
}

/// One connection of the upgrade origin: `101` and an echo for a WebSocket handshake, `426`
/// for anything else.
async fn answer_upgrade<S>(
    mut stream: S,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    ended: Arc<tokio::sync::Semaphore>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = read_head(&mut stream).await;
    let lower = head.to_ascii_lowercase();
    heads.lock().unwrap().push(head);
    if !lower.contains("\r\nupgrade: websocket\r\n") {
        let _ = stream
            .write_all(b"HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: upgrade, close\r\ncontent-length: 9\r\n\r\nwebsocket")
            .await;
        let _ = stream.flush().await;
        return;
    }
    stream
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-origin: ws\r\n\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    ended.add_permits(1);
}

/// Reads an HTTP head (up to and including the blank line) byte by byte, so nothing after it
/// is consumed.
async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        match stream.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens a raw connection to the gateway and asks `target` for an upgrade to `protocol`,
/// with the grant in `credential` (a whole header line, `Cookie: …` or `Authorization: …`).
async fn ask_upgrade(
    app: &TestApp,
    target: &str,
    protocol: &str,
    credential: Option<&str>,
) -> (tokio::net::TcpStream, String) {
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let credential = credential.map(|c| format!("{c}\r\n")).unwrap_or_default();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\nOrigin: http://{}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{credential}\r\n",
        app.addr, app.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
        .await
        .unwrap();
    (s, head)
}

/// A tunnel to `/shop/live` that the origin switched (`101`), with the grant in `credential`.
async fn open_tunnel(app: &TestApp, credential: &str) -> tokio::net::TcpStream {
    let (ws, head) = ask_upgrade(app, "/shop/live", "websocket", Some(credential)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws
}

/// Sends `msg` through an open tunnel and reads the echo back.
async fn echo(s: &mut tokio::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    back
}

/// Waits (up to 10 s) for the gateway to close a tunnel: the read ends cleanly, with nothing
/// more from the origin.
async fn assert_closed(ws: &mut tokio::net::TcpStream, why: &str) {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{why}: {closed:?}");
}

#[tokio::test]
async fn websockets_pass_for_admitted_visitors_and_close_when_the_grant_ends() {
    let origin = upgrade_origin().await;
    let app = gateway_app(&origin.base, &[]).await;
    // (Metrics are the test process's, shared by the tests running beside this one.)
    let count = |text: &str, name: &str, label: (&str, &str)| metric_sum(text, name, Some(label));
    let before = app.metrics_text().await;

    // Nobody without a grant reaches the origin, upgrade or not.
    let (_, head) = ask_upgrade(&app, "/shop/live", "websocket", None).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(origin.heads.lock().unwrap().is_empty());

    let fan = app.create_user("fan").await;
    let joined = app.join_queue(&fan, concert1()).await;
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_admitted(&app, &queue_token).await;
    let bearer = format!("Authorization: Bearer {access}");

    // Admitted: the origin's 101 comes back with the upgrade it granted, and bytes flow both
    // ways.
    let (mut ws, head) =
        ask_upgrade(&app, "/shop/live?seat-map=1", "websocket", Some(&bearer)).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\nx-origin: ws\r\n"), "{head}");
    assert_eq!(echo(&mut ws, b"hello, seat map").await, b"hello, seat map");
    assert_eq!(echo(&mut ws, &[0u8, 1, 2, 255]).await, [0u8, 1, 2, 255]);
    {
        // The origin was asked for the upgrade itself, with the forward's usual headers and
        // without our access token.
        let heads = origin.heads.lock().unwrap();
        assert_eq!(heads.len(), 1);
        let seen = heads[0].to_ascii_lowercase();
        assert!(
            seen.starts_with("get /shop/live?seat-map=1 http/1.1\r\n"),
            "{seen}"
        );
        assert!(seen.contains("\r\nconnection: upgrade\r\n"), "{seen}");
        assert!(seen.contains("\r\nupgrade: websocket\r\n"), "{seen}");
        assert!(
            seen.contains("\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
            "{seen}"
        );
        assert!(
            seen.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
            "{seen}"
        );
        assert!(seen.contains("\r\nx-queuegate-identity: user="), "{seen}");
        assert!(!seen.contains("authorization"), "{seen}");
    }

    // An upgrade the origin declines is its answer, passed on.
    let (_, head) = ask_upgrade(&app, "/shop/live", "h2c", Some(&bearer)).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");

    // A browser's WebSocket carries the grant cookie, which the origin does not get.
    let (cookie, _, _) = session(&app, &access, None).await;
    let mut browser_ws = open_tunnel(&app, &format!("Cookie: theme=dark; {cookie}")).await;
    assert_eq!(echo(&mut browser_ws, b"seat 7?").await, b"seat 7?");
    {
        let heads = origin.heads.lock().unwrap();
        let seen = heads.last().unwrap().to_ascii_lowercase();
        assert!(seen.contains("\r\ncookie: theme=dark\r\n"), "{seen}");
        assert!(!seen.contains("qg_grant"), "{seen}");
    }

    // Leaving ends the admission: both open tunnels are closed, on both sides.
    let r = app.leave(&queue_token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for ws in [&mut ws, &mut browser_ws] {
        assert_closed(ws, "the tunnel stayed open").await;
        tokio::time::timeout(Duration::from_secs(10), origin.ended.acquire())
            .await
            .expect("the origin's side stayed open")
            .unwrap()
            .forget();
    }
    let text = app.metrics_text().await;
    let revoked = ("reason", "revoked");
    let closed = "queuegate_gateway_tunnels_closed_total";
    assert_eq!(
        count(&text, closed, revoked) - count(&before, closed, revoked),
        2.0
    );
    let tunnelled = ("decision", "tunnelled");
    let decisions = "queuegate_gateway_requests_total";
    assert_eq!(
        count(&text, decisions, tunnelled) - count(&before, decisions, tunnelled),
        3.0
    );

    // And a new one is refused.
    let (_, head) = ask_upgrade(&app, "/shop/live", "websocket", Some(&bearer)).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(origin.heads.lock().unwrap().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn one_visitor_cannot_hold_more_than_eight_tunnels_open() {
    let origin = upgrade_origin().await;
    let app = gateway_app(&origin.base, &[]).await;
    let (_, access) = admitted_user(&app).await;
    let (_, other) = admitted_user(&app).await;
    let bearer = format!("Authorization: Bearer {access}");
    let mut open = Vec::new();
    for i in 0..8u8 {
        let (mut ws, head) = ask_upgrade(&app, "/shop/live", "websocket", Some(&bearer)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "tunnel {i}: {head}");
        assert_eq!(echo(&mut ws, &[i]).await, [i]);
        open.push(ws);
    }
    // The ninth is refused before the origin is asked; another visitor is not counted with them.
    let (_, head) = ask_upgrade(&app, "/shop/live", "websocket", Some(&bearer)).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 5\r\n"),
        "{head}"
    );
    assert_eq!(origin.heads.lock().unwrap().len(), 8);
    open_tunnel(&app, &format!("Authorization: Bearer {other}")).await;

    // A tunnel the visitor closes gives its place back.
    drop(open.pop());
    let started = Instant::now();
    loop {
        let (_, head) = ask_upgrade(&app, "/shop/live", "websocket", Some(&bearer)).await;
        if head.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the closed tunnel's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tunnel_closes_when_its_admission_runs_out() {
    let origin = upgrade_origin().await;
    let app = gateway_app(&origin.base, &[]).await;
    let before = app.metrics_text().await;
    // An admission of 2 s (the real admission record, and a token that ends with it).
    let user = app.create_user("short stay").await;
    let line = app.line(concert1()).await;
    let access = app.app.queue.grant(line, user.id, 2).await.unwrap();
    let mut ws = open_tunnel(&app, &format!("Authorization: Bearer {access}")).await;
    assert_eq!(echo(&mut ws, b"still here").await, b"still here");
    // Nobody revokes anything: the admission's end alone closes the tunnel.
    assert_closed(&mut ws, "the tunnel outlived its admission").await;
    let text = app.metrics_text().await;
    let expired = |t: &str| {
        metric_sum(
            t,
            "queuegate_gateway_tunnels_closed_total",
            Some(("reason", "expired")),
        )
    };
    assert_eq!(expired(&text) - expired(&before), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_tunnel_closes_at_once_when_another_instance_ends_its_admission() {
    let origin = upgrade_origin().await;
    // Rechecks a minute apart: within the test's wait, only the queue store's announcement of
    // the end can close a tunnel.
    let app = gateway_app(&origin.base, &[("UPSTREAM_TUNNEL_RECHECK_MS", "60000")]).await;
    let other = second_instance(&app, &[]).await;
    let notices = |t: &str| metric_sum(t, "queuegate_admission_end_notices_total", None);
    let before = app.metrics_text().await;

    // One fan leaves the line through the other instance.
    let fan = app.create_user("leaver").await;
    let joined = app.join_queue(&fan, concert1()).await;
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_admitted(&app, &queue_token).await;
    let mut leaver = open_tunnel(&app, &format!("Authorization: Bearer {access}")).await;
    assert_eq!(echo(&mut leaver, b"seat 9?").await, b"seat 9?");
    // Another is admitted again by an operator there, which replaces the admission their
    // tunnel was opened with.
    let (regular, first_access) = admitted_user(&app).await;
    let mut replaced = open_tunnel(&app, &format!("Authorization: Bearer {first_access}")).await;
    assert_eq!(echo(&mut replaced, b"seat 10?").await, b"seat 10?");
    // A bystander's tunnel is untouched by either.
    let (_, bystander_access) = admitted_user(&app).await;
    let mut bystander =
        open_tunnel(&app, &format!("Authorization: Bearer {bystander_access}")).await;

    let r = other.leave(&queue_token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let line = other.line(concert1()).await;
    other.app.queue.grant(line, regular.id, 600).await.unwrap();
    for ws in [&mut leaver, &mut replaced] {
        assert_closed(ws, "the tunnel waited for its recheck").await;
    }
    assert_eq!(
        echo(&mut bystander, b"still open").await,
        b"still open",
        "a nudge re-checks; it does not close a live grant"
    );
    let text = app.metrics_text().await;
    assert!(
        notices(&text) - notices(&before) >= 2.0,
        "the gateway heard both announcements"
    );
    other.stop().await;
    app.stop().await;
}

/// The gateway of a gateway-mode test app.
fn gw(app: &TestApp) -> &queuegate::gateway::Gateway {
    app.app.api.gateway.as_deref().expect("gateway mode is on")
}

/// Waits (up to 15 s) until the app hears admission-end notices, or stops hearing them.
async fn wait_hearing(app: &TestApp, on: bool) {
    let started = Instant::now();
    while gw(app).confirmed(concert1()).unwrap().is_hearing() != on {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway never got to hearing = {on}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forwards with `access` until the answer is not `200`, for at most `limit`; that answer and
/// how many were forwarded first.
async fn forward_until_refused(app: &TestApp, access: &str, limit: Duration) -> (StatusCode, u32) {
    let started = Instant::now();
    let mut forwarded = 0;
    loop {
        let status = get_with_bearer(app, "/shop/echo", access).await.status();
        if status != StatusCode::OK {
            return (status, forwarded);
        }
        forwarded += 1;
        assert!(
            started.elapsed() < limit,
            "still forwarded after {:?} ({forwarded} requests)",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_remembered_grant_stops_at_once_when_another_instance_ends_the_admission() {
    let origin = EchoOrigin::start().await;
    // Grants are remembered for a minute: within the test's wait, only the announcement of the
    // end can make the instance ask the store again.
    let app = gateway_app(&origin.base(), &[("UPSTREAM_GRANT_CACHE_MS", "60000")]).await;
    let other = second_instance(&app, &[]).await;
    wait_hearing(&app, true).await;

    let fan = app.create_user("leaver").await;
    let joined = app.join_queue(&fan, concert1()).await;
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_admitted(&app, &queue_token).await;
    let (regular, first_access) = admitted_user(&app).await;
    let (bystander, bystander_access) = admitted_user(&app).await;
    for a in [&access, &first_access, &bystander_access] {
        let r = get_with_bearer(&app, "/shop/echo", a).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let now = Instant::now();
    for u in [fan.id, regular.id, bystander.id] {
        assert!(
            gw(&app).confirmed(concert1()).unwrap().remembers(u, now),
            "the store's answer is kept"
        );
    }

    // One leaves through the other instance; an operator there replaces another's admission.
    let r = other.leave(&queue_token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let line = other.line(concert1()).await;
    other.app.queue.grant(line, regular.id, 600).await.unwrap();
    for (a, who) in [
        (&access, "the leaver"),
        (&first_access, "the replaced admission"),
    ] {
        // (The announcement travels in about a millisecond; the bound is for a busy machine.)
        let (status, _) = forward_until_refused(&app, a, Duration::from_secs(2)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
    }
    let r = get_with_bearer(&app, "/shop/echo", &bystander_access).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a bystander's grant is untouched"
    );
    assert!(
        gw(&app)
            .confirmed(concert1())
            .unwrap()
            .remembers(bystander.id, Instant::now())
    );
    other.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn while_ends_cannot_be_heard_every_forward_asks_the_store() {
    let origin = EchoOrigin::start().await;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = gateway_app(
        &origin.base(),
        &[
            ("REDIS_URL", url.as_str()),
            ("UPSTREAM_GRANT_CACHE_MS", "60000"),
        ],
    )
    .await;
    wait_hearing(&app, true).await;
    let (visitor, access) = admitted_user(&app).await;
    let r = get_with_bearer(&app, "/shop/echo", &access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        gw(&app)
            .confirmed(concert1())
            .unwrap()
            .remembers(visitor.id, Instant::now())
    );

    // The queue store vanishes: the listener's connection breaks, nothing remembered is
    // trusted any more, and the store that cannot answer refuses (fail closed) — even though
    // the grant was remembered for a minute.
    redis.kill();
    let (status, _) = forward_until_refused(&app, &access, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!gw(&app).confirmed(concert1()).unwrap().is_hearing());
    assert!(
        !gw(&app)
            .confirmed(concert1())
            .unwrap()
            .remembers(visitor.id, Instant::now())
    );

    // Back (empty): once the subscription is renewed, answers are remembered again.
    redis.restart();
    wait_hearing(&app, true).await;
    let (visitor, access) = admitted_once_redis_is_back(&app).await;
    let r = get_with_bearer(&app, "/shop/echo", &access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        gw(&app)
            .confirmed(concert1())
            .unwrap()
            .remembers(visitor.id, Instant::now())
    );
    app.stop().await;
}

/// A visitor admitted at once after the queue Redis restarted, retried until the instance's own
/// connections are back (on their reconnect schedule).
async fn admitted_once_redis_is_back(app: &TestApp) -> (User, String) {
    let started = Instant::now();
    loop {
        let user = app.create_user("after the restart").await;
        let line = app.line(concert1()).await;
        if let Ok(access) = app.app.queue.grant(line, user.id, 600).await {
            return (user, access);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the queue store never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on the gateway with an access token as bearer.
async fn get_with_bearer(app: &TestApp, path: &str, access: &str) -> reqwest::Response {
    client()
        .get(app.url(path))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_https_origin_is_reached_over_verified_tls() {
    let page: &[u8] = b"<!doctype html><title>Secure shop</title><p>Seats, over TLS.</p>";
    let nginx = Nginx::start_tls(&[("shop/index.html", page)]);
    assert!(nginx.base().starts_with("https://127.0.0.1:"));
    let ca = nginx.ca();
    let app = gateway_app(&nginx.base(), &[("UPSTREAM_CA_FILE", ca.to_str().unwrap())]).await;
    let (_, access) = admitted_user(&app).await;
    // Several requests: the pooled TLS connection carries them one after another.
    for _ in 0..3 {
        let r = get_with_bearer(&app, "/shop/index.html", &access).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), page);
    }

    // A gateway that trusts only the public roots does not accept the shop's private CA: the
    // visitor gets the 502 envelope (with Retry-After), never the page.
    let before = app.metrics_text().await;
    let untrusting = gateway_app(&nginx.base(), &[]).await;
    let (_, access) = admitted_user(&untrusting).await;
    let r = get_with_bearer(&untrusting, "/shop/index.html", &access).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers().contains_key(RETRY_AFTER));
    assert_eq!(error_code(r).await, "BAD_GATEWAY");
    let failed = |t: &str| {
        metric_sum(
            t,
            "queuegate_upstream_requests_total",
            Some(("status", "tls_failed")),
        )
    };
    assert!(failed(&untrusting.metrics_text().await) - failed(&before) >= 1.0);
    untrusting.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_origin_that_demands_a_client_certificate_lets_in_only_the_gateway_that_shows_it() {
    let page: &[u8] = b"<!doctype html><title>Locked shop</title><p>Gateways only.</p>";
    let nginx = Nginx::start_mutual_tls(&[("shop/index.html", page)]);
    let ca = nginx.ca();
    let (cert, key) = nginx.client_cert();
    let app = gateway_app(
        &nginx.base(),
        &[
            ("UPSTREAM_CA_FILE", ca.to_str().unwrap()),
            ("UPSTREAM_CLIENT_CERT", cert.to_str().unwrap()),
            ("UPSTREAM_CLIENT_KEY", key.to_str().unwrap()),
        ],
    )
    .await;
    let (_, access) = admitted_user(&app).await;
    for _ in 0..3 {
        let r = get_with_bearer(&app, "/shop/index.html", &access).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), page);
    }

    // Anyone without the certificate — a gateway configured without it, or a browser going
    // around the line — is turned away by the origin itself.
    let without = gateway_app(&nginx.base(), &[("UPSTREAM_CA_FILE", ca.to_str().unwrap())]).await;
    let (_, access) = admitted_user(&without).await;
    let r = get_with_bearer(&without, "/shop/index.html", &access).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "nginx: no required SSL certificate"
    );
    assert_ne!(r.bytes().await.unwrap(), page);
    without.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_websocket_tunnels_to_an_https_origin() {
    let (origin, certs) = upgrade_origin_tls().await;
    assert!(origin.base.starts_with("https://"));
    let ca = certs.ca.to_str().unwrap().to_owned();
    let app = gateway_app(&origin.base, &[("UPSTREAM_CA_FILE", ca.as_str())]).await;
    let (_, access) = admitted_user(&app).await;
    let mut ws = open_tunnel(&app, &format!("Authorization: Bearer {access}")).await;
    assert_eq!(
        echo(&mut ws, b"seat map over TLS").await,
        b"seat map over TLS"
    );
    assert_eq!(origin.heads.lock().unwrap().len(), 1);
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), origin.ended.acquire())
        .await
        .expect("the origin's side closed with the visitor's")
        .unwrap()
        .forget();
    app.stop().await;
}

/// How many clients are subscribed to the admission-end notices of `prefix` on the Redis at
/// `port` (`PUBSUB NUMSUB`).
fn notice_subscribers(port: u16, prefix: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "PUBSUB", "NUMSUB"])
        .arg(queuegate::queue::ends::channel(prefix))
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (up to 15 s) until `n` clients listen for the notices.
async fn wait_subscribers(port: u16, prefix: &str, n: u64) {
    let started = Instant::now();
    while notice_subscribers(port, prefix) != n {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{} notice subscribers, expected {n}",
            notice_subscribers(port, prefix)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn notices_reach_tunnels_again_after_the_queue_redis_restarts() {
    let origin = upgrade_origin().await;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = gateway_app(
        &origin.base,
        &[
            ("REDIS_URL", url.as_str()),
            ("UPSTREAM_TUNNEL_RECHECK_MS", "60000"),
        ],
    )
    .await;
    let prefix = app.app.settings.redis_key_prefix.clone();
    let other = second_instance(&app, &[("REDIS_URL", url.as_str())]).await;
    // Only the gateway-mode instance listens.
    wait_subscribers(redis.port(), &prefix, 1).await;

    // The queue store vanishes and comes back empty: the listener connects again and renews
    // its subscription by itself.
    redis.restart();
    wait_subscribers(redis.port(), &prefix, 1).await;

    let (visitor, access) = admitted_once_redis_is_back(&app).await;
    let mut ws = open_tunnel(&app, &format!("Authorization: Bearer {access}")).await;
    assert_eq!(echo(&mut ws, b"back again").await, b"back again");
    // The other instance replaces the admission: with re-checks a minute apart, only the
    // notice, heard on the renewed subscription, closes the tunnel in time.
    let line = other.line(concert1()).await;
    other.app.queue.grant(line, visitor.id, 600).await.unwrap();
    assert_closed(&mut ws, "the renewed subscription heard nothing").await;
    other.stop().await;
    app.stop().await;
}
