//! Idempotency keys for money-moving requests (charges and payments).
//!
//! The key row is inserted *inside* the transaction that does the work. A concurrent request
//! with the same key blocks on the primary key until the first transaction ends: if it
//! committed, the second finds the stored result and replays it; if it rolled back (say, 402),
//! the key was never taken and the retry does the work afresh. Only successes are stored, so a
//! client may top up its wallet and retry a payment with the same key.

use crate::domain::{IdempotencyKey, UserId};
use crate::error::{ApiError, is_unique_violation};
use sqlx::MySqlConnection;

#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Charge,
    Payment,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Charge => "charge",
            Scope::Payment => "payment",
        }
    }
}

/// A result stored under a key: replayed verbatim.
#[derive(Clone, Debug)]
pub struct Stored {
    pub status: u16,
    pub body: String,
}

pub enum Claim {
    /// The key is ours for this transaction: do the work, then `complete`.
    Claimed,
    /// The key already has a result.
    Replay(Stored),
}

/// Takes `key` for this transaction, or returns the result already stored under it.
/// `fingerprint` describes the request; reusing a key for a different request is a 422.
pub async fn claim(
    conn: &mut MySqlConnection,
    user: UserId,
    scope: Scope,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, scope, idem_key, request_fingerprint) VALUES (?, ?, ?, ?)",
    )
    .bind(user.get())
    .bind(scope.as_str())
    .bind(key.as_str())
    .bind(fingerprint)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(Claim::Claimed),
        Err(e) if is_unique_violation(&e) => {
            // A locking read sees the latest committed row, whatever our snapshot.
            let row: Option<(String, Option<u16>, Option<String>)> = sqlx::query_as(
                "SELECT request_fingerprint, status_code, response_body FROM idempotency_keys
                 WHERE user_id = ? AND scope = ? AND idem_key = ? LOCK IN SHARE MODE",
            )
            .bind(user.get())
            .bind(scope.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some((fp, _, _)) if fp != fingerprint => Err(ApiError::validation(
                    "Idempotency-Key",
                    "was already used for a different request",
                )),
                Some((_, Some(status), Some(body))) => Ok(Claim::Replay(Stored { status, body })),
                // Committed rows always carry a result; anything else is worth a retry.
                _ => Err(ApiError::Busy),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Stores the result under the key, in the same transaction as the work.
pub async fn complete(
    conn: &mut MySqlConnection,
    user: UserId,
    scope: Scope,
    key: &IdempotencyKey,
    stored: &Stored,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = ?, response_body = ?
         WHERE user_id = ? AND scope = ? AND idem_key = ?",
    )
    .bind(stored.status)
    .bind(&stored.body)
    .bind(user.get())
    .bind(scope.as_str())
    .bind(key.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
