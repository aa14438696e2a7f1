//! Gateway mode over HTTP: the phase before routing that forwards protected paths, and the
//! grant-cookie endpoints the waiting page uses.
//!
//! A request for a protected path (see `gateway::Gateway::protects`) is answered here, never by
//! the route table:
//! - a live grant (our access token in `Authorization: Bearer`, or the grant cookie) whose
//!   admission is live right now → forwarded to the origin, its answer streamed back; a request
//!   asking for an upgrade (a WebSocket) → tunnelled, and the tunnel closed when the grant ends;
//! - otherwise a browser (`GET`/`HEAD` accepting `text/html`) → `303` to the line's waiting page
//!   with the path to come back to, and an API client → `403 NOT_ADMITTED` naming that page.
//!
//! The waiting page, once admitted, trades the access token for the grant cookie with
//! `POST /v1/gateway/session` and goes back to the validated return path.

use super::error::{ApiError, ErrorBody, respond};
use super::gate::{GatewayGrant, GrantSource};
use super::json::JsonObject;
use super::state::Api;
use crate::domain::ConcertId;
use crate::gateway::forward::Outgoing;
use crate::gateway::grant::{self, Identity};
use crate::gateway::{Gateway, GuardingLine, check_path, tunnel};
use crate::http::response::{empty, json, streamed};
use crate::http::{Req, Resp};
use crate::queue::model::{Access, Ended};
use crate::queue::service::Queue;
use crate::queue::view::expires_at;
use crate::tokens::{AccessToken, now_secs};
use hyper::header::{ACCEPT, CACHE_CONTROL, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The route label of every request answered by the gateway phase (metrics, logs).
pub const ROUTE: &str = "gateway";

/// Forwards a request for a path that `guard` guards, or tells the visitor where to queue.
pub async fn forward(
    api: &Api,
    gw: &Gateway,
    guard: GuardingLine<'_>,
    req: &mut Req,
) -> Result<Resp, ApiError> {
    if let Err(e) = check_path(&req.path) {
        guard.decisions.bad_path.increment(1);
        return Err(e.into());
    }
    let line = guard.concert;
    let (token, source) = match api
        .gate
        .gateway_grant(req, grant::COOKIE, line, guard.confirmed)
        .await?
    {
        GatewayGrant::Live(t, source) => (t, source),
        GatewayGrant::Missing => {
            return Ok(not_admitted(
                api,
                gw,
                guard,
                req,
                "you have not been admitted".into(),
                false,
            ));
        }
        GatewayGrant::Refused(reason, source) => {
            return Ok(not_admitted(
                api,
                gw,
                guard,
                req,
                reason,
                source == GrantSource::Cookie,
            ));
        }
    };
    let protocol = tunnel::asked(&req.headers);
    let visitor = protocol.as_ref().and_then(|_| req.take_upgrade());
    let peer = req.peer.ip();
    let tls = gw.over_tls(peer, &req.headers);
    let body = req.take_body();
    let out = Outgoing {
        method: req.method.clone(),
        path: &req.path,
        query: req.query.as_deref(),
        headers: std::mem::take(&mut req.headers),
        peer,
        peer_trusted: gw.trusted(peer),
        tls,
        request_id: &req.request_id,
        identity: Identity {
            user: token.user_id,
            concert: token.concert_id,
            exp: token.exp,
        },
        strip_authorization: source == GrantSource::Bearer,
    };
    if let (Some(protocol), Some(visitor)) = (protocol, visitor) {
        guard.decisions.tunnelled.increment(1);
        let queue = api.queue.clone();
        let ends = move |nudge, recheck| grant_ends(queue, token, nudge, recheck);
        let answer = gw.tunnel(out, body, protocol, visitor, ends).await?;
        return Ok(answer.map(streamed));
    }
    guard.decisions.forwarded.increment(1);
    let answer = gw.forward(out, body).await?;
    Ok(answer.map(streamed))
}

/// Resolves when a tunnel's grant ends: its admission is checked again when `nudge` rings (an
/// announced end) and every `recheck`, and the access token's expiry ends it at the latest. A
/// store that cannot answer ends it too, as it refuses a forward.
async fn grant_ends(
    queue: Arc<Queue>,
    t: AccessToken,
    nudge: tunnel::Nudge,
    recheck: Duration,
) -> tunnel::End {
    // Always listening while a check is in flight: an end announced after the check read the
    // store rings a listener that is already there, so the next wait ends at once.
    let mut nudged = std::pin::pin!(nudge.notified());
    nudged.as_mut().enable();
    loop {
        let left = t.exp.saturating_sub(now_secs());
        if left == 0 {
            return tunnel::End::Expired;
        }
        let rung = tokio::select! {
            _ = tokio::time::sleep(recheck.min(Duration::from_secs(left))) => false,
            _ = nudged.as_mut() => true,
        };
        if rung {
            nudged.set(nudge.notified());
            nudged.as_mut().enable();
        }
        match queue.check_access(&t).await {
            Ok(Access::Live) => {}
            Ok(Access::Ended(Ended::Expired)) => return tunnel::End::Expired,
            Ok(Access::Ended(_)) => return tunnel::End::Revoked,
            Err(e) => {
                tracing::warn!(error = %e, "could not confirm a tunnel's grant; closing it");
                return tunnel::End::Unconfirmed;
            }
        }
    }
}

/// No live grant for the guarding line: browsers go to its waiting page (with the way back), API clients
/// get the contract's error envelope naming it. When the cookie was refused, what in it admits
/// to nothing is dropped (all of it, when nothing is left) so the browser stops sending it; the
/// other lines' genuine grants stay.
fn not_admitted(
    api: &Api,
    gw: &Gateway,
    guard: GuardingLine<'_>,
    req: &Req,
    reason: String,
    cookie_refused: bool,
) -> Resp {
    let line = guard.concert;
    let queue_url = grant::waiting_url(line, &req.path, req.query.as_deref());
    let mut r = if is_browser(req) {
        guard.decisions.redirected.increment(1);
        let location =
            HeaderValue::from_str(&queue_url).unwrap_or_else(|_| HeaderValue::from_static("/"));
        let mut r = empty(StatusCode::SEE_OTHER);
        r.headers_mut().insert(LOCATION, location);
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        guard.decisions.refused.increment(1);
        respond(
            &ApiError::NotAdmitted {
                reason,
                queue_url,
                concert_id: line,
            },
            &req.request_id,
        )
    };
    if cookie_refused {
        let value = req.cookie(grant::COOKIE).unwrap_or_default();
        let kept = other_lines_grants(api, gw, value, line);
        if kept.grants.len() != grant::grants(value).count() {
            let secure = gw.over_tls(req.peer.ip(), &req.headers);
            let cookie = if kept.grants.is_empty() {
                grant::clear_cookie(secure)
            } else {
                grant::set_cookie(
                    &kept.grants,
                    kept.last_end.saturating_sub(now_secs()),
                    secure,
                )
            };
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
        }
    }
    r
}

/// The grants of a cookie worth keeping while `line`'s grant changes.
struct Kept<'v> {
    grants: Vec<&'v str>,
    /// The latest admission end among them (Unix seconds; 0 when none).
    last_end: u64,
}

