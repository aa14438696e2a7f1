//! Test harness: `spawn_app()` starts the real gateway on a random port against real MariaDB
//! and Redis, with its own database and Redis key prefix so tests run in parallel.
#![allow(dead_code)]

use queuegate::app::{self, App};
use queuegate::config::Settings;
use queuegate::domain::{ConcertId, LineId, UserId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    pub db_name: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Redlock masters for tests: the three the test script starts, or just the main Redis.
pub fn test_redlock_urls() -> String {
    std::env::var("QG_TEST_REDLOCK_URLS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn spawn_app() -> TestApp {
    spawn_with(&[]).await
}

/// Starts a gateway-mode app in front of `origin` that guards `/shop` with the line of its
/// first concert (its database is fresh, so that concert's id is 1; the caller creates it).
pub async fn spawn_shop_gateway(origin: &str) -> TestApp {
    spawn_with(&[
        ("UPSTREAM_URL", origin),
        ("UPSTREAM_PATHS", "/shop"),
        ("UPSTREAM_CONCERT_ID", "1"),
    ])
    .await
}

/// Starts an app with extra environment settings layered over the test defaults.
pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
    let db_name = unique("qgt_");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("LISTEN_ADDR".into(), "127.0.0.1:0".into());
    env.insert(
        "DATABASE_URL".into(),
        format!("mysql://root@127.0.0.1:3306/{db_name}"),
    );
    env.insert("REDIS_KEY_PREFIX".into(), unique("qgt"));
    env.insert("REDLOCK_URLS".into(), test_redlock_urls());
    // The queue store under test: one Redis by default; scripts/test.sh runs the queue tests
    // again against a Redis Cluster and a Sentinel group through this variable.
    if let Ok(url) = std::env::var("QG_TEST_REDIS_URL") {
        env.insert("REDIS_URL".into(), url);
    }
    env.insert("ADMIN_TOKEN".into(), ADMIN_TOKEN.into());
    env.insert(
        "JWT_SECRET".into(),
        "test-secret-test-secret-test-secret!".into(),
    );
    env.insert("DATABASE_MAX_CONNECTIONS".into(), "30".into());
    env.insert("SWEEP_INTERVAL_SECS".into(), "3600".into());
    // Concurrency tests fire hundreds of requests per user on purpose; the limits have their
    // own test.
    env.insert("SHUTDOWN_DRAIN_MS".into(), "0".into());
    env.insert("RATE_JOIN_PER_MIN".into(), "0".into());
    env.insert("RATE_CHARGE_PER_MIN".into(), "0".into());
    env.insert("RATE_HOLD_PER_MIN".into(), "0".into());
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
    // Logs only on request: TEST_LOG=1 cargo test …
    if std::env::var_os("TEST_LOG").is_some() {
        // Kept for the life of the test process (the writer thread flushes at exit).
        std::mem::forget(queuegate::telemetry::init(settings.log_format));
    }
    let app = App::build(settings).await.expect("app builds");
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app::run_until(app.clone(), listener, async {
        let _ = stopped.await;
    }));
    let server = tokio::spawn(async move {
        let _ = server.await;
    });
    TestApp {
        addr,
        base: format!("http://{addr}"),
        app,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        db_name,
        stop: Some(stop),
        server: Some(server),
    }
}

pub struct User {
    pub id: UserId,
    pub token: String,
}

