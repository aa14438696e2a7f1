//! Real processes for fault tests: throwaway Redis servers and the `queuegate` binary itself.
//!
//! Every process is owned through its `std::process::Child`, stopped by that handle (never by
//! name) and killed on drop, so a failing test cleans up after itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now (bind to port 0, read it, let it go).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Kills the child (SIGKILL) if it still runs and reaps it.
fn kill_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A `redis-server` of our own on a free loopback port. By default nothing is ever saved to
/// disk, so a restart comes back empty (a store that lost its data); `start_persistent` keeps
/// an append-only file instead, so a restart comes back with everything it acknowledged.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// The data directory of a persistent server (removed on drop).
    dir: Option<PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: None,
        };
        server.spawn();
        server
    }

    /// A server with an AOF fsynced on every write: SIGKILL and `restart` lose nothing.
    pub fn start_persistent() -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("queuegate-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("redis data dir");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: Some(dir),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis on {} already runs", self.port);
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1"]);
        match &self.dir {
            None => cmd
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(std::env::temp_dir()),
            Some(dir) => cmd
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ])
                .arg("--dir")
                .arg(dir)
                .current_dir(dir),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        self.wait_until_ready(Duration::from_secs(5));
    }

    /// Polls until the server answers PING (bounded).
    fn wait_until_ready(&mut self, limit: Duration) {
        let started = Instant::now();
        loop {
            if self.pings() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                started.elapsed() < limit,
                "redis-server on port {} not ready after {limit:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pings(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the server vanishes mid-whatever, with no goodbye to its clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The real `queuegate` binary as a child process, for faults an in-process server cannot
/// suffer (SIGKILL, SIGTERM). Its log (JSON lines) goes to a temporary file.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base: String,
    log: PathBuf,
}

impl Gateway {
    /// Starts `queuegate serve` on a free loopback port with exactly this environment (plus
    /// `PATH`, `LISTEN_ADDR`, `LOG_FORMAT=json`); the working directory is the temp dir so no
    /// developer `.env` leaks in. Returns once `/healthz` answers (bounded). Pairs of `&str` or
    /// `String`, as the test has them.
    pub async fn start<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        env: &[(K, V)],
    ) -> Gateway {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::env::temp_dir().join(format!(
            "queuegate-fault-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", addr.to_string())
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,sqlx=warn,fred=warn,hyper=warn,tokio_cron_scheduler=warn",
            )
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k.as_ref(), v.as_ref());
        }
        let child = cmd.spawn().expect("spawn queuegate");
        let mut gw = Gateway {
            child: Some(child),
            addr,
            base: format!("http://{addr}"),
            log,
        };
        gw.wait_healthy(Duration::from_secs(30)).await;
        gw
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let r = http
                .get(self.url("/healthz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!("queuegate exited early ({status}):\n{}", self.log_text());
            }
            assert!(
                started.elapsed() < limit,
                "queuegate not healthy after {limit:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway runs").id()
    }

    /// SIGKILL (`kill -9`): no drain, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
    }

    /// SIGTERM through `kill -TERM <pid>`: the operator's graceful stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// The exit status if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (polling, bounded) for the process to end; `None` if it still runs after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if started.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log as JSON objects (lines that are not JSON are skipped).
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("queuegate log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
