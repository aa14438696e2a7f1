//! Typed configuration, read once from the environment (and a `.env` file) at start.
//!
//! Every knob has a safe local default so `queuegate serve` works on a laptop with nothing set;
//! the only exception is `JWT_SECRET` in production mode, because a guessable signing key would
//! let anyone mint access tokens. A bad value stops the program with one line naming the variable.

use crate::domain::ConcertId;
use std::net::SocketAddr;
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

/// The first path segments queuegate serves itself (`api::routes`; a test there keeps the two in
/// step), plus the root `/`. Gateway mode never forwards a path under one of them, whatever
/// `UPSTREAM_PATHS` says, so the waiting room, its API and its pages cannot be shadowed by the
/// origin — nor the origin reached through a path that looks like ours.
pub const OWN_PATH_SEGMENTS: &[&str] = &[
    "v1",
    "healthz",
    "readyz",
    "metrics",
    "openapi.json",
    "docs",
    "concerts",
    "assets",
];

/// True for `/` and every path whose first segment is one of queuegate's own (or empty, as in
/// `//host/…`).
pub fn is_own_path(path: &str) -> bool {
    let first = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .next()
        .unwrap_or("");
    first.is_empty() || OWN_PATH_SEGMENTS.contains(&first)
}

/// Gateway mode (`UPSTREAM_URL` set): the origin behind the line and the paths the line guards.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// `http://host[:port]` of the origin, without a trailing slash (plain HTTP only).
    pub base: String,
    /// Protected path prefixes, matched segment-wise: `/shop` guards `/shop` and `/shop/…`, not
    /// `/shopping`; `/` guards every path that is not queuegate's own.
    pub paths: Vec<String>,
    /// The line that guards them: only a live admission to this concert passes.
    pub concert_id: ConcertId,
    /// Time to open a TCP connection to the origin.
    pub connect_timeout: Duration,
    /// Time from sending a request until the origin's response head arrives (connect included).
    pub first_byte_timeout: Duration,
    /// Key of the HMAC-SHA256 identity header the origin checks; unset = no identity header.
    pub identity_key: Option<Secret>,
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

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub database_url: String,
    pub database_replica_url: Option<String>,
    pub database_max_connections: u32,
    pub redis_url: String,
    /// Prefix of every Redis key this instance writes; lets tests (or tenants) share one server.
    pub redis_key_prefix: String,
    pub redlock_urls: Vec<String>,
    pub jwt_secret: Secret,
    pub jwt_secret_is_default: bool,
    pub admin_token: Option<Secret>,
    pub queue: QueueDefaults,
    pub hold_ttl_secs: u64,
    pub auto_migrate: bool,
    pub log_format: LogFormat,
    pub production: bool,
    /// How long a seat lock may live: it guards only the short hold transaction.
    pub lock_ttl: Duration,
    /// How often the hold-expiry sweep runs (whole seconds: tokio-cron-scheduler's resolution).
    pub sweep_interval_secs: u64,
    /// Grace period for in-flight requests after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// "Lame duck" time after SIGTERM: still serving, but `/readyz` says 503 and every
    /// response carries `Connection: close`, so balancers and clients move away first.
    pub shutdown_drain: Duration,
    /// Tokio worker threads; `None` = one per core.
    pub worker_threads: Option<usize>,
    pub rate_limits: RateLimits,
    /// Slow clients get this long to send their request headers.
    pub header_read_timeout: Duration,
    /// Most event streams one instance keeps open (0 = no cap); past it a stream is refused
    /// with 503 and the page polls instead.
    pub sse_max_streams: usize,
    pub outbox: OutboxSettings,
    /// Gateway mode; `None` when `UPSTREAM_URL` is unset.
    pub upstream: Option<UpstreamSettings>,
}

