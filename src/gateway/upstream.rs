//! The origin's client: pooled keep-alive connections (`pool`), bounded in time, counted in
//! metrics.
//!
//! An `https://` origin is reached over TLS (`transport`), its certificate verified.
//!
//! Connections are reused across visitors — opening one per request would add a round trip and
//! a TIME_WAIT socket to every page view. Two limits keep a sick origin from holding visitors:
//! `UPSTREAM_CONNECT_TIMEOUT_MS` for the TCP connect, and `UPSTREAM_FIRST_BYTE_TIMEOUT_MS` from
//! sending the request until the response head arrives. Once the head is in, the body streams at
//! the origin's pace (a slow download is not a dead origin).

use super::GatewayError;
use super::pool::{Failure, Forwarded, Pool, Upload};
use super::transport::Tls;
use crate::config::UpstreamSettings;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, Uri};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Upstream {
    pool: Arc<Pool>,
    host: HeaderValue,
    first_byte: Duration,
    /// `queuegate_upstream_duration_seconds`, its handle made once (the recorder is installed
    /// before the app builds its gateway).
    duration: metrics::Histogram,
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, String> {
        let uri: Uri = settings
            .base
            .parse()
            .map_err(|e| format!("UPSTREAM_URL: {e}"))?;
        let authority = uri.authority().ok_or("UPSTREAM_URL has no host")?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        let https = uri.scheme_str() == Some("https");
        // (`[::1]:80` names an IPv6 origin as the socket address parser expects.)
        let target = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:{}", authority.as_str(), if https { 443 } else { 80 }),
        };
        let tls = https
            .then(|| {
                Tls::new(
                    authority.host(),
                    settings.ca_file.as_deref(),
                    settings.client_cert.as_ref(),
                )
            })
            .transpose()?;
        Ok(Upstream {
            pool: Pool::new(target, tls, settings.connect_timeout),
            host,
            first_byte: settings.first_byte_timeout,
            duration: metrics::histogram!("queuegate_upstream_duration_seconds"),
        })
    }

    /// The origin's `Host` header value.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The request target (path and query) in origin form, as an HTTP/1.1 request line
    /// carries it to the origin (RFC 9112 §3.2.1).
    pub fn uri(&self, target: String) -> Result<Uri, GatewayError> {
        let path = PathAndQuery::from_maybe_shared(Bytes::from(target))
            .map_err(|_| GatewayError::BadPath("the path cannot be forwarded"))?;
        Ok(Uri::from(path))
    }

    /// Sends the request and waits for the response head, within the first-byte timeout.
    /// `client_failed` tells a failure of the visitor's own upload from one of the origin.
    pub async fn send(
        &self,
        request: Request<Upload>,
        client_failed: &AtomicBool,
    ) -> Result<Response<Forwarded>, GatewayError> {
        self.timed(self.pool.send(request), client_failed).await
    }

    /// Sends a request asking for an upgrade on a connection of its own (`Pool::send_upgrade`),
    /// with the same timeouts and metrics as any other.
    pub async fn send_upgrade(
        &self,
        request: Request<Upload>,
        client_failed: &AtomicBool,
    ) -> Result<Response<Incoming>, GatewayError> {
        self.timed(self.pool.send_upgrade(request), client_failed)
            .await
    }

    /// Waits for `exchange`'s response head within the first-byte timeout, classifies a failure
    /// and counts the outcome.
    async fn timed<B>(
        &self,
        exchange: impl Future<Output = Result<Response<B>, Failure>>,
        client_failed: &AtomicBool,
    ) -> Result<Response<B>, GatewayError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.first_byte, exchange).await {
            Err(_) => Err(GatewayError::TimedOut),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let why = classify(&e, client_failed.load(Ordering::Relaxed));
                tracing::warn!(error = %e, reason = %why, "forwarding to the origin failed");
                Err(why)
            }
        };
        let label = match &result {
            Ok(r) => status_label(r.status().as_u16()),
            Err(GatewayError::TimedOut) => "timeout",
            Err(GatewayError::Unreachable) => "unreachable",
            Err(GatewayError::UntrustedOrigin) => "tls_failed",
            Err(GatewayError::ClientBody) => "client_aborted",
            Err(
                GatewayError::BadAnswer | GatewayError::BadPath(_) | GatewayError::TooManyTunnels,
            ) => "bad_answer",
        };
        crate::metrics::count_hot("queuegate_upstream_requests_total", "status", label);
        self.duration.record(started.elapsed().as_secs_f64());
        result
    }
}

/// What went wrong: our client's body first (its fault), then a timed out connect (too slow,
/// like a late head), then any connect failure (nobody there), else a broken answer.
fn classify(e: &Failure, client_failed: bool) -> GatewayError {
    if client_failed {
        return GatewayError::ClientBody;
    }
    match e {
        Failure::ConnectTimedOut => GatewayError::TimedOut,
        Failure::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => GatewayError::TimedOut,
        Failure::Connect(_) => GatewayError::Unreachable,
        Failure::Tls(io) if io.kind() == std::io::ErrorKind::TimedOut => GatewayError::TimedOut,
        Failure::Tls(_) => GatewayError::UntrustedOrigin,
        Failure::Http(_) => GatewayError::BadAnswer,
    }
}

/// The origin's status as a metrics label (bounded: common codes, else the class).
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
