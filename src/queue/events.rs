//! Server-Sent Events for waiting users: `position` events as the place moves, one `admitted`
//! event with the access token, then the stream ends.
//!
//! Open streams do not poll Redis themselves. Each instance keeps one hub; a single pump task
//! asks for the status of *all* its streams of a concert with one script call per interval
//! (`status_many.lua`, in chunks), and pushes an event only to streams whose position changed.
//! Ten thousand streams cost a couple of Redis calls per second, not ten thousand.

use super::eta;
use crate::app::App;
use crate::domain::{ConcertId, UserId};
use crate::tokens::AccessToken;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often positions are refreshed for open streams.
pub const PUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Comment lines keep idle proxies from closing quiet streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Places asked about per script call.
const CHUNK: usize = 2000;

struct Subscriber {
    user: UserId,
    seq: u64,
    last_position: u64,
    tx: mpsc::Sender<Bytes>,
}

#[derive(Default)]
pub struct EventHub {
    streams: Mutex<HashMap<ConcertId, Vec<Subscriber>>>,
}

/// Lives inside the response body; counts open streams.
pub struct StreamGuard;

impl StreamGuard {
    fn new() -> Self {
        metrics::gauge!("queuegate_sse_streams").increment(1.0);
        StreamGuard
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        metrics::gauge!("queuegate_sse_streams").decrement(1.0);
    }
}

/// One SSE message.
pub fn event(kind: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {json}\n\n"))
}

pub fn position_json(position: u64, eta_seconds: Option<u64>) -> String {
    serde_json::json!({ "position": position, "eta_seconds": eta_seconds }).to_string()
}

pub fn admitted_json(access_token: &str, expires_at: &str) -> String {
    serde_json::json!({
        "status": "admitted",
        "access_token": access_token,
        "access_expires_at": expires_at,
    })
    .to_string()
}

impl EventHub {
    /// Opens a stream for a waiting place; `first` is sent before anything else.
    pub fn subscribe(
        &self,
        concert: ConcertId,
        user: UserId,
        seq: u64,
        position: u64,
        first: Bytes,
    ) -> (mpsc::Receiver<Bytes>, StreamGuard) {
        let (tx, rx) = mpsc::channel(16);
        let _ = tx.try_send(first);
        if let Ok(mut streams) = self.streams.lock() {
            streams.entry(concert).or_default().push(Subscriber {
                user,
                seq,
                last_position: position,
                tx,
            });
        }
        (rx, StreamGuard::new())
    }

    /// A one-shot stream (already admitted): the event, then the end.
    pub fn single(event: Bytes) -> (mpsc::Receiver<Bytes>, StreamGuard) {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(event);
        (rx, StreamGuard::new())
    }

    /// Ends every stream (shutdown): bodies finish, connections can drain.
    pub fn close_all(&self) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.clear();
        }
    }

    fn snapshot(&self) -> Vec<(ConcertId, Vec<(UserId, u64)>)> {
        let Ok(mut streams) = self.streams.lock() else {
            return Vec::new();
        };
        streams.retain(|_, subs| {
            subs.retain(|s| !s.tx.is_closed());
            !subs.is_empty()
        });
        streams
            .iter()
            .map(|(c, subs)| (*c, subs.iter().map(|s| (s.user, s.seq)).collect()))
            .collect()
    }

    /// Applies fresh statuses; `results[i]` answers `places[i]` of the snapshot.
    fn deliver(
        &self,
        app: &App,
        concert: ConcertId,
        places: &[(UserId, u64)],
        results: &[i64],
        rate: f64,
    ) {
        let Ok(mut streams) = self.streams.lock() else {
            return;
        };
        let Some(subs) = streams.get_mut(&concert) else {
            return;
        };
        let answers: HashMap<(UserId, u64), i64> = places
            .iter()
            .copied()
            .zip(results.iter().copied())
            .collect();
        subs.retain_mut(|s| {
            let Some(&answer) = answers.get(&(s.user, s.seq)) else {
                return true; // subscribed after the snapshot: next round
            };
            match answer {
                p if p > 0 => {
                    let p = p as u64;
                    if p != s.last_position {
                        let payload = position_json(p, eta::eta_seconds(p, rate));
                        if s.tx.try_send(event("position", &payload)).is_ok() {
                            metrics::counter!("queuegate_sse_events_total", "kind" => "position").increment(1);
                            s.last_position = p;
                        }
                    }
                    true
                }
                p if p < 0 => {
                    let ends_ms = p.unsigned_abs();
                    let token = AccessToken {
                        user_id: s.user,
                        concert_id: concert,
                        seq: s.seq,
                        exp: ends_ms / 1000,
                    };
                    match app.tokens.mint_access(&token) {
                        Ok(jwt) => {
                            let payload = admitted_json(&jwt, &super::expires_at(ends_ms));
                            if s.tx.try_send(event("admitted", &payload)).is_ok() {
                                metrics::counter!("queuegate_sse_events_total", "kind" => "admitted").increment(1);
                                false // sent: dropping the sender ends the stream
                            } else {
                                true // full: try again next round
                            }
                        }
                        Err(_) => true,
                    }
                }
                _ => {
                    let _ = s.tx.try_send(event(
                        "gone",
                        r#"{"code":"QUEUE_ENTRY_GONE","message":"this queue place no longer exists"}"#,
                    ));
                    false
                }
            }
        });
    }

    fn keep_alive(&self) {
        if let Ok(streams) = self.streams.lock() {
            for s in streams.values().flatten() {
                let _ = s.tx.try_send(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }
}

/// The pump: refreshes every open stream each `PUSH_INTERVAL`.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(PUSH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_keep_alive = Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => {
                app.events.close_all();
                return;
            }
        }
        for (concert, places) in app.events.snapshot() {
            for chunk in places.chunks(CHUNK) {
                match app.queue.status_many(concert, chunk).await {
                    Ok((rate, results)) => {
                        let rate = if rate > 0.0 {
                            rate
                        } else {
                            eta::rate_per_sec(&Default::default(), &app.settings.queue)
                        };
                        app.events.deliver(&app, concert, chunk, &results, rate);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %concert, "could not refresh event streams")
                    }
                }
            }
        }
        if last_keep_alive.elapsed() >= KEEP_ALIVE {
            app.events.keep_alive();
            last_keep_alive = Instant::now();
        }
    }
}
