//! Lua scripts: the only way queue state changes. Each lives as a file in `lua/`, compiled
//! in, and runs by EVALSHA routed to the node that owns its keys; a node that does not know the
//! script (restart, failover, a slot moved) answers NOSCRIPT, and the script is loaded *on that
//! node* and the call retried once, so nobody has to care.

use super::client::request_options;
use fred::prelude::*;
use fred::types::ClusterHash;
use fred::types::scripts::Script as FredScript;

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

    /// EVALSHA, loading the script first if the node that owns the keys does not know it.
    ///
    /// Sent as a custom command: fred implements `LuaInterface` for `Client`/`Pool` but not
    /// for `WithOptions`, so `with_options(..).evalsha(..)` would silently drop the options.
    pub async fn run<R>(&self, client: &Client, keys: Vec<Key>, args: Vec<Value>) -> FredResult<R>
    where
        R: FromValue,
    {
        // Every key of a call shares one hash tag, so the first names the node.
        let route = match keys.first() {
            Some(k) => ClusterHash::Custom(fred::util::redis_keyslot(k.as_bytes())),
            None => ClusterHash::Random,
        };
        match self.evalsha(client, &route, &keys, &args).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                self.load(client, route.clone()).await?;
                self.evalsha(client, &route, &keys, &args).await
            }
            other => other,
        }
    }

    async fn evalsha<R: FromValue>(
        &self,
        client: &Client,
        route: &ClusterHash,
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
        let cmd = fred::types::CustomCommand::new_static("EVALSHA", route.clone(), false);
        client
            .with_options(&request_options())
            .custom(cmd, argv)
            .await
    }

    /// SCRIPT LOAD on the node `route` names (on a cluster, the node that owns the slot: a
    /// random node would leave the owner without the script).
    async fn load(&self, client: &Client, route: ClusterHash) -> FredResult<()> {
        client
            .with_options(&request_options())
            .custom::<String, Value>(
                fred::types::CustomCommand::new_static("SCRIPT", route, false),
                vec!["LOAD".into(), self.source()?.into()],
            )
            .await
            .map(|_| ())
    }

    /// SCRIPT LOAD on every primary (a warm-up at start; a replica promoted later loads its
    /// scripts on first use, through `run`).
    pub async fn load_everywhere(&self, client: &Client) -> FredResult<()> {
        use fred::interfaces::LuaInterface;
        client
            .script_load_cluster::<Value, _>(self.source()?)
            .await
            .map(|_| ())
    }

    fn source(&self) -> FredResult<String> {
        self.inner
            .lua()
            .map(|s| s.to_string())
            .ok_or_else(|| Error::new(ErrorKind::Unknown, "script source missing"))
    }
}
