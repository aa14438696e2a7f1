//! The binary as an operator runs it: help, configuration errors, `check`, `seed`, and a
//! graceful stop on SIGTERM while a request is in flight.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_queuegate"));
    // Keep the developer's .env and environment out of these runs.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    c
}

fn unique_db() -> String {
    format!("qgt_{}", uuid::Uuid::new_v4().simple())
}

#[test]
fn help_lists_every_subcommand_and_each_has_its_own() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "migrate", "seed", "check", "events"] {
        assert!(text.contains(cmd), "{text}");
        let out = bin().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains(&format!("queuegate {cmd}"))
        );
    }
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("QUEUE_TICK_MS", "fast"),
        ("LISTEN_ADDR", "nowhere"),
        ("REDIS_URL", "http://x"),
        ("AUTO_MIGRATE", "perhaps"),
        ("UPSTREAM_URL", "ftp://shop.example"),
    ] {
        let out = bin().arg("serve").env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = bin()
        .args(["serve"])
        .env("QUEUEGATE_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("JWT_SECRET")
    );
    // Gateway mode's CA file, and the client certificate it shows an origin that demands one,
    // are read before anything is connected.
    let err = gateway_mode_refused(&[("UPSTREAM_CA_FILE", "/nonexistent/shop-ca.pem")]);
    assert!(
        err.contains("UPSTREAM_CA_FILE /nonexistent/shop-ca.pem"),
        "{err}"
    );
    let err = gateway_mode_refused(&[
        ("UPSTREAM_CLIENT_CERT", "/nonexistent/gateway.pem"),
        ("UPSTREAM_CLIENT_KEY", "/nonexistent/gateway.key"),
    ]);
    assert!(
        err.contains("UPSTREAM_CLIENT_CERT /nonexistent/gateway.pem"),
        "{err}"
    );
    let out = bin().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `serve` in gateway mode (an https origin) with `extra`: exits 2 with one line, returned.
fn gateway_mode_refused(extra: &[(&str, &str)]) -> String {
    let out = bin()
        .arg("serve")
        .env("JWT_SECRET", "test-secret-test-secret-test-secret!")
        .env("UPSTREAM_URL", "https://127.0.0.1:9")
        .env("UPSTREAM_CONCERT_ID", "1")
        .env(
            "UPSTREAM_IDENTITY_KEY",
            "origin-shared-key-0123456789abcdef",
        )
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn migrate_seed_and_check_on_a_fresh_database() {
    let db = unique_db();
    let url = format!("mysql://root@127.0.0.1:3306/{db}");
    let out = bin()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seed = |_: ()| {
        bin()
            .arg("seed")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let first = seed(());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = seed(());
    assert_eq!(
        first.stdout, second.stdout,
        "seeding twice reuses the demo concert"
    );
    let out = bin()
        .arg("check")
        .env("DATABASE_URL", &url)
        .env(
            "REDIS_KEY_PREFIX",
            format!("qgt{}", uuid::Uuid::new_v4().simple()),
        )
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    // Six database invariants and seven of the (empty) events stream.
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok")).count(),
        13,
        "{text}"
    );
}

/// Starts `queuegate serve` on a free port with its own database and key prefix; returns the
/// child and the address from its startup log line. The log keeps being drained so the child
/// never blocks on a full pipe.
fn serve(extra: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = bin();
    cmd.arg("serve")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("mysql://root@127.0.0.1:3306/{}", unique_db()),
        )
        .env(
            "REDIS_KEY_PREFIX",
            format!("qgt{}", uuid::Uuid::new_v4().simple()),
        )
        .env("LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "queuegate listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn sigterm_lets_an_open_request_finish_and_exits_cleanly() {
    let (mut child, addr) = serve(&[("SHUTDOWN_GRACE_SECS", "5")]);

    // A request in flight: headers with `Expect: 100-continue`; hyper answers `100 Continue`
    // when the handler starts reading the body, which proves the request is being served.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = br#"{"name": "last fan before shutdown"}"#;
    write!(
        conn,
        "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The signal has been sent; the request still completes.
    conn.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.contains("HTTP/1.1 201"),
        "the in-flight request was not completed: {text}"
    );
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    // New connections are refused once it is gone.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

/// Sends one request on a fresh connection; returns the raw response (head and body: read up
/// to its Content-Length, not to the end of a connection that may stay open).
fn raw_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match conn.read(&mut byte) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

#[test]
fn after_sigterm_the_instance_drains_as_a_lame_duck_before_leaving() {
    let (mut child, addr) = serve(&[("SHUTDOWN_DRAIN_MS", "3000")]);
    // Before the signal: ready, and connections are kept alive (no `connection: close`).
    let before = raw_get(&addr, "/healthz");
    assert!(
        before.starts_with("HTTP/1.1 200")
            && !before.to_ascii_lowercase().contains("connection: close"),
        "{before}"
    );
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // While draining: still serving, readiness fails, and every response closes its connection.
    let ready = loop {
        let r = raw_get(&addr, "/readyz");
        if r.starts_with("HTTP/1.1 503") {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "readyz never failed: {r}"
        );
    };
    assert!(
        ready.to_ascii_lowercase().contains("connection: close"),
        "{ready}"
    );
    let health = raw_get(&addr, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "still serving while draining: {health}"
    );
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success());
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "left before the drain period ended"
    );
}
