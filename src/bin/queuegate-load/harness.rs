//! What every scenario shares: closed-loop measurement, fan-out over connections, and the
//! setup steps (a concert, users, places, admissions) done through the API.

use crate::client::{Conn, Error};
use crate::options::Options;
use crate::stats::Recorder;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use queuegate::domain::UserId;
use queuegate::tokens::TokenKeys;
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request of a closed-loop phase.
pub struct Spec {
    pub method: Method,
    pub path: String,
    pub token: Option<Arc<str>>,
    pub body: Option<Bytes>,
}

impl Spec {
    pub(crate) fn get(path: impl Into<String>, token: Option<Arc<str>>) -> Self {
        Spec {
            method: Method::GET,
            path: path.into(),
            token,
            body: None,
        }
    }
}

/// Closed loop: `conns` connections each send the next request as soon as the previous answer
/// arrives, until `total` requests or `limit` time.
pub(crate) async fn measure<F>(
    addr: SocketAddr,
    conns: usize,
    total: usize,
    limit: Duration,
    spec: F,
) -> Result<(Recorder, Duration), Error>
where
    F: Fn(usize) -> Spec + Send + Sync + 'static,
{
    measure_paced(addr, conns, total, limit, None, spec).await
}

/// `measure_paced` with the command line's address, connections and `--rate`.
pub(crate) async fn measure_as_asked<F>(
    o: &Options,
    total: usize,
    limit: Duration,
    spec: F,
) -> Result<(Recorder, Duration), Error>
where
    F: Fn(usize) -> Spec + Send + Sync + 'static,
{
    measure_paced(o.addr, o.connections, total, limit, o.rate, spec).await
}

/// `measure`, or with `rate` an open loop: request `i` is due `i / rate` seconds after the
/// start, whenever earlier answers come back, and is sent by the first free connection.
/// Latency counts from when it was due, so time spent waiting for a free connection (the
/// gateway falling behind) is in it. Why: real fans arrive on their own schedule; a closed
/// loop of a few dozen connections sends in step with the answers, so a batching server is
/// handed its work in waves. (tokio's timer wakes at millisecond granularity: requests leave
/// in millisecond bursts, and up to ~1 ms of a latency can be the timer's.)
async fn measure_paced<F>(
    addr: SocketAddr,
    conns: usize,
    total: usize,
    limit: Duration,
    rate: Option<f64>,
    spec: F,
) -> Result<(Recorder, Duration), Error>
where
    F: Fn(usize) -> Spec + Send + Sync + 'static,
{
    let spec = Arc::new(spec);
    let next = Arc::new(AtomicUsize::new(0));
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(Conn::open(addr).await?);
    }
    // scripts/cpu-split.sh waits for this line so that its CPU samples cover only this phase.
    println!("measuring: {conns} connections");
    let started = Instant::now();
    let deadline = started + limit;
    let workers = opened.into_iter().map(|mut conn| {
        let spec = spec.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let mut rec = Recorder::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let due = match rate {
                    Some(r) => {
                        let due = started + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                        Some(due)
                    }
                    None => None,
                };
                let s = spec(i);
                // Closed loop: from the send, as before; open loop: from when it was due.
                let t0 = due.unwrap_or_else(Instant::now);
                match conn
                    .send(s.method, &s.path, s.token.as_deref(), s.body)
                    .await
                {
                    Ok((status, body)) => rec.record(t0.elapsed(), status, &body),
                    Err(_) => {
                        rec.transport_errors += 1;
                        match Conn::open(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            rec
        })
    });
    let mut all = Recorder::default();
    for r in futures_util::future::join_all(workers).await {
        all.merge(r?);
    }
    Ok((all, started.elapsed()))
}

/// Runs `n` setup jobs over `conns` connections; results in job order.
pub(crate) async fn each<T, F, Fut>(
    addr: SocketAddr,
    conns: usize,
    n: usize,
    job: F,
) -> Result<Vec<T>, Error>
where
    T: Send + 'static,
    F: Fn(usize, Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Conn, Result<T, Error>)> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<T>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut workers = Vec::new();
    for _ in 0..conns.min(n.max(1)) {
        let mut conn = Conn::open(addr).await?;
        let (job, next, results) = (job.clone(), next.clone(), results.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), Error>(());
                }
                let (c, r) = job(i, conn).await;
                conn = c;
                let v = r?;
                if let Ok(mut res) = results.lock() {
                    res[i] = Some(v);
                }
            }
        }));
    }
    for w in futures_util::future::join_all(workers).await {
        w??;
    }
    let mut res = results.lock().map_err(|_| "poisoned")?;
    Ok(res
        .drain(..)
        .map(|v| v.ok_or("missing result"))
        .collect::<Result<Vec<T>, _>>()?)
}

pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, Error> {
    Ok(serde_json::from_slice(bytes)?)
}

pub(crate) fn expect(
    status: StatusCode,
    want: StatusCode,
    body: &[u8],
    what: &str,
) -> Result<(), Error> {
    if status == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {want}, got {status}: {}",
            String::from_utf8_lossy(body)
        )
        .into())
    }
}

pub(crate) struct Concert {
    pub(crate) id: u64,
    pub(crate) schedules: Vec<u64>,
}

pub(crate) async fn create_concert(
    o: &Options,
    dates: usize,
    price: i64,
) -> Result<Concert, Error> {
    let mut c = Conn::open(o.addr).await?;
    let schedules: Vec<Value> = (0..dates)
        .map(|i| json!({"starts_at": format!("2031-0{}-15T19:00:00Z", i % 9 + 1), "price": price}))
        .collect();
    let (s, b) = c
        .post_json(
            "/v1/admin/concerts",
            Some(&o.admin_token),
            &json!({"name": "load test", "schedules": schedules}),
        )
        .await?;
    expect(
        s,
        StatusCode::CREATED,
        &b,
        "create concert (is --admin-token right?)",
    )?;
    let v = json_body(&b)?;
    Ok(Concert {
        id: v["concert_id"].as_u64().ok_or("no concert_id")?,
        schedules: v["schedules"]
            .as_array()
            .ok_or("no schedules")?
            .iter()
            .filter_map(|s| s["schedule_id"].as_u64())
            .collect(),
    })
}

pub(crate) async fn set_queue(o: &Options, concert: u64, settings: Value) -> Result<Value, Error> {
    let mut c = Conn::open(o.addr).await?;
    let (s, b) = c
        .put_json(
            &format!("/v1/admin/concerts/{concert}/queue"),
            Some(&o.admin_token),
            &settings,
        )
        .await?;
    expect(s, StatusCode::OK, &b, "queue settings")?;
    json_body(&b)
}

/// User tokens minted locally for queue-only scenarios (the queue needs no user row), with
/// ids far from real ones.
pub(crate) fn minted_users(o: &Options, n: usize) -> Result<Vec<Arc<str>>, Error> {
    let keys = TokenKeys::new(o.jwt_secret.as_bytes());
    let base = 1_000_000_000 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 10_000_000;
    (0..n as u64)
        .map(|i| {
            let id = UserId::new(base + i).ok_or("id out of range")?;
            Ok(Arc::from(keys.mint_user(id)))
        })
        .collect()
}

/// Joins every user to the concert; returns the queue tokens.
pub(crate) async fn join_all(
    o: &Options,
    concert: u64,
    users: &[Arc<str>],
) -> Result<Vec<Arc<str>>, Error> {
    let users: Arc<Vec<Arc<str>>> = Arc::new(users.to_vec());
    each(o.addr, o.connections, users.len(), move |i, mut c| {
        let user = users[i].clone();
        async move {
            let r = c
                .post_json("/v1/queue", Some(&user), &json!({"concert_id": concert}))
                .await;
            let out = r.and_then(|(s, b)| {
                if !s.is_success() {
                    return Err(format!("join: {s}").into());
                }
                let v = json_body(&b)?;
                Ok(Arc::from(
                    v["queue_token"].as_str().ok_or("no queue_token")?,
                ))
            });
            (c, out)
        }
    })
    .await
}

