//! The contract's error table: every domain error becomes one status and one code here, and
//! nowhere else. Handlers say *what* went wrong (a domain error, converted with `?`); this file
//! says how that sounds over HTTP, and writes the envelope
//! `{"error": {"code", "message", "request_id", …}}`.

use crate::booking::catalogue::CatalogueError;
use crate::booking::holds::HoldError;
use crate::booking::payments::PayError;
use crate::booking::reservations::ReservationError;
use crate::domain::{ConcertId, ReservationId};
use crate::gateway::GatewayError;
use crate::http::request::BodyError;
use crate::http::response::{Resp, bytes};
use crate::queue::service::QueueError;
use crate::ratelimit::Limited;
use crate::store_error::{Dependency, StoreError};
use crate::tokens::TokenError;
use crate::wallet::{MAX_BALANCE, WalletError};
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("request body exceeds 64 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    TokenRevoked(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the seat is already held or sold")]
    SeatUnavailable,
    #[error("you already hold this seat (reservation {0})")]
    SeatAlreadyYours(ReservationId),
    #[error("{0}")]
    HoldLimitReached(String),
    #[error("{0}")]
    HoldExpired(String),
    #[error("{0}")]
    AlreadyPaid(String),
    #[error("not enough balance: {due} due, {balance} available")]
    InsufficientBalance { balance: i64, due: i64 },
    #[error("this queue place no longer exists")]
    QueueEntryGone,
    #[error("the sale has started; its start can no longer be moved")]
    SaleStarted,
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{} is unavailable", .0.as_str())]
    DependencyDown(Dependency),
    #[error("too much contention; try again")]
    Busy,
    /// This instance is at a capacity limit; another try (or another route) will do.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    /// Gateway mode: no live admission for a protected path (API clients; browsers are
    /// redirected to the waiting page instead).
    #[error("{reason}: join the line at {queue_url} first")]
    NotAdmitted {
        reason: String,
        queue_url: String,
        concert_id: ConcertId,
    },
    /// Gateway mode: the origin is down or answered with garbage.
    #[error("{0}")]
    BadGateway(String),
    /// Gateway mode: the origin did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(what.to_owned())
    }

    pub fn forbidden(why: &str) -> Self {
        ApiError::Forbidden(why.to_owned())
    }

    pub fn unauthorized(why: &str) -> Self {
        ApiError::Unauthorized(why.to_owned())
    }

    /// The table: status and code of every error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            TokenRevoked(_) => (StatusCode::UNAUTHORIZED, "TOKEN_REVOKED"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            SeatUnavailable | SeatAlreadyYours(_) => (StatusCode::CONFLICT, "SEAT_UNAVAILABLE"),
            HoldLimitReached(_) => (StatusCode::CONFLICT, "HOLD_LIMIT_REACHED"),
            HoldExpired(_) => (StatusCode::CONFLICT, "HOLD_EXPIRED"),
            AlreadyPaid(_) => (StatusCode::CONFLICT, "ALREADY_PAID"),
            InsufficientBalance { .. } => (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE"),
            QueueEntryGone => (StatusCode::GONE, "QUEUE_ENTRY_GONE"),
            SaleStarted => (StatusCode::CONFLICT, "SALE_STARTED"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            DependencyDown(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            Busy => (StatusCode::SERVICE_UNAVAILABLE, "BUSY"),
            Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            NotAdmitted { .. } => (StatusCode::FORBIDDEN, "NOT_ADMITTED"),
            BadGateway(_) => (StatusCode::BAD_GATEWAY, "BAD_GATEWAY"),
            GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// Seconds a client should wait before retrying, when the answer is worth retrying at all.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::DependencyDown(_) => Some(2),
            ApiError::Busy => Some(1),
            ApiError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::BadGateway(_) | ApiError::GatewayTimeout(_) => Some(5),
            _ => None,
        }
    }

    /// What the client is told. Internal details stay in the log, never in the body.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Facts a client can act on, beside the message (the offending field, the balance…).
    fn details(&self) -> Details<'_> {
        match self {
            ApiError::Validation { field, .. } => Details {
                field: Some(field),
                ..Default::default()
            },
            ApiError::SeatAlreadyYours(id) => Details {
                reservation_id: Some(*id),
                ..Default::default()
            },
            ApiError::InsufficientBalance { balance, due } => Details {
                balance: Some(*balance),
                due: Some(*due),
                ..Default::default()
            },
            ApiError::NotAdmitted {
                queue_url,
                concert_id,
                ..
            } => Details {
                queue_url: Some(queue_url),
                concert_id: Some(*concert_id),
                ..Default::default()
            },
            _ => Details::default(),
        }
    }
}

