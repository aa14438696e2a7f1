//! The database goes away: booking routes answer 503 with Retry-After (quickly, never hanging),
//! the waiting room keeps working, and when MariaDB is back the gateway recovers by itself.
//! Runs a private MariaDB (its own data directory and port) so the shared one is never touched.

mod common;

use common::{error_code, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct PrivateMariaDb {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mariadbd() -> String {
    for p in ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"] {
        if std::path::Path::new(p).exists() {
            return p.to_owned();
        }
    }
    "mariadbd".to_owned()
}

impl PrivateMariaDb {
    fn start() -> PrivateMariaDb {
        let dir =
            std::env::temp_dir().join(format!("qgt-mariadb-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--skip-test-db",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db runs");
        assert!(status.success(), "mariadb-install-db failed");
        let mut db = PrivateMariaDb {
            dir,
            port: free_port(),
            child: None,
        };
        db.run();
        db
    }

    fn run(&mut self) {
        let child = Command::new(mariadbd())
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private MariaDB did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_booking_is_503_the_queue_goes_on_and_recovery_is_automatic() {
    let mut mariadb = tokio::task::spawn_blocking(PrivateMariaDb::start)
        .await
        .unwrap();
    let app = spawn_with(&[
        ("DATABASE_URL", &mariadb.url("queuegate")),
        ("QUEUE_ADMIT_PER_TICK", "0"),
    ])
    .await;
    let concert = app.create_concert(1, 100).await;
    let buyer = app.create_user("buyer").await;
    app.charge(&buyer, 1000).await;
    let access = app.admit(&buyer, concert.id).await;
    let waiter = app.create_user("waiter").await;
    let joined: Value = app.join_queue(&waiter, concert.id).await;
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();

    // The database dies.
    mariadb.kill();

    let timed = |started: Instant| started.elapsed();
    let started = Instant::now();
    let r = app.hold(&access, concert.schedules[0], 1).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "hold without a database"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "SERVICE_UNAVAILABLE");
    assert!(
        timed(started) < Duration::from_secs(5),
        "hold took {:?}",
        timed(started)
    );
    let started = Instant::now();
    let r = app
        .http
        .get(app.url(&format!("/v1/schedules/{}/seats", concert.schedules[0])))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(timed(started) < Duration::from_secs(5));
    let r = app
        .http
        .post(app.url(&format!("/v1/users/{}/balance/charge", buyer.id)))
        .bearer_auth(&buyer.token)
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.unwrap()["database"], "down");

    // The waiting room needs no database: status and joins keep working.
    let r = app
        .http
        .get(app.url("/v1/queue/status"))
        .bearer_auth(&queue_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["position"], 1);
    let r = app
        .http
        .post(app.url("/v1/queue"))
        .bearer_auth(&waiter.token)
        .json(&json!({ "concert_id": concert.id.get() }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "same place, served from Redis alone"
    );

    // The database comes back (crash recovery, same data): the gateway recovers by itself.
    let mariadb = tokio::task::spawn_blocking(move || {
        mariadb.run();
        mariadb
    })
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let r = app.hold(&access, concert.schedules[0], 1).await;
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "only 503 while recovering"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.balance(&buyer).await,
        1000,
        "the refused charge charged nothing"
    );
    app.assert_invariants().await;
    app.stop().await;
    drop(mariadb);
}