impl Settings {
    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is not worth refusing to start over.
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds settings from any key lookup; tests pass a map instead of mutating the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get: &get };
        let production = matches!(
            env.raw("QUEUEGATE_ENV").as_deref(),
            Some("production") | Some("prod")
        );
        let redis_url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        check_redis_url("REDIS_URL", &redis_url)?;
        let redlock_urls = match env.raw("REDLOCK_URLS") {
            None => {
                if Topology::of_url(&redis_url) != Some(Topology::Single) {
                    return Err(env.error(
                        "REDLOCK_URLS",
                        String::new(),
                        "must be set when REDIS_URL is a cluster or sentinel URL (it defaults to REDIS_URL): list independent plain Redis masters, redis://host:port,…",
                    ));
                }
                vec![redis_url.clone()]
            }
            Some(raw) => {
                let urls: Vec<String> = raw
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                if urls.is_empty() {
                    return Err(env.error("REDLOCK_URLS", raw, "at least one Redis URL"));
                }
                for u in &urls {
                    check_redis_url("REDLOCK_URLS", u)?;
                }
                urls
            }
        };
        let (jwt_secret, jwt_secret_is_default) = match env.raw("JWT_SECRET") {
            Some(s) if s.len() >= 32 => (Secret(s), false),
            Some(s) => {
                return Err(env.error(
                    "JWT_SECRET",
                    "<hidden>".into(),
                    &format!("must be at least 32 bytes (got {})", s.len()),
                ));
            }
            None if production => {
                return Err(env.error(
                    "JWT_SECRET",
                    String::new(),
                    "required when QUEUEGATE_ENV=production",
                ));
            }
            None => (Secret::new(DEV_JWT_SECRET), true),
        };
        let admin_token = match env.raw("ADMIN_TOKEN").filter(|s| !s.is_empty()) {
            Some(t) if t.len() < 16 => {
                return Err(env.error(
                    "ADMIN_TOKEN",
                    "<hidden>".into(),
                    "must be at least 16 bytes",
                ));
            }
            other => other.map(Secret),
        };
        let database_url = env.string("DATABASE_URL", "mysql://root@127.0.0.1:3306/queuegate");
        check_mysql_url("DATABASE_URL", &database_url)?;
        let database_replica_url = env.raw("DATABASE_REPLICA_URL").filter(|s| !s.is_empty());
        if let Some(u) = &database_replica_url {
            check_mysql_url("DATABASE_REPLICA_URL", u)?;
        }
        let log_format = match env.raw("LOG_FORMAT").as_deref() {
            None | Some("human") | Some("text") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(env.error("LOG_FORMAT", other.into(), "expected `human` or `json`"));
            }
        };
        let listen_raw = env.string("LISTEN_ADDR", "127.0.0.1:8080");
        let listen_addr = listen_raw
            .parse()
            .map_err(|_| env.error("LISTEN_ADDR", listen_raw.clone(), "expected host:port"))?;
        let prefix = env.string("REDIS_KEY_PREFIX", "qg");
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(env.error(
                "REDIS_KEY_PREFIX",
                prefix,
                "letters, digits, '-' or '_' only",
            ));
        }
        Ok(Settings {
            listen_addr,
            database_url,
            database_replica_url,
            database_max_connections: env.int("DATABASE_MAX_CONNECTIONS", 20, 1, 1000)? as u32,
            redis_url,
            redis_key_prefix: prefix,
            redlock_urls,
            jwt_secret,
            jwt_secret_is_default,
            admin_token,
            queue: QueueDefaults {
                tick_ms: env.int("QUEUE_TICK_MS", 1000, 100, 60_000)?,
                admit_per_tick: env.int("QUEUE_ADMIT_PER_TICK", 100, 0, 100_000)?,
                max_active: env.int("QUEUE_MAX_ACTIVE", 1000, 0, 1_000_000)?,
                access_ttl_secs: env.int("ACCESS_TTL_SECS", 600, 1, 86_400)?,
                idle_secs: env.int("QUEUE_IDLE_SECS", 120, 1, 86_400)?,
            },
            hold_ttl_secs: env.int("HOLD_TTL_SECS", 300, 1, 86_400)?,
            auto_migrate: env.bool("AUTO_MIGRATE", true)?,
            log_format,
            production,
            lock_ttl: Duration::from_millis(env.int("LOCK_TTL_MS", 2000, 50, 60_000)?),
            sweep_interval_secs: env.int("SWEEP_INTERVAL_SECS", 5, 1, 3600)?,
            shutdown_grace: Duration::from_secs(env.int("SHUTDOWN_GRACE_SECS", 10, 0, 600)?),
            shutdown_drain: Duration::from_millis(env.int("SHUTDOWN_DRAIN_MS", 1000, 0, 60_000)?),
            worker_threads: match env.int("WORKER_THREADS", 0, 0, 1024)? {
                0 => None,
                n => Some(n as usize),
            },
            rate_limits: RateLimits {
                join_per_user: env.rate("RATE_JOIN_PER_MIN", 30)?,
                charge_per_user: env.rate("RATE_CHARGE_PER_MIN", 30)?,
                hold_per_user: env.rate("RATE_HOLD_PER_MIN", 60)?,
                per_address: env.rate("RATE_ADDRESS_PER_MIN", 0)?,
                trusted_proxies: env.addresses("TRUSTED_PROXIES")?,
            },
            header_read_timeout: Duration::from_secs(env.int(
                "HEADER_READ_TIMEOUT_SECS",
                10,
                1,
                300,
            )?),
            sse_max_streams: env.int("SSE_MAX_STREAMS", 20_000, 0, 10_000_000)? as usize,
            outbox: OutboxSettings {
                relay: env.bool("OUTBOX_RELAY", true)?,
                relay_interval: Duration::from_millis(env.int("OUTBOX_RELAY_MS", 500, 50, 1000)?),
                retention_hours: env.int("OUTBOX_RETENTION_HOURS", 24, 1, 24 * 90)?,
                events_maxlen: env.int("EVENTS_MAXLEN", 1_000_000, 1000, 1_000_000_000)?,
            },
            upstream: upstream(&env)?,
        })
    }
}

