//! Building responses: JSON bodies, the error envelope, and streaming bodies for SSE.

use crate::error::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = bytes(status, "application/json", body);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        // Our own types always serialise; if one ever does not, say so instead of panicking.
        Err(e) => error(&ApiError::internal(e), ""),
    }
}

/// Already-serialised JSON (idempotent replays return the stored bytes verbatim).
pub fn raw_json(status: StatusCode, body: String) -> Resp {
    let mut r = bytes(status, "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The contract's error envelope: `{"error": {"code", "message", "request_id"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// A stable machine-readable code, e.g. `SEAT_UNAVAILABLE`.
    #[schema(value_type = String, example = "SEAT_UNAVAILABLE")]
    pub code: &'static str,
    pub message: String,
    #[schema(value_type = String)]
    pub request_id: &'a str,
    /// The offending field, for `VALIDATION_FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub field: Option<&'a str>,
}

pub fn error(e: &ApiError, request_id: &str) -> Resp {
    let field = match e {
        ApiError::Validation { field, .. } => Some(field.as_str()),
        _ => None,
    };
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: e.code(),
            message: e.public_message(),
            request_id,
            field,
        },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"INTERNAL","message":"internal error"}}"#.to_vec());
    let mut r = bytes(e.status(), "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = e.retry_after_secs() {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(e, ApiError::Unauthorized(_) | ApiError::TokenRevoked) {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}

/// A streaming body fed by a channel: each message is one chunk; the body ends when every
/// sender is gone. `G` is dropped with the body, so a guard can notice a closed stream.
pub struct ChannelBody<G: Send + 'static> {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    _guard: G,
}

impl<G: Send + 'static> ChannelBody<G> {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Bytes>, guard: G) -> Self {
        ChannelBody { rx, _guard: guard }
    }
}

impl<G: Send + Unpin + 'static> hyper::body::Body for ChannelBody<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A `text/event-stream` response over a channel body.
pub fn event_stream<G: Send + Unpin + 'static>(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    guard: G,
) -> Resp {
    let mut r = Response::new(ChannelBody::new(rx, guard).boxed_unsync());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
