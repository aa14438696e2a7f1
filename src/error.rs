//! The one error type every handler returns, and the one place it becomes an HTTP answer.
//!
//! Keeping the status/code mapping here means the contract's error table lives in exactly one
//! match: a handler says *what* went wrong, never *how* to say it over HTTP.

use hyper::StatusCode;

/// Which dependency failed; it decides the log line and the 503 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Redis,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::Redis => "redis",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("request body exceeds 64 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this token has been revoked")]
    TokenRevoked,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the seat is already held or sold")]
    SeatUnavailable,
    #[error("at most 4 live holds per user per schedule")]
    HoldLimitReached,
    #[error("the hold has expired or was cancelled")]
    HoldExpired,
    #[error("this reservation is already paid")]
    AlreadyPaid,
    #[error("not enough balance")]
    InsufficientBalance,
    #[error("this queue place no longer exists")]
    QueueEntryGone,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("{} is unavailable", .0.as_str())]
    DependencyDown(Dependency),
    /// The database gave up on a transaction (deadlock) more often than we retry.
    #[error("too much contention; try again")]
    Busy,
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

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized(_) | TokenRevoked => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            SeatUnavailable | HoldLimitReached | HoldExpired | AlreadyPaid => StatusCode::CONFLICT,
            InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            QueueEntryGone => StatusCode::GONE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            DependencyDown(_) | Busy => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            BadRequest(_) => "BAD_REQUEST",
            Validation { .. } => "VALIDATION_FAILED",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Unauthorized(_) => "UNAUTHORIZED",
            TokenRevoked => "TOKEN_REVOKED",
            Forbidden(_) => "FORBIDDEN",
            NotFound(_) => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            SeatUnavailable => "SEAT_UNAVAILABLE",
            HoldLimitReached => "HOLD_LIMIT_REACHED",
            HoldExpired => "HOLD_EXPIRED",
            AlreadyPaid => "ALREADY_PAID",
            InsufficientBalance => "INSUFFICIENT_BALANCE",
            QueueEntryGone => "QUEUE_ENTRY_GONE",
            RateLimited { .. } => "RATE_LIMITED",
            DependencyDown(_) => "SERVICE_UNAVAILABLE",
            Busy => "BUSY",
            Internal(_) => "INTERNAL",
        }
    }

    /// Seconds a client should wait before retrying, when the answer is worth retrying at all.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::DependencyDown(_) => Some(2),
            ApiError::Busy => Some(1),
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
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::DependencyDown(Dependency::Database)
            }
            sqlx::Error::Database(db)
                if db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|m| m.number() == 1213) =>
            {
                ApiError::Busy
            }
            // Server shutdown, killed connection, read-only server, lock wait timeout.
            sqlx::Error::Database(db)
                if db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|m| matches!(m.number(), 1053 | 1927 | 1290 | 1205)) =>
            {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::DependencyDown(Dependency::Database)
            }
            _ => ApiError::Internal(format!("database: {e}")),
        }
    }
}

impl From<fred::error::Error> for ApiError {
    fn from(e: fred::error::Error) -> Self {
        use fred::error::ErrorKind;
        match e.kind() {
            ErrorKind::Parse | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand => {
                ApiError::Internal(format!("redis: {e}"))
            }
            _ => {
                tracing::warn!(error = %e, "redis unavailable");
                ApiError::DependencyDown(Dependency::Redis)
            }
        }
    }
}

/// Runs a transaction body again when the database chose it as a deadlock victim (InnoDB rolls
/// the whole transaction back, so a retry starts clean). Three tries, then `Busy` (503).
pub async fn retry_busy<T, F, Fut>(mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(ApiError::Busy) if tries < 2 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * tries)).await;
            }
            other => return other,
        }
    }
}

/// True when a database error is a unique-key violation (MySQL error 1062).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
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
            (ApiError::Unauthorized("x"), 401, "UNAUTHORIZED"),
            (ApiError::TokenRevoked, 401, "TOKEN_REVOKED"),
            (ApiError::Forbidden("x"), 403, "FORBIDDEN"),
            (ApiError::NotFound("x"), 404, "NOT_FOUND"),
            (ApiError::SeatUnavailable, 409, "SEAT_UNAVAILABLE"),
            (ApiError::HoldLimitReached, 409, "HOLD_LIMIT_REACHED"),
            (ApiError::HoldExpired, 409, "HOLD_EXPIRED"),
            (ApiError::AlreadyPaid, 409, "ALREADY_PAID"),
            (ApiError::InsufficientBalance, 402, "INSUFFICIENT_BALANCE"),
            (ApiError::QueueEntryGone, 410, "QUEUE_ENTRY_GONE"),
            (
                ApiError::DependencyDown(Dependency::Redis),
                503,
                "SERVICE_UNAVAILABLE",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn internal_details_are_not_public() {
        let e = ApiError::internal("secret table name");
        assert_eq!(e.public_message(), "internal error");
        assert_eq!(
            ApiError::DependencyDown(Dependency::Database).retry_after_secs(),
            Some(2)
        );
    }
}
