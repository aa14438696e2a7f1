//! MySQL/MariaDB connection pools: the primary, and an optional read replica.
//!
//! Only listings that tolerate a little lag (schedules, seat maps) read from the replica;
//! everything that writes, locks, or must read its own writes uses the primary. Each pool is
//! named so its metrics and log lines can be told apart.

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Executor};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("invalid {var}: {source}")]
    Url {
        var: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot reach the database at {host}:{port}: {source}")]
    Unreachable {
        host: String,
        port: u16,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool and the name metrics and logs use for it.
#[derive(Clone, Debug)]
pub struct NamedPool {
    pub name: &'static str,
    pub pool: MySqlPool,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub primary: NamedPool,
    pub replica: Option<NamedPool>,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn options(var: &'static str, url: &str) -> Result<MySqlConnectOptions, DbSetupError> {
    Ok(MySqlConnectOptions::from_str(url)
        .map_err(|source| DbSetupError::Url { var, source })?
        // Slow statements are visible in the logs; normal traffic is not.
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(500)))
}

fn pool_options(max: u32) -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        // READ COMMITTED: every transaction here locks the rows it changes by key and lets the
        // unique indexes arbitrate; REPEATABLE READ's gap locks would only add deadlocks between
        // concurrent seat holds (insert-intention vs gap locks) and buy nothing.
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map(|_| ())
            })
        })
        .max_connections(max)
        .min_connections(1)
        // A fan waiting on a pool for more than a few seconds is better served by a 503.
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
}

impl Db {
    /// Creates the primary database if it does not exist yet (the contract promises this).
    pub async fn ensure_database(url: &str) -> Result<(), DbSetupError> {
        let opts = options("DATABASE_URL", url)?;
        let Some(name) = opts.get_database().map(str::to_owned) else {
            return Ok(());
        };
        let server = opts.clone().database("");
        let mut last = None;
        // A database that is still starting gets a few seconds before we give up.
        for _ in 0..20 {
            match server.connect().await {
                Ok(mut conn) => {
                    let ddl = format!(
                        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                        name.replace('`', "``")
                    );
                    conn.execute(sqlx::AssertSqlSafe(ddl))
                        .await
                        .map_err(|source| DbSetupError::Unreachable {
                            host: opts.get_host().to_owned(),
                            port: opts.get_port(),
                            source,
                        })?;
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(DbSetupError::Unreachable {
            host: opts.get_host().to_owned(),
            port: opts.get_port(),
            source: last.unwrap_or(sqlx::Error::PoolTimedOut),
        })
    }

    /// Builds the pools without connecting: the server starts even while the database is down
    /// and answers 503 until it is back.
    pub fn connect_lazy(
        primary_url: &str,
        replica_url: Option<&str>,
        max_connections: u32,
    ) -> Result<Db, DbSetupError> {
        let primary =
            pool_options(max_connections).connect_lazy_with(options("DATABASE_URL", primary_url)?);
        let replica = match replica_url {
            Some(url) => Some(NamedPool {
                name: "replica",
                pool: pool_options(max_connections)
                    .connect_lazy_with(options("DATABASE_REPLICA_URL", url)?),
            }),
            None => None,
        };
        Ok(Db {
            primary: NamedPool {
                name: "primary",
                pool: primary,
            },
            replica,
        })
    }

    pub fn primary(&self) -> &MySqlPool {
        &self.primary.pool
    }

    /// The pool for lag-tolerant reads: the replica when configured, else the primary.
    pub fn reader(&self) -> &NamedPool {
        self.replica.as_ref().unwrap_or(&self.primary)
    }

    pub async fn migrate(&self) -> Result<(), DbSetupError> {
        MIGRATOR.run(self.primary()).await?;
        Ok(())
    }

    pub fn pools(&self) -> impl Iterator<Item = &NamedPool> {
        std::iter::once(&self.primary).chain(self.replica.as_ref())
    }

    /// Publishes pool sizes; called by the metrics upkeep task.
    pub fn record_pool_metrics(&self) {
        for p in self.pools() {
            let size = p.pool.size() as f64;
            let idle = p.pool.num_idle() as f64;
            metrics::gauge!("queuegate_db_pool_connections", "pool" => p.name, "state" => "idle")
                .set(idle);
            metrics::gauge!("queuegate_db_pool_connections", "pool" => p.name, "state" => "in_use")
                .set((size - idle).max(0.0));
        }
    }

    pub async fn ping(pool: &MySqlPool) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                sqlx::query("SELECT 1").execute(pool)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

/// How far a replica is behind its primary, in seconds: `Seconds_Behind_Master` (MariaDB) or
/// `Seconds_Behind_Source` (MySQL 8). Infinite when replication is configured but stopped (the
/// server reports NULL); `None` when the server is no replica or the account may not ask
/// (REPLICATION CLIENT / SLAVE MONITOR).
pub async fn replica_lag_secs(pool: &MySqlPool) -> Option<f64> {
    use sqlx::Row;
    let row = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("SHOW SLAVE STATUS").fetch_optional(pool),
    )
    .await
    .ok()?
    .ok()??;
    let lag = ["Seconds_Behind_Master", "Seconds_Behind_Source"]
        .into_iter()
        .find_map(|column| row.try_get::<Option<u64>, _>(column).ok())?;
    Some(lag.map_or(f64::INFINITY, |secs| secs as f64))
}
