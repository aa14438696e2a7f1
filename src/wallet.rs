//! Users and their wallets: create a user, read a balance, charge (top up) a balance.
//!
//! A charge is one atomic `UPDATE … SET balance = balance + ?` plus a ledger row in the same
//! transaction — never read-modify-write — so concurrent charges can never overwrite each other,
//! and every balance always equals the sum of its ledger rows. The same transaction writes the
//! `wallet.charged` event to the outbox.

use crate::db::Db;
use crate::domain::{ChargeAmount, IdempotencyKey, UserId, UserName};
use crate::idempotency::{self, Claim, IdempotencyError, Scope, Stored};
use crate::outbox::{self, Event};
use crate::store_error::{StoreError, retry_busy};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("no such user")]
    NoSuchUser,
    /// A charge that would lift the balance over `MAX_BALANCE`.
    #[error("the balance may not exceed {MAX_BALANCE}")]
    BalanceCeiling,
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(WalletError);

impl From<IdempotencyError> for WalletError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::KeyReused => Self::KeyReused,
            IdempotencyError::Store(s) => Self::Store(s),
        }
    }
}

/// Users and their wallets, on the primary database.
#[derive(Clone)]
pub struct Wallet {
    db: Db,
}

/// The most a wallet may hold; mirrors the `wallets_balance_bounded` CHECK constraint.
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub user_id: UserId,
    pub balance: i64,
}

impl Wallet {
    pub fn new(db: Db) -> Self {
        Wallet { db }
    }

    /// Creates a user with an empty wallet; returns the new id.
    pub async fn create_user(&self, name: &UserName) -> Result<UserId, WalletError> {
        create_user(&self.db, name).await
    }

    pub async fn balance(&self, user: UserId) -> Result<Balance, WalletError> {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
                .bind(user.get())
                .fetch_optional(self.db.primary())
                .await?;
        balance
            .map(|balance| Balance {
                user_id: user,
                balance,
            })
            .ok_or(WalletError::NoSuchUser)
    }

    /// Adds `amount` to the wallet. With a key, a repeated request returns the first result
    /// and charges once. Returns the stored response (status, JSON) so replays are
    /// byte-identical, and whether it is a replay.
    pub async fn charge(
        &self,
        user: UserId,
        amount: ChargeAmount,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Stored, bool), WalletError> {
        retry_busy(|| charge_once(&self.db, user, amount, key)).await
    }
}

async fn create_user(db: &Db, name: &UserName) -> Result<UserId, WalletError> {
    let mut tx = db.primary().begin().await?;
    let id = sqlx::query("INSERT INTO users (name) VALUES (?)")
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?
        .last_insert_id();
    sqlx::query("INSERT INTO wallets (user_id, balance) VALUES (?, 0)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    UserId::new(id).ok_or_else(|| StoreError::bug("user id out of range").into())
}

/// The balance as this transaction sees it (after its own debit or credit).
pub async fn balance_in(conn: &mut sqlx::MySqlConnection, user: UserId) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
            .bind(user.get())
            .fetch_one(conn)
            .await?,
    )
}

async fn charge_once(
    db: &Db,
    user: UserId,
    amount: ChargeAmount,
    key: Option<&IdempotencyKey>,
) -> Result<(Stored, bool), WalletError> {
    let mut tx = db.primary().begin().await?;
    if let Some(key) = key {
        let fingerprint = format!("amount={}", amount.get());
        if let Claim::Replay(stored) =
            idempotency::claim(&mut tx, user, Scope::Charge, key, &fingerprint).await?
        {
            tx.rollback().await?;
            return Ok((stored, true));
        }
    }
    let updated = sqlx::query(
        "UPDATE wallets SET balance = balance + ? WHERE user_id = ? AND balance <= ? - ?",
    )
    .bind(amount.get())
    .bind(user.get())
    .bind(MAX_BALANCE)
    .bind(amount.get())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
                .bind(user.get())
                .fetch_optional(&mut *tx)
                .await?;
        tx.rollback().await?;
        metrics::counter!("queuegate_wallet_charges_total", "result" => "rejected").increment(1);
        return Err(match exists {
            None => WalletError::NoSuchUser,
            Some(_) => WalletError::BalanceCeiling,
        });
    }
    sqlx::query("INSERT INTO ledger (user_id, kind, amount) VALUES (?, 'charge', ?)")
        .bind(user.get())
        .bind(amount.get())
        .execute(&mut *tx)
        .await?;
    outbox::record(&mut tx, &[Event::charged(user, amount.get())?]).await?;
    let balance = balance_in(&mut tx, user).await?;
    let stored = Stored {
        status: 200,
        body: serde_json::to_string(&Balance {
            user_id: user,
            balance,
        })
        .map_err(StoreError::bug)?,
    };
    if let Some(key) = key {
        idempotency::complete(&mut tx, user, Scope::Charge, key, &stored).await?;
    }
    tx.commit().await?;
    metrics::counter!("queuegate_wallet_charges_total", "result" => "charged").increment(1);
    Ok((stored, false))
}
