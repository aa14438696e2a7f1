//! A Redis Cluster under many concerts: 30 concerts × 10,000 waiting fans, then status polls
//! spread over all of them. Reports, per shard (master): how many lines and keys it holds and
//! how much Redis CPU the poll phase cost it. Needs `--redis-url` to be the cluster's URL.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

struct Shard {
    port: u16,
    client: fred::prelude::Client,
}

/// The cluster's masters, each through a plain client of its own.
async fn masters(url: &str) -> Result<Vec<Shard>, Error> {
    use fred::prelude::ClientLike;
    let config = fred::prelude::Config::from_url(url)?;
    let hosts = match &config.server {
        fred::types::config::ServerConfig::Clustered { hosts, .. } => hosts.clone(),
        _ => return Err("shards needs --redis-url redis-cluster://…".into()),
    };
    let mut out = Vec::new();
    for h in hosts {
        let c = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&format!(
            "redis://{}:{}",
            h.host, h.port
        ))?)
        .build()?;
        c.init().await?;
        let role: Vec<fred::prelude::Value> = c
            .custom(
                fred::types::CustomCommand::new_static(
                    "ROLE",
                    fred::types::ClusterHash::Random,
                    false,
                ),
                Vec::<String>::new(),
            )
            .await?;
        if role.first().and_then(|v| v.as_string()).as_deref() == Some("master") {
            out.push(Shard {
                port: h.port,
                client: c,
            });
        }
    }
    out.sort_by_key(|s| s.port);
    Ok(out)
}

/// (CPU seconds used so far, keys) of one shard.
async fn figures(s: &Shard) -> Result<(f64, u64), Error> {
    use fred::prelude::ClientLike;
    let info: String = s.client.info(Some(fred::types::InfoKind::Cpu)).await?;
    let cpu: f64 = info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum();
    let keys: u64 = s
        .client
        .custom(
            fred::types::CustomCommand::new_static(
                "DBSIZE",
                fred::types::ClusterHash::Random,
                false,
            ),
            Vec::<String>::new(),
        )
        .await?;
    Ok((cpu, keys))
}

pub async fn shards(o: &Options) -> Result<bool, Error> {
    let concerts = 30;
    let per = o.users.unwrap_or(10_000);
    let shards = masters(&o.redis_url).await?;
    let mut tokens: Vec<Arc<str>> = Vec::new();
    let t = Instant::now();
    for _ in 0..concerts {
        let concert = create_concert(o, 1, 100).await?;
        set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
        let users = minted_users(o, per)?;
        let joined = join_all(o, concert.id, &users).await?;
        // Every tenth fan polls in the measured phase.
        tokens.extend(joined.into_iter().step_by(10));
    }
    println!(
        "shards: {concerts} concerts × {per} fans joined in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let before: Vec<(f64, u64)> =
        futures_util::future::try_join_all(shards.iter().map(figures)).await?;
    let tk = Arc::new(tokens);
    let (mut rec, elapsed) = measure(o.addr, o.connections, o.requests, o.duration, move |i| {
        Spec::get("/v1/queue/status", Some(tk[(i * 7919) % tk.len()].clone()))
    })
    .await?;
    let after: Vec<(f64, u64)> =
        futures_util::future::try_join_all(shards.iter().map(figures)).await?;
    rec.summary(
        &format!(
            "shards: polls over {concerts} concerts, {} connections",
            o.connections
        ),
        elapsed,
    )
    .print();
    let polls = rec.count().max(1) as f64;
    let mut max_keys = 0u64;
    let mut total_keys = 0u64;
    for (s, ((c0, _), (c1, keys))) in shards.iter().zip(before.iter().zip(&after)) {
        let cpu = c1 - c0;
        println!(
            "  shard :{}  keys {keys:>8}  Redis CPU {:.2} s over the poll phase = {:.1} % of a core, {:.2} µs per poll overall",
            s.port,
            cpu,
            cpu / elapsed.as_secs_f64() * 100.0,
            cpu / polls * 1e6
        );
        max_keys = max_keys.max(*keys);
        total_keys += keys;
    }
    let balanced = shards.len() >= 2 && max_keys * 2 <= total_keys;
    let ok = rec.status(200) == rec.count() && balanced;
    println!(
        "verdict     {} (all 200: {}; no shard holds more than half of the keys: {balanced})",
        if ok { "PASS" } else { "FAIL" },
        rec.status(200) == rec.count()
    );
    Ok(ok)
}