/// The contract's error envelope: `{"error": {"code", "message", "request_id", …}}`.
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
    #[serde(flatten)]
    pub details: Details<'a>,
}

/// Optional facts of some errors.
#[derive(Default, Serialize, utoipa::ToSchema)]
pub struct Details<'a> {
    /// The offending field, for `VALIDATION_FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub field: Option<&'a str>,
    /// The caller's own reservation of the seat, for `SEAT_UNAVAILABLE` when it is theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    /// The wallet balance, for `INSUFFICIENT_BALANCE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    /// The amount due, for `INSUFFICIENT_BALANCE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<i64>,
    /// Gateway mode, `NOT_ADMITTED`: the waiting page to queue on (it brings the visitor back
    /// to the requested path once admitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "/concerts/7?return=/shop/checkout")]
    pub queue_url: Option<&'a str>,
    /// Gateway mode, `NOT_ADMITTED`: the concert to join (`POST /v1/queue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concert_id: Option<ConcertId>,
}

/// The error as an HTTP answer.
pub fn respond(e: &ApiError, request_id: &str) -> Resp {
    let (status, code) = e.status_and_code();
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code,
            message: e.public_message(),
            request_id,
            details: e.details(),
        },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"INTERNAL","message":"internal error"}}"#.to_vec());
    let mut r = bytes(status, "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = e.retry_after_secs() {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(d) => ApiError::DependencyDown(d),
            StoreError::Busy => ApiError::Busy,
            StoreError::Bug(m) => ApiError::Internal(m),
            // Handled where it arises (a join puts the sale start back and tries again); if it
            // still gets here the store lost its data again meanwhile: a retry is the answer.
            StoreError::SaleStartUnknown => ApiError::DependencyDown(Dependency::Redis),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => ApiError::PayloadTooLarge,
            BodyError::Unreadable => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<Limited> for ApiError {
    fn from(e: Limited) -> Self {
        ApiError::RateLimited {
            retry_after_secs: e.retry_after_secs,
        }
    }
}

fn key_reused() -> ApiError {
    ApiError::validation(
        "Idempotency-Key",
        "was already used for a different request",
    )
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Gone => ApiError::QueueEntryGone,
            QueueError::Store(s) => s.into(),
            QueueError::TicketUsed => ApiError::Unauthorized(e.to_string()),
            QueueError::TooManyStreams => ApiError::Overloaded {
                message: e.to_string(),
                retry_after_secs: 5,
            },
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unreachable | GatewayError::BadAnswer | GatewayError::UntrustedOrigin => {
                ApiError::BadGateway(e.to_string())
            }
            GatewayError::TimedOut => ApiError::GatewayTimeout(e.to_string()),
            GatewayError::ClientBody | GatewayError::BadPath(_) => {
                ApiError::BadRequest(e.to_string())
            }
            GatewayError::TooManyTunnels => ApiError::RateLimited {
                retry_after_secs: 5,
            },
        }
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::NoSuchConcert | CatalogueError::NoSuchSchedule => {
                ApiError::NotFound(e.to_string())
            }
            CatalogueError::Store(s) => s.into(),
        }
    }
}

impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::NoSuchUser => ApiError::NotFound(e.to_string()),
            WalletError::BalanceCeiling => ApiError::validation(
                "amount",
                format!("the balance may not exceed {MAX_BALANCE}"),
            ),
            WalletError::KeyReused => key_reused(),
            WalletError::Store(s) => s.into(),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::SeatUnavailable => ApiError::SeatUnavailable,
            HoldError::AlreadyYours(id) => ApiError::SeatAlreadyYours(id),
            HoldError::HoldLimitReached => ApiError::HoldLimitReached(e.to_string()),
            HoldError::NoSuchSeat | HoldError::NoSuchUser => ApiError::NotFound(e.to_string()),
            HoldError::Store(s) => s.into(),
        }
    }
}

