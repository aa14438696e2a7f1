//! The typed values settings are made of — secrets that never print, rates, the queue's
//! defaults, URL forms — and the one error a bad value produces.

use std::time::Duration;

/// The development signing key. Loud in the logs, refused in production.
pub const DEV_JWT_SECRET: &str = "queuegate-dev-secret-do-not-use-in-production";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// A secret setting (signing key, admin token): usable, never printed. `Debug` and `Display`
/// show `<hidden>`, so a settings dump in a log or a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Requests per minute, and how many may come at once; 0 per minute = no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Per-instance rate limits (see `ratelimit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub join_per_user: Rate,
    pub charge_per_user: Rate,
    pub hold_per_user: Rate,
    /// All three scopes together, per client address.
    pub per_address: Rate,
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Admission settings: the defaults every concert starts with. The admin API may override them
/// per concert (stored in Redis, so every instance sees the change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDefaults {
    pub tick_ms: u64,
    pub admit_per_tick: u64,
    pub max_active: u64,
    pub access_ttl_secs: u64,
    pub idle_secs: u64,
}

/// The transactional outbox and its relay (see `outbox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Carry events out at all (`OUTBOX_RELAY`). Off only to measure the relay's cost: the
    /// rows are written either way and wait, and paid access is then revoked only by the
    /// request path.
    pub relay: bool,
    /// How often each instance's relay looks for events (`OUTBOX_RELAY_MS`, at most 1 s: it
    /// bounds how long a crashed payment's access stays usable).
    pub relay_interval: Duration,
    /// Relayed rows are deleted after this many hours; each event's dedup key in Redis lives
    /// as long (`OUTBOX_RETENTION_HOURS`).
    pub retention_hours: u64,
    /// Approximate cap on the events stream's length (`EVENTS_MAXLEN`, `XADD MAXLEN ~`).
    pub events_maxlen: u64,
}

/// Which kind of Redis a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// `redis://` or `rediss://`: one server.
    Single,
    /// `redis-cluster://host:port?node=host:port&…`.
    Cluster,
    /// `redis-sentinel://host:port/db?node=…&sentinelServiceName=NAME`.
    Sentinel,
}

impl Topology {
    pub fn of_url(url: &str) -> Option<Topology> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "redis" | "rediss" => Some(Topology::Single),
            "redis-cluster" | "rediss-cluster" => Some(Topology::Cluster),
            "redis-sentinel" | "rediss-sentinel" => Some(Topology::Sentinel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Cluster => "cluster",
            Topology::Sentinel => "sentinel",
        }
    }
}

/// Checks that `url` is one of the three forms and that fred can read it (hosts, ports, the
/// sentinel service name); the reason in words otherwise.
pub fn check_url(url: &str) -> Result<Topology, String> {
    let topology = Topology::of_url(url).ok_or_else(|| {
        "expected redis://, redis-cluster://host:port?node=host:port… or redis-sentinel://host:port/0?node=…&sentinelServiceName=NAME".to_owned()
    })?;
    fred::prelude::Config::from_url(url).map_err(|e| e.details().to_string())?;
    Ok(topology)
}

pub(super) fn check_redis_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let error = |reason: String| ConfigError {
        var,
        value: url.to_owned(),
        reason,
    };
    let topology = check_url(url).map_err(error)?;
    if var == "REDLOCK_URLS" && topology != Topology::Single {
        return Err(error(
            "each Redlock master must be an independent plain Redis (redis://host:port); a cluster or sentinel URL cannot be one".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_mysql_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(())
    } else {
        Err(ConfigError {
            var,
            value: url.to_owned(),
            reason: "expected a mysql:// URL".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_topology() {
        assert_eq!(check_url("redis://127.0.0.1:6379"), Ok(Topology::Single));
        assert_eq!(
            check_url("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002"),
            Ok(Topology::Cluster)
        );
        assert_eq!(
            check_url(
                "redis-sentinel://127.0.0.1:26379/0?node=127.0.0.1:26380&sentinelServiceName=qgmaster"
            ),
            Ok(Topology::Sentinel)
        );
        assert!(check_url("http://x").is_err());
        assert!(
            check_url("redis-sentinel://127.0.0.1:26379/0").is_err(),
            "no service name"
        );
        assert!(check_url("memcached://x:1").is_err());
    }
}
