//! Admin routes (bearer `ADMIN_TOKEN`): concert creation and live queue settings.

use super::error::{ApiError, ErrorBody};
use super::json::JsonObject;
use super::routes::param;
use super::state::Api;
use crate::booking::catalogue::NewConcert;
use crate::domain::{ConcertId, ConcertName, FromJson, LineId, Price, StartsAt};
use crate::http::response::json;
use crate::http::{Req, Resp};
use crate::queue::model::SettingsPatch;
use hyper::StatusCode;
use serde_json::Value;

/// At most this many dates per concert in one request.
const MAX_SCHEDULES: usize = 100;

/// Body of `POST /v1/admin/concerts`.
#[derive(utoipa::ToSchema)]
pub struct CreateConcert {
    pub name: ConcertName,
    /// 1..=100 dates; each gets seats 1..=50 at its price.
    #[schema(min_items = 1, max_items = 100)]
    pub schedules: Vec<NewDate>,
    /// When the sale opens (RFC 3339, in the future); fans who come earlier wait in a
    /// pre-queue drawn in random order at the start. Absent or null: open at once.
    pub sale_starts_at: Option<StartsAt>,
}

#[derive(utoipa::ToSchema)]
pub struct NewDate {
    pub starts_at: StartsAt,
    pub price: Price,
}

impl CreateConcert {
    fn parse(body: &JsonObject) -> Result<Self, ApiError> {
        let name: ConcertName = body.required("name")?;
        let Some(Value::Array(items)) = body.get("schedules") else {
            return Err(ApiError::validation(
                "schedules",
                "must be an array of {starts_at, price}",
            ));
        };
        if items.is_empty() || items.len() > MAX_SCHEDULES {
            return Err(ApiError::validation(
                "schedules",
                format!("must hold 1..={MAX_SCHEDULES} dates"),
            ));
        }
        let mut schedules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = |f: &str| format!("schedules[{i}].{f}");
            let value = |f: &str| {
                item.get(f)
                    .ok_or_else(|| ApiError::validation(field(f), "is required"))
            };
            let starts_at = StartsAt::from_json(value("starts_at")?)
                .map_err(|m| ApiError::validation(field("starts_at"), m))?;
            let price = Price::from_json(value("price")?)
                .map_err(|m| ApiError::validation(field("price"), m))?;
            schedules.push(NewDate { starts_at, price });
        }
        let sale_starts_at = future_start(body, "sale_starts_at")?;
        Ok(CreateConcert {
            name,
            schedules,
            sale_starts_at,
        })
    }
}

/// An optional RFC 3339 time that must lie in the future (422 otherwise).
fn future_start(body: &JsonObject, field: &str) -> Result<Option<StartsAt>, ApiError> {
    let start: Option<StartsAt> = body.optional(field)?;
    match start {
        Some(t) if t.0 <= chrono::Utc::now() => Err(ApiError::validation(
            field,
            "must be in the future (null opens the sale now)",
        )),
        other => Ok(other),
    }
}

fn millis(t: StartsAt) -> u64 {
    u64::try_from(t.0.timestamp_millis()).unwrap_or(0)
}

#[utoipa::path(post, path = "/v1/admin/concerts", tag = "admin", request_body = CreateConcert,
    security(("admin_token" = [])),
    responses(
        (status = 201, body = NewConcert),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The admin API is disabled", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_concert(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    api.gate.admin(req)?;
    let body = CreateConcert::parse(&JsonObject::read(req).await?)?;
    let schedules: Vec<(StartsAt, Price)> = body
        .schedules
        .iter()
        .map(|d| (d.starts_at, d.price))
        .collect();
    let store = api.queue.store();
    let start = body.sale_starts_at;
    // The line's sale start is written before the concert exists: no fan can ever find the
    // line open early. "No start" is written too (as 0): a line without any sale start in the
    // store is how a join notices the store lost its data (`lua/join.lua`).
    let created = api
        .catalogue
        .create(&body.name, &schedules, start, |line| async move {
            let patch = SettingsPatch {
                sale_start_ms: Some(start.map(millis)),
                ..Default::default()
            };
            store.put_settings(line, &patch).await?;
            Ok(())
        })
        .await?;
    // Known to the admission timer from the start (joins would register it too).
    if let Some(line) = api.catalogue.line(created.concert_id).await?
        && let Err(e) = store.register_line(line).await
    {
        tracing::warn!(error = %e, "could not register the concert with the queue yet");
    }
    tracing::info!(concert_id = %created.concert_id, dates = created.schedules.len(), "concert created");
    Ok(json(StatusCode::CREATED, &created))
}

/// The live figures and effective settings of a concert's queue.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct QueueView {
    concert_id: ConcertId,
    waiting: u64,
    admitted: u64,
    admitted_total: u64,
    admit_per_tick: u64,
    tick_ms: u64,
    max_active: u64,
    access_ttl_secs: u64,
    measured_rate_per_sec: f64,
    /// When the sale opens (RFC 3339); null when it is open.
    sale_starts_at: Option<String>,
    /// Places in the pre-queue (before the start).
    pre_queue: u64,
    /// How often this sale's pre-queue was drawn: 0 before the start, then 1.
    draws: u64,
    /// Median and 90th percentile of how long admitted fans waited (from joining, or from the
    /// start for pre-queue places), over the last 15 minutes; null when nobody was admitted.
    wait_p50_secs: Option<f64>,
    wait_p90_secs: Option<f64>,
}

