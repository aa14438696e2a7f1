//! Admin routes (bearer `ADMIN_TOKEN`): concert creation; queue settings arrive with the queue.

use crate::app::App;
use crate::booking::concerts;
use crate::domain::{ConcertName, FromJson, Price, StartsAt};
use crate::error::ApiError;
use crate::gate;
use crate::http::response::json;
use crate::http::{Req, Resp};
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
    tracing::info!(concert_id = %created.concert_id, dates = created.schedules.len(), "concert created");
    Ok(json(StatusCode::CREATED, &created))
}
