//! Hostile clients: rate limits, token tricks, slow and oversized requests, odd bodies. The
//! answer is always a clear 4xx (or a closed connection for a slow client), never a 5xx.

mod common;

use common::{error_code, spawn_app, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// URL-safe base64 without padding, for building hostile tokens by hand.
fn b64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input)
}

#[tokio::test]
async fn joins_charges_and_holds_are_rate_limited_per_user_and_per_address() {
    let app = spawn_with(&[
        ("RATE_JOIN_PER_MIN", "6"),
        ("RATE_CHARGE_PER_MIN", "6"),
        ("RATE_ADDRESS_PER_MIN", "0"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    let user = app.create_user("eager").await;
    let other = app.create_user("calm").await;
    let join = |token: String| {
        let http = app.http.clone();
        let url = app.url("/v1/queue");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({ "concert_id": concert.id.get() }))
                .send()
                .await
                .unwrap()
        }
    };
    // Burst of 5 allowed (a sixth of the minute's 6, at least 5), then 429 with Retry-After.
    for _ in 0..5 {
        assert!(join(user.token.clone()).await.status().is_success());
    }
    let r = join(user.token.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(error_code(r).await, "RATE_LIMITED");
    // Another user is not affected; neither is the same user's status polling.
    assert!(join(other.token.clone()).await.status().is_success());
    // Charges have their own allowance; a refused charge charges nothing.
    let url = app.url(&format!("/v1/users/{}/balance/charge", user.id));
    let mut refused = 0;
    for _ in 0..7 {
        let r = app
            .http
            .post(&url)
            .bearer_auth(&user.token)
            .json(&json!({"amount": 1}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    assert_eq!(app.balance(&user).await, 5);
    app.assert_invariants().await;
    app.stop().await;

    // Per client address, across users.
    let app = spawn_with(&[("RATE_ADDRESS_PER_MIN", "12")]).await;
    let concert = app.create_concert(1, 10).await;
    let users = app.create_users(7).await;
    let mut statuses = Vec::new();
    for u in &users {
        let r = app
            .http
            .post(app.url("/v1/queue"))
            .bearer_auth(&u.token)
            .json(&json!({ "concert_id": concert.id.get() }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn token_tricks_are_refused_with_401_never_500() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 10).await;
    let user = app.create_user("mallory").await;
    let now = queuegate::tokens::now_secs();
    let claims = |extra: &str| {
        format!(
            r#"{{"kind":"access","iss":"queuegate","sub":"{}","cid":{},"seq":1,"iat":{now},"exp":{}{extra}}}"#,
            user.id,
            concert.id,
            now + 600
        )
    };
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let header_rs = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let header_hs512 = b64(br#"{"alg":"HS512","typ":"JWT"}"#);
    let body = b64(claims("").as_bytes());
    let tricks = vec![
        format!("{header_none}.{body}."),
        format!("{header_rs}.{body}.{}", b64(b"not-a-signature")),
        format!("{header_hs512}.{body}.{}", b64(&[7u8; 64])),
        // A genuine signature on different claims, spliced onto ours.
        {
            let genuine = app.app.tokens.mint_user(user.id);
            let sig = genuine.rsplit('.').next().unwrap().to_owned();
            format!("{}.{body}.{sig}", genuine.split('.').next().unwrap())
        },
        "".into(),
        "x".repeat(10_000),
        "a.b".into(),
        "....".into(),
        "eyJhbGciOiJIUzI1NiJ9.e30.".into(),
    ];
    for t in &tricks {
        for (method, path) in [
            ("POST", "/v1/reservations"),
            ("GET", "/v1/queue/status"),
            ("GET", &*format!("/v1/users/{}/balance", user.id)),
            ("GET", "/v1/admin/concerts/1/queue"),
        ] {
            let r = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .header("authorization", format!("Bearer {t}"))
                .json(&json!({"schedule_id": concert.schedules[0], "seat_no": 1}))
                .send()
                .await
                .unwrap();
            assert!(
                r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN,
                "{method} {path} with {:.40}: {}",
                t,
                r.status()
            );
        }
    }
    // Not yet valid (nbf in the future) and wrong issuer, correctly signed with the real key,
    // are still refused.
    for extra in [format!(r#","nbf":{}"#, now + 3600)] {
        let forged = sign_hs256(&claims(&extra), b"test-secret-test-secret-test-secret!");
        assert_eq!(
            app.hold(&forged, concert.schedules[0], 1).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let wrong_issuer = claims("").replace(r#""iss":"queuegate""#, r#""iss":"evil""#);
    let forged = sign_hs256(&wrong_issuer, b"test-secret-test-secret-test-secret!");
    assert_eq!(
        app.hold(&forged, concert.schedules[0], 1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Scheme confusion.
    let r = app
        .http
        .get(app.url("/v1/queue/status"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// HS256 with the given key, for tokens whose claims the test controls.
fn sign_hs256(claims: &str, key: &[u8]) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let value: Value = serde_json::from_str(claims).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &value,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn slow_and_oversized_requests_are_cut_off() {
    let app = spawn_with(&[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    // Slowloris: headers that never finish. The connection is closed after the timeout.
    // (Blocking socket work runs off the runtime, so the server keeps running meanwhile.)
    let addr = app.addr;
    let (waited, answer) = tokio::task::spawn_blocking(move || {
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = slow.read_to_end(&mut buf);
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(
        waited < Duration::from_secs(4),
        "slow client held the connection for {waited:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Headers beyond the limit: refused with 431, never a 5xx.
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-big", "y".repeat(100 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }

    // Odd bodies: unknown fields are ignored, huge and negative numbers refused, bad UTF-8 400.
    let user = app.create_user("odd").await;
    let url = app.url(&format!("/v1/users/{}/balance/charge", user.id));
    let send = |body: Vec<u8>| {
        let http = app.http.clone();
        let url = url.clone();
        let token = user.token.clone();
        async move {
            http.post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        send(br#"{"amount": 5, "note": {"anything": [1, 2]}}"#.to_vec()).await,
        StatusCode::OK
    );
    for body in [
        br#"{"amount": 1e400}"#.to_vec(),
        br#"{"amount": 184467440737095516160}"#.to_vec(),
        br#"{"amount": -1}"#.to_vec(),
        br#"{"amount": "5"}"#.to_vec(),
        b"{\"amount\": 5, \"x\": \"\xff\xfe\"}".to_vec(),
        br#"{"amount": 5"#.to_vec(),
        br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#.to_vec(),
    ] {
        let status = send(body.clone()).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {status}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(app.balance(&user).await, 5);
    app.stop().await;
}

#[test]
fn secrets_never_appear_in_the_logs() {
    let secret = "log-test-secret-log-test-secret-0123";
    let admin = "log-test-admin-token-98765";
    let db = format!("qgt_{}", uuid::Uuid::new_v4().simple());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_queuegate"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", format!("mysql://root@127.0.0.1:3306/{db}"))
        .env(
            "REDIS_KEY_PREFIX",
            format!("qgt{}", uuid::Uuid::new_v4().simple()),
        )
        .env("JWT_SECRET", secret)
        .env("ADMIN_TOKEN", admin)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("QUEUE_TICK_MS", "100")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server started");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["message"] == "queuegate listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // Requests that carry the secrets (the admin token) or fail around them.
    for (path, auth) in [
        ("/v1/admin/concerts/1/queue", admin.to_string()),
        ("/v1/admin/concerts/1/queue", format!("{admin}x")),
        ("/v1/queue/status", "forged.token.here".to_string()),
    ] {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nConnection: close\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink);
    }
    // A fan's whole queue session, event stream included: none of its tokens may be logged.
    let created = blocking_call(
        &addr,
        "POST",
        "/v1/admin/concerts",
        Some(admin),
        r#"{"name":"Logs","schedules":[{"starts_at":"2031-01-01T19:00:00Z","price":5}]}"#,
    );
    let concert = created["concert_id"].as_u64().unwrap();
    let user = blocking_call(&addr, "POST", "/v1/users", None, r#"{"name":"quiet"}"#);
    let user_token = user["user_token"].as_str().unwrap().to_owned();
    let joined = blocking_call(
        &addr,
        "POST",
        "/v1/queue",
        Some(&user_token),
        &format!(r#"{{"concert_id":{concert}}}"#),
    );
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_for_access(&addr, &queue_token);
    let ticket = blocking_call(
        &addr,
        "POST",
        "/v1/queue/events/ticket",
        Some(&queue_token),
        "",
    )["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        conn,
        "GET /v1/queue/events?ticket={ticket} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut streamed = Vec::new();
    let _ = conn.read_to_end(&mut streamed);
    assert!(
        String::from_utf8_lossy(&streamed).contains("event: admitted"),
        "the stream ran"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        log.push(line);
    }
    let all = log.join("\n");
    assert!(all.contains("served"), "the requests were logged:\n{all}");
    assert!(!all.contains(secret), "JWT_SECRET leaked into the logs");
    assert!(!all.contains(admin), "ADMIN_TOKEN leaked into the logs");
    for (what, token) in [
        ("user token", &user_token),
        ("queue token", &queue_token),
        ("access token", &access),
        ("stream ticket", &ticket),
    ] {
        // A JWT's signature part is unique to it; no line may carry it.
        let signature = token.rsplit('.').next().unwrap();
        assert!(!all.contains(signature), "a {what} leaked into the logs");
    }
}

/// One request on its own connection (blocking); the JSON answer.
fn blocking_call(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> Value {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(json).unwrap_or_default()
}

/// Polls the queue status (bounded) until admitted; the access token.
fn wait_for_access(addr: &str, queue_token: &str) -> String {
    let started = Instant::now();
    loop {
        let v = blocking_call(addr, "GET", "/v1/queue/status", Some(queue_token), "");
        if let Some(t) = v["access_token"].as_str() {
            return t.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never admitted: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Event streams are served on the raw socket when they open a connection, and by hyper when
/// they come later on a keep-alive connection; both answer alike, errors included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_answer_alike_on_fresh_and_reused_connections() {
    let app = spawn_with(&[
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("HEADER_READ_TIMEOUT_SECS", "1"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    let user = app.create_user("streamer").await;
    let qt = app.join_queue(&user, concert.id).await["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ticket = app.stream_ticket(&qt).await;
    let addr = app.addr;
    let (fresh, reused, forged, slow) = tokio::task::spawn_blocking(move || {
        let first_event = |conn: &mut std::net::TcpStream| {
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !String::from_utf8_lossy(&buf).contains("\n\n") || !String::from_utf8_lossy(&buf).contains("event:") {
                if conn.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                buf.push(byte[0]);
            }
            String::from_utf8_lossy(&buf).into_owned()
        };
        // Fresh connection: the raw path.
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(conn, "GET /v1/queue/events?ticket={ticket} HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-1\r\n\r\n").unwrap();
        let fresh = first_event(&mut conn);
        // A keep-alive connection that asked something else first: hyper serves the stream.
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/queue/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {qt}\r\n\r\n").unwrap();
        let reused = first_event(&mut conn);
        // A forged token on the raw path: a complete JSON error.
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(conn, "GET /v1/queue/events?ticket=forged HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut forged = Vec::new();
        let _ = conn.read_to_end(&mut forged);
        // A slow client on the raw path is cut off like on the hyper path.
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET /v1/queue/events?ticket=x HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink);
        (fresh, reused, String::from_utf8_lossy(&forged).into_owned(), started.elapsed())
    })
    .await
    .unwrap();
    for (name, text) in [("fresh", &fresh), ("reused", &reused)] {
        assert!(text.contains("200 OK"), "{name}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{name}: {text}"
        );
        assert!(
            text.contains("event: position") && text.contains("\"position\":1"),
            "{name}: {text}"
        );
    }
    assert!(
        fresh.to_ascii_lowercase().contains("x-request-id: raw-1"),
        "{fresh}"
    );
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    assert!(forged.contains("\"code\":\"UNAUTHORIZED\""), "{forged}");
    assert!(
        slow < Duration::from_secs(4),
        "slow client held on for {slow:?}"
    );
    app.stop().await;
}
