//! The queue store's connection pool, watched.
//!
//! fred follows MOVED replies, rediscovers a cluster after a failover and asks the sentinels
//! for the new master on every reconnect; this watchdog covers what it does not:
//! - a client whose connection task ended (fred 10.1 ends it on an ASK redirect during a slot
//!   migration, while still reporting "connected") is started again;
//! - with Sentinel, a client still talking to a master the sentinels no longer name (a
//!   graceful failover: the old master stays reachable for seconds before it is demoted, and
//!   writes there are lost) is told to reconnect, which asks the sentinels again.
//!
//! It also publishes how many Redis nodes the instance sees, for `/readyz` and the dashboards.

use super::client::{Topology, direct_client, pool};
use fred::prelude::*;
use fred::types::config::ServerConfig;
use fred::types::{ClusterHash, ConnectHandle, CustomCommand};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How often the watchdog looks.
const EVERY: Duration = Duration::from_secs(1);

pub struct WatchedPool {
    pool: Pool,
    topology: Topology,
    handles: Mutex<Vec<ConnectHandle>>,
    /// Sentinel only: a direct client per sentinel, and the service name.
    sentinels: Vec<Client>,
    service: Option<String>,
}

impl WatchedPool {
    /// Builds the pool and starts connecting in the background.
    pub fn connect(url: &str, size: usize) -> Result<WatchedPool, Error> {
        let topology = Topology::of_url(url)
            .ok_or_else(|| Error::new(ErrorKind::Config, "not a redis URL"))?;
        let pool = pool(url, size)?;
        let (sentinels, service) = match Config::from_url(url)?.server {
            ServerConfig::Sentinel {
                hosts,
                service_name,
                ..
            } => (
                hosts.iter().map(direct_client).collect::<Result<_, _>>()?,
                Some(service_name),
            ),
            _ => (Vec::new(), None),
        };
        let handles = pool.connect_pool();
        Ok(WatchedPool {
            pool,
            topology,
            handles: Mutex::new(handles),
            sentinels,
            service,
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// Waits up to `limit` for every client's first connection.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.pool.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    /// The Redis nodes (primaries) this instance's connected clients talk to: 1 for a single
    /// server or Sentinel, the masters for a cluster, 0 while nothing is connected.
    pub fn nodes(&self) -> usize {
        let servers: HashSet<String> = self
            .pool
            .clients()
            .iter()
            .filter(|c| c.is_connected())
            .flat_map(|c| c.active_connections())
            .map(|s| format!("{}:{}", s.host, s.port))
            .collect();
        servers.len()
    }

    /// The watchdog job (see the module comment).
    pub async fn watch(self: std::sync::Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            self.restart_ended_clients();
            if let Some(service) = &self.service {
                self.follow_sentinel_master(service).await;
            }
            let connected = self
                .pool
                .clients()
                .iter()
                .filter(|c| c.is_connected())
                .count();
            metrics::gauge!("queuegate_redis_clients_connected").set(connected as f64);
            metrics::gauge!("queuegate_redis_nodes").set(self.nodes() as f64);
        }
    }

    fn restart_ended_clients(&self) {
        let Ok(mut handles) = self.handles.lock() else {
            return;
        };
        for (client, handle) in self.pool.clients().iter().zip(handles.iter_mut()) {
            if handle.is_finished() {
                tracing::warn!("a queue Redis client's connection task ended; starting it again");
                metrics::counter!("queuegate_redis_client_restarts_total").increment(1);
                *handle = client.connect();
            }
        }
    }

    async fn follow_sentinel_master(&self, service: &str) {
        let Some((host, port)) = self.sentinel_master(service).await else {
            return;
        };
        for client in self.pool.clients() {
            let on_master = client
                .active_connections()
                .iter()
                .any(|s| s.port == port && *s.host == *host);
            if client.is_connected() && !on_master {
                tracing::warn!(%host, port, "a queue Redis client is not on the master the sentinels name; reconnecting");
                metrics::counter!("queuegate_redis_master_switches_total").increment(1);
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = client.force_reconnection().await;
                });
            }
        }
    }

    /// The master the first answering sentinel names.
    async fn sentinel_master(&self, service: &str) -> Option<(String, u16)> {
        for sentinel in &self.sentinels {
            let asked: Result<Vec<String>, _> = sentinel
                .with_options(&super::client::request_options())
                .custom(
                    CustomCommand::new_static("SENTINEL", ClusterHash::Random, false),
                    vec!["GET-MASTER-ADDR-BY-NAME", service],
                )
                .await;
            if let Ok([host, port]) = asked.as_deref() {
                return Some((host.clone(), port.parse().ok()?));
            }
        }
        None
    }
}
