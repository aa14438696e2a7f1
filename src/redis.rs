//! Connections to Redis and the Lua scripts that are the only way queue state changes.
//!
//! Scripts live as files in `lua/` and are compiled into the binary. They are loaded with
//! SCRIPT LOAD at start and run by EVALSHA; a server that lost its script cache (restart,
//! failover) answers NOSCRIPT, and we load and retry once, so nobody has to care.
//!
//! Every call fails fast while the connection is down instead of queueing behind a reconnect:
//! a fan's request should get a 503 with `Retry-After` in milliseconds, not hang.

use fred::prelude::*;
use fred::types::config::Options;
use fred::types::scripts::Script as FredScript;
use std::time::Duration;

/// One Lua script: its source (for reloading) and its SHA1 (for EVALSHA).
pub struct Script {
    pub name: &'static str,
    inner: FredScript,
}

impl Script {
    pub fn new(name: &'static str, source: &'static str) -> Self {
        Script {
            name,
            inner: FredScript::from_lua(source),
        }
    }

    /// EVALSHA, loading the script first if the server does not know it.
    ///
    /// Sent as a custom command: fred implements `LuaInterface` for `Client`/`Pool` but not
    /// for `WithOptions`, so `with_options(..).evalsha(..)` would silently drop the options.
    pub async fn run<R>(&self, client: &Client, keys: Vec<Key>, args: Vec<Value>) -> FredResult<R>
    where
        R: FromValue,
    {
        match self.evalsha(client, &keys, &args).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                self.load(client).await?;
                self.evalsha(client, &keys, &args).await
            }
            other => other,
        }
    }

    async fn evalsha<R: FromValue>(
        &self,
        client: &Client,
        keys: &[Key],
        args: &[Value],
    ) -> FredResult<R> {
        let mut argv: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        argv.push(self.inner.sha1().clone().into());
        argv.push((keys.len() as i64).into());
        argv.extend(
            keys.iter()
                .map(|k| Value::Bytes(k.as_bytes().to_vec().into())),
        );
        argv.extend(args.iter().cloned());
        // Route by the first key (all of a call's keys share one hash tag).
        let hash = match keys.first() {
            Some(k) => fred::types::ClusterHash::Custom(fred::util::redis_keyslot(k.as_bytes())),
            None => fred::types::ClusterHash::Random,
        };
        let cmd = fred::types::CustomCommand::new_static("EVALSHA", hash, false);
        client
            .with_options(&request_options())
            .custom(cmd, argv)
            .await
    }

    pub async fn load(&self, client: &Client) -> FredResult<()> {
        let source = self
            .inner
            .lua()
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::Unknown, "script source missing"))?;
        client
            .with_options(&request_options())
            .custom::<String, Value>(
                fred::types::CustomCommand::new_static(
                    "SCRIPT",
                    fred::types::ClusterHash::Random,
                    false,
                ),
                vec!["LOAD".into(), source.into()],
            )
            .await
            .map(|_| ())
    }
}

/// Options for commands on a request path: fail at once while disconnected, bounded wait.
pub fn request_options() -> Options {
    Options {
        fail_fast: true,
        timeout: Some(Duration::from_millis(500)),
        max_attempts: Some(1),
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
    let mut b = Builder::from_config(Config::from_url(url)?);
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

/// Builds a client pool for the queue store. Connection happens in the background with
/// unlimited reconnects; callers may wait a bounded time for the first connection.
pub fn pool(url: &str, size: usize) -> Result<Pool, Error> {
    let policy = ReconnectPolicy::new_exponential(0, 100, 2_000, 2);
    let pool =
        builder(url, Duration::from_secs(2), Duration::from_secs(5), policy)?.build_pool(size)?;
    pool.connect_pool();
    Ok(pool)
}

/// Builds one client for one Redlock master. Each master is independent by design: no pool
/// sharing, its own reconnect loop, short timeouts so one dead master costs milliseconds.
pub fn lock_client(url: &str) -> Result<Client, Error> {
    let short = Duration::from_millis(500);
    let client = builder(url, short, short, ReconnectPolicy::new_constant(0, 250))?.build()?;
    client.connect();
    Ok(client)
}

/// Waits up to `limit` for a pool's first connection; false if it did not come up in time.
pub async fn wait_connected(pool: &Pool, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, pool.wait_for_connect()).await,
        Ok(Ok(()))
    )
}

/// PING with a short deadline, for readiness checks.
pub async fn ping(client: &Client) -> bool {
    client
        .with_options(&request_options())
        .ping::<String>(None)
        .await
        .is_ok()
}

/// Reply values as numbers and text, whatever encoding the server chose (RESP2 bulk strings
/// or RESP3 integers and doubles). Scripts return small mixed arrays; these read them.
pub fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub fn value_f64(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Double(d) => *d,
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

pub fn value_str(v: &Value) -> &str {
    match v {
        Value::String(s) => s,
        Value::Bytes(b) => std::str::from_utf8(b).unwrap_or(""),
        _ => "",
    }
}

/// Redis integers are signed; our ids and counters stay far below i64::MAX.
pub fn int(n: u64) -> Value {
    Value::Integer(n.min(i64::MAX as u64) as i64)
}