/// Reads the `UPSTREAM_*` variables; all but `UPSTREAM_URL` are ignored while it is unset.
fn upstream(env: &Env<'_>) -> Result<Option<UpstreamSettings>, ConfigError> {
    let Some(url) = env.raw("UPSTREAM_URL") else {
        return Ok(None);
    };
    let base =
        upstream_base(&url).map_err(|reason| env.error("UPSTREAM_URL", url.clone(), reason))?;
    let paths_raw = env.string("UPSTREAM_PATHS", "/");
    let paths = upstream_paths(&paths_raw)
        .map_err(|reason| env.error("UPSTREAM_PATHS", paths_raw.clone(), &reason))?;
    let concert_id = match env.raw("UPSTREAM_CONCERT_ID") {
        None => {
            return Err(env.error(
                "UPSTREAM_CONCERT_ID",
                String::new(),
                "required when UPSTREAM_URL is set (the concert whose line guards UPSTREAM_PATHS)",
            ));
        }
        Some(raw) => ConcertId::from_path(&raw).ok_or_else(|| {
            env.error(
                "UPSTREAM_CONCERT_ID",
                raw,
                "expected a concert id (a positive integer)",
            )
        })?,
    };
    let identity_key = match env.raw("UPSTREAM_IDENTITY_KEY") {
        Some(k) if k.len() >= 32 => Some(Secret(k)),
        Some(k) => {
            return Err(env.error(
                "UPSTREAM_IDENTITY_KEY",
                "<hidden>".into(),
                &format!("must be at least 32 bytes (got {})", k.len()),
            ));
        }
        None => None,
    };
    Ok(Some(UpstreamSettings {
        base,
        paths,
        concert_id,
        connect_timeout: Duration::from_millis(env.int(
            "UPSTREAM_CONNECT_TIMEOUT_MS",
            2000,
            1,
            60_000,
        )?),
        first_byte_timeout: Duration::from_millis(env.int(
            "UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
            30_000,
            1,
            600_000,
        )?),
        identity_key,
    }))
}

/// `http://host[:port][/]` → `http://host[:port]`. TLS to the origin is not spoken: queuegate
/// sits next to the origin on a private network, and TLS is ended in front of queuegate.
fn upstream_base(url: &str) -> Result<String, &'static str> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(
            "https upstreams are not supported: reach the origin over plain http:// on a private network (TLS ends in front of queuegate)",
        );
    }
    if !lower.starts_with("http://") {
        return Err("expected http://host:port");
    }
    let uri: hyper::Uri = url.parse().map_err(|_| "expected http://host:port")?;
    let authority = uri.authority().ok_or("expected http://host:port")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported");
    }
    if authority.host().is_empty() {
        return Err("expected http://host:port");
    }
    if uri.path() != "/" || uri.query().is_some() || url.ends_with('?') {
        return Err(
            "expected http://host:port with no path or query (paths are forwarded as they are)",
        );
    }
    Ok(format!("http://{}", authority.as_str()))
}

