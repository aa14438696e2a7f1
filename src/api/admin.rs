//! Admin routes (bearer `ADMIN_TOKEN`): concert creation and live queue settings.

use crate::app::App;
use crate::booking::concerts;
use crate::domain::{ConcertId, ConcertName, FromJson, Price, StartsAt};
use crate::error::ApiError;
use crate::gate;
use crate::http::response::json;
use crate::http::{Req, Resp};
use crate::queue::store::SettingsPatch;
use hyper::StatusCode;
use serde_json::Value;

/// At most this many dates per concert in one request.
const MAX_SCHEDULES: usize = 100;

pub async fn create_concert(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    gate::admin(app, req)?;
    let body = req.json().await?;
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
        let starts_at = item
            .get("starts_at")
            .ok_or_else(|| ApiError::validation(field("starts_at"), "is required"))
            .and_then(|v| {
                StartsAt::from_json(v).map_err(|m| ApiError::validation(field("starts_at"), m))
            })?;
        let price = item
            .get("price")
            .ok_or_else(|| ApiError::validation(field("price"), "is required"))
            .and_then(|v| {
                Price::from_json(v).map_err(|m| ApiError::validation(field("price"), m))
            })?;
        schedules.push((starts_at, price));
    }
    let created = concerts::create(&app.db, &name, &schedules).await?;
    // Known to the admission timer from the start (joins would register it too).
    if let Err(e) = app.queue.register_concert(created.concert_id).await {
        tracing::warn!(error = %e, "could not register the concert with the queue yet");
    }
    tracing::info!(concert_id = %created.concert_id, dates = created.schedules.len(), "concert created");
    Ok(json(StatusCode::CREATED, &created))
}

/// The live figures and effective settings of a concert's queue.
#[derive(serde::Serialize)]
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
}

async fn queue_view(app: &App, concert: ConcertId) -> Result<QueueView, ApiError> {
    let f = app.queue.figures(concert).await?;
    let d = &app.settings.queue;
    Ok(QueueView {
        concert_id: concert,
        waiting: f.waiting,
        admitted: f.admitted,
        admitted_total: f.admitted_total,
        admit_per_tick: f.settings.admit_per_tick.unwrap_or(d.admit_per_tick),
        tick_ms: f.settings.tick_ms.unwrap_or(d.tick_ms),
        max_active: f.settings.max_active.unwrap_or(d.max_active),
        access_ttl_secs: f.settings.access_ttl_secs.unwrap_or(d.access_ttl_secs),
        measured_rate_per_sec: f.rate,
    })
}

async fn existing_concert(app: &App, req: &Req) -> Result<ConcertId, ApiError> {
    let concert = req.param(0, ConcertId::from_path, "no such concert")?;
    if !app.concerts.exists(&app.db, concert).await? {
        return Err(ApiError::NotFound("no such concert"));
    }
    Ok(concert)
}

pub async fn get_queue(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    gate::admin(app, req)?;
    let concert = existing_concert(app, req).await?;
    Ok(json(StatusCode::OK, &queue_view(app, concert).await?))
}

/// An integer field within bounds, or 422 naming it.
fn bounded(
    body: &crate::http::request::JsonObject,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::validation(
                field,
                format!("must be an integer in {min}..={max}"),
            )),
        },
    }
}

/// Changes any of the settings; every value is checked before anything is stored, so a bad
/// request changes nothing. Every instance's timer reads them at its next tick.
pub async fn put_queue(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    gate::admin(app, req)?;
    let concert = existing_concert(app, req).await?;
    let body = req.json().await?;
    let patch = SettingsPatch {
        admit_per_tick: bounded(&body, "admit_per_tick", 0, 100_000)?,
        tick_ms: bounded(&body, "tick_ms", 100, 60_000)?,
        max_active: bounded(&body, "max_active", 0, 1_000_000)?,
        access_ttl_secs: bounded(&body, "access_ttl_secs", 10, 86_400)?,
    };
    app.queue.put_settings(concert, &patch).await?;
    app.queue.register_concert(concert).await?;
    tracing::info!(%concert, ?patch, "queue settings changed");
    Ok(json(StatusCode::OK, &queue_view(app, concert).await?))
}
