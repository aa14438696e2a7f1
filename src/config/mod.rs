//! Typed configuration, read once from the environment (and a `.env` file) at start.
//!
//! Every knob has a safe local default so `queuegate serve` works on a laptop with nothing set;
//! the only exception is `JWT_SECRET` in production mode, because a guessable signing key would
//! let anyone mint access tokens. A bad value stops the program with one line naming the variable.

mod env;
mod guarded;
mod upstream;
mod values;

pub use guarded::{GuardedPath, OWN_PATH_SEGMENTS, is_own_path};
pub use upstream::{ClientCert, UpstreamSettings};
pub use values::*;

use env::Env;
use std::net::SocketAddr;
use std::time::Duration;
use upstream::upstream;
use values::{check_mysql_url, check_redis_url};

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
    /// Tokio worker threads; `None` = one less than the cores, at least one (`cli::default_workers`).
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
            Some(s) if s.len() >= 32 => (Secret::new(s), false),
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
            other => other.map(Secret::new),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings read from exactly these variables (the tests' environment).
    pub(super) fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
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
