//! JSON in and out: request bodies read field by field into domain types (naming the field in
//! every 422), the `Idempotency-Key` header, and stored money results sent back verbatim. The
//! hottest answers (a poll's, a join's) are written with `crate::json_out`.

use super::error::ApiError;
use crate::domain::{FromJson, IdempotencyKey};
use crate::http::response::raw_json;
use crate::http::{Req, Resp};
use crate::idempotency::Stored;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Map, Value};

/// A parsed JSON object body; fields are read with their domain type and named in errors.
/// Unknown fields are ignored (forward compatibility), as documented in the README.
#[derive(Debug)]
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    /// Reads the request's body as a JSON object (400 malformed, 413 too large).
    pub async fn read(req: &mut Req) -> Result<JsonObject, ApiError> {
        let bytes = req.body_bytes().await?;
        JsonObject::parse(&bytes)
    }

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

    /// An integer field within bounds, or 422 naming it.
    pub fn bounded(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::validation(
                    field,
                    format!("must be an integer in {min}..={max}"),
                )),
            },
        }
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }
}

/// The `Idempotency-Key` header, parsed.
pub fn idempotency_key(req: &Req) -> Result<Option<IdempotencyKey>, ApiError> {
    req.header("idempotency-key")
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|m| ApiError::validation("Idempotency-Key", m))
        })
        .transpose()
}

/// Sends a stored (possibly replayed) money result verbatim.
pub fn stored_response(stored: Stored, replayed: bool) -> Resp {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = raw_json(status, stored.body);
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
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
        let b = JsonObject::parse(br#"{"tick_ms": 50}"#).unwrap();
        assert!(b.bounded("tick_ms", 100, 60_000).is_err());
        assert_eq!(b.bounded("absent", 0, 1).unwrap(), None);
    }
}
