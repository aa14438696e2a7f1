//! Operational routes: liveness, readiness, metrics.

use super::error::ApiError;
use super::state::Api;
use crate::http::Resp;
use crate::http::response::{bytes, json};
use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER};
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
    /// The queue store's kind: `single`, `cluster` or `sentinel`.
    #[schema(value_type = String, example = "cluster")]
    redis_topology: &'static str,
    /// Redis nodes (primaries) the queue store's clients are connected to.
    redis_nodes: usize,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs", content_type = "text/plain", body = String)))]
pub fn healthz() -> Result<Resp, ApiError> {
    Ok(bytes(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"))
}

/// Ready when the queue store and the primary database answer and the instance is not
/// leaving. The lock quorum is reported but does not decide readiness: without it holds fall
/// back to the database-only path.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Redis and the database answer", body = Ready),
        (status = 503, description = "A dependency is down, or the instance is shutting down", body = Ready),
    ))]
pub async fn readyz(api: &Api) -> Result<Resp, ApiError> {
    let r = api.probes.check().await;
    let up = |b: bool| if b { "ok" } else { "down" };
    let status = if r.ready() && !api.lifecycle.is_draining() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = json(
        status,
        &Ready {
            redis: up(r.redis),
            database: up(r.database),
            replica: r.replica.map(up),
            redlock: format!("{}/{}", r.redlock_up, r.redlock_masters),
            redis_topology: r.redis_topology,
            redis_nodes: r.redis_nodes,
        },
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("2"));
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub fn metrics(api: &Api) -> Result<Resp, ApiError> {
    Ok(bytes(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        api.metrics.render(),
    ))
}
