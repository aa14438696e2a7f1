//! Open event streams: the gateway's memory and CPU per waiting fan on a stream.

use crate::client::Error;
use crate::harness::*;
use crate::options::Options;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub async fn sse(o: &Options) -> Result<bool, Error> {
    let n = o.users.unwrap_or(10_000);
    let concert = create_concert(o, 1, 100).await?;
    set_queue(o, concert.id, json!({"admit_per_tick": 0})).await?;
    let users = minted_users(o, n)?;
    let tokens = join_all(o, concert.id, &users).await?;
    let rss_before = o.gateway_pid.and_then(rss_kib);
    let opened = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for t in tokens {
        let (opened, admitted) = (opened.clone(), admitted.clone());
        let addr = o.addr;
        streams.push(tokio::spawn(async move {
            stream_until_admitted(addr, &t, &opened, &admitted).await
        }));
        // Pace the connects a little so the accept queue never overflows.
        if streams.len() % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let limit = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < n && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_after = started.elapsed();
    println!("== sse: {n} open event streams on one instance ==");
    println!(
        "opened {} streams in {:.1} s",
        opened.load(Ordering::Relaxed),
        open_after.as_secs_f64()
    );
    // Hold them open for a while and watch the gateway.
    let hold = o.duration.min(Duration::from_secs(10));
    let cpu0 = o.gateway_pid.and_then(cpu_time);
    tokio::time::sleep(hold).await;
    let (cpu1, rss1) = (
        o.gateway_pid.and_then(cpu_time),
        o.gateway_pid.and_then(rss_kib),
    );
    let mut ok = opened.load(Ordering::Relaxed) == n;
    if let (Some(rss0), Some(cpu0), Some(cpu1), Some(rss1)) = (rss_before, cpu0, cpu1, rss1) {
        let cpu_pct = cpu1.saturating_sub(cpu0).as_secs_f64() / hold.as_secs_f64() * 100.0;
        println!(
            "gateway     RSS {:.1} MB with streams open (was {:.1} MB idle), CPU {cpu_pct:.1}% of one core while idle-streaming",
            rss1 as f64 / 1024.0,
            rss0 as f64 / 1024.0
        );
        ok &= rss1 <= 150 * 1024;
    }
    // Open the gate: every stream must get its admitted event and end.
    let t = Instant::now();
    set_queue(
        o,
        concert.id,
        json!({"admit_per_tick": 100_000, "tick_ms": 100, "max_active": 1_000_000}),
    )
    .await?;
    for s in streams {
        let _ = tokio::time::timeout(Duration::from_secs(60), s).await;
    }
    let got = admitted.load(Ordering::Relaxed);
    println!(
        "admitted    {got}/{n} streams received `admitted` and ended, {:.1} s after admission opened",
        t.elapsed().as_secs_f64()
    );
    ok &= got == n;
    println!("verdict     {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// Opens one event stream and reads it to its end; counts the open and the admitted event.
async fn stream_until_admitted(
    addr: SocketAddr,
    token: &str,
    opened: &AtomicUsize,
    admitted: &AtomicUsize,
) -> Result<(), Error> {
    use http_body_util::BodyExt;
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get("/v1/queue/events")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("events: {}", resp.status()).into());
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut seen = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
            if seen.contains("event: admitted") {
                admitted.fetch_add(1, Ordering::Relaxed);
            }
            if seen.len() > 4096 {
                seen.drain(..seen.len() - 64);
            }
        }
    }
    Ok(())
}