/// The grants in the cookie `value` that are genuine and unexpired and for another line that
/// guards paths here, one per line: what a change to `line`'s grant leaves in the cookie.
fn other_lines_grants<'v>(api: &Api, gw: &Gateway, value: &'v str, line: ConcertId) -> Kept<'v> {
    let mut kept = Kept {
        grants: Vec::new(),
        last_end: 0,
    };
    let mut lines: Vec<ConcertId> = Vec::new();
    for raw in grant::grants(value) {
        if let Some(t) = api.gate.genuine_access(raw)
            && t.concert_id != line
            && gw.guards(t.concert_id)
            && !lines.contains(&t.concert_id)
        {
            lines.push(t.concert_id);
            kept.grants.push(raw);
            kept.last_end = kept.last_end.max(t.exp);
        }
    }
    kept
}

/// A browser navigating: a `GET`/`HEAD` that accepts HTML. Everything else is an API client,
/// which must never be handed a redirect or a page it cannot use.
fn is_browser(req: &Req) -> bool {
    matches!(req.method, Method::GET | Method::HEAD)
        && req
            .headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

fn gateway_on(api: &Api) -> Result<&Gateway, ApiError> {
    api.gateway
        .as_deref()
        .ok_or_else(|| ApiError::not_found("gateway mode is off (UPSTREAM_URL is not set)"))
}

/// Body of `POST /v1/gateway/session` (optional).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SessionRequest {
    /// Where to go once the cookie is set: a same-origin absolute path (`/shop/checkout?x=1`),
    /// never `//host`, a scheme, a backslash or a control character.
    #[schema(example = "/shop/checkout?x=1")]
    r#return: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    /// The validated return path, or null when none was given.
    #[schema(example = "/shop/checkout?x=1")]
    return_to: Option<String>,
    /// When the grant (and the admission) ends.
    access_expires_at: String,
}

