//! What can go wrong below the domain: a store (Redis, the database) that is down, a
//! transaction the database gave up on, or a bug. Every service error wraps this one, so the
//! HTTP layer can turn any of them into the contract's 503 + `Retry-After` in one place.
//!
//! No HTTP here: this module says *which* dependency failed, never how to answer.

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

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{} is unavailable", .0.as_str())]
    Unavailable(Dependency),
    /// The database chose this transaction as a deadlock victim more often than we retry.
    #[error("too much contention; try again")]
    Busy,
    /// Something that should not happen (bad SQL, a reply of the wrong shape).
    #[error("internal error: {0}")]
    Bug(String),
    /// The queue store has no sale start for a line: it lost its data since the line was
    /// created. The caller puts the database's back (`QueueStore::restore_sale_start`).
    #[error("the queue store lost this line's settings; try again")]
    SaleStartUnknown,
}

impl StoreError {
    pub fn bug(e: impl std::fmt::Display) -> Self {
        StoreError::Bug(e.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let mysql_number = match &e {
            sqlx::Error::Database(db) => db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number()),
            _ => None,
        };
        match (&e, mysql_number) {
            (
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
                _,
            ) => {
                tracing::warn!(error = %e, "database unavailable");
                StoreError::Unavailable(Dependency::Database)
            }
            // Deadlock victim: the whole transaction was rolled back, a retry starts clean.
            (_, Some(1213)) => StoreError::Busy,
            // Server shutdown, killed connection, read-only server, lock wait timeout.
            (_, Some(1053 | 1927 | 1290 | 1205)) => {
                tracing::warn!(error = %e, "database unavailable");
                StoreError::Unavailable(Dependency::Database)
            }
            _ => StoreError::Bug(format!("database: {e}")),
        }
    }
}

impl From<fred::error::Error> for StoreError {
    fn from(e: fred::error::Error) -> Self {
        use fred::error::ErrorKind;
        match e.kind() {
            ErrorKind::Parse | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand => {
                StoreError::Bug(format!("redis: {e}"))
            }
            _ => {
                tracing::warn!(error = %e, "redis unavailable");
                StoreError::Unavailable(Dependency::Redis)
            }
        }
    }
}

/// Errors that may mean "the database gave up on this transaction; run it again".
pub trait MaybeBusy {
    fn is_busy(&self) -> bool;
}

impl MaybeBusy for StoreError {
    fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy)
    }
}

/// For a service error with a `Store(StoreError)` variant: lets `?` turn database errors into
/// it, and lets `retry_busy` see deadlock victims through it.
#[macro_export]
macro_rules! store_backed_error {
    ($t:ty) => {
        impl From<sqlx::Error> for $t {
            fn from(e: sqlx::Error) -> Self {
                Self::Store(e.into())
            }
        }

        impl $crate::store_error::MaybeBusy for $t {
            fn is_busy(&self) -> bool {
                matches!(self, Self::Store($crate::store_error::StoreError::Busy))
            }
        }
    };
}

/// Runs a transaction body again when the database chose it as a deadlock victim (InnoDB rolls
/// the whole transaction back, so a retry starts clean). Three tries, then the last error.
pub async fn retry_busy<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: MaybeBusy,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_busy() && tries < 2 => {
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
