//! The request pipeline, one phase after another, readable top to bottom:
//!
//! 1. **identify** — take the caller's sane `x-request-id` or mint a UUIDv7, open the span
//!    every log line of this request will carry;
//! 2. **route** — method and path to a `Route` (404/405 here);
//! 3. **handle** — the route's handler in `crate::api`, with panics caught and turned into 500s
//!    (a panic is a bug, but one request's bug must not take the connection down silently);
//! 4. **respond** — errors become the contract's envelope; `x-request-id` is set;
//! 5. **observe** — request count and latency per route and status, one access-log line.

use super::request::Req;
use super::response::{self, Resp};
use super::router::{self, UNMATCHED};
use crate::app::App;
use crate::error::ApiError;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub async fn handle(app: Arc<App>, req: hyper::Request<Incoming>, peer: SocketAddr) -> Resp {
    let started = Instant::now();

    // 1. identify
    let request_id = request_id(req.headers().get("x-request-id"));
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.uri().path());

    async move {
        let mut req = Req::new(req, peer, request_id);

        // 2. route
        let (route_label, result) = match router::resolve(&req.method, &req.path) {
            Ok(m) => {
                req.params = m.params;
                // 3. handle (boxed: the handler futures are large, and hyper keeps the
                // service future's allocation for the connection's life — an idle keep-alive
                // or SSE connection should not pin the largest handler's state)
                let outcome = AssertUnwindSafe(Box::pin(crate::api::dispatch(&app, m.route, &mut req)))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(ApiError::Internal("handler panicked".into())));
                (m.route.name(), outcome)
            }
            Err(e) => (UNMATCHED, Err(e)),
        };

        // 4. respond
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(error = %e, code = e.code(), "request failed");
                }
                let mut r = response::error(&e, &req.request_id);
                if matches!(e, ApiError::MethodNotAllowed)
                    && let Ok(v) = HeaderValue::from_str(&router::allowed(&req.path).join(", "))
                {
                    r.headers_mut().insert(ALLOW, v);
                }
                r
            }
        };
        if let Ok(v) = HeaderValue::from_str(&req.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if app.draining.load(std::sync::atomic::Ordering::Relaxed) {
            resp.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }

        // 5. observe
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        let status_label = status_label(status);
        metrics::counter!("queuegate_http_requests_total", "route" => route_label, "method" => method_label(&method), "status" => status_label).increment(1);
        metrics::histogram!("queuegate_http_request_duration_seconds", "route" => route_label, "method" => method_label(&method), "status" => status_label).record(elapsed.as_secs_f64());
        if route_label != "/metrics" && route_label != "/healthz" {
            tracing::info!(status, route = route_label, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "served");
        }
        resp
    }
    .instrument(span)
    .await
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
    uuid::Uuid::now_v7().to_string()
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
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
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
        503 => "503",
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
