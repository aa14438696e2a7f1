//! Connections: client builders for the queue store and the Redlock masters, the options every
//! request-path command runs with, and PING.
//!
//! Every call fails fast while the connection is down instead of queueing behind a reconnect:
//! a fan's request should get a 503 with `Retry-After` in milliseconds, not hang.

pub use crate::config::Topology;
use fred::prelude::*;
use fred::types::config::Options;
use std::time::Duration;

/// Options for commands on a request path: fail at once while disconnected, bounded wait.
/// Two attempts, so a MOVED reply (a slot that moved, a promoted replica) is followed once
/// instead of failing the request; with `fail_fast` a command in flight when a connection
/// drops is failed, never sent twice.
pub fn request_options() -> Options {
    Options {
        fail_fast: true,
        timeout: Some(Duration::from_millis(500)),
        max_attempts: Some(2),
        ..Default::default()
    }
}

/// A client builder with the given timeouts, TCP_NODELAY, and a reconnect policy.
fn builder(
    url: &str,
    connect: Duration,
    command: Duration,
    policy: ReconnectPolicy,
) -> Result<Builder, Error> {
    let mut config = Config::from_url(url)?;
    // A failed *first* connection goes through the reconnect policy too; fred's default gives
    // up for good, leaving a client that never connects.
    config.fail_fast = false;
    let mut b = Builder::from_config(config);
    b.with_connection_config(|c| {
        c.connection_timeout = connect;
        c.internal_command_timeout = connect;
        c.tcp = TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        };
    })
    .with_performance_config(|p| {
        p.default_command_timeout = command;
    })
    .set_policy(policy);
    Ok(b)
}

/// The queue store's clients: reconnects are quick and unlimited — after a failover every slot
/// waits for the reconnect, so a short, flat backoff shortens the outage (measured: ~3.4 s vs
/// ~5.3 s with a 2 s cap).
fn store_builder(url: &str) -> Result<Builder, Error> {
    let policy = ReconnectPolicy::new_exponential(0, 50, 500, 2);
    builder(url, Duration::from_secs(2), Duration::from_secs(5), policy)
}

/// Builds a client pool for the queue store, not yet connected (see `watch::WatchedPool`).
pub fn pool(url: &str, size: usize) -> Result<Pool, Error> {
    store_builder(url)?.build_pool(size)
}

/// A client that only listens on the queue store's pub/sub channels (see `queue::ends`), not
/// yet connected; it follows the store's topology (any node of a cluster hears every channel).
pub fn subscriber(url: &str) -> Result<fred::clients::SubscriberClient, Error> {
    store_builder(url)?.build_subscriber_client()
}

/// A plain client to one server (a sentinel, for the watchdog's questions).
pub fn direct_client(server: &fred::types::config::Server) -> Result<Client, Error> {
    let url = format!("redis://{}:{}", server.host, server.port);
    let short = Duration::from_millis(500);
    let client = builder(&url, short, short, ReconnectPolicy::new_constant(0, 500))?.build()?;
    client.connect();
    Ok(client)
}

/// Builds one client for one Redlock master. Each master is independent by design: no pool
/// sharing, its own reconnect loop, short timeouts so one dead master costs milliseconds.
pub fn lock_client(url: &str) -> Result<Client, Error> {
    let short = Duration::from_millis(500);
    let client = builder(url, short, short, ReconnectPolicy::new_constant(0, 250))?.build()?;
    client.connect();
    Ok(client)
}

/// PING with a short deadline, for readiness checks.
pub async fn ping(client: &Client) -> bool {
    client
        .with_options(&request_options())
        .ping::<String>(None)
        .await
        .is_ok()
}