async fn queue_view(api: &Api, line: LineId) -> Result<QueueView, ApiError> {
    let f = api.queue.store().figures(line).await?;
    let d = api.queue.defaults();
    Ok(QueueView {
        concert_id: line.concert,
        waiting: f.waiting,
        admitted: f.admitted,
        admitted_total: f.admitted_total,
        admit_per_tick: f.settings.admit_per_tick.unwrap_or(d.admit_per_tick),
        tick_ms: f.settings.tick_ms.unwrap_or(d.tick_ms),
        max_active: f.settings.max_active.unwrap_or(d.max_active),
        access_ttl_secs: f.settings.access_ttl_secs.unwrap_or(d.access_ttl_secs),
        measured_rate_per_sec: f.rate,
        sale_starts_at: (f.sale_start_ms > 0)
            .then(|| crate::queue::view::expires_at(f.sale_start_ms)),
        pre_queue: f.pre_queue,
        draws: f.draws_total,
        wait_p50_secs: f.waits.quantile(0.5).map(round1),
        wait_p90_secs: f.waits.quantile(0.9).map(round1),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The line of the concert the path names, or 404.
async fn existing_line(api: &Api, req: &Req) -> Result<LineId, ApiError> {
    let concert = param(req, 0, ConcertId::from_path, "no such concert")?;
    api.catalogue
        .line(concert)
        .await?
        .ok_or_else(|| ApiError::not_found("no such concert"))
}

#[utoipa::path(get, path = "/v1/admin/concerts/{concert_id}/queue", tag = "admin",
    params(("concert_id" = u64, Path)),
    security(("admin_token" = [])),
    responses(
        (status = 200, body = QueueView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn get_queue(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    api.gate.admin(req)?;
    let line = existing_line(api, req).await?;
    Ok(json(StatusCode::OK, &queue_view(api, line).await?))
}

/// Body of `PUT /v1/admin/concerts/{concert_id}/queue`: any of the settings.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the body; `put_queue` reads it field by field into a patch
struct QueueSettingsBody {
    #[schema(minimum = 0, maximum = 100000)]
    admit_per_tick: Option<u64>,
    #[schema(minimum = 100, maximum = 60000)]
    tick_ms: Option<u64>,
    #[schema(minimum = 0, maximum = 1000000)]
    max_active: Option<u64>,
    #[schema(minimum = 10, maximum = 86400)]
    access_ttl_secs: Option<u64>,
    /// A new sale start (RFC 3339, in the future), or null to open the sale now; only while
    /// the sale has not started (409 SALE_STARTED after).
    #[schema(value_type = Option<String>, format = DateTime)]
    sale_starts_at: Option<String>,
}

/// Changes any of the settings; every value is checked before anything is stored, so a bad
/// request changes nothing. Every instance's timer reads them at its next tick. They are
/// recorded in the database too, and put back from there if the queue store loses its data.
#[utoipa::path(put, path = "/v1/admin/concerts/{concert_id}/queue", tag = "admin",
    params(("concert_id" = u64, Path)),
    request_body = QueueSettingsBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Applied on every instance from its next tick; also recorded in the database, which puts them back if the queue store loses its data", body = QueueView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 409, description = "SALE_STARTED: the sale start can no longer move", body = ErrorBody),
        (status = 422, description = "A value out of range or mistyped; nothing changed", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn put_queue(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    api.gate.admin(req)?;
    let line = existing_line(api, req).await?;
    let body = JsonObject::read(req).await?;
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    // null opens the sale now: the start becomes this moment, so the pre-queue is drawn at
    // the next tick like at any start.
    let sale_start_ms = match body.get("sale_starts_at") {
        None => None,
        Some(serde_json::Value::Null) => Some(Some(now)),
        Some(_) => Some(future_start(&body, "sale_starts_at")?.map(millis)),
    };
    let patch = SettingsPatch {
        admit_per_tick: body.bounded("admit_per_tick", 0, 100_000)?,
        tick_ms: body.bounded("tick_ms", 100, 60_000)?,
        max_active: body.bounded("max_active", 0, 1_000_000)?,
        access_ttl_secs: body.bounded("access_ttl_secs", 10, 86_400)?,
        sale_start_ms,
    };
    let store = api.queue.store();
    if let Some(start) = sale_start_ms {
        // Only a sale that has not started may move (a started one would reorder its line).
        let mut current = store.figures(line).await?.sale_start_ms;
        if current == 0 {
            // "No start" in the store: the sale opened without one, or the store lost the line.
            // The database tells which; a lost line first gets its recorded settings back (as
            // a join would), so this change lands on a whole line.
            current = super::queue::restore_settings(api, line).await?;
        }
        if current == 0 || current <= now {
            return Err(ApiError::SaleStarted);
        }
        let at = start.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64));
        api.catalogue.set_sale_start(line.concert, at).await?;
    }
    // Recorded first: the database's copy is what comes back if the store loses its data, so
    // it must never be older than the store's.
    api.catalogue
        .record_queue_settings(line.concert, &patch)
        .await?;
    store.put_settings(line, &patch).await?;
    store.add_to_timer(line).await?;
    tracing::info!(%line, ?patch, "queue settings changed");
    Ok(json(StatusCode::OK, &queue_view(api, line).await?))
}
