//! `tunnel`: what an open WebSocket costs in gateway mode. This tool is the origin itself, on
//! `--origin` (the gateway-mode instance's `UPSTREAM_URL`): it answers an upgrade with `101` and
//! then echoes every byte. Admitted visitors open tunnels through the gateway, as many as one
//! visitor may hold (8 each), and the scenario measures:
//! - the gateway's resident memory per open tunnel (`--gateway-pid`);
//! - echo round trips of 64 bytes on `--connections` tunnels, closed loop, through the gateway
//!   against the same round trips on tunnels straight to the origin, alternating (three rounds,
//!   so the machine's noise falls on both): round trips a second, latency, and the gateway's CPU
//!   per round trip.
//!
//! Pass: every tunnel opened (`101`) and every echo came back intact. The figures are for
//! capacity planning (BENCHMARKS.md); no target is set for them.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Tunnels one visitor may hold on an instance (`gateway::tunnel::MAX_PER_VISITOR`).
const PER_VISITOR: usize = 8;
const ROUNDS: usize = 3;
const MESSAGE: usize = 64;

pub async fn tunnel(o: &Options) -> Result<bool, Error> {
    let origin = o.origin.ok_or(
        "tunnel needs --origin HOST:PORT (where this tool runs the echo origin named by the gateway's UPSTREAM_URL)",
    )?;
    let concert = o
        .concert
        .ok_or("tunnel needs --concert ID (the gateway's UPSTREAM_CONCERT_ID)")?;
    let path: Arc<str> = Arc::from(o.path.as_deref().unwrap_or("/live"));
    tokio::spawn(echo_origin(TcpListener::bind(origin).await?));

    let n = o.users.unwrap_or(64).max(1);
    let t = Instant::now();
    let users = minted_users(o, n)?;
    let queue_tokens = join_all(o, concert, &users).await?;
    let access = wait_admitted(o, &queue_tokens).await?;
    println!(
        "setup: {n} visitors admitted in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Memory: every visitor opens as many tunnels as it may hold.
    let rss_before = o.gateway_pid.and_then(rss_kib);
    let t = Instant::now();
    let mut gated = Vec::with_capacity(n * PER_VISITOR);
    for token in access.iter().cycle().take(n * PER_VISITOR) {
        let mut s = open(o.addr, &path, Some(token)).await?;
        // One round trip each, so both connections of every tunnel have carried bytes.
        round_trip(&mut s).await?;
        gated.push(s);
    }
    let opened = gated.len();
    let rss_after = o.gateway_pid.and_then(rss_kib);
    println!(
        "opened      {opened} tunnels through the gateway in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        println!(
            "memory      gateway RSS {:.1} MB → {:.1} MB: {:.1} KiB per open tunnel",
            a as f64 / 1024.0,
            b as f64 / 1024.0,
            b.saturating_sub(a) as f64 / opened as f64
        );
    }

    // Round trips on `connections` tunnels each way, alternating.
    let c = o.connections.min(gated.len()).max(1);
    let mut direct = Vec::with_capacity(c);
    for _ in 0..c {
        direct.push(open(origin, &path, None).await?);
    }
    gated.truncate(c);
    let phase = (o.duration / ROUNDS as u32).clamp(Duration::from_secs(2), Duration::from_secs(10));
    let mut results = [
        (0usize, Duration::ZERO, Vec::new()),
        (0, Duration::ZERO, Vec::new()),
    ];
    let mut gateway_cpu = Duration::ZERO;
    for _ in 0..ROUNDS {
        for (k, streams) in [&mut direct, &mut gated].into_iter().enumerate() {
            let cpu0 = o.gateway_pid.and_then(cpu_time);
            let (count, elapsed, latencies) =
                phase_of(std::mem::take(streams), phase, streams).await?;
            if k == 1
                && let (Some(a), Some(b)) = (cpu0, o.gateway_pid.and_then(cpu_time))
            {
                gateway_cpu += b.saturating_sub(a);
            }
            results[k].0 += count;
            results[k].1 += elapsed;
            results[k].2.extend(latencies);
        }
    }
    let mut rates = [0.0; 2];
    for (k, name) in ["straight to the origin", "through the gateway"]
        .iter()
        .enumerate()
    {
        let (count, elapsed, latencies) = &mut results[k];
        rates[k] = *count as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<24} {:>9.0} round trips/s   latency ms p50 {:.3}  p99 {:.3}  max {:.3}",
            rates[k],
            quantile(latencies, 0.5).unwrap_or(0.0),
            quantile(latencies, 0.99).unwrap_or(0.0),
            quantile(latencies, 1.0).unwrap_or(0.0),
        );
    }
    println!(
        "ratio       {:.2} of direct round trips",
        rates[1] / rates[0]
    );
    if o.gateway_pid.is_some() && results[1].0 > 0 {
        println!(
            "gateway CPU {:.1} µs per round trip (both directions)",
            gateway_cpu.as_secs_f64() * 1e6 / results[1].0 as f64
        );
    }
    println!("verdict     PASS ({opened} tunnels opened, every echo intact)");
    Ok(true)
}

/// Every stream does round trips for `limit`, closed loop; the streams come back in `back`.
async fn phase_of(
    streams: Vec<TcpStream>,
    limit: Duration,
    back: &mut Vec<TcpStream>,
) -> Result<(usize, Duration, Vec<f64>), Error> {
    let started = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < limit {
                    let t = Instant::now();
                    round_trip(&mut s).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, Error>((s, latencies))
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let (s, latencies) = t.await.map_err(|e| e.to_string())??;
        all.extend(latencies);
        back.push(s);
    }
    Ok((all.len(), started.elapsed(), all))
}

/// Sends 64 bytes and reads them back, checking they are the same.
async fn round_trip(s: &mut TcpStream) -> Result<(), Error> {
    let sent = [b'q'; MESSAGE];
    s.write_all(&sent).await?;
    let mut got = [0u8; MESSAGE];
    s.read_exact(&mut got).await?;
    if got != sent {
        return Err("an echo came back changed".into());
    }
    Ok(())
}

/// Asks `addr` to upgrade `path` to a WebSocket (with the access token as bearer, when given)
/// and returns the connection once it answered `101`.
async fn open(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<TcpStream, Error> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let head = read_head(&mut s).await?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("no tunnel: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok(s)
}

/// An HTTP head, byte by byte, so that nothing after it is consumed.
async fn read_head(s: &mut TcpStream) -> Result<String, Error> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await? == 0 {
            return Err("closed before the end of the head".into());
        }
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The origin: `101` to an upgrade, then an echo of every byte.
async fn echo_origin(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            if read_head(&mut s).await.is_err()
                || s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}
