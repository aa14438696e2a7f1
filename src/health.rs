//! Probes of every dependency: the queue Redis, the primary database, the replica (and how far
//! it lags), and the Redlock masters. `/readyz` asks them on demand; the upkeep job publishes
//! the same answers as gauges every few seconds, so dashboards and alerts see what readiness
//! sees.

use crate::db::Db;
use crate::lock::Redlock;
use crate::redis::watch::WatchedPool;
use std::sync::Arc;

/// What the probes found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub redis: bool,
    pub database: bool,
    /// `None` without a replica.
    pub replica: Option<bool>,
    pub redlock_up: usize,
    pub redlock_masters: usize,
    /// `single`, `cluster` or `sentinel`.
    pub redis_topology: &'static str,
    /// Redis nodes (primaries) the queue store's clients are connected to.
    pub redis_nodes: usize,
}

impl Readiness {
    /// Ready when the queue store and the primary answer. The lock quorum is reported but does
    /// not decide readiness: without it holds fall back to the database-only path.
    pub fn ready(&self) -> bool {
        self.redis && self.database
    }
}

pub struct Probes {
    redis: Arc<WatchedPool>,
    db: Db,
    redlock: Arc<Redlock>,
}

impl Probes {
    pub fn new(redis: Arc<WatchedPool>, db: Db, redlock: Arc<Redlock>) -> Self {
        Probes { redis, db, redlock }
    }

    pub async fn check(&self) -> Readiness {
        let replica = async {
            match &self.db.replica {
                Some(r) => Some(Db::ping(&r.pool).await),
                None => None,
            }
        };
        let (redis, database, replica, redlock_up) = tokio::join!(
            crate::redis::ping(self.redis.pool().next_connected()),
            Db::ping(self.db.primary()),
            replica,
            self.redlock.masters_up(),
        );
        Readiness {
            redis,
            database,
            replica,
            redlock_up,
            redlock_masters: self.redlock.masters(),
            redis_topology: self.redis.topology().as_str(),
            redis_nodes: self.redis.nodes(),
        }
    }

    /// Publishes the probes as gauges (called by the upkeep job).
    pub async fn publish(&self) {
        let r = self.check().await;
        let up = |b: bool| if b { 1.0 } else { 0.0 };
        metrics::gauge!("queuegate_dependency_up", "dependency" => "redis").set(up(r.redis));
        metrics::gauge!("queuegate_dependency_up", "dependency" => "database").set(up(r.database));
        if let Some(replica) = r.replica {
            metrics::gauge!("queuegate_dependency_up", "dependency" => "replica").set(up(replica));
            if let Some(lag) = self.replica_lag_secs().await {
                metrics::gauge!("queuegate_db_replica_lag_seconds").set(lag);
            }
        }
        metrics::gauge!("queuegate_redlock_masters_up").set(r.redlock_up as f64);
        metrics::gauge!("queuegate_redlock_masters").set(r.redlock_masters as f64);
        self.db.record_pool_metrics();
    }

    /// Seconds the replica is behind its primary (infinite while replication is stopped);
    /// `None` when there is no replica, it is no replica, or the account may not ask.
    async fn replica_lag_secs(&self) -> Option<f64> {
        let replica = self.db.replica.as_ref()?;
        crate::db::replica_lag_secs(&replica.pool).await
    }
}
