//! Building responses: bytes and JSON bodies, streaming bodies fed by a channel, and bodies
//! streamed from elsewhere (a forwarded response).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;

/// A body error: only a streamed body can fail mid-way. hyper then aborts the connection instead
/// of ending the message, so a cut-off download never looks complete to the client.
pub type StreamError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, StreamError>;
pub type Resp = Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body passed through as it arrives (no buffering): its errors end the connection.
pub fn streamed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StreamError>,
{
    body.map_err(Into::into).boxed_unsync()
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

/// Already-serialised JSON, never cached.
pub fn raw_json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = bytes(status, "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => raw_json(status, body),
        // Our own types always serialise; if one ever does not, say so instead of panicking.
        Err(e) => {
            tracing::error!(error = %e, "response did not serialise");
            bytes(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal error\n",
            )
        }
    }
}

/// A streaming body fed by a channel: each message becomes one chunk through `encode`; the
/// body ends when every sender is gone. `G` is dropped with the body, so a guard can notice a
/// closed stream.
pub struct ChannelBody<T, G> {
    rx: tokio::sync::mpsc::Receiver<T>,
    encode: fn(T) -> Bytes,
    _guard: G,
}

impl<T: Send + 'static, G: Send + Unpin + 'static> hyper::body::Body for ChannelBody<T, G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let encode = self.encode;
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|t| Ok(hyper::body::Frame::data(encode(t)))))
    }
}

/// A `text/event-stream` response over a channel body.
pub fn event_stream<T: Send + 'static, G: Send + Unpin + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
    encode: fn(T) -> Bytes,
    guard: G,
) -> Resp {
    let body = ChannelBody {
        rx,
        encode,
        _guard: guard,
    };
    let mut r = Response::new(
        body.map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
