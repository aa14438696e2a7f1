//! An incoming request as handlers see it: method, path, query, headers, the peer, the request
//! id, path parameters (filled in by whoever routes), and a body read on demand within a size
//! limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH};
use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method};
use std::net::SocketAddr;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds 64 KiB")]
    TooLarge,
    #[error("could not read the request body")]
    Unreadable,
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub request_id: String,
    /// Path parameters captured by the router, in order.
    pub params: Vec<String>,
    body: Option<Incoming>,
    /// The connection itself, once answered `101`, when the client asked for an upgrade
    /// (`Connection: upgrade`); gateway mode tunnels it to the origin.
    upgrade: Option<OnUpgrade>,
}

impl Req {
    pub fn new(
        mut parts: Parts,
        body: Option<Incoming>,
        peer: SocketAddr,
        request_id: String,
    ) -> Self {
        Req {
            upgrade: parts.extensions.remove::<OnUpgrade>(),
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            peer,
            request_id,
            params: Vec::new(),
            body,
        }
    }

    /// The bearer token from `Authorization`, if any.
    pub fn bearer(&self) -> Option<&str> {
        // `from_utf8` checks a word at a time where `to_str` checks each byte (a ~250-byte token
        // on every poll). A token with a byte `to_str` refuses is then refused by the token
        // check itself, as malformed: still a 401.
        let v = std::str::from_utf8(self.headers.get(AUTHORIZATION)?.as_bytes()).ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// A query-string parameter (no percent-decoding: the values we accept need none).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    /// A cookie's value from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Takes the body stream (for forwarding it unread).
    pub fn take_body(&mut self) -> Option<Incoming> {
        self.body.take()
    }

    /// The upgraded connection (see `upgrade`), for whoever answers `101`.
    pub fn take_upgrade(&mut self) -> Option<OnUpgrade> {
        self.upgrade.take()
    }

    /// Reads the whole body, refusing more than 64 KiB before reading it when the client
    /// announced the length, and while reading otherwise.
    pub async fn body_bytes(&mut self) -> Result<Bytes, BodyError> {
        if let Some(len) = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > MAX_BODY_BYTES as u64
        {
            return Err(BodyError::TooLarge);
        }
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
            Err(_) => Err(BodyError::Unreadable),
        }
    }
}
