//! Waiting-room routes: join, status, events (SSE), leave.
//!
//! Status is the hottest route in the product: a token check (no I/O) and one script call,
//! never the database.

use crate::app::App;
use crate::domain::ConcertId;
use crate::error::ApiError;
use crate::gate;
use crate::http::response::{ErrorBody, empty, event_stream, json};
use crate::http::{Req, Resp};
use crate::queue::events::{self, EventHub};
use crate::queue::store::{JoinKind, Place};
use crate::queue::{eta, expires_at};
use crate::tokens::{AccessToken, QueueToken};
use hyper::StatusCode;
use serde::Serialize;

/// Body of `POST /v1/queue`.
#[derive(utoipa::ToSchema)]
pub struct JoinQueue {
    pub concert_id: ConcertId,
    /// A queue token kept from before: restores the original place if the store lost it.
    pub queue_token: Option<String>,
}

impl JoinQueue {
    fn parse(b: &crate::http::request::JsonObject) -> Result<Self, ApiError> {
        let queue_token = match b.get("queue_token") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(ApiError::validation("queue_token", "must be a string")),
        };
        Ok(JoinQueue {
            concert_id: b.required("concert_id")?,
            queue_token,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Waiting {
    #[schema(value_type = String, example = "waiting")]
    status: &'static str,
    position: u64,
    eta_seconds: Option<u64>,
    poll_after_ms: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Admitted {
    #[schema(value_type = String, example = "admitted")]
    status: &'static str,
    access_token: String,
    access_expires_at: String,
}

/// Either shape of `GET /v1/queue/status`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the union; the handler serialises the variants directly
enum QueueStatus {
    Waiting(Waiting),
    Admitted(Admitted),
}

#[derive(Serialize, utoipa::ToSchema)]
struct JoinedBody {
    queue_token: String,
    #[schema(value_type = String, example = "waiting")]
    status: &'static str,
    position: u64,
    eta_seconds: Option<u64>,
    poll_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_expires_at: Option<String>,
}

fn access_token(app: &App, q: &QueueToken, ends_ms: u64) -> Result<String, ApiError> {
    app.tokens.mint_access(&AccessToken {
        user_id: q.user_id,
        concert_id: q.concert_id,
        seq: q.seq,
        exp: ends_ms / 1000,
    })
}

#[utoipa::path(post, path = "/v1/queue", tag = "queue", request_body = JoinQueue,
    security(("user_token" = [])),
    responses(
        (status = 201, description = "A new (or restored) place", body = JoinedBody),
        (status = 200, description = "The place the user already has (same seq)", body = JoinedBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown concert", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (see Retry-After)", body = ErrorBody),
        (status = 503, description = "Queue store unavailable", body = ErrorBody),
    ))]
pub async fn join(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let user = gate::user(app, req)?;
    super::rate_limit(app, req, crate::ratelimit::Scope::Join, user.user_id)?;
    let body = JoinQueue::parse(&req.json().await?)?;
    let concert = body.concert_id;
    // A queue token the caller kept from before: restores the place if the store lost it.
    let restore = match &body.queue_token {
        None => None,
        Some(t) => {
            let q = app
                .tokens
                .verify_queue(t)
                .map_err(|_| ApiError::validation("queue_token", "is not a valid queue token"))?;
            if q.user_id != user.user_id || q.concert_id != concert {
                return Err(ApiError::validation(
                    "queue_token",
                    "belongs to another user or concert",
                ));
            }
            Some(q)
        }
    };
    if !app.concerts.exists(&app.db, concert).await? {
        return Err(ApiError::NotFound("no such concert"));
    }
    let joined = app
        .queue
        .join(
            concert,
            user.user_id,
            restore.as_ref().map(|q| (q.seq, q.epoch.as_str())),
        )
        .await?;
    // The timer's list of concerts; a failure here must not undo a place already taken.
    // A restored place means the store lost its data, the timer's set of concerts with it.
    let registered = if joined.how == JoinKind::Restored {
        app.queue.add_to_timer(concert).await
    } else {
        app.queue.register_concert(concert).await
    };
    if let Err(e) = registered {
        tracing::warn!(error = %e, %concert, "could not register the concert for admission");
    }
    metrics::counter!("queuegate_queue_joins_total", "concert" => concert.to_string(), "result" => joined.how.as_str()).increment(1);
    let q = QueueToken {
        user_id: user.user_id,
        concert_id: concert,
        seq: joined.seq,
        epoch: joined.epoch,
    };
    let queue_token = app.tokens.mint_queue(&q)?;
    let status = if joined.how == JoinKind::Existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = match joined.place {
        Place::Admitted { ends_ms } => JoinedBody {
            queue_token,
            status: "admitted",
            position: 0,
            eta_seconds: Some(0),
            poll_after_ms: 0,
            access_token: Some(access_token(app, &q, ends_ms)?),
            access_expires_at: Some(expires_at(ends_ms)),
        },
        Place::Waiting { position } => {
            let rate = eta::rate_per_sec(&app.queue.pace(concert), &app.settings.queue);
            let eta_seconds = eta::eta_seconds(position, rate);
            JoinedBody {
                queue_token,
                status: "waiting",
                position,
                eta_seconds,
                poll_after_ms: eta::poll_after_ms(eta_seconds, app.settings.queue.idle_secs),
                access_token: None,
                access_expires_at: None,
            }
        }
        Place::Gone => return Err(ApiError::internal("join returned no place")),
    };
    Ok(json(status, &body))
}

#[utoipa::path(get, path = "/v1/queue/status", tag = "queue",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Waiting (position, ETA) or admitted (access token)", body = QueueStatus),
        (status = 401, body = ErrorBody),
        (status = 410, description = "QUEUE_ENTRY_GONE: left, idle too long, admission over or paid", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn status(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let q = app.tokens.verify_queue(req.require_bearer()?)?;
    let idle = app.settings.queue.idle_secs;
    match app
        .queue
        .status(q.concert_id, q.user_id, q.seq, idle)
        .await?
    {
        Place::Waiting { position } => {
            let pace = app.queue.pace(q.concert_id);
            metrics::counter!("queuegate_queue_status_total", "result" => "waiting").increment(1);
            let eta_seconds =
                eta::eta_seconds(position, eta::rate_per_sec(&pace, &app.settings.queue));
            Ok(json(
                StatusCode::OK,
                &Waiting {
                    status: "waiting",
                    position,
                    eta_seconds,
                    poll_after_ms: eta::poll_after_ms(eta_seconds, app.settings.queue.idle_secs),
                },
            ))
        }
        Place::Admitted { ends_ms } => {
            metrics::counter!("queuegate_queue_status_total", "result" => "admitted").increment(1);
            Ok(json(
                StatusCode::OK,
                &Admitted {
                    status: "admitted",
                    access_token: access_token(app, &q, ends_ms)?,
                    access_expires_at: expires_at(ends_ms),
                },
            ))
        }
        Place::Gone => {
            metrics::counter!("queuegate_queue_status_total", "result" => "gone").increment(1);
            Err(ApiError::QueueEntryGone)
        }
    }
}

#[utoipa::path(get, path = "/v1/queue/events", tag = "queue",
    params(("token" = Option<String>, Query, description = "The queue token, when it cannot go in Authorization (EventSource)")),
    security(("queue_token" = []), ()),
    responses(
        (status = 200, description = "Server-Sent Events: `position` {position, eta_seconds} as the place moves, then one `admitted` {status, access_token, access_expires_at}, then the end (`gone` if the place vanishes)", content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody),
        (status = 410, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn events(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let token = match req.bearer() {
        Some(t) => t,
        None => req.query_param("token").unwrap_or(""),
    };
    let (rx, guard) = open_stream(app, token).await?;
    Ok(event_stream(rx, guard))
}

/// Verifies a queue token and opens its event stream: a first `position` event and a place in
/// the hub, or a single `admitted` event. Shared by the hyper route and the raw-connection
/// path (`http::streams`).
pub async fn open_stream(
    app: &App,
    token: &str,
) -> Result<
    (
        tokio::sync::mpsc::Receiver<bytes::Bytes>,
        events::StreamGuard,
    ),
    ApiError,
> {
    if token.is_empty() {
        return Err(ApiError::Unauthorized("missing queue token"));
    }
    let q = app.tokens.verify_queue(token)?;
    let idle = app.settings.queue.idle_secs;
    match app
        .queue
        .status(q.concert_id, q.user_id, q.seq, idle)
        .await?
    {
        Place::Waiting { position } => {
            let pace = app.queue.pace(q.concert_id);
            let eta_seconds =
                eta::eta_seconds(position, eta::rate_per_sec(&pace, &app.settings.queue));
            let first = events::event("position", &events::position_json(position, eta_seconds));
            Ok(app
                .events
                .subscribe(q.concert_id, q.user_id, q.seq, position, first))
        }
        Place::Admitted { ends_ms } => {
            let payload =
                events::admitted_json(&access_token(app, &q, ends_ms)?, &expires_at(ends_ms));
            Ok(EventHub::single(events::event("admitted", &payload)))
        }
        Place::Gone => Err(ApiError::QueueEntryGone),
    }
}

#[utoipa::path(delete, path = "/v1/queue", tag = "queue",
    security(("queue_token" = [])),
    responses(
        (status = 204, description = "The place is freed (idempotent)"),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn leave(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let q = app.tokens.verify_queue(req.require_bearer()?)?;
    if app.queue.leave(q.concert_id, q.user_id, q.seq).await? {
        metrics::counter!("queuegate_queue_leaves_total", "concert" => q.concert_id.to_string())
            .increment(1);
    }
    // Idempotent: leaving a place that is already gone is still "the place is freed".
    Ok(empty(StatusCode::NO_CONTENT))
}
