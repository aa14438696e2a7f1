//! Waiting-room routes: join, status, events (SSE), leave — and how a queue view looks as JSON
//! and as an event.
//!
//! Status is the hottest route in the product: a token check (no I/O) and one script call,
//! never the database.

use super::error::{ApiError, ErrorBody};
use super::gate::StreamOpener;
use super::json::JsonObject;
use super::state::Api;
use crate::domain::ConcertId;
use crate::http::response::{empty, event_stream, json, raw_json};
use crate::http::{Req, Resp};
use crate::json_out::ObjectWriter;
use crate::queue::hub::StreamEvent;
use crate::queue::model::JoinKind;
use crate::queue::service::QueueError;
use crate::queue::view::View;
use crate::ratelimit::Scope;
use crate::store_error::StoreError;
use bytes::Bytes;
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
    fn parse(b: &JsonObject) -> Result<Self, ApiError> {
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
struct PreQueue<'a> {
    #[schema(value_type = String, example = "pre_queue")]
    status: &'static str,
    /// When the sale opens (RFC 3339); positions are drawn at random then.
    sale_starts_at: &'a str,
    poll_after_ms: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Waiting {
    #[schema(value_type = String, example = "waiting")]
    status: &'static str,
    position: u64,
    eta_seconds: Option<u64>,
    poll_after_ms: u64,
}

impl Waiting {
    /// The same bytes as `serde_json::to_vec(self)` (a unit test compares them), written
    /// directly: a waiting fan's poll is most of a sale's requests, and serde's general writer
    /// cost ~1,100 instructions a poll.
    fn to_json(&self) -> Vec<u8> {
        let mut w = ObjectWriter::with_capacity(96);
        w.str("status", self.status)
            .u64("position", self.position)
            .opt_u64("eta_seconds", self.eta_seconds)
            .u64("poll_after_ms", self.poll_after_ms);
        w.finish()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Admitted<'a> {
    #[schema(value_type = String, example = "admitted")]
    status: &'static str,
    access_token: &'a str,
    access_expires_at: &'a str,
}

/// The shapes of `GET /v1/queue/status`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum QueueStatus<'a> {
    PreQueue(PreQueue<'a>),
    Waiting(Waiting),
    Admitted(Admitted<'a>),
}

impl<'a> From<&'a View> for QueueStatus<'a> {
    fn from(v: &'a View) -> Self {
        match v {
            View::PreQueue {
                sale_starts_at,
                poll_after_ms,
            } => QueueStatus::PreQueue(PreQueue {
                status: "pre_queue",
                sale_starts_at,
                poll_after_ms: *poll_after_ms,
            }),
            View::Waiting {
                position,
                eta_seconds,
                poll_after_ms,
            } => QueueStatus::Waiting(Waiting {
                status: "waiting",
                position: *position,
                eta_seconds: *eta_seconds,
                poll_after_ms: *poll_after_ms,
            }),
            View::Admitted {
                access_token,
                access_expires_at,
            } => QueueStatus::Admitted(Admitted {
                status: "admitted",
                access_token,
                access_expires_at,
            }),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct JoinedBody<'a> {
    queue_token: String,
    /// `waiting`, `admitted`, or `pre_queue` before the sale starts.
    #[schema(value_type = String, example = "waiting")]
    status: &'static str,
    /// Null in the pre-queue (positions are drawn at the start).
    position: Option<u64>,
    eta_seconds: Option<u64>,
    poll_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_starts_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_expires_at: Option<&'a str>,
}

impl<'a> JoinedBody<'a> {
    fn new(queue_token: String, v: &'a View) -> Self {
        match v {
            View::PreQueue {
                sale_starts_at,
                poll_after_ms,
            } => JoinedBody {
                queue_token,
                status: "pre_queue",
                position: None,
                eta_seconds: None,
                poll_after_ms: *poll_after_ms,
                sale_starts_at: Some(sale_starts_at),
                access_token: None,
                access_expires_at: None,
            },
            View::Waiting {
                position,
                eta_seconds,
                poll_after_ms,
            } => JoinedBody {
                queue_token,
                status: "waiting",
                position: Some(*position),
                eta_seconds: *eta_seconds,
                poll_after_ms: *poll_after_ms,
                sale_starts_at: None,
                access_token: None,
                access_expires_at: None,
            },
            View::Admitted {
                access_token,
                access_expires_at,
            } => JoinedBody {
                queue_token,
                status: "admitted",
                position: Some(0),
                eta_seconds: Some(0),
                poll_after_ms: 0,
                sale_starts_at: None,
                access_token: Some(access_token),
                access_expires_at: Some(access_expires_at),
            },
        }
    }
    /// The same bytes as `serde_json::to_vec(self)` (a unit test compares them): every fan
    /// joins once, and the answer carries the new ~250-byte queue token.
    fn to_json(&self) -> Vec<u8> {
        let mut w = ObjectWriter::with_capacity(self.queue_token.len() + 160);
        w.str("queue_token", &self.queue_token)
            .str("status", self.status)
            .opt_u64("position", self.position)
            .opt_u64("eta_seconds", self.eta_seconds)
            .u64("poll_after_ms", self.poll_after_ms)
            .str_if("sale_starts_at", self.sale_starts_at)
            .str_if("access_token", self.access_token)
            .str_if("access_expires_at", self.access_expires_at);
        w.finish()
    }
}

/// One stream event on the wire (`event: …\ndata: {json}\n\n`).
fn sse(event: StreamEvent) -> Bytes {
    let (kind, data) = match &event {
        StreamEvent::Update(View::Waiting {
            position,
            eta_seconds,
            ..
        }) => (
            "position",
            serde_json::json!({ "position": position, "eta_seconds": eta_seconds }),
        ),
        StreamEvent::Update(v @ View::Admitted { .. }) => (
            "admitted",
            serde_json::to_value(QueueStatus::from(v)).unwrap_or_default(),
        ),
        StreamEvent::Update(v @ View::PreQueue { .. }) => (
            "pre_queue",
            serde_json::to_value(QueueStatus::from(v)).unwrap_or_default(),
        ),
        StreamEvent::Gone => {
            let e = ApiError::QueueEntryGone;
            (
                "gone",
                serde_json::json!({ "code": e.code(), "message": e.public_message() }),
            )
        }
        StreamEvent::KeepAlive => return Bytes::from_static(b": keep-alive\n\n"),
    };
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
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
pub async fn join(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let user = api.gate.user(req)?;
    api.rate_limit(req, Scope::Join, user.user_id)?;
    let body = JoinQueue::parse(&JsonObject::read(req).await?)?;
    let concert = body.concert_id;
    let restore = match &body.queue_token {
        Some(t) => Some(api.gate.kept_queue_token(t, user.user_id, concert)?),
        None => None,
    };
    let line = api
        .catalogue
        .line(concert)
        .await?
        .ok_or_else(|| ApiError::not_found("no such concert"))?;
    let joined = match api.queue.join(line, user.user_id, restore.as_ref()).await {
        // The queue store lost its data since the line was made, its settings with it: put
        // the database's back before anyone gets a place, then join as usual. Boxed: the
        // database query's future is kilobytes, for a path taken once per lost line.
        Err(QueueError::Store(StoreError::SaleStartUnknown)) => {
            Box::pin(restore_settings(api, line)).await?;
            api.queue.join(line, user.user_id, restore.as_ref()).await?
        }
        other => other?,
    };
    let status = match joined.how {
        JoinKind::Existing => StatusCode::OK,
        JoinKind::New | JoinKind::Restored => StatusCode::CREATED,
    };
    Ok(raw_json(
        status,
        JoinedBody::new(joined.queue_token, &joined.view).to_json(),
    ))
}

/// Puts the database's settings of `line` (its sale start and the operator's overrides) back
/// into the queue store where it lost them; returns the sale start (ms, 0 = none). The one way
/// a lost line is mended, by a join or by an operator's change.
pub(super) async fn restore_settings(
    api: &Api,
    line: crate::domain::LineId,
) -> Result<u64, ApiError> {
    let recorded = api.catalogue.recorded_settings(line.concert).await?;
    if api.queue.store().restore_settings(line, &recorded).await? {
        tracing::warn!(%line, ?recorded, "the queue store had lost this line's settings; restored them from the database");
    }
    Ok(recorded.sale_start_ms.flatten().unwrap_or(0))
}

#[utoipa::path(get, path = "/v1/queue/status", tag = "queue",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Pre-queue (before the sale starts: no position), waiting (position, ETA) or admitted (access token)", body = QueueStatus),
        (status = 401, body = ErrorBody),
        (status = 410, description = "QUEUE_ENTRY_GONE: left, idle too long, admission over or paid", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn status(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let q = api.gate.queue(req)?;
    let view = api.queue.status(&q).await?;
    Ok(match QueueStatus::from(&view) {
        QueueStatus::Waiting(w) => raw_json(StatusCode::OK, w.to_json()),
        other => json(StatusCode::OK, &other),
    })
}

/// A stream ticket.
#[derive(Serialize, utoipa::ToSchema)]
struct Ticket {
    /// Single use; pass it as `?ticket=` to `GET /v1/queue/events`.
    ticket: String,
    expires_in_secs: u64,
}

#[utoipa::path(post, path = "/v1/queue/events/ticket", tag = "queue",
    security(("queue_token" = [])),
    responses(
        (status = 201, description = "A single-use ticket that opens the event stream of this place within a few seconds (for EventSource, which cannot send headers; a queue token never goes in a URL)", body = Ticket),
        (status = 401, body = ErrorBody),
    ))]
pub async fn stream_ticket(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let q = api.gate.queue(req)?;
    Ok(json(
        StatusCode::CREATED,
        &Ticket {
            ticket: api.queue.stream_ticket(&q),
            expires_in_secs: crate::tokens::STREAM_TICKET_TTL_SECS,
        },
    ))
}

#[utoipa::path(get, path = "/v1/queue/events", tag = "queue",
    params(("ticket" = Option<String>, Query, description = "A single-use stream ticket from POST /v1/queue/events/ticket, when the queue token cannot go in Authorization (EventSource)")),
    security(("queue_token" = []), ()),
    responses(
        (status = 200, description = "Server-Sent Events: `pre_queue` {status, sale_starts_at, poll_after_ms} before the sale starts, `position` {position, eta_seconds} as the place moves, then one `admitted` {status, access_token, access_expires_at}, then the end (`gone` if the place vanishes)", content_type = "text/event-stream", body = String),
        (status = 401, description = "No queue token or ticket; a ticket expired or already used; a queue token in the URL", body = ErrorBody),
        (status = 410, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn events(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let (rx, guard) = match api.gate.stream_opener(req)? {
        StreamOpener::QueueToken(q) => api.queue.open_stream(q.line(), q.user_id, q.seq).await?,
        StreamOpener::Ticket(t) => api.queue.open_stream_with_ticket(&t).await?,
    };
    Ok(event_stream(rx, sse, guard))
}

#[utoipa::path(delete, path = "/v1/queue", tag = "queue",
    security(("queue_token" = [])),
    responses(
        (status = 204, description = "The place is freed (idempotent); the user's unpaid holds in this concert are released"),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn leave(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let q = api.gate.queue(req)?;
    let left = api.queue.leave(&q).await;
    // Gateway mode: this instance stops forwarding for the user before it answers (the others
    // when they hear the announcement). Safe whether or not the leave went through.
    if let Some(gw) = &api.gateway {
        gw.admission_ended(q.concert_id, q.user_id);
    }
    left?;
    // Leaving ends the access: no seat stays blocked by someone who can no longer pay.
    api.reservations
        .release_unpaid(q.user_id, q.concert_id)
        .await?;
    // Idempotent: leaving a place that is already gone is still "the place is freed".
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::{JoinedBody, Waiting};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_join_answer_is_what_serde_would_write(
            queue_token in any::<String>(),
            status in prop_oneof![Just("waiting"), Just("admitted"), Just("pre_queue")],
            position in proptest::option::of(any::<u64>()),
            eta_seconds in proptest::option::of(any::<u64>()),
            poll_after_ms in any::<u64>(),
            sale_starts_at in proptest::option::of(any::<String>()),
            access_token in proptest::option::of("[A-Za-z0-9_.\\-]{0,300}"),
            access_expires_at in proptest::option::of(any::<String>()),
        ) {
            let j = JoinedBody {
                queue_token,
                status,
                position,
                eta_seconds,
                poll_after_ms,
                sale_starts_at: sale_starts_at.as_deref(),
                access_token: access_token.as_deref(),
                access_expires_at: access_expires_at.as_deref(),
            };
            prop_assert_eq!(j.to_json(), serde_json::to_vec(&j).unwrap());
        }


        #[test]
        fn a_waiting_answer_is_what_serde_would_write(
            position in any::<u64>(),
            eta_seconds in proptest::option::of(any::<u64>()),
            poll_after_ms in any::<u64>(),
        ) {
            let w = Waiting { status: "waiting", position, eta_seconds, poll_after_ms };
            prop_assert_eq!(w.to_json(), serde_json::to_vec(&w).unwrap());
        }
    }

    #[test]
    fn a_waiting_answer_reads_as_the_contract_says() {
        let w = Waiting {
            status: "waiting",
            position: 1_204,
            eta_seconds: None,
            poll_after_ms: 5_000,
        };
        assert_eq!(
            String::from_utf8(w.to_json()).unwrap(),
            r#"{"status":"waiting","position":1204,"eta_seconds":null,"poll_after_ms":5000}"#
        );
    }
}