/// Polls each queue token until admitted; returns the access tokens.
pub(crate) async fn wait_admitted(
    o: &Options,
    queue_tokens: &[Arc<str>],
) -> Result<Vec<Arc<str>>, Error> {
    let tokens: Arc<Vec<Arc<str>>> = Arc::new(queue_tokens.to_vec());
    each(o.addr, o.connections, tokens.len(), move |i, mut c| {
        let t = tokens[i].clone();
        async move {
            let started = Instant::now();
            loop {
                match c.get("/v1/queue/status", Some(&t)).await {
                    Ok((s, b)) if s == StatusCode::OK => match json_body(&b) {
                        Ok(v) if v["status"] == "admitted" => {
                            let token = v["access_token"]
                                .as_str()
                                .map(Arc::from)
                                .ok_or_else(|| "no access_token".into());
                            return (c, token);
                        }
                        Ok(_) => {}
                        Err(e) => return (c, Err(e)),
                    },
                    Ok((s, _)) => return (c, Err(format!("status: {s}").into())),
                    Err(e) => return (c, Err(e)),
                }
                if started.elapsed() > Duration::from_secs(60) {
                    return (c, Err("not admitted within 60 s".into()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await
}

/// Real users (rows in the database), created through the API.
pub(crate) async fn created_users(o: &Options, n: usize) -> Result<Vec<(u64, Arc<str>)>, Error> {
    each(o.addr, o.connections, n, |i, mut c| async move {
        let r = c
            .post_json("/v1/users", None, &json!({"name": format!("load fan {i}")}))
            .await;
        let out = r.and_then(|(s, b)| {
            expect(s, StatusCode::CREATED, &b, "create user")?;
            let v = json_body(&b)?;
            Ok((
                v["user_id"].as_u64().ok_or("no user_id")?,
                Arc::from(v["user_token"].as_str().ok_or("no user_token")?),
            ))
        });
        (c, out)
    })
    .await
}

/// Sums every sample of a metric family in a Prometheus text page, optionally filtered by a
/// label fragment like `result="acquired"`.
pub(crate) fn metric_sum(page: &str, name: &str, label: Option<&str>) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label.is_none_or(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn metrics_page(o: &Options) -> Result<String, Error> {
    let (_, b) = Conn::open(o.addr).await?.get("/metrics", None).await?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// Runs the invariant checker on the gateway's database, prints the result, and says whether
/// every invariant holds.
pub(crate) async fn invariants_hold(db: &queuegate::db::Db) -> Result<bool, Error> {
    let violations = queuegate::check::run(db.primary()).await?;
    if violations.is_empty() {
        println!("invariants  all hold (no seat sold twice, money conserved)");
    } else {
        println!("invariants  {violations:?}");
    }
    Ok(violations.is_empty())
}

/// A few keep-alive connections shared by many simulated fans (each fan borrows one for a
/// request): thousands of fans that poll now and then need no connection each.
pub(crate) struct Shared {
    conns: tokio::sync::Mutex<Vec<Conn>>,
    permits: tokio::sync::Semaphore,
    addr: SocketAddr,
}

impl Shared {
    pub(crate) async fn open(addr: SocketAddr, n: usize) -> Result<Arc<Shared>, Error> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Conn::open(addr).await?);
        }
        Ok(Arc::new(Shared {
            conns: tokio::sync::Mutex::new(conns),
            permits: tokio::sync::Semaphore::new(n),
            addr,
        }))
    }

    /// One request on a borrowed connection; a broken connection is replaced. A request that
    /// fails on a kept-alive connection is sent once more on a fresh one, as HTTP clients do:
    /// the server may have closed the connection while it sat idle (its header-read timeout),
    /// which the client only learns by using it. Only requests that may be repeated go
    /// through here (status polls, and joins, which are idempotent).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let _permit = self.permits.acquire().await?;
        let pooled = self.conns.lock().await.pop();
        let body = body.map(|b| Bytes::from(b.to_string()));
        if let Some(mut conn) = pooled
            && let Ok(answer) = conn.send(method.clone(), path, token, body.clone()).await
        {
            self.conns.lock().await.push(conn);
            return Ok(answer);
        }
        let mut fresh = Conn::open(self.addr).await?;
        let answer = fresh.send(method, path, token, body).await;
        if answer.is_ok() {
            self.conns.lock().await.push(fresh);
        }
        answer
    }
}

/// Milliseconds since the Unix epoch (the gateway's RFC 3339 times are compared to it).
pub(crate) fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An RFC 3339 time as milliseconds since the epoch.
pub(crate) fn rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// User + system CPU time of a process so far (Linux `/proc/PID/stat`, 100 ticks a second).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of a process (KiB, Linux `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `q`-quantile of unsorted values.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    Some(values[i])
}