pub struct Concert {
    pub id: ConcertId,
    pub schedules: Vec<u64>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    pub async fn create_user(&self, name: &str) -> User {
        let r = self
            .http
            .post(self.url("/v1/users"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        User {
            id: UserId::new(v["user_id"].as_u64().unwrap()).unwrap(),
            token: v["user_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_users(&self, n: usize) -> Vec<User> {
        let futures = (0..n).map(|i| self.create_user_named(i));
        futures::future::join_all(futures).await
    }

    async fn create_user_named(&self, i: usize) -> User {
        self.create_user(&format!("fan {i}")).await
    }

    pub async fn charge(&self, user: &User, amount: i64) -> Value {
        let r = self
            .http
            .post(self.url(&format!("/v1/users/{}/balance/charge", user.id)))
            .bearer_auth(&user.token)
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn balance(&self, user: &User) -> i64 {
        let r = self
            .http
            .get(self.url(&format!("/v1/users/{}/balance", user.id)))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["balance"]
            .as_i64()
            .unwrap()
    }

    /// Creates a concert with `dates` future schedules at `price` through the admin API.
    pub async fn create_concert(&self, dates: usize, price: i64) -> Concert {
        let schedules: Vec<Value> = (0..dates)
            .map(|i| json!({ "starts_at": format!("2030-0{}-01T19:00:00Z", i % 9 + 1), "price": price }))
            .collect();
        let r = self
            .http
            .post(self.url("/v1/admin/concerts"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": "Test Concert", "schedules": schedules }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        Concert {
            id: ConcertId::new(v["concert_id"].as_u64().unwrap()).unwrap(),
            schedules: v["schedules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["schedule_id"].as_u64().unwrap())
                .collect(),
        }
    }

    /// Admits the user to the concert directly (the real admission record in Redis) and mints
    /// the matching access token.
    pub async fn admit(&self, user: &User, concert: ConcertId) -> String {
        let line = self.line(concert).await;
        self.app
            .queue
            .grant(line, user.id, self.app.settings.queue.access_ttl_secs)
            .await
            .unwrap()
    }

    /// The concert's waiting line (its Redis keys carry the line's random id).
    pub async fn line(&self, concert: ConcertId) -> LineId {
        self.app
            .api
            .catalogue
            .line(concert)
            .await
            .unwrap()
            .expect("the concert exists")
    }

    /// The queue store loses everything it knew about the concert's line, as after a Redis
    /// restart without persistence: every key with a fixed name, the settings included.
    pub async fn lose_line_data(&self, concert: ConcertId) {
        use fred::interfaces::KeysInterface;
        let store = self.app.queue.store();
        let k = store.keys(self.line(concert).await);
        let keys: Vec<String> = k.fixed().into_iter().cloned().collect();
        let _: i64 = store.pool().next().del(keys).await.unwrap();
    }

    /// A single-use stream ticket for a queue token's place.
    pub async fn stream_ticket(&self, queue_token: &str) -> String {
        let r = self
            .http
            .post(self.url("/v1/queue/events/ticket"))
            .bearer_auth(queue_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["ticket"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn hold(&self, access: &str, schedule: u64, seat: u64) -> reqwest::Response {
        self.http
            .post(self.url("/v1/reservations"))
            .bearer_auth(access)
            .json(&json!({ "schedule_id": schedule, "seat_no": seat }))
            .send()
            .await
            .unwrap()
    }

    /// `DELETE /v1/reservations/{id}`: the holder cancels a hold.
    pub async fn cancel(&self, access: &str, reservation: u64) -> reqwest::Response {
        self.http
            .delete(self.url(&format!("/v1/reservations/{reservation}")))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    pub async fn pay(
        &self,
        access: &str,
        reservation: u64,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(self.url("/v1/payments"))
            .bearer_auth(access)
            .json(&json!({ "reservation_id": reservation }));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.unwrap()
    }

    /// Runs the invariant checker on this test's database and fails the test on any violation;
    /// then waits (bounded) for the outbox relay to carry every event out and checks the events
    /// stream against the database (one `reservation.held` per reservation, one
    /// `payment.completed` per payment, nothing for rolled-back transactions, …).
    pub async fn assert_invariants(&self) {
        self.assert_db_invariants().await;
        self.wait_outbox_drained(std::time::Duration::from_secs(15))
            .await;
        let report = queuegate::check::stream(self.app.db.primary(), &self.events())
            .await
            .expect("the stream check runs (the queue Redis is up)");
        assert!(
            report.violations.is_empty(),
            "events stream invariants violated ({} entries): {:#?}",
            report.entries,
            report.violations
        );
    }

    /// The database invariants only (for tests whose queue Redis is down at the end).
    pub async fn assert_db_invariants(&self) {
        let violations = queuegate::check::run(self.app.db.primary()).await.unwrap();
        assert!(
            violations.is_empty(),
            "invariants violated: {violations:#?}"
        );
    }

    /// This app's booking events stream.
    pub fn events(&self) -> queuegate::outbox::stream::EventStream {
        queuegate::outbox::stream::EventStream::new(
            self.app.queue.store().pool().clone(),
            &self.app.settings.redis_key_prefix,
        )
    }

    /// Polls until no event waits in the outbox; fails the test after `limit`.
    pub async fn wait_outbox_drained(&self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            let pending = queuegate::outbox::pending(self.app.db.primary())
                .await
                .unwrap_or(u64::MAX);
            if pending == 0 {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the outbox relay did not drain within {limit:?}: {pending} events wait"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn scalar_i64(&self, sql: &'static str, bind: u64) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(bind)
            .fetch_one(self.app.db.primary())
            .await
            .unwrap()
    }
}

/// The error code of an error response.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

pub mod servers;

impl TestApp {
    /// The primary database URL of this app (to share it with another instance).
    pub fn database_url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.db_name)
    }

    /// Joins the concert's queue over HTTP; returns the response body.
    pub async fn join_queue(&self, user: &User, concert: ConcertId) -> Value {
        let (status, body) = self.join(user, concert).await;
        assert!(status.is_success(), "join: {status}");
        body
    }

    /// Joins the concert's queue over HTTP; the status and the body, whatever they are.
    pub async fn join(&self, user: &User, concert: ConcertId) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url("/v1/queue"))
            .bearer_auth(&user.token)
            .json(&json!({ "concert_id": concert.get() }))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// `DELETE /v1/queue`: leaves the line (or ends the admission) of this queue token.
    pub async fn leave(&self, queue_token: &str) -> reqwest::Response {
        self.http
            .delete(self.url("/v1/queue"))
            .bearer_auth(queue_token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/queue/status` with a queue token.
    pub async fn queue_status(&self, queue_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/v1/queue/status"))
            .bearer_auth(queue_token)
            .send()
            .await
            .unwrap()
    }

    /// `PUT /v1/admin/concerts/{concert}/queue`.
    pub async fn put_queue(&self, concert: ConcertId, body: Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v1/admin/concerts/{concert}/queue")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/admin/concerts/{concert}/queue`: the live figures and settings.
    pub async fn get_queue(&self, concert: ConcertId) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/v1/admin/concerts/{concert}/queue")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// A GET of `path` with `token` as the bearer.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }
}

/// Sum of the samples of metric `name` in Prometheus text, over the series that carry the
/// label `key="value"` (all series when `label` is `None`).
pub fn metric_sum(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            let want = label.map(|(k, v)| format!("{k}=\"{v}\""));
            n == name
                && want.is_none_or(|w| labels.trim_end_matches('}').split(',').any(|p| p == w))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}