impl From<ReservationError> for ApiError {
    fn from(e: ReservationError) -> Self {
        match e {
            ReservationError::NotFound => ApiError::NotFound(e.to_string()),
            ReservationError::NotYours | ReservationError::OtherConcert => {
                ApiError::Forbidden(e.to_string())
            }
            ReservationError::AlreadyPaid => ApiError::AlreadyPaid(e.to_string()),
            ReservationError::HoldExpired => ApiError::HoldExpired(e.to_string()),
            ReservationError::Store(s) => s.into(),
        }
    }
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        match e {
            PayError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PayError::NotYours(_) | PayError::OtherConcert(_) => ApiError::Forbidden(e.to_string()),
            PayError::HoldExpired(_) => ApiError::HoldExpired(e.to_string()),
            PayError::AlreadyPaid(_) => ApiError::AlreadyPaid(e.to_string()),
            PayError::InsufficientBalance { balance, due } => {
                ApiError::InsufficientBalance { balance, due }
            }
            PayError::KeyReused => key_reused(),
            PayError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_codes_and_statuses() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::BadRequest("x".into()), 400, "BAD_REQUEST"),
            (
                ApiError::validation("seat_no", "x"),
                422,
                "VALIDATION_FAILED",
            ),
            (ApiError::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (ApiError::unauthorized("x"), 401, "UNAUTHORIZED"),
            (ApiError::TokenRevoked("x".into()), 401, "TOKEN_REVOKED"),
            (ApiError::forbidden("x"), 403, "FORBIDDEN"),
            (ApiError::not_found("x"), 404, "NOT_FOUND"),
            (ApiError::SeatUnavailable, 409, "SEAT_UNAVAILABLE"),
            (
                HoldError::AlreadyYours(ReservationId::new(3).unwrap()).into(),
                409,
                "SEAT_UNAVAILABLE",
            ),
            (
                HoldError::HoldLimitReached.into(),
                409,
                "HOLD_LIMIT_REACHED",
            ),
            (ReservationError::HoldExpired.into(), 409, "HOLD_EXPIRED"),
            (ReservationError::AlreadyPaid.into(), 409, "ALREADY_PAID"),
            (
                PayError::InsufficientBalance { balance: 1, due: 2 }.into(),
                402,
                "INSUFFICIENT_BALANCE",
            ),
            (QueueError::Gone.into(), 410, "QUEUE_ENTRY_GONE"),
            (
                StoreError::Unavailable(Dependency::Redis).into(),
                503,
                "SERVICE_UNAVAILABLE",
            ),
            (WalletError::BalanceCeiling.into(), 422, "VALIDATION_FAILED"),
            (
                ApiError::NotAdmitted {
                    reason: "x".into(),
                    queue_url: "/concerts/1".into(),
                    concert_id: ConcertId::new(1).unwrap(),
                },
                403,
                "NOT_ADMITTED",
            ),
            (GatewayError::Unreachable.into(), 502, "BAD_GATEWAY"),
            (GatewayError::BadAnswer.into(), 502, "BAD_GATEWAY"),
            (GatewayError::UntrustedOrigin.into(), 502, "BAD_GATEWAY"),
            (GatewayError::TimedOut.into(), 504, "GATEWAY_TIMEOUT"),
            (GatewayError::ClientBody.into(), 400, "BAD_REQUEST"),
            (GatewayError::BadPath("x").into(), 400, "BAD_REQUEST"),
            (GatewayError::TooManyTunnels.into(), 429, "RATE_LIMITED"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn internal_details_are_not_public_and_useful_facts_are() {
        let e = ApiError::Internal("secret table name".into());
        assert_eq!(e.public_message(), "internal error");
        assert_eq!(
            ApiError::DependencyDown(Dependency::Database).retry_after_secs(),
            Some(2)
        );
        let r = respond(
            &ApiError::InsufficientBalance {
                balance: 10,
                due: 25,
            },
            "rid",
        );
        assert_eq!(r.status().as_u16(), 402);
    }
}
