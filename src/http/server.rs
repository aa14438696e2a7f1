//! The accept loop: HTTP/1.1 with keep-alive, a header-read timeout against slow clients, and
//! graceful shutdown — on the signal we stop accepting, let in-flight requests finish, and give
//! up after a bounded wait.

use crate::app::App;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves, then drains connections for at most `grace`.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(app.settings.header_read_timeout)
        .max_headers(64)
        // Request line + headers above 32 KiB: 431 before any handler runs.
        .max_header_size(32 * 1024)
        .max_buf_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                serve(&app, &builder, &graceful, stream, peer);
            }
            _ = &mut shutdown => break,
        }
    }
    // Lame duck: keep serving for a moment, failing readiness and closing connections after
    // each response, so a balancer stops sending here before anything is cut off.
    app.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let drain = app.settings.shutdown_drain;
    tracing::info!(?drain, "shutdown requested");
    if !drain.is_zero() {
        let until = tokio::time::sleep(drain);
        tokio::pin!(until);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        serve(&app, &builder, &graceful, stream, peer);
                    }
                }
                _ = &mut until => break,
            }
        }
    }
    tracing::info!("no longer accepting connections");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

/// Serves one accepted connection on its own task, watched by the graceful shutdown.
fn serve(
    app: &Arc<App>,
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let app = app.clone();
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        // An event stream as the first request is served on the raw socket (see `streams`).
        if super::streams::is_event_stream(&stream, app.settings.header_read_timeout).await {
            // Boxed, like the hyper branch below: the task keeps only what its branch needs.
            Box::pin(super::streams::serve(app, stream, peer)).await;
            return;
        }
        let service_app = app.clone();
        let service = service_fn(move |req| {
            let app = service_app.clone();
            async move { Ok::<_, Infallible>(super::pipeline::handle(app, req, peer).await) }
        });
        let conn = Box::pin(watcher.watch(builder.serve_connection(TokioIo::new(stream), service)));
        if let Err(e) = conn.await {
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
