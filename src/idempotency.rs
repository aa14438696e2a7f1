//! Idempotency keys for money-moving requests (charges and payments).
//!
//! The key row is inserted *inside* the transaction that does the work. A concurrent request
//! with the same key blocks on the primary key until the first transaction ends: if it
//! committed, the second finds the stored result and replays it; if it rolled back (say, 402),
//! the key was never taken and the retry does the work afresh. Only successes are stored, so a
//! client may top up its wallet and retry a payment with the same key.

use crate::domain::{IdempotencyKey, UserId};
use crate::store_error::{StoreError, is_unique_violation};
use sqlx::MySqlConnection;

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The client reused a key for a different request (a client bug worth a clear 422).
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(IdempotencyError);

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
) -> Result<Claim, IdempotencyError> {
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
                Some((fp, _, _)) if fp != fingerprint => Err(IdempotencyError::KeyReused),
                Some((_, Some(status), Some(body))) => Ok(Claim::Replay(Stored { status, body })),
                // Committed rows always carry a result; anything else is worth a retry.
                _ => Err(StoreError::Busy.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The stored result of `key`, read outside any transaction: for replays sent with a token
/// that the first request already revoked. `None` unless it was stored for this very request.
pub async fn stored(
    pool: &sqlx::MySqlPool,
    user: UserId,
    scope: Scope,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<Stored>, StoreError> {
    let row: Option<(String, Option<u16>, Option<String>)> = sqlx::query_as(
        "SELECT request_fingerprint, status_code, response_body FROM idempotency_keys
          WHERE user_id = ? AND scope = ? AND idem_key = ?",
    )
    .bind(user.get())
    .bind(scope.as_str())
    .bind(key.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((fp, Some(status), Some(body))) if fp == fingerprint => Some(Stored { status, body }),
        _ => None,
    })
}

/// Stores the result under the key, in the same transaction as the work.
pub async fn complete(
    conn: &mut MySqlConnection,
    user: UserId,
    scope: Scope,
    key: &IdempotencyKey,
    stored: &Stored,
) -> Result<(), StoreError> {
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
