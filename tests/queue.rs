//! The waiting room against real Redis: FIFO order, exactly-once admission across instances,
//! the max_active cap, idempotent join, seq restore after data loss, idle removal, leave,
//! access expiry, SSE, and live admin changes.

mod common;

use common::{TestApp, error_code, spawn_app, spawn_with};
use fred::prelude::*;
use queuegate::domain::{ConcertId, LineId, UserId};
use queuegate::queue::keys::ConcertKeys;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds; fails the test after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (ticks_total, admitted_total) read in one command, so the pair is consistent.
async fn tick_figures(app: &TestApp, concert: ConcertId) -> (u64, u64) {
    let k = app.app.queue.store().keys(app.line(concert).await);
    let v: Vec<Option<u64>> = app
        .app
        .queue
        .store()
        .pool()
        .next()
        .hmget(&k.stats, vec!["ticks_total", "admitted_total"])
        .await
        .unwrap();
    (v[0].unwrap_or(0), v[1].unwrap_or(0))
}

/// Polls the status until admitted; returns the access token.
async fn wait_admitted(app: &TestApp, queue_token: &str) -> String {
    let started = Instant::now();
    loop {
        let v: Value = app.queue_status(queue_token).await.json().await.unwrap();
        if v["status"] == "admitted" {
            return v["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never admitted: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admitted_count(app: &TestApp, concert: ConcertId) -> u64 {
    let k = app.app.queue.store().keys(app.line(concert).await);
    app.app
        .queue
        .store()
        .pool()
        .next()
        .zcard(&k.admitted)
        .await
        .unwrap()
}

#[tokio::test]
async fn users_are_admitted_in_join_order_and_positions_count_from_one() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100"), ("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let users = app.create_users(12).await;
    let mut tokens = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (code, body) = app.join(u, concert.id).await;
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(body["status"], "waiting");
        assert_eq!(body["position"], i as u64 + 1);
        assert!(body["poll_after_ms"].as_u64().unwrap() >= 1000);
        tokens.push(body["queue_token"].as_str().unwrap().to_owned());
    }
    // Joining again: same place, 200.
    let (code, again) = app.join(&users[3], concert.id).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again["position"], 4);
    for (i, t) in tokens.iter().enumerate() {
        let v: Value = app.queue_status(t).await.json().await.unwrap();
        assert_eq!(v["status"], "waiting");
        assert_eq!(v["position"], i as u64 + 1);
    }
    // Admit at most 5 at once: exactly the first five get in.
    let r = app
        .put_queue(concert.id, json!({ "admit_per_tick": 3, "max_active": 5 }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually(Duration::from_secs(5), "five admitted", || async {
        admitted_count(&app, concert.id).await == 5
    })
    .await;
    for (i, t) in tokens.iter().enumerate() {
        let v: Value = app.queue_status(t).await.json().await.unwrap();
        if i < 5 {
            assert_eq!(v["status"], "admitted", "user {i}");
            assert!(v["access_token"].as_str().is_some());
            assert!(v["access_expires_at"].as_str().unwrap().ends_with('Z'));
        } else {
            assert_eq!(v["status"], "waiting", "user {i}");
            assert_eq!(v["position"], i as u64 - 4);
        }
    }
    // An admitted user leaves: the next in line takes the slot at the next tick.
    let r = app.leave(&tokens[0]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.queue_status(&tokens[0]).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::GONE, "QUEUE_ENTRY_GONE")
    );
    eventually(Duration::from_secs(5), "user 5 admitted", || async {
        app.queue_status(&tokens[5])
            .await
            .json::<Value>()
            .await
            .unwrap()["status"]
            == "admitted"
    })
    .await;
    assert_eq!(
        app.queue_status(&tokens[6])
            .await
            .json::<Value>()
            .await
            .unwrap()["position"],
        1
    );
    let view = app.get_queue(concert.id).await;
    assert_eq!(view["admitted"], 5);
    assert_eq!(view["waiting"], 6);
    assert_eq!(view["admitted_total"], 6);
    assert_eq!(view["max_active"], 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_admit_exactly_once_per_tick_and_never_above_max_active() {
    let first = spawn_with(&[("QUEUE_TICK_MS", "100"), ("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let db_url = format!("mysql://root@127.0.0.1:3306/{}", first.db_name);
    let prefix = first.app.settings.redis_key_prefix.clone();
    let shared = [
        ("QUEUE_TICK_MS", "100"),
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("DATABASE_URL", db_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let second = spawn_with(&shared).await;
    let third = spawn_with(&shared).await;
    let concert = first.create_concert(1, 10).await;
    let line = first.line(concert.id).await;
    join_directly(&first, line, 3000).await;
    // A live change on one instance applies to all: every tick now admits exactly 4.
    let r = second
        .put_queue(
            concert.id,
            json!({ "admit_per_tick": 4, "max_active": 1_000_000 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(third.get_queue(concert.id).await["admit_per_tick"], 4);
    // Wait until the change has been seen by a tick, then measure over at least 15 more ticks.
    eventually(Duration::from_secs(5), "first admissions", || async {
        tick_figures(&first, concert.id).await.1 > 0
    })
    .await;
    let (ticks0, admitted0) = tick_figures(&first, concert.id).await;
    let started = Instant::now();
    eventually(Duration::from_secs(10), "15 more ticks", || async {
        tick_figures(&first, concert.id).await.0 >= ticks0 + 15
    })
    .await;
    let (ticks1, admitted1) = tick_figures(&first, concert.id).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let ticks = ticks1 - ticks0;
    assert_eq!(
        admitted1 - admitted0,
        4 * ticks,
        "every tick admits exactly admit_per_tick"
    );
    // Three timers, yet no more ticks than 100 ms periods elapsed (plus the boundary one).
    assert!(
        ticks <= elapsed_ms / 100 + 2,
        "{ticks} ticks in {elapsed_ms} ms: ticks ran more than once"
    );

    // The cap: admitted never exceeds max_active, sampled while three timers race to admit.
    let r = third
        .put_queue(
            concert.id,
            json!({ "admit_per_tick": 50, "max_active": 120 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    let mut max_seen = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let n = admitted_count(&first, concert.id).await;
        max_seen = max_seen.max(n);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(max_seen, 120, "the cap is reached and never exceeded");
    assert_eq!(first.get_queue(concert.id).await["admitted"], 120);
    third.stop().await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_kept_queue_token_restores_the_place_after_the_store_loses_its_data() {
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let users = app.create_users(3).await;
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(
            app.join(u, concert.id).await.1["queue_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let seq_of = |t: &str| app.app.tokens.verify_queue(t).unwrap().seq;
    let seq2 = seq_of(&tokens[1]);

    // The store loses everything about this concert.
    app.lose_line_data(concert.id).await;
    let r = app.queue_status(&tokens[1]).await;
    assert_eq!(r.status(), StatusCode::GONE);

    // A newcomer joins first, then user 2 comes back with the kept token: original seq.
    let newcomer = app.create_user("newcomer").await;
    app.join(&newcomer, concert.id).await;
    let r = app
        .http
        .post(app.url("/v1/queue"))
        .bearer_auth(&users[1].token)
        .json(&json!({ "concert_id": concert.id.get(), "queue_token": tokens[1] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let restored: Value = r.json().await.unwrap();
    let restored_token = restored["queue_token"].as_str().unwrap();
    assert_eq!(seq_of(restored_token), seq2, "original seq restored");
    assert_eq!(
        restored["position"], 1,
        "ahead of the newcomer who joined after the loss"
    );
    // Later arrivals still queue behind everyone restored.
    let late = app.create_user("late").await;
    let late_token = app.join(&late, concert.id).await.1["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(seq_of(&late_token) > seq2);

    // A token from the *current* epoch whose place is gone does not restore: back of the line.
    let r = app.leave(restored_token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .http
        .post(app.url("/v1/queue"))
        .bearer_auth(&users[1].token)
        .json(&json!({ "concert_id": concert.id.get(), "queue_token": restored_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rejoined: Value = r.json().await.unwrap();
    assert!(seq_of(rejoined["queue_token"].as_str().unwrap()) > seq_of(&late_token));
    // Someone else's queue token is refused.
    let r = app
        .http
        .post(app.url("/v1/queue"))
        .bearer_auth(&users[0].token)
        .json(&json!({ "concert_id": concert.id.get(), "queue_token": tokens[2] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn a_store_that_lost_its_data_gets_the_operators_settings_back() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100"), ("QUEUE_ADMIT_PER_TICK", "50")]).await;
    let concert = app.create_concert(1, 10).await.id;
    // The operator pauses the line and caps it (in gateway mode: what the origin can take).
    let r = app
        .put_queue(
            concert,
            json!({ "admit_per_tick": 0, "max_active": 3, "access_ttl_secs": 77, "tick_ms": 150 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The store loses everything about this line, the settings included.
    app.lose_line_data(concert).await;
    let v = app.get_queue(concert).await;
    assert_eq!(v["admit_per_tick"], 50, "the store's copy is gone: {v}");

    // Fans who come after the loss find the line as the operator left it.
    let fans = app.create_users(5).await;
    let mut tokens = Vec::new();
    for f in &fans {
        let (s, v) = app.join(f, concert).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "waiting", "{v}");
        tokens.push(v["queue_token"].as_str().unwrap().to_owned());
    }
    let v = app.get_queue(concert).await;
    assert_eq!(
        (
            &v["admit_per_tick"],
            &v["max_active"],
            &v["access_ttl_secs"],
            &v["tick_ms"]
        ),
        (&json!(0), &json!(3), &json!(77), &json!(150)),
        "{v}"
    );
    // Still paused: ticks pass and nobody is admitted.
    let (ticks, _) = tick_figures(&app, concert).await;
    eventually(Duration::from_secs(5), "three more ticks", || async {
        tick_figures(&app, concert).await.0 >= ticks + 3
    })
    .await;
    assert_eq!(admitted_count(&app, concert).await, 0);

    // Unpaused: admissions resume, and never above the restored cap.
    let r = app
        .put_queue(concert, json!({ "admit_per_tick": 50 }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually(Duration::from_secs(5), "three admitted", || async {
        admitted_count(&app, concert).await == 3
    })
    .await;
    let (ticks, _) = tick_figures(&app, concert).await;
    eventually(Duration::from_secs(5), "three more ticks", || async {
        tick_figures(&app, concert).await.0 >= ticks + 3
    })
    .await;
    assert_eq!(admitted_count(&app, concert).await, 3, "the cap holds");
    let access = wait_admitted(&app, &tokens[0]).await;
    let ttl = app.app.tokens.verify_access(&access).unwrap();
    assert!(
        ttl.exp <= queuegate::tokens::now_secs() + 77,
        "the restored admission length"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_user_loses_the_place_while_a_polling_user_keeps_it() {
    let app = spawn_with(&[
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("QUEUE_IDLE_SECS", "1"),
        ("QUEUE_TICK_MS", "100"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    let idle = app.create_user("idle").await;
    let active = app.create_user("active").await;
    let idle_token = app.join(&idle, concert.id).await.1["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let active_token = app.join(&active, concert.id).await.1["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The active user polls; the idle one does not. After the idle limit, the idle place is gone.
    eventually(Duration::from_secs(5), "idle user removed", || async {
        let v: Value = app.queue_status(&active_token).await.json().await.unwrap();
        assert_eq!(v["status"], "waiting");
        v["position"] == 1
    })
    .await;
    let r = app.queue_status(&idle_token).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::GONE, "QUEUE_ENTRY_GONE")
    );
    app.stop().await;
}

/// Users 1..=n join `line` straight through the queue service (no HTTP), one after another,
/// so their seqs are consecutive.
async fn join_directly(app: &TestApp, line: LineId, n: u64) {
    for u in 1..=n {
        app.app
            .queue
            .join(line, UserId::new(u).unwrap(), None)
            .await
            .unwrap();
    }
}

/// A line filled by `join_directly`, and what the idle-scan and tick tests read and change of
/// it in Redis: its keys, its places (user, seq) in line order, and each place's mark.
struct FilledLine {
    keys: std::sync::Arc<ConcertKeys>,
    redis: fred::clients::Client,
    places: Vec<(String, f64)>,
}

impl FilledLine {
    async fn new(app: &TestApp, line: LineId, n: u64) -> Self {
        join_directly(app, line, n).await;
        let keys = app.app.queue.store().keys(line);
        let redis = app.app.queue.store().pool().next().clone();
        let places = Self::read(&redis, &keys.waiting).await;
        assert_eq!(places.len() as u64, n);
        FilledLine {
            keys,
            redis,
            places,
        }
    }

    async fn read(redis: &fred::clients::Client, key: &str) -> Vec<(String, f64)> {
        redis
            .zrange(key, 0, -1, None, false, None, true)
            .await
            .unwrap()
    }

    /// The places waiting now.
    async fn waiting(&self) -> Vec<(String, f64)> {
        Self::read(&self.redis, &self.keys.waiting).await
    }

    /// The bucket and field of the place `seq`'s mark (see lua/join.lua).
    fn mark(&self, seq: f64) -> (String, String) {
        let seq = seq as u64;
        (
            format!("{}{}", self.keys.seen, seq / 128),
            (seq % 128).to_string(),
        )
    }

    async fn marked(&self, seq: f64) -> bool {
        let (bucket, field) = self.mark(seq);
        self.redis.hexists(&bucket, &field).await.unwrap()
    }

    /// The place goes idle: last seen an hour ago, or (`with_mark` false) never marked at
    /// all, which counts the same (a place's idle clock starts at its mark or the sale start).
    async fn go_idle(&self, seq: f64, with_mark: bool) {
        let (bucket, field) = self.mark(seq);
        let _: i64 = if with_mark {
            let old = (queuegate::tokens::now_secs() - 3600).to_string();
            self.redis.hset(&bucket, (field, old)).await.unwrap()
        } else {
            self.redis.hdel(&bucket, &field).await.unwrap()
        };
    }
}

/// The rolling idle scan removes exactly the places whose last mark is older than the idle
/// limit (or that have none), across several mark buckets — a whole bucket idle, buckets with
/// idle and fresh places mixed, the first and last cut by the scan's chunks — with their marks,
/// and counts them; every other place stays, mark and all.
#[tokio::test]
async fn the_idle_scan_removes_exactly_the_places_not_seen_for_the_idle_limit() {
    let app = spawn_with(&[
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("QUEUE_IDLE_SECS", "60"),
        ("QUEUE_TICK_MS", "100"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    let line = FilledLine::new(&app, app.line(concert.id).await, 700).await;
    let (k, redis, places) = (&line.keys, &line.redis, &line.places);
    // A bucket all of whose 128 places are in the line goes idle whole.
    let whole = places
        .iter()
        .map(|(_, s)| *s as u64 / 128)
        .find(|b| places.iter().filter(|(_, s)| *s as u64 / 128 == *b).count() == 128)
        .expect("700 consecutive places fill a bucket");
    let mut idle = std::collections::BTreeSet::new();
    for (i, (user, seq)) in places.iter().enumerate() {
        if i % 97 == 5 {
            line.go_idle(*seq, false).await;
        } else if i % 3 == 0 || *seq as u64 / 128 == whole {
            line.go_idle(*seq, true).await;
        } else {
            continue;
        }
        idle.insert(user.clone());
    }
    eventually(Duration::from_secs(10), "idle places removed", || async {
        let n: u64 = redis.zcard(&k.waiting).await.unwrap();
        n <= (700 - idle.len()) as u64
    })
    .await;
    let left = line.waiting().await;
    let kept: Vec<&(String, f64)> = places.iter().filter(|(u, _)| !idle.contains(u)).collect();
    assert_eq!(
        left.iter().collect::<Vec<_>>(),
        kept,
        "exactly the fresh places stay"
    );
    for (user, seq) in places {
        assert_eq!(
            line.marked(*seq).await,
            !idle.contains(user),
            "the mark of {user} goes with the place"
        );
    }
    let (bucket, _) = line.mark((whole * 128) as f64);
    let gone: u64 = redis.exists(&bucket).await.unwrap();
    assert_eq!(gone, 0, "a bucket whose places all went is gone");
    let counted: Option<u64> = redis.hget(&k.stats, "idle_total").await.unwrap();
    assert_eq!(counted, Some(idle.len() as u64));
    app.stop().await;
}

/// One tick admits and later expires more than a thousand places at once (the script does
/// this with a few commands per bucket or per thousand places): exactly the first
/// `max_active` places that are not idle enter, in seq order, each with its own seq; idle
/// ones never enter; every admitted place's mark goes; each admission's wait is counted once;
/// and when the admissions run out, each leaves its "seq:expired" behind and the next places
/// enter.
#[tokio::test]
async fn a_tick_admits_and_expires_thousands_exactly() {
    let app = spawn_with(&[
        ("QUEUE_ADMIT_PER_TICK", "0"),
        ("QUEUE_MAX_ACTIVE", "1500"),
        ("ACCESS_TTL_SECS", "3"),
        ("QUEUE_IDLE_SECS", "60"),
        ("QUEUE_TICK_MS", "100"),
    ])
    .await;
    let concert = app.create_concert(1, 10).await;
    let line = FilledLine::new(&app, app.line(concert.id).await, 2000).await;
    let (k, redis, places) = (&line.keys, &line.redis, &line.places);
    let mut idle = std::collections::BTreeSet::new();
    for (i, (user, seq)) in places.iter().enumerate().filter(|(i, _)| i % 7 == 3) {
        line.go_idle(*seq, i % 2 == 1).await;
        idle.insert(user.clone());
    }
    let fresh: Vec<&(String, f64)> = places.iter().filter(|(u, _)| !idle.contains(u)).collect();
    let (first, second) = fresh.split_at(1500);

    let first_minute = queuegate::tokens::now_secs() / 60;
    let r = app
        .put_queue(concert.id, json!({ "admit_per_tick": 100_000 }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let admitted_now = || async {
        let mut a: Vec<(String, String)> = Vec::new();
        let users: Vec<String> = redis
            .zrange(&k.admitted, 0, -1, None, false, None, false)
            .await
            .unwrap();
        for u in users {
            // (None when a tick ended the admission between the two reads: the caller sees a
            // place missing and looks again)
            let seq: Option<String> = redis.hget(&k.adm_seq, &u).await.unwrap();
            a.extend(seq.map(|seq| (u, seq)));
        }
        a.sort_by_key(|(_, seq)| seq.parse::<u64>().unwrap());
        a
    };
    let as_admitted = |group: &[&(String, f64)]| -> Vec<(String, String)> {
        group
            .iter()
            .map(|(u, s)| (u.clone(), (*s as u64).to_string()))
            .collect()
    };
    // A tick this big goes in two calls (at most 1,000 places each): wait for both. The count
    // cannot pass 1,500 (max_active), and which places entered is checked next.
    eventually(
        Duration::from_secs(5),
        "the first tick's admissions",
        || async { admitted_count(&app, concert.id).await == first.len() as u64 },
    )
    .await;
    assert_eq!(
        admitted_now().await,
        as_admitted(first),
        "the first 1,500 fresh places, each with its seq"
    );
    for (_, seq) in first {
        assert!(!line.marked(*seq).await, "an admitted place's mark goes");
    }
    // Idle places the tick popped are gone with it; those behind the last admitted place go
    // with the idle scan the tick's instance sends right after it (a call of its own).
    eventually(
        Duration::from_secs(5),
        "idle places behind the admitted ones scanned",
        || async {
            let n: u64 = redis.zcard(&k.waiting).await.unwrap();
            n <= second.len() as u64
        },
    )
    .await;
    for user in &idle {
        let waiting: Option<f64> = redis.zscore(&k.waiting, user).await.unwrap();
        assert_eq!(
            waiting, None,
            "an idle place leaves the line without entering"
        );
    }

    // After 3 s the admissions run out: the next tick ends them and lets the rest in.
    eventually(Duration::from_secs(10), "the second admissions", || async {
        admitted_now().await == as_admitted(second)
    })
    .await;
    let ended: std::collections::HashMap<String, String> = redis.hgetall(&k.ended).await.unwrap();
    let expected: std::collections::HashMap<String, String> = first
        .iter()
        .map(|(u, s)| (u.clone(), format!("{}:expired", *s as u64)))
        .collect();
    assert_eq!(
        ended, expected,
        "every ended admission leaves its seq and reason"
    );
    let (_, admitted) = tick_figures(&app, concert.id).await;
    assert_eq!(admitted, fresh.len() as u64);
    // The wait histograms are per minute (of Redis's clock, this machine's): the minutes
    // this test ran through.
    let mut counted = 0;
    for minute in first_minute..=queuegate::tokens::now_secs() / 60 {
        let counts: Vec<u64> = redis.hvals(format!("{}{minute}", k.waits)).await.unwrap();
        counted += counts.iter().sum::<u64>();
    }
    assert_eq!(
        counted,
        fresh.len() as u64,
        "each admission's wait is counted once"
    );
    app.stop().await;
}

/// A tick with more to do than one call may do goes on in further calls of the same period
/// (`tick.lua`, ARGV[6] and ARGV[7]): each call admits at most its limit, in arrival order; the
/// period's allowance is used up exactly, never more; and a further call once it is used up,
/// or in a later period than the one claimed, admits nobody.
#[tokio::test]
async fn a_big_tick_goes_in_bounded_calls_and_admits_its_allowance_exactly() {
    let app = spawn_app().await;
    // A line of the app's store that its own timer does not know (nobody joined it), filled
    // here: 130 fresh places, numbered as join.lua numbers them after a sale's start.
    let line = LineId {
        concert: ConcertId::new(4_000_000_000).unwrap(),
        queue_id: LineId::fresh_queue_id(),
    };
    let k = app.app.queue.store().keys(line);
    let redis = app.app.queue.store().pool().next().clone();
    let now = queuegate::tokens::now_secs().to_string();
    let first_seq: u64 = 1_800_000_000_000_000;
    for i in 0..130u64 {
        let seq = first_seq + i;
        let _: i64 = redis
            .zadd(
                &k.waiting,
                None,
                None,
                false,
                false,
                (seq as f64, format!("u{i}")),
            )
            .await
            .unwrap();
        let _: i64 = redis
            .hset(
                format!("{}{}", k.seen, seq / 128),
                ((seq % 128).to_string(), now.clone()),
            )
            .await
            .unwrap();
    }
    let tick = queuegate::redis::Script::new("tick", include_str!("../lua/tick.lua"));
    let keys: Vec<fred::types::Key> = k
        .tick_keys()
        .into_iter()
        .map(|s| s.as_str().into())
        .collect();
    // admit_per_tick 25 in periods of a day (so the calls below share one, unless they straddle
    // a midnight, UTC), max_active 1,000, TTL 600 s, idle 120 s, and at most 10 places per
    // call. Returns (ran, admitted now, work left).
    let call = |mode: &'static str| {
        let (tick, keys) = (&tick, keys.clone());
        let client = redis.clone();
        async move {
            let r: Vec<i64> = tick
                .run(
                    &client,
                    keys,
                    ["25", "86400000", "1000", "600", "120", "10", mode]
                        .map(fred::types::Value::from)
                        .to_vec(),
                )
                .await
                .unwrap();
            (r[0], r[1], *r.last().unwrap())
        }
    };
    let admitted = || async {
        let users: Vec<String> = redis
            .zrange(&k.admitted, 0, -1, None, false, None, false)
            .await
            .unwrap();
        let mut users: Vec<u64> = users.iter().map(|u| u[1..].parse().unwrap()).collect();
        users.sort_unstable();
        users
    };

    assert_eq!(
        call("claim").await,
        (1, 10, 1),
        "the claim admits its 10 and says more is left"
    );
    let rate: Option<String> = redis.hget(&k.stats, "rate").await.unwrap();
    assert_eq!(
        rate, None,
        "the admission rate is measured by the period's last call only"
    );
    assert_eq!(call("claim").await.0, 0, "the period is claimed once");
    assert_eq!(call("more").await, (1, 10, 1));
    assert_eq!(
        call("more").await,
        (1, 5, 0),
        "the allowance's last 5, and nothing left"
    );
    assert_eq!(
        call("more").await,
        (0, 0, 0),
        "an allowance used up admits nobody more"
    );
    assert_eq!(
        admitted().await,
        (0..25).collect::<Vec<u64>>(),
        "the first 25 in arrival order"
    );
    let stats: std::collections::HashMap<String, String> = redis.hgetall(&k.stats).await.unwrap();
    assert_eq!(
        (
            stats.get("admitted_total"),
            stats.get("ticks_total"),
            stats.get("owed")
        ),
        (Some(&"25".to_owned()), Some(&"1".to_owned()), None)
    );
    // The rate was measured once, from the whole period's 25 (per 86,400 s: 0.000 per second
    // at three decimals, so only its presence and the period's count are checked).
    assert_eq!(
        (stats.get("period_admitted"), stats.get("rate")),
        (Some(&"25".to_owned()), Some(&"0.000".to_owned()))
    );

    // A later period's claim starts a new allowance; a continuation of an earlier period (its
    // instance stopped, the period ended) admits nobody: what it left lapses.
    let _: i64 = redis.hdel(&k.stats, "last_tick_ms").await.unwrap();
    assert_eq!(call("claim").await, (1, 10, 1));
    let period: String = redis.hget(&k.stats, "owed_period").await.unwrap();
    let earlier = (period.parse::<u64>().unwrap() - 1).to_string();
    let _: i64 = redis
        .hset(&k.stats, ("owed_period", earlier))
        .await
        .unwrap();
    assert_eq!(
        call("more").await,
        (0, 0, 0),
        "a continuation of a past period does nothing"
    );
    assert_eq!(admitted().await, (0..35).collect::<Vec<u64>>());

    app.stop().await;
}

#[tokio::test]
async fn access_ends_with_the_admission_and_payment_revokes_it() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100"), ("ACCESS_TTL_SECS", "1")]).await;
    let concert = app.create_concert(1, 100).await;
    let quick = app.create_user("quick").await;
    let (_, joined) = app.join(&quick, concert.id).await;
    let qt = joined["queue_token"].as_str().unwrap().to_owned();
    let access = wait_admitted(&app, &qt).await;
    assert_eq!(
        app.hold(&access, concert.schedules[0], 1).await.status(),
        StatusCode::CREATED
    );
    // The admission runs out after 1 s: the place is gone and the gate refuses the token.
    eventually(Duration::from_secs(5), "admission expired", || async {
        app.queue_status(&qt).await.status() == StatusCode::GONE
    })
    .await;
    let r = app.hold(&access, concert.schedules[0], 2).await;
    assert_eq!(
        (r.status(), error_code(r).await.as_str()),
        (StatusCode::UNAUTHORIZED, "TOKEN_REVOKED")
    );

    // Paying ends the admission at once (long TTL this time).
    let r = app
        .put_queue(concert.id, json!({ "access_ttl_secs": 600 }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let buyer = app.create_user("buyer").await;
    app.charge(&buyer, 1000).await;
    let qt = app.join(&buyer, concert.id).await.1["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = wait_admitted(&app, &qt).await;
    let hold: Value = app
        .hold(&access, concert.schedules[0], 3)
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .pay(&access, hold["reservation_id"].as_u64().unwrap(), None)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    eventually(Duration::from_secs(5), "revoked after payment", || async {
        app.hold(&access, concert.schedules[0], 4).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(app.queue_status(&qt).await.status(), StatusCode::GONE);
    // A user who paid may queue again.
    let (code, again) = app.join(&buyer, concert.id).await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(again["queue_token"].as_str().is_some());
    app.assert_invariants().await;
    app.stop().await;
}

/// Forwards SSE events of a response as (event, data) pairs until the stream ends (then the
/// channel closes). Panics on a stream error or if the stream outlives `limit`.
fn forward_events(
    mut r: reqwest::Response,
    limit: Duration,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline.into(), r.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    buf.push_str(std::str::from_utf8(&bytes).unwrap());
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        let mut event = String::new();
                        let mut data = String::new();
                        for line in block.lines() {
                            if let Some(e) = line.strip_prefix("event: ") {
                                event = e.to_owned();
                            } else if let Some(d) = line.strip_prefix("data: ") {
                                data = d.to_owned();
                            }
                        }
                        if !event.is_empty() {
                            let _ = tx.send((event, serde_json::from_str(&data).unwrap()));
                        }
                    }
                }
                Ok(Ok(None)) => return,
                Ok(Err(e)) => panic!("stream error: {e}"),
                Err(_) => panic!("stream did not end in time"),
            }
        }
    });
    rx
}

#[tokio::test]
async fn event_stream_sends_positions_then_admitted_then_ends() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100"), ("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let users = app.create_users(3).await;
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(
            app.join(u, concert.id).await.1["queue_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Third in line opens a stream with a single-use ticket, as EventSource must (it cannot
    // send headers, and a queue token never goes in a URL).
    let ticket = app.stream_ticket(&tokens[2]).await;
    let r = app
        .http
        .get(app.url(&format!("/v1/queue/events?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut events = forward_events(r, Duration::from_secs(10));
    let (kind, data) = events.recv().await.unwrap();
    assert_eq!(
        (kind.as_str(), data["position"].as_u64()),
        ("position", Some(3))
    );
    assert!(data["eta_seconds"].is_u64() || data["eta_seconds"].is_null());

    // The first ahead leaves: the stream reports position 2.
    let r = app.leave(&tokens[0]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (kind, data) = events.recv().await.unwrap();
    assert_eq!(
        (kind.as_str(), data["position"].as_u64()),
        ("position", Some(2))
    );

    // Admission opens one at a time: position 1, then admitted, then the stream ends.
    app.put_queue(concert.id, json!({ "admit_per_tick": 1 }))
        .await;
    let mut rest = Vec::new();
    while let Some(e) = events.recv().await {
        rest.push(e);
    }
    let kinds: Vec<&str> = rest.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds.last(), Some(&"admitted"), "{rest:?}");
    assert!(
        kinds[..kinds.len() - 1].iter().all(|k| *k == "position"),
        "{rest:?}"
    );
    let admitted = &rest.last().unwrap().1;
    assert_eq!(admitted["status"], "admitted");
    assert!(admitted["access_expires_at"].as_str().is_some());
    let access = admitted["access_token"].as_str().unwrap();
    let seats = app
        .http
        .get(app.url(&format!("/v1/schedules/{}/seats", concert.schedules[0])))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        seats.status(),
        StatusCode::OK,
        "the streamed access token works"
    );
    app.stop().await;
}

#[tokio::test]
async fn queue_routes_refuse_bad_tokens_and_bad_input() {
    let app = spawn_app().await;
    let concert = app.create_concert(1, 10).await;
    let other = app.create_concert(1, 10).await;
    let user = app.create_user("u").await;
    let (_, joined) = app.join(&user, concert.id).await;
    let qt = joined["queue_token"].as_str().unwrap();
    let access = app.admit(&user, other.id).await;

    // Wrong kinds: a user token or an access token on status; a queue token on join.
    assert_eq!(
        app.queue_status(&user.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.queue_status(&access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .http
        .post(app.url("/v1/queue"))
        .bearer_auth(qt)
        .json(&json!({"concert_id": concert.id.get()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A queue token as a booking credential.
    assert_eq!(
        app.hold(qt, concert.schedules[0], 1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // An access token for another concert.
    let r = app.hold(&access, concert.schedules[0], 1).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Forged and missing tokens on events; a real queue token in the URL is refused too.
    for query in [
        "token=forged.token.value".to_owned(),
        "ticket=forged.token.value".to_owned(),
        format!("token={qt}"),
    ] {
        let r = app
            .http
            .get(app.url(&format!("/v1/queue/events?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{query}");
    }
    let r = app
        .http
        .get(app.url("/v1/queue/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown concert, bad concert ids.
    let (code, body) = {
        let r = app
            .http
            .post(app.url("/v1/queue"))
            .bearer_auth(&user.token)
            .json(&json!({"concert_id": 999_999}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (code, body["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    for bad in [
        json!({"concert_id": "1"}),
        json!({"concert_id": 0}),
        json!({}),
        json!({"concert_id": concert.id.get(), "queue_token": 5}),
    ] {
        let r = app
            .http
            .post(app.url("/v1/queue"))
            .bearer_auth(&user.token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    // Admin: bad values change nothing.
    let before = app.get_queue(concert.id).await;
    for bad in [
        json!({"admit_per_tick": 100_001}),
        json!({"tick_ms": 99}),
        json!({"tick_ms": 60_001}),
        json!({"max_active": -1}),
        json!({"access_ttl_secs": 9}),
        json!({"admit_per_tick": "5"}),
        json!({"admit_per_tick": 5, "tick_ms": 1}),
    ] {
        let r = app.put_queue(concert.id, bad.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(app.get_queue(concert.id).await, before);
    let r = app
        .put_queue(
            ConcertId::new(999_999).unwrap(),
            json!({"admit_per_tick": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/concerts/{}/queue", concert.id)))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .put_queue(
            concert.id,
            json!({"admit_per_tick": 0, "tick_ms": 250, "max_active": 7, "access_ttl_secs": 60}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["admit_per_tick"].as_u64(),
            v["tick_ms"].as_u64(),
            v["max_active"].as_u64(),
            v["access_ttl_secs"].as_u64()
        ),
        (Some(0), Some(250), Some(7), Some(60))
    );
    assert_eq!(v["waiting"], 1);
    app.stop().await;
}

/// Concurrent joins and polls of one line share script calls (coalesced per instance), and
/// every answer is still exact: distinct arrival numbers, positions 1..N, each poll its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_and_polls_share_script_calls_with_exact_answers() {
    let redis = common::servers::RedisServer::start();
    let url = redis.url();
    let app = spawn_with(&[("REDIS_URL", url.as_str()), ("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let users = app.create_users(300).await;
    let evalsha_calls = || async {
        let client = fred::prelude::Builder::from_config(Config::from_url(&url).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        let info: String = client
            .info(Some(fred::types::InfoKind::CommandStats))
            .await
            .unwrap();
        let calls = info
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        client.quit().await.unwrap();
        calls
    };

    let before = evalsha_calls().await;
    let joined = futures::future::join_all(users.iter().map(|u| app.join(u, concert.id))).await;
    let join_calls = evalsha_calls().await - before;
    let mut positions: Vec<u64> = joined
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, StatusCode::CREATED, "{v}");
            v["position"].as_u64().unwrap()
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=300).collect::<Vec<_>>(),
        "positions 1..300, each once"
    );

    let tokens: Vec<String> = joined
        .iter()
        .map(|(_, v)| v["queue_token"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<u64> = joined
        .iter()
        .map(|(_, v)| v["position"].as_u64().unwrap())
        .collect();
    let before = evalsha_calls().await;
    let polled = futures::future::join_all(tokens.iter().map(|t| async {
        app.queue_status(t).await.json::<Value>().await.unwrap()["position"]
            .as_u64()
            .unwrap()
    }))
    .await;
    let poll_calls = evalsha_calls().await - before;
    assert_eq!(polled, expected, "every poll answers its own place");
    eprintln!("300 joins: {join_calls} script calls; 300 polls: {poll_calls}");
    // (A tick per second adds a call or two to each figure.)
    assert!(
        join_calls < 200 && poll_calls < 200,
        "300 joins took {join_calls} script calls and 300 polls {poll_calls}"
    );
    app.stop().await;
}

/// One `join.lua` call carries new users, a user listed twice, a restored token and (in a
/// second call) a user who already waits: each gets the place the rules give it, numbered in
/// call order, and the positions it answers are the ones `status.lua` then reports.
#[tokio::test]
async fn one_join_call_numbers_new_places_in_order_and_answers_repeats_and_restores() {
    use queuegate::queue::model::{JoinItem, JoinKind, Place};
    let app = spawn_with(&[("QUEUE_ADMIT_PER_TICK", "0")]).await;
    let concert = app.create_concert(1, 10).await;
    let line = app.line(concert.id).await;
    let store = app.app.queue.store();
    let user = |n| UserId::new(n).unwrap();
    let item = |n, restore: Option<(u64, &str)>| JoinItem {
        user: user(n),
        restore: restore.map(|(s, e)| (s, e.to_owned())),
    };

    let first = store
        .join_batch(
            line,
            &[
                item(1, None),
                item(2, None),
                item(1, None),
                item(3, Some((5, "an-epoch-the-store-lost"))),
            ],
        )
        .await
        .unwrap();
    let how: Vec<JoinKind> = first.iter().map(|j| j.how).collect();
    assert_eq!(
        how,
        [
            JoinKind::New,
            JoinKind::New,
            JoinKind::Existing,
            JoinKind::Restored
        ]
    );
    assert_eq!(first[1].seq, first[0].seq + 1, "new places in call order");
    assert_eq!(first[2].seq, first[0].seq, "a repeat gets the same place");
    assert_eq!(first[3].seq, 5, "a restored place keeps its token's seq");
    assert!(first[0].seq > 5, "numbering moved past the restored seq");
    let positions: Vec<Place> = first.iter().map(|j| j.place).collect();
    assert_eq!(
        positions,
        [2, 3, 2, 1].map(|position| Place::Waiting { position })
    );

    let second = store
        .join_batch(line, &[item(2, None), item(4, None)])
        .await
        .unwrap();
    assert_eq!(
        (second[0].how, second[0].seq),
        (JoinKind::Existing, first[1].seq)
    );
    assert_eq!(second[0].place, Place::Waiting { position: 3 });
    assert_eq!(
        (second[1].how, second[1].seq),
        (JoinKind::New, first[1].seq + 1)
    );
    assert_eq!(second[1].place, Place::Waiting { position: 4 });

    let asked = [
        (user(3), 5, true),
        (user(1), first[0].seq, false),
        (user(2), first[1].seq, true),
        (user(4), second[1].seq, false),
        (user(1), first[0].seq + 100, false),
        (user(9), 6, true),
    ];
    let places = store.status_batch(line, 60, &asked).await.unwrap();
    assert_eq!(
        places,
        [
            Place::Waiting { position: 1 },
            Place::Waiting { position: 2 },
            Place::Waiting { position: 3 },
            Place::Waiting { position: 4 },
            Place::Gone,
            Place::Gone,
        ]
    );
    app.stop().await;
}
