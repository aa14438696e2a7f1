//! The accept loop: HTTP/1.1 with keep-alive, a header-read timeout against slow clients, and
//! graceful shutdown — on the signal we keep serving a moment as a lame duck, stop accepting,
//! let in-flight requests finish, and give up after a bounded wait.
//!
//! Connections whose first request starts with one of `raw_streams` (long-lived event streams)
//! are served on the raw socket (`raw.rs`) instead of by hyper; both run the same pipeline.
//!
//! Connections may be upgraded (gateway mode passes WebSockets to the origin), so the drain is
//! our own: hyper-util's graceful watcher does not take an upgradeable connection. Every
//! connection task holds a receiver of one `watch` channel; the shutdown flips it, each
//! connection finishes its request in flight and closes, and the shutdown waits until every
//! receiver is gone.

use super::handler::Handler;
use super::lifecycle::Lifecycle;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Slow clients get this long to send their request head.
    pub header_read_timeout: Duration,
    /// After the lame-duck phase, how long in-flight requests may take.
    pub grace: Duration,
    /// Lame duck: keep serving this long after the signal, with `Connection: close`.
    pub drain: Duration,
    /// Request-line prefixes (e.g. `GET /v1/queue/events`) served on the raw socket.
    pub raw_streams: &'static [&'static [u8]],
}

/// Everything one connection task needs.
struct Shared<H> {
    handler: Arc<H>,
    lifecycle: Arc<Lifecycle>,
    config: ServerConfig,
    builder: http1::Builder,
}

/// Serves until `shutdown` resolves, then drains connections.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    lifecycle: Arc<Lifecycle>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.header_read_timeout)
        // No `max_headers`: hyper's default (100) parses into uninitialised stack arrays, while
        // any explicit cap makes it fill two 64-entry arrays on every request (~660
        // instructions each time, `scripts/instr-split.sh`). Size is what is bounded:
        // request line + headers above 32 KiB: 431 before any handler runs.
        .max_header_size(32 * 1024)
        .max_buf_size(64 * 1024);
    let shared = Arc::new(Shared {
        handler,
        lifecycle,
        config,
        builder,
    });
    let (drain_tx, graceful) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve(&shared, &graceful, stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    // Lame duck: keep serving for a moment, failing readiness and closing connections after
    // each response, so a balancer stops sending here before anything is cut off.
    shared.lifecycle.start_draining();
    let drain = shared.config.drain;
    tracing::info!(?drain, "shutdown requested");
    if !drain.is_zero() {
        let until = tokio::time::sleep(drain);
        tokio::pin!(until);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        serve(&shared, &graceful, stream, peer);
                    }
                }
                _ = &mut until => break,
            }
        }
    }
    tracing::info!("no longer accepting connections");
    drop(listener);
    drop(graceful);
    let grace = shared.config.grace;
    let _ = drain_tx.send(true);
    tokio::select! {
        _ = drain_tx.closed() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

/// Serves one accepted connection on its own task, watched by the graceful shutdown.
fn serve<H: Handler>(
    shared: &Arc<Shared<H>>,
    graceful: &watch::Receiver<bool>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let shared = shared.clone();
    let mut leaving = graceful.clone();
    tokio::spawn(async move {
        let limit = shared.config.header_read_timeout;
        if super::raw::starts_with_any(&stream, shared.config.raw_streams, limit).await {
            // Event streams end with the process, as before: the drain does not wait for them.
            drop(leaving);
            // Boxed, like the hyper branch below: the task keeps only what its branch needs.
            Box::pin(super::raw::serve(
                &*shared.handler,
                &shared.lifecycle,
                stream,
                peer,
                limit,
            ))
            .await;
            return;
        }
        let for_service = shared.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let shared = for_service.clone();
            async move {
                let (parts, body) = req.into_parts();
                Ok::<_, Infallible>(
                    super::pipeline::handle(
                        &*shared.handler,
                        &shared.lifecycle,
                        parts,
                        Some(body),
                        peer,
                    )
                    .await,
                )
            }
        });
        let mut conn = Box::pin(
            shared
                .builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades(),
        );
        let ended = tokio::select! {
            biased;
            ended = conn.as_mut() => ended,
            _ = async { drop(leaving.wait_for(|leave| *leave).await) } => {
                // Finish the request in flight (if any), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