#[utoipa::path(post, path = "/v1/gateway/session", tag = "gateway",
    request_body(content = Option<SessionRequest>, description = "Optional: the path to return to"),
    security(("access_token" = [])),
    responses(
        (status = 200, description = "The grant cookie is set (`Set-Cookie: qg_grant=…; Path=/; Max-Age=…; HttpOnly; SameSite=Lax[; Secure]`); it keeps the genuine, unexpired grants the request's cookie held for this gateway's other lines", body = SessionBody),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Missing, forged or expired token; TOKEN_REVOKED once the admission ended", body = ErrorBody),
        (status = 403, description = "The access token is for a concert whose line guards no path of this gateway", body = ErrorBody),
        (status = 404, description = "Gateway mode is off", body = ErrorBody),
        (status = 422, description = "`return` is not a same-origin absolute path", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_session(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let gw = gateway_on(api)?;
    let (t, raw) = api.gate.access_bearer(req).await?;
    if !gw.guards(t.concert_id) {
        return Err(ApiError::forbidden(
            "this access token is for a concert whose line guards no path here",
        ));
    }
    // The grants the visitor holds for this gateway's other lines stay beside the new one.
    let mut kept = other_lines_grants(
        api,
        gw,
        req.cookie(grant::COOKIE).unwrap_or_default(),
        t.concert_id,
    );
    kept.grants.truncate(grant::MAX_GRANTS - 1);
    kept.grants.push(raw);
    let cookie = grant::set_cookie(
        &kept.grants,
        kept.last_end.max(t.exp).saturating_sub(now_secs()),
        gw.over_tls(req.peer.ip(), &req.headers),
    );
    let body = req.body_bytes().await?;
    let return_to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match JsonObject::parse(&body)?.get("return") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(
                grant::safe_return_path(p)
                    .ok_or_else(|| {
                        ApiError::validation(
                            "return",
                            "must be a same-origin absolute path such as /shop/checkout",
                        )
                    })?
                    .to_owned(),
            ),
            Some(_) => return Err(ApiError::validation("return", "must be a string")),
        }
    };
    let mut r = json(
        StatusCode::OK,
        &SessionBody {
            return_to,
            access_expires_at: expires_at(t.exp.saturating_mul(1000)),
        },
    );
    let v = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::Internal("grant cookie is not a header value".into()))?;
    r.headers_mut().insert(SET_COOKIE, v);
    Ok(r)
}

#[utoipa::path(delete, path = "/v1/gateway/session", tag = "gateway",
    responses(
        (status = 204, description = "The grant cookie is removed (the admission itself is untouched; `DELETE /v1/queue` ends it)"),
        (status = 404, description = "Gateway mode is off", body = ErrorBody),
    ))]
pub fn end_session(api: &Api, req: &Req) -> Result<Resp, ApiError> {
    let gw = gateway_on(api)?;
    let mut r = empty(StatusCode::NO_CONTENT);
    let cookie = grant::clear_cookie(gw.over_tls(req.peer.ip(), &req.headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(r)
}