/// Comma-separated absolute path prefixes, each of plain segments (no `.`/`..`, no empty
/// segment, no `%`, `?`, `#`, backslash, space or control character), none inside queuegate's
/// own paths (`/v1`, `/concerts`, …). A trailing `/` is dropped; `/` alone means "everything
/// that is not queuegate's own".
fn upstream_paths(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.starts_with('/') {
            return Err(format!("`{p}` must start with /"));
        }
        if p.bytes().any(|b| {
            b.is_ascii_control() || matches!(b, b' ' | b'%' | b'?' | b'#' | b'\\') || !b.is_ascii()
        }) {
            return Err(format!("`{p}` may hold only plain path characters"));
        }
        let trimmed = if p == "/" { p } else { p.trim_end_matches('/') };
        if trimmed != "/" {
            let segments: Vec<&str> = trimmed[1..].split('/').collect();
            if segments
                .iter()
                .any(|s| s.is_empty() || *s == "." || *s == "..")
            {
                return Err(format!("`{p}` has an empty, `.` or `..` segment"));
            }
            if OWN_PATH_SEGMENTS.contains(&segments[0]) {
                return Err(format!(
                    "`{p}` is inside queuegate's own paths (/{}), which are never forwarded",
                    segments[0]
                ));
            }
        }
        if !out.iter().any(|q| q == trimmed) {
            out.push(trimmed.to_owned());
        }
    }
    if out.is_empty() {
        return Err("expected comma-separated path prefixes such as /shop".into());
    }
    Ok(out)
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value if set and not blank (a blank variable means "use the default").
    fn raw(&self, key: &str) -> Option<String> {
        (self.get)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    fn int(&self, key: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.error(key, raw, &format!("expected an integer in {min}..={max}"))),
        }
    }

    /// A per-minute rate; the burst is a sixth of it (ten seconds' worth), at least 5.
    fn rate(&self, key: &'static str, default: u64) -> Result<Rate, ConfigError> {
        let per_minute = self.int(key, default, 0, 1_000_000)? as u32;
        Ok(Rate {
            per_minute,
            burst: (per_minute / 6).max(5),
        })
    }

    fn addresses(&self, key: &'static str) -> Result<Vec<std::net::IpAddr>, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    self.error(key, raw.clone(), "expected comma-separated IP addresses")
                })
            })
            .collect()
    }

    fn bool(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(self.error(key, other.into(), "expected true or false")),
        }
    }

    fn error(&self, var: &'static str, value: String, reason: &str) -> ConfigError {
        ConfigError {
            var,
            value,
            reason: reason.to_owned(),
        }
    }
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

fn check_redis_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
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

