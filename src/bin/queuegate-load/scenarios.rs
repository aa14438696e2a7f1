//! The scenarios. Each creates what it needs through the API (a fresh concert, users, places),
//! measures one phase, and ends with a verdict from the API or the database.

use crate::Options;
use crate::client::{Conn, Error};
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

pub async fn run(name: &str, o: &Options) -> Result<bool, Error> {
    match name {
        "baseline" => baseline(o).await,
        "poll" => poll(o).await,
        "join" => join(o).await,
        "rush-one" => rush(o, true).await,
        "rush-many" => rush(o, false).await,
        "flow" => flow(o).await,
        "sse" => sse(o).await,
        "scale" => scale(o).await,
        other => Err(format!("unknown scenario {other} (see --help)").into()),
    }
}

/// One request of a closed-loop phase.
pub struct Spec {
    pub method: Method,
    pub path: String,
    pub token: Option<Arc<str>>,
    pub body: Option<Bytes>,
}

impl Spec {
    fn get(path: impl Into<String>, token: Option<Arc<str>>) -> Self {
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
async fn measure<F>(
    addr: SocketAddr,
    conns: usize,
    total: usize,
    limit: Duration,
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
                let s = spec(i);
                let t0 = Instant::now();
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
async fn each<T, F, Fut>(addr: SocketAddr, conns: usize, n: usize, job: F) -> Result<Vec<T>, Error>
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

fn json_body(bytes: &[u8]) -> Result<Value, Error> {
    Ok(serde_json::from_slice(bytes)?)
}

fn expect(status: StatusCode, want: StatusCode, body: &[u8], what: &str) -> Result<(), Error> {
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

struct Concert {
    id: u64,
    schedules: Vec<u64>,
}

async fn create_concert(o: &Options, dates: usize, price: i64) -> Result<Concert, Error> {
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

async fn set_queue(o: &Options, concert: u64, settings: Value) -> Result<Value, Error> {
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
fn minted_users(o: &Options, n: usize) -> Result<Vec<Arc<str>>, Error> {
    let keys = TokenKeys::new(o.jwt_secret.as_bytes());
    let base = 1_000_000_000 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 10_000_000;
    (0..n as u64)
        .map(|i| {
            let id = UserId::new(base + i).ok_or("id out of range")?;
            Ok(Arc::from(keys.mint_user(id).map_err(|e| e.to_string())?))
        })
        .collect()
}

/// Joins every user to the concert; returns the queue tokens.
async fn join_all(o: &Options, concert: u64, users: &[Arc<str>]) -> Result<Vec<Arc<str>>, Error> {
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
async fn wait_admitted(o: &Options, queue_tokens: &[Arc<str>]) -> Result<Vec<Arc<str>>, Error> {
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
async fn created_users(o: &Options, n: usize) -> Result<Vec<(u64, Arc<str>)>, Error> {
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
fn metric_sum(page: &str, name: &str, label: Option<&str>) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label.is_none_or(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_page(o: &Options) -> Result<String, Error> {
    let (_, b) = Conn::open(o.addr).await?.get("/metrics", None).await?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

async fn baseline(o: &Options) -> Result<bool, Error> {
    let (mut rec, elapsed) = measure(o.addr, o.connections, o.requests, o.duration, |_| {
        Spec::get("/healthz", None)
    })
    .await?;
    let s = rec.summary("baseline: GET /healthz", elapsed);
    s.print();
    let ok = rec.status(200) == rec.count() && rec.transport_errors == 0;
    println!(
        "verdict     {}",
        if ok { "PASS every answer 200" } else { "FAIL" }
    );
    Ok(ok)
}

async fn poll(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = minted_users(o, n)?;
    let t = Instant::now();
    let tokens = Arc::new(join_all(o, concert.id, &users).await?);
    println!(
        "setup: {n} users joined in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let tk = tokens.clone();
    let (mut rec, elapsed) = measure(o.addr, o.connections, o.requests, o.duration, move |i| {
        Spec::get("/v1/queue/status", Some(tk[i % tk.len()].clone()))
    })
    .await?;
    rec.summary(
        &format!("poll: {n} waiting users, {} connections", o.connections),
        elapsed,
    )
    .print();
    let view = set_queue(o, concert.id, json!({})).await?;
    let ok = rec.status(200) == rec.count() && view["waiting"] == n as u64;
    println!(
        "verdict     {} (all 200: {}, still waiting: {})",
        if ok { "PASS" } else { "FAIL" },
        rec.status(200) == rec.count(),
        view["waiting"]
    );
    Ok(ok)
}

async fn join(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(100_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = Arc::new(minted_users(o, n)?);
    let id = concert.id;
    let body = Bytes::from(json!({ "concert_id": id }).to_string());
    let u = users.clone();
    let (mut rec, elapsed) = measure(
        o.addr,
        o.connections,
        n,
        o.duration.max(Duration::from_secs(120)),
        move |i| Spec {
            method: Method::POST,
            path: "/v1/queue".into(),
            token: Some(u[i].clone()),
            body: Some(body.clone()),
        },
    )
    .await?;
    rec.summary(
        &format!("join: {n} distinct users, {} connections", o.connections),
        elapsed,
    )
    .print();
    let view = set_queue(o, concert.id, json!({})).await?;
    let ok = rec.status(201) == n as u64 && view["waiting"] == n as u64;
    println!(
        "verdict     {} (201s: {}, waiting now: {})",
        if ok {
            "PASS every join is one place"
        } else {
            "FAIL"
        },
        rec.status(201),
        view["waiting"]
    );
    Ok(ok)
}

/// 10,000 admitted users hold seats at once: all the same seat (`one`), or random seats.
async fn rush(o: &Options, one: bool) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 1000).await?;
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    let t = Instant::now();
    let users = created_users(o, n).await?;
    let user_tokens: Vec<Arc<str>> = users.iter().map(|(_, t)| t.clone()).collect();
    let queue_tokens = join_all(o, concert.id, &user_tokens).await?;
    let access = Arc::new(wait_admitted(o, &queue_tokens).await?);
    println!(
        "setup: {n} users created, queued and admitted in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let before = metrics_page(o).await?;
    let schedule = concert.schedules[0];
    // Seats for rush-many: a fixed pseudo-random pick per user.
    let seat_of = move |i: usize| {
        if one {
            7
        } else {
            (i.wrapping_mul(2654435761) >> 7) % 50 + 1
        }
    };
    let conns = o.connections.max(256).min(n);
    let a = access.clone();
    let (mut rec, elapsed) = measure(o.addr, conns, n, o.duration, move |i| Spec {
        method: Method::POST,
        path: "/v1/reservations".into(),
        token: Some(a[i].clone()),
        body: Some(Bytes::from(
            json!({"schedule_id": schedule, "seat_no": seat_of(i)}).to_string(),
        )),
    })
    .await?;
    let after = metrics_page(o).await?;
    let title = if one {
        "rush-one: every user holds seat 7"
    } else {
        "rush-many: every user holds a random seat"
    };
    rec.summary(
        &format!("{title} ({n} users, {conns} connections)"),
        elapsed,
    )
    .print();

    let locks = metric_sum(&after, "queuegate_lock_acquire_total", None)
        - metric_sum(&before, "queuegate_lock_acquire_total", None);
    let early = metric_sum(&after, "queuegate_holds_total", Some("rejected_early"))
        - metric_sum(&before, "queuegate_holds_total", Some("rejected_early"));
    let fallbacks = metric_sum(&after, "queuegate_lock_fallback_total", None)
        - metric_sum(&before, "queuegate_lock_fallback_total", None);
    println!(
        "cost        lock attempts {locks:.0}, rejected before any lock {early:.0}, db-only fallbacks {fallbacks:.0}"
    );

    let wanted = if one { 1 } else { 50 };
    let mut ok = rec.status(201) == wanted
        && rec.status(409) == n as u64 - wanted
        && rec.server_errors() == 0;
    if one {
        ok &= elapsed <= Duration::from_secs(2);
    }
    if let Some(url) = &o.database_url {
        let db = queuegate::db::Db::connect_lazy(url, None, 2)?;
        let live: Vec<(u8, i64)> = sqlx::query_as(
            "SELECT seat_no, COUNT(*) FROM reservations WHERE schedule_id = ? AND status IN ('held', 'confirmed') GROUP BY seat_no",
        )
        .bind(schedule)
        .fetch_all(db.primary())
        .await?;
        let total: i64 = live.iter().map(|(_, c)| c).sum();
        let one_each = live.iter().all(|(_, c)| *c == 1);
        println!(
            "database    {} seats held, {} live reservations, one per seat: {one_each}",
            live.len(),
            total
        );
        ok &= total == wanted as i64 && one_each;
        let violations = queuegate::check::run(db.primary()).await?;
        println!(
            "invariants  {}",
            if violations.is_empty() {
                "all hold".to_string()
            } else {
                format!("{violations:?}")
            }
        );
        ok &= violations.is_empty();
    }
    println!(
        "verdict     {} ({} x 201, {} x 409, {} x 5xx, all answered in {:.2} s)",
        if ok { "PASS" } else { "FAIL" },
        rec.status(201),
        rec.status(409),
        rec.server_errors(),
        elapsed.as_secs_f64()
    );
    Ok(ok)
}

async fn flow(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(1000);
    let dates = n.div_ceil(40).max(1);
    let concert = Arc::new(create_concert(o, dates, 700).await?);
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    let started = Instant::now();
    let requests = Arc::new(AtomicUsize::new(0));
    let req = requests.clone();
    let c2 = concert.clone();
    let paid = each(o.addr, o.connections, n, move |i, mut c| {
        let concert = c2.clone();
        let requests = req.clone();
        async move {
            let r = journey(&mut c, &concert, i, &requests).await;
            (c, r)
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let paid = paid.into_iter().filter(|p| *p).count();
    let total = requests.load(Ordering::Relaxed);
    println!("== flow: {n} users, join -> admitted -> dates -> seats -> hold -> charge -> pay ==");
    println!(
        "journeys {n} in {:.2} s = {:.0} journeys/s, {total} requests = {:.0} req/s, {paid} seats paid",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let mut ok = paid == n;
    if let Some(url) = &o.database_url {
        let db = queuegate::db::Db::connect_lazy(url, None, 2)?;
        let violations = queuegate::check::run(db.primary()).await?;
        println!(
            "invariants  {}",
            if violations.is_empty() {
                "all hold (money conserved)".to_string()
            } else {
                format!("{violations:?}")
            }
        );
        ok &= violations.is_empty();
    }
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// One fan's whole journey; true when a seat was paid.
async fn journey(
    c: &mut Conn,
    concert: &Concert,
    i: usize,
    requests: &AtomicUsize,
) -> Result<bool, Error> {
    let count = |k: usize| requests.fetch_add(k, Ordering::Relaxed);
    let (s, b) = c
        .post_json("/v1/users", None, &json!({"name": format!("flow fan {i}")}))
        .await?;
    expect(s, StatusCode::CREATED, &b, "create user")?;
    let u = json_body(&b)?;
    let (uid, utoken) = (
        u["user_id"].as_u64().ok_or("no id")?,
        u["user_token"].as_str().ok_or("no token")?.to_owned(),
    );
    let (s, b) = c
        .post_json(
            &format!("/v1/users/{uid}/balance/charge"),
            Some(&utoken),
            &json!({"amount": 5000}),
        )
        .await?;
    expect(s, StatusCode::OK, &b, "charge")?;
    let (s, b) = c
        .post_json(
            "/v1/queue",
            Some(&utoken),
            &json!({"concert_id": concert.id}),
        )
        .await?;
    expect(s, StatusCode::CREATED, &b, "join")?;
    let qt = json_body(&b)?["queue_token"]
        .as_str()
        .ok_or("no queue token")?
        .to_owned();
    count(3);
    let access = loop {
        let (s, b) = c.get("/v1/queue/status", Some(&qt)).await?;
        count(1);
        expect(s, StatusCode::OK, &b, "status")?;
        let v = json_body(&b)?;
        if v["status"] == "admitted" {
            break v["access_token"]
                .as_str()
                .ok_or("no access token")?
                .to_owned();
        }
        tokio::time::sleep(Duration::from_millis(
            v["poll_after_ms"].as_u64().unwrap_or(1000).min(200),
        ))
        .await;
    };
    let (s, b) = c
        .get(
            &format!("/v1/concerts/{}/schedules", concert.id),
            Some(&access),
        )
        .await?;
    expect(s, StatusCode::OK, &b, "schedules")?;
    count(1);
    // Spread fans over dates; within a date, try seats until one is free.
    let schedule = concert.schedules[i % concert.schedules.len()];
    for attempt in 0..60 {
        let (s, b) = c
            .get(&format!("/v1/schedules/{schedule}/seats"), Some(&access))
            .await?;
        expect(s, StatusCode::OK, &b, "seats")?;
        count(1);
        let seats = json_body(&b)?;
        let free: Vec<u64> = seats["seats"]
            .as_array()
            .ok_or("no seats")?
            .iter()
            .filter(|s| s["status"] == "available")
            .filter_map(|s| s["seat_no"].as_u64())
            .collect();
        let Some(&seat) = free.get((i + attempt) % free.len().max(1)) else {
            return Ok(false);
        };
        let (s, b) = c
            .post_json(
                "/v1/reservations",
                Some(&access),
                &json!({"schedule_id": schedule, "seat_no": seat}),
            )
            .await?;
        count(1);
        if s == StatusCode::CONFLICT {
            continue;
        }
        expect(s, StatusCode::CREATED, &b, "hold")?;
        let reservation = json_body(&b)?["reservation_id"]
            .as_u64()
            .ok_or("no reservation")?;
        let (s, b) = c
            .post_json(
                "/v1/payments",
                Some(&access),
                &json!({"reservation_id": reservation}),
            )
            .await?;
        count(1);
        expect(s, StatusCode::CREATED, &b, "pay")?;
        return Ok(true);
    }
    Ok(false)
}

/// Resident memory (kB) and CPU ticks of a process, from /proc.
fn proc_figures(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let cpu = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, cpu))
}

async fn sse(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = minted_users(o, n)?;
    let tokens = join_all(o, concert.id, &users).await?;
    let rss_before = o.gateway_pid.and_then(proc_figures);
    let opened = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for t in tokens {
        let (opened, admitted) = (opened.clone(), admitted.clone());
        let addr = o.addr;
        streams.push(tokio::spawn(async move {
            stream_until_admitted(addr, &t, &opened, &admitted).await
        }));
        // Pace the connects a little so the accept queue never overflows.
        if streams.len() % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let limit = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < n && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_after = started.elapsed();
    println!("== sse: {n} open event streams on one instance ==");
    println!(
        "opened {} streams in {:.1} s",
        opened.load(Ordering::Relaxed),
        open_after.as_secs_f64()
    );
    // Hold them open for a while and watch the gateway.
    let hold = o.duration.min(Duration::from_secs(10));
    let at_start = o.gateway_pid.and_then(proc_figures);
    tokio::time::sleep(hold).await;
    let at_end = o.gateway_pid.and_then(proc_figures);
    let mut ok = opened.load(Ordering::Relaxed) == n;
    if let (Some((rss0, _)), Some((_, cpu0)), Some((rss1, cpu1))) = (rss_before, at_start, at_end) {
        let ticks = 100.0; // USER_HZ on Linux
        let cpu_pct = (cpu1 - cpu0) as f64 / ticks / hold.as_secs_f64() * 100.0;
        println!(
            "gateway     RSS {:.1} MB with streams open (was {:.1} MB idle), CPU {cpu_pct:.1}% of one core while idle-streaming",
            rss1 as f64 / 1024.0,
            rss0 as f64 / 1024.0
        );
        ok &= rss1 <= 150 * 1024;
    }
    // Open the gate: every stream must get its admitted event and end.
    let t = Instant::now();
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    for s in streams {
        let _ = tokio::time::timeout(Duration::from_secs(60), s).await;
    }
    let got = admitted.load(Ordering::Relaxed);
    println!(
        "admitted    {got}/{n} streams received `admitted` and ended, {:.1} s after admission opened",
        t.elapsed().as_secs_f64()
    );
    ok &= got == n;
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// Opens one event stream and reads it to its end; counts the open and the admitted event.
async fn stream_until_admitted(
    addr: SocketAddr,
    token: &str,
    opened: &AtomicUsize,
    admitted: &AtomicUsize,
) -> Result<(), Error> {
    use http_body_util::BodyExt;
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(format!("/v1/queue/events?token={token}"))
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("events: {}", resp.status()).into());
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut seen = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
            if seen.contains("event: admitted") {
                admitted.fetch_add(1, Ordering::Relaxed);
            }
            if seen.len() > 4096 {
                seen.drain(..seen.len() - 64);
            }
        }
    }
    Ok(())
}

async fn redis_used_memory(url: &str) -> Result<u64, Error> {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    let info: String = client.info(Some(fred::types::InfoKind::Memory)).await?;
    let _ = client.quit().await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

async fn scale(o: &Options) -> Result<bool, Error> {
    let big = o.users.unwrap_or(1_000_000);
    let mut p99s = Vec::new();
    let mut ok = true;
    for n in [1_000usize, big] {
        let concert = create_concert(o, 1, 100).await?;
        set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
        let before = redis_used_memory(&o.redis_url).await?;
        let t = Instant::now();
        // Join in slices to bound memory of the tool; keep 1,000 tokens spread over the line.
        let mut sample: Vec<Arc<str>> = Vec::new();
        let slice = 50_000;
        let mut done = 0;
        while done < n {
            let k = slice.min(n - done);
            let users = minted_users(o, k)?;
            let tokens = join_all(o, concert.id, &users).await?;
            let step = (n / 1000).max(1);
            sample.extend(
                tokens
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| (done + i) % step == 0)
                    .map(|(_, t)| t),
            );
            done += k;
        }
        let after = redis_used_memory(&o.redis_url).await?;
        let per_user = after.saturating_sub(before) as f64 / n as f64;
        println!(
            "setup: {n} waiting users joined in {:.1} s; Redis +{:.1} MB = {per_user:.0} bytes per waiting user",
            t.elapsed().as_secs_f64(),
            after.saturating_sub(before) as f64 / 1e6
        );
        let sample = Arc::new(sample);
        let s2 = sample.clone();
        let (mut rec, elapsed) = measure(
            o.addr,
            o.connections,
            o.requests.min(100_000),
            o.duration,
            move |i| Spec::get("/v1/queue/status", Some(s2[i % s2.len()].clone())),
        )
        .await?;
        let s = rec.summary(&format!("scale: status with {n} waiting"), elapsed);
        s.print();
        p99s.push(s.p99_ms);
        ok &= rec.status(200) == rec.count();
        if n == big {
            ok &= per_user <= 150.0;
        }
        // Leave the big line in place only as long as needed.
        set_queue(
            o,
            concert.id,
            json!({"admit_per_tick": 100_000, "max_active": 0}),
        )
        .await?;
    }
    let ratio = p99s[1] / p99s[0].max(0.001);
    println!("p99 ratio   {ratio:.2} ({big} vs 1000 waiting)");
    ok &= ratio <= 1.5;
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
