//! Operational routes: liveness, readiness, metrics.

use crate::app::App;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::Resp;
use crate::http::response::{bytes, json};
use hyper::StatusCode;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
struct Ready {
    #[schema(value_type = String, example = "ok")]
    redis: &'static str,
    #[schema(value_type = String, example = "ok")]
    database: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    replica: Option<&'static str>,
    /// Redlock masters answering, e.g. `3/3`.
    redlock: String,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs", content_type = "text/plain", body = String)))]
pub fn healthz() -> Result<Resp, ApiError> {
    Ok(bytes(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"))
}

/// Ready when the queue store and the primary database answer. The lock quorum is reported
/// but does not decide readiness: without it holds fall back to the database-only path.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Redis and the database answer", body = Ready),
        (status = 503, description = "A dependency is down, or the instance is shutting down", body = Ready),
    ))]
pub async fn readyz(app: &App) -> Result<Resp, ApiError> {
    let (redis, database, masters_up) = tokio::join!(
        crate::redis::ping(app.queue.pool().next_connected()),
        Db::ping(app.db.primary()),
        app.redlock.masters_up(),
    );
    let replica = match &app.db.replica {
        Some(r) => Some(if Db::ping(&r.pool).await {
            "ok"
        } else {
            "down"
        }),
        None => None,
    };
    let up = |b: bool| if b { "ok" } else { "down" };
    let draining = app.draining.load(std::sync::atomic::Ordering::Relaxed);
    let status = if redis && database && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    metrics::gauge!("queuegate_redlock_masters_up").set(masters_up as f64);
    let mut resp = json(
        status,
        &Ready {
            redis: up(redis),
            database: up(database),
            replica,
            redlock: format!("{masters_up}/{}", app.redlock.masters()),
        },
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("2"),
        );
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub fn metrics(app: &App) -> Result<Resp, ApiError> {
    app.db.record_pool_metrics();
    Ok(bytes(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        app.metrics.render(),
    ))
}
