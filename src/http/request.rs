//! An incoming request as handlers see it: method, path parameters, headers, a lazily read body,
//! and the request id. Reading the body enforces the 64 KiB limit and turns JSON problems into
//! the contract's 400 (malformed) or 422 (well-formed, wrong values, naming the field).

use crate::domain::FromJson;
use crate::error::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH};
use hyper::{HeaderMap, Method};
use serde_json::{Map, Value};
use std::net::SocketAddr;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
}

impl Req {
    pub fn new(req: hyper::Request<Incoming>, peer: SocketAddr, request_id: String) -> Self {
        let (parts, body) = req.into_parts();
        Req {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            peer,
            request_id,
            params: Vec::new(),
            body: Some(body),
        }
    }

    /// Path parameter `i` parsed as an id; a segment that is no id names no resource (404).
    pub fn param<T>(
        &self,
        i: usize,
        parse: fn(&str) -> Option<T>,
        what: &'static str,
    ) -> Result<T, ApiError> {
        self.params
            .get(i)
            .and_then(|s| parse(s))
            .ok_or(ApiError::NotFound(what))
    }

    /// The bearer token from `Authorization`, if any.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    pub fn require_bearer(&self) -> Result<&str, ApiError> {
        self.bearer()
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized("missing bearer token"))
    }

    /// A query-string parameter (no percent-decoding needed for the values we accept).
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

    /// Reads the whole body, refusing more than 64 KiB (413) before reading it when the
    /// client announced the length, and while reading otherwise.
    pub async fn body_bytes(&mut self) -> Result<Bytes, ApiError> {
        if let Some(len) = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > MAX_BODY_BYTES as u64
        {
            return Err(ApiError::PayloadTooLarge);
        }
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
            Err(_) => Err(ApiError::BadRequest(
                "could not read the request body".into(),
            )),
        }
    }

    /// Reads a JSON object body.
    pub async fn json(&mut self) -> Result<JsonObject, ApiError> {
        let bytes = self.body_bytes().await?;
        JsonObject::parse(&bytes)
    }
}

/// A parsed JSON object body; fields are read with their domain type and named in errors.
/// Unknown fields are ignored (forward compatibility), as documented in the README.
#[derive(Debug)]
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::validation("body", "must be a JSON object")),
        }
    }

    pub fn required<T: FromJson>(&self, field: &str) -> Result<T, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(ApiError::validation(field, "is required")),
            Some(v) => T::from_json(v).map_err(|m| ApiError::validation(field, m)),
        }
    }

    pub fn optional<T: FromJson>(&self, field: &str) -> Result<Option<T>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::from_json(v)
                .map(Some)
                .map_err(|m| ApiError::validation(field, m)),
        }
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SeatNo;

    #[test]
    fn malformed_json_is_400_and_wrong_values_are_422_naming_the_field() {
        assert_eq!(JsonObject::parse(b"{").unwrap_err().status().as_u16(), 400);
        assert_eq!(JsonObject::parse(b"").unwrap_err().status().as_u16(), 400);
        assert_eq!(
            JsonObject::parse(&[0xff, 0xfe])
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
        assert_eq!(
            JsonObject::parse(b"[1]").unwrap_err().status().as_u16(),
            422
        );
        let o = JsonObject::parse(br#"{"seat_no": 51, "extra": true}"#).unwrap();
        match o.required::<SeatNo>("seat_no").unwrap_err() {
            ApiError::Validation { field, .. } => assert_eq!(field, "seat_no"),
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            o.required::<SeatNo>("missing"),
            Err(ApiError::Validation { .. })
        ));
        assert_eq!(o.optional::<SeatNo>("missing").unwrap(), None);
    }
}
