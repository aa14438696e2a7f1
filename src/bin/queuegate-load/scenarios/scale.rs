//! Status latency with a short line vs a very long one, and Redis bytes per waiting user.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

async fn redis_used_memory(url: &str) -> Result<u64, Error> {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    let info: String = client.info(Some(fred::types::InfoKind::Memory)).await?;
    let _ = client.quit().await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

pub async fn scale(o: &Options) -> Result<bool, Error> {
    let big = o.users.unwrap_or(1_000_000);
    let mut p99s = Vec::new();
    let mut ok = true;
    for n in [1_000usize, big] {
        let concert = create_concert(o, 1, 100).await?;
        set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
        let before = redis_used_memory(&o.redis_url).await?;
        let t = Instant::now();
        // Join in slices to bound memory of the tool; keep 1,000 tokens spread over the line.
        let mut sample: Vec<Arc<str>> = Vec::new();
        let slice = 50_000;
        let mut done = 0;
        while done < n {
            let k = slice.min(n - done);
            let users = minted_users(o, k)?;
            let tokens = join_all(o, concert.id, &users).await?;
            let step = (n / 1000).max(1);
            sample.extend(
                tokens
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| (done + i) % step == 0)
                    .map(|(_, t)| t),
            );
            done += k;
        }
        let after = redis_used_memory(&o.redis_url).await?;
        let per_user = after.saturating_sub(before) as f64 / n as f64;
        println!(
            "setup: {n} waiting users joined in {:.1} s; Redis +{:.1} MB = {per_user:.0} bytes per waiting user",
            t.elapsed().as_secs_f64(),
            after.saturating_sub(before) as f64 / 1e6
        );
        let sample = Arc::new(sample);
        let s2 = sample.clone();
        let (mut rec, elapsed) = measure(
            o.addr,
            o.connections,
            o.requests.min(100_000),
            o.duration,
            move |i| Spec::get("/v1/queue/status", Some(s2[i % s2.len()].clone())),
        )
        .await?;
        let s = rec.summary(&format!("scale: status with {n} waiting"), elapsed);
        s.print();
        p99s.push(s.p99_ms);
        ok &= rec.status(200) == rec.count();
        if n == big {
            ok &= per_user <= 150.0;
        }
        // Leave the big line in place only as long as needed.
        set_queue(
            o,
            concert.id,
            json!({"admit_per_tick": 100_000, "max_active": 0}),
        )
        .await?;
    }
    let ratio = p99s[1] / p99s[0].max(0.001);
    println!("p99 ratio   {ratio:.2} ({big} vs 1000 waiting)");
    ok &= ratio <= 1.5;
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
