//! Event streams on raw connections.
//!
//! An open `text/event-stream` response lives for minutes, and hyper keeps an 8 KiB read and an
//! 8 KiB write buffer for every connection it serves — 160 MiB for 10,000 waiting fans doing
//! nothing. A connection whose *first* request is `GET /v1/queue/events` is therefore served
//! here instead: the request head is read into a short-lived buffer, parsed with `httparse`,
//! answered, and then only the socket and the stream's channel stay in memory. The phases
//! mirror the pipeline (identify, handle, respond, observe); the stream itself comes from the
//! same `open_stream` the hyper route uses. The response is `Connection: close` (the stream
//! ends the connection), which is what EventSource expects anyway.

use super::pipeline::request_id;
use super::response;
use crate::app::App;
use crate::error::ApiError;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

/// What a connection must start with to be served here.
pub const PREFIX: &[u8] = b"GET /v1/queue/events";
/// Request heads larger than this are refused, as on the hyper path.
const MAX_HEAD: usize = 32 * 1024;
const ROUTE: &str = "/v1/queue/events";

/// True when the connection's first bytes are an event-stream request. Waits at most `limit`
/// for them; anything else (or nothing) goes to hyper.
pub async fn is_event_stream(stream: &TcpStream, limit: Duration) -> bool {
    let mut first = [0u8; PREFIX.len()];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.peek(&mut first)).await {
            Ok(Ok(n)) if n >= PREFIX.len() => return first == PREFIX,
            // Fewer bytes so far: decide as soon as they differ, otherwise wait for more.
            Ok(Ok(n)) if n > 0 && first[..n] == PREFIX[..n] => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            _ => return false,
        }
    }
}

/// Serves one event-stream connection to its end.
pub async fn serve(app: Arc<App>, mut stream: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let Some(head) = read_head(&mut stream, app.settings.header_read_timeout).await else {
        return; // too slow, too large or gone: nothing worth answering
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let path = match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => parsed.path.unwrap_or("/").to_owned(),
        _ => {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // 1. identify
    let id = request_id(
        header("x-request-id")
            .and_then(|v| HeaderValue::from_bytes(v).ok())
            .as_ref(),
    );
    let bearer = header("authorization")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let token = bearer.or_else(|| {
        let query = path.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
    });
    drop(head);
    let span =
        tracing::info_span!("request", request_id = %id, method = "GET", path = ROUTE, %peer);
    async move {
        // 2. handle
        // Boxed: its (large) state is freed once the stream is open.
        let opened = Box::pin(crate::api::queue::open_stream(&app, token.as_deref().unwrap_or(""))).await;
        // 3. respond
        let status = match opened {
            Ok((mut rx, _guard)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                     x-accel-buffering: no\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n"
                );
                observe(200, started);
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    while let Some(chunk) = rx.recv().await {
                        if stream.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                }
                let _ = stream.shutdown().await;
                return;
            }
            Err(e) => {
                let resp = response::error(&e, &id);
                let status = resp.status();
                let retry = e.retry_after_secs();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let mut head = format!(
                    "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     x-request-id: {id}\r\ncache-control: no-store\r\nconnection: close\r\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    body.len()
                );
                if let Some(secs) = retry {
                    head.push_str(&format!("retry-after: {secs}\r\n"));
                }
                if matches!(e, ApiError::Unauthorized(_) | ApiError::TokenRevoked) {
                    head.push_str("www-authenticate: Bearer\r\n");
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
                status.as_u16()
            }
        };
        // 4. observe
        observe(status, started);
    }
    .instrument(span)
    .await
}

fn observe(status: u16, started: Instant) {
    let label = match status {
        200 => "200",
        400 => "400",
        401 => "401",
        410 => "410",
        503 => "503",
        s if s < 500 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("queuegate_http_requests_total", "route" => ROUTE, "method" => "GET", "status" => label).increment(1);
    metrics::histogram!("queuegate_http_request_duration_seconds", "route" => ROUTE, "method" => "GET", "status" => label)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        status,
        route = ROUTE,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "served"
    );
}

/// Reads up to the end of the request head ("\r\n\r\n"); `None` when it does not come in time
/// or grows past `MAX_HEAD`. The buffer is dropped as soon as the head is parsed.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = Instant::now() + limit;
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(buf);
        }
        if buf.len() >= MAX_HEAD {
            let _ = stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return None;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