fn check_mysql_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
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
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.redlock_urls, vec!["redis://127.0.0.1:6379".to_string()]);
        assert_eq!(s.queue.tick_ms, 1000);
        assert_eq!(s.queue.admit_per_tick, 100);
        assert_eq!(s.queue.max_active, 1000);
        assert_eq!(s.queue.access_ttl_secs, 600);
        assert_eq!(s.queue.idle_secs, 120);
        assert_eq!(s.hold_ttl_secs, 300);
        assert!(s.auto_migrate);
        assert!(s.jwt_secret_is_default);
        assert!(s.admin_token.is_none());
        assert_eq!(
            s.outbox,
            OutboxSettings {
                relay: true,
                relay_interval: Duration::from_millis(500),
                retention_hours: 24,
                events_maxlen: 1_000_000,
            }
        );
    }

    #[test]
    fn outbox_settings_are_bounded() {
        let s = settings(&[
            ("OUTBOX_RELAY", "off"),
            ("OUTBOX_RELAY_MS", "1000"),
            ("OUTBOX_RETENTION_HOURS", "1"),
            ("EVENTS_MAXLEN", "5000"),
        ])
        .unwrap();
        assert!(!s.outbox.relay);
        assert_eq!(s.outbox.relay_interval, Duration::from_millis(1000));
        assert_eq!(s.outbox.retention_hours, 1);
        assert_eq!(s.outbox.events_maxlen, 5000);
        for (var, bad) in [
            ("OUTBOX_RELAY_MS", "1001"),
            ("OUTBOX_RELAY_MS", "10"),
            ("OUTBOX_RETENTION_HOURS", "0"),
            ("EVENTS_MAXLEN", "10"),
            ("OUTBOX_RELAY", "sometimes"),
        ] {
            assert_eq!(settings(&[(var, bad)]).unwrap_err().var, var, "{var}={bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = settings(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-top"),
            ("ADMIN_TOKEN", "admin-token-very-secret"),
        ])
        .unwrap();
        let dump = format!("{s:?}");
        assert!(!dump.contains("0123456789abcdef"), "{dump}");
        assert!(!dump.contains("very-secret"), "{dump}");
        assert_eq!(s.admin_token.unwrap().expose(), "admin-token-very-secret");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = settings(&[("QUEUE_TICK_MS", "abc")]).unwrap_err();
        assert_eq!(e.var, "QUEUE_TICK_MS");
        let e = settings(&[("QUEUE_TICK_MS", "10")]).unwrap_err();
        assert!(e.to_string().contains("100..=60000"), "{e}");
        assert_eq!(
            settings(&[("AUTO_MIGRATE", "maybe")]).unwrap_err().var,
            "AUTO_MIGRATE"
        );
        assert_eq!(
            settings(&[("LISTEN_ADDR", "nope")]).unwrap_err().var,
            "LISTEN_ADDR"
        );
        assert_eq!(
            settings(&[("REDLOCK_URLS", " , ")]).unwrap_err().var,
            "REDLOCK_URLS"
        );
    }

    #[test]
    fn production_requires_a_real_secret_and_never_echoes_it() {
        let e = settings(&[("QUEUEGATE_ENV", "production")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
        let e = settings(&[("JWT_SECRET", "short-secret")]).unwrap_err();
        assert!(!e.to_string().contains("short-secret"));
        let s = settings(&[
            ("QUEUEGATE_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert!(!s.jwt_secret_is_default);
    }

    const GATEWAY: &[(&str, &str)] = &[
        ("UPSTREAM_URL", "http://127.0.0.1:8081"),
        ("UPSTREAM_CONCERT_ID", "7"),
    ];

    fn gateway(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut pairs = GATEWAY.to_vec();
        pairs.extend_from_slice(extra);
        settings(&pairs)
    }

    #[test]
    fn gateway_mode_is_off_by_default_and_reads_its_settings() {
        assert!(settings(&[]).unwrap().upstream.is_none());
        // Without UPSTREAM_URL the other UPSTREAM_* variables change nothing.
        assert!(
            settings(&[("UPSTREAM_PATHS", "/shop")])
                .unwrap()
                .upstream
                .is_none()
        );
        let u = gateway(&[]).unwrap().upstream.unwrap();
        assert_eq!(u.base, "http://127.0.0.1:8081");
        assert_eq!(u.paths, vec!["/".to_string()]);
        assert_eq!(u.concert_id.get(), 7);
        assert_eq!(u.connect_timeout, Duration::from_millis(2000));
        assert_eq!(u.first_byte_timeout, Duration::from_millis(30_000));
        assert!(u.identity_key.is_none());
        let u = gateway(&[
            ("UPSTREAM_URL", "http://origin.internal/"),
            ("UPSTREAM_PATHS", "/shop/, /tickets ,/shop"),
            ("UPSTREAM_CONNECT_TIMEOUT_MS", "150"),
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "900"),
            (
                "UPSTREAM_IDENTITY_KEY",
                "origin-shared-key-0123456789abcdef",
            ),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(u.base, "http://origin.internal");
        assert_eq!(u.paths, vec!["/shop".to_string(), "/tickets".to_string()]);
        assert_eq!(u.connect_timeout, Duration::from_millis(150));
        assert_eq!(u.first_byte_timeout, Duration::from_millis(900));
        assert!(!format!("{u:?}").contains("origin-shared-key"));
    }

    #[test]
    fn bad_gateway_values_name_the_variable() {
        let e = gateway(&[("UPSTREAM_URL", "https://shop.example")]).unwrap_err();
        assert_eq!(e.var, "UPSTREAM_URL");
        assert!(
            e.to_string().contains("https upstreams are not supported"),
            "{e}"
        );
        for url in [
            "shop.example:80",
            "ftp://shop.example",
            "http://",
            "http://user:pw@shop.example",
            "http://shop.example/base",
            "http://shop.example/?x=1",
        ] {
            assert_eq!(
                gateway(&[("UPSTREAM_URL", url)]).unwrap_err().var,
                "UPSTREAM_URL",
                "{url}"
            );
        }
        let e = settings(&[("UPSTREAM_URL", "http://127.0.0.1:8081")]).unwrap_err();
        assert_eq!(e.var, "UPSTREAM_CONCERT_ID");
        for id in ["0", "abc", "-3", "1.5"] {
            assert_eq!(
                gateway(&[("UPSTREAM_CONCERT_ID", id)]).unwrap_err().var,
                "UPSTREAM_CONCERT_ID"
            );
        }
        for paths in [
            "shop",
            "/v1",
            "/concerts/3",
            "/assets",
            "/docs/x",
            "/shop/../v1",
            "//shop",
            "/shop//x",
            "/sh op",
            "/shop?x",
            "/%2e%2e",
            "/shop\\x",
            " , ",
        ] {
            assert_eq!(
                gateway(&[("UPSTREAM_PATHS", paths)]).unwrap_err().var,
                "UPSTREAM_PATHS",
                "{paths}"
            );
        }
        assert_eq!(
            gateway(&[("UPSTREAM_CONNECT_TIMEOUT_MS", "0")])
                .unwrap_err()
                .var,
            "UPSTREAM_CONNECT_TIMEOUT_MS"
        );
        assert_eq!(
            gateway(&[("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "soon")])
                .unwrap_err()
                .var,
            "UPSTREAM_FIRST_BYTE_TIMEOUT_MS"
        );
        let e = gateway(&[("UPSTREAM_IDENTITY_KEY", "short-key")]).unwrap_err();
        assert_eq!(e.var, "UPSTREAM_IDENTITY_KEY");
        assert!(!e.to_string().contains("short-key"));
    }

    #[test]
    fn own_paths_are_recognised() {
        // `//…` counts as our own too: such a path is never forwarded (and never becomes a
        // return path that a browser would read as another host).
        for p in [
            "/",
            "",
            "/v1",
            "/v1/queue",
            "/concerts/1",
            "/assets/app.js",
            "/metrics",
            "//evil.example/shop",
        ] {
            assert!(is_own_path(p), "{p}");
        }
        for p in ["/shop", "/shop/v1", "/v1x", "/concertsx/1"] {
            assert!(!is_own_path(p), "{p}");
        }
    }

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

    #[test]
    fn redis_urls_take_three_forms_and_lock_masters_only_one() {
        let cluster = "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001";
        let sentinel =
            "redis-sentinel://127.0.0.1:26379/0?node=127.0.0.1:26380&sentinelServiceName=qg";
        assert!(
            settings(&[("REDIS_URL", cluster)]).is_err(),
            "the lock masters default to REDIS_URL"
        );
        let s = settings(&[
            ("REDIS_URL", cluster),
            ("REDLOCK_URLS", "redis://127.0.0.1:6379"),
        ]);
        assert_eq!(s.unwrap().redis_url, cluster);
        assert!(settings(&[("REDIS_URL", sentinel), ("REDLOCK_URLS", "redis://a:1")]).is_ok());
        let e = settings(&[("REDLOCK_URLS", cluster)]).unwrap_err();
        assert_eq!(e.var, "REDLOCK_URLS");
        assert!(e.to_string().contains("independent"), "{e}");
        assert_eq!(
            settings(&[("REDIS_URL", "http://x")]).unwrap_err().var,
            "REDIS_URL"
        );
    }

    #[test]
    fn redlock_urls_split_on_commas() {
        let s = settings(&[("REDLOCK_URLS", "redis://a:1, redis://b:2,redis://c:3")]).unwrap();
        assert_eq!(s.redlock_urls.len(), 3);
        assert_eq!(s.redlock_urls[1], "redis://b:2");
    }
}
