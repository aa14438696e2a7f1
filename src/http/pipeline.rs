//! The request pipeline, one phase after another, readable top to bottom. Both transports (hyper
//! connections and raw event-stream sockets) run every request through it:
//!
//! 1. **identify** — take the caller's sane `x-request-id` or mint a UUIDv7, open the span
//!    every log line of this request will carry;
//! 2. **serve** — the handler routes and answers (panics caught and answered by the handler);
//! 3. **respond** — `x-request-id` on every answer; `Connection: close` while leaving;
//! 4. **observe** — request count and latency per route and status, one access-log line
//!    (written by `telemetry::write_access_line` in the default format).

use super::handler::{Handler, Served};
use super::lifecycle::Lifecycle;
use super::request::Req;
use super::response::Resp;
use crate::telemetry::{AccessLine, Millis, write_access_line};
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::http::request::Parts;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub async fn handle<H: Handler>(
    handler: &H,
    lifecycle: &Lifecycle,
    parts: Parts,
    body: Option<Incoming>,
    peer: SocketAddr,
) -> Resp {
    let started = Instant::now();

    // 1. identify
    let request_id = request_id(parts.headers.get("x-request-id"));
    let span = tracing::info_span!("request", request_id = %request_id, method = %parts.method, path = %parts.uri.path());

    async move {
        let mut req = Req::new(parts, body, peer, request_id);

        // 2. serve (not boxed: the handler boxes each route's future, so this one is small)
        let served = AssertUnwindSafe(handler.serve(&mut req))
            .catch_unwind()
            .await;
        let Served {
            route,
            mut resp,
            quiet,
        } = served.unwrap_or_else(|_| {
            tracing::error!("handler panicked");
            Served {
                route: "panicked",
                resp: handler.panicked(&req.request_id),
                quiet: false,
            }
        });

        // 3. respond
        if let Ok(v) = HeaderValue::from_str(&req.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if lifecycle.is_draining() {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }

        // 4. observe
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        let method = method_label(&req.method);
        let status_label = status_label(status);
        observed(route, method, status_label, elapsed);
        // Asked here, so that `RUST_LOG` filters the line by this module either way.
        if !quiet && tracing::enabled!(tracing::Level::INFO) {
            let line = AccessLine {
                request_id: &req.request_id,
                method: req.method.as_str(),
                path: &req.path,
                status,
                route,
                elapsed,
            };
            if !write_access_line(&line) {
                tracing::info!(status, route, elapsed_ms = %Millis(elapsed), "served");
            }
        }
        resp
    }
    .instrument(span)
    .await
}

/// Counts a request and records its latency. The handles of each (route, method, status) are
/// made once per worker thread: building the metric keys and looking them up in the registry
/// on every request was ~3 % of a request's CPU (`perf record`, `/healthz`). The labels are
/// all static and few, so the map stays small.
fn observed(route: &'static str, method: &'static str, status: &'static str, elapsed: Duration) {
    type Handles = (metrics::Counter, metrics::Histogram);
    thread_local! {
        static HANDLES: RefCell<HashMap<(&'static str, &'static str, &'static str), Handles>> =
            RefCell::new(HashMap::new());
    }
    HANDLES.with_borrow_mut(|handles| {
        let (count, latency) = handles.entry((route, method, status)).or_insert_with(|| {
            (
                metrics::counter!("queuegate_http_requests_total", "route" => route, "method" => method, "status" => status),
                metrics::histogram!("queuegate_http_request_duration_seconds", "route" => route, "method" => method, "status" => status),
            )
        });
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    });
}

/// The caller's request id when it is sane (1..=128 of `[A-Za-z0-9._:-]`), else a new UUIDv7.
pub fn request_id(given: Option<&HeaderValue>) -> String {
    if let Some(v) = given {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
        {
            // All ASCII, checked above.
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    new_request_id()
}

/// A fresh UUIDv7 (time-ordered, so ids sort by arrival). `Uuid::now_v7` asks the kernel for
/// its random bits (`getrandom`) on every call — 1.5 % of a busy gateway's CPU in `perf`; a
/// request id must be unique, not secret, so its 74 random bits come from a per-thread
/// SplitMix64 seeded once from the OS. SplitMix64 never repeats within 2^64 outputs, and
/// threads start at independent random points.
fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([7; 8]),
        ));
    }
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&next().to_le_bytes());
    random[8..].copy_from_slice(&next().to_le_bytes()[..2]);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

fn method_label(m: &hyper::Method) -> &'static str {
    match *m {
        hyper::Method::GET => "GET",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Status codes as static labels (no allocation per request).
pub fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
        302 => "302",
        303 => "303",
        400 => "400",
        401 => "401",
        402 => "402",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_request_ids_are_distinct_uuid_v7s() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 7, "{id}");
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let ok = HeaderValue::from_static("abc-123.x:y_z");
        assert_eq!(request_id(Some(&ok)), "abc-123.x:y_z");
        let bad = HeaderValue::from_static("has space");
        let generated = request_id(Some(&bad));
        assert_ne!(generated, "has space");
        assert_eq!(
            uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
            7
        );
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(request_id(Some(&long)), "a".repeat(129));
        assert_eq!(request_id(None).len(), 36);
    }
}
