//! Booking routes, all behind the access gate: schedules, seats, holds, payments.

use super::{idempotency_key, stored_response};
use crate::app::App;
use crate::booking::{concerts, payments, reservations};
use crate::domain::{ConcertId, ReservationId, ScheduleId, SeatNo};
use crate::error::ApiError;
use crate::gate;
use crate::http::response::{empty, json};
use crate::http::{Req, Resp};
use hyper::StatusCode;
use std::sync::Arc;

pub async fn schedules(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let concert = req.param(0, ConcertId::from_path, "no such concert")?;
    let token = gate::access(app, req).await?;
    gate::same_concert(&token, concert)?;
    Ok(json(
        StatusCode::OK,
        &concerts::schedules(&app.db, concert).await?,
    ))
}

/// The concert a schedule belongs to, or 404.
async fn concert_of(app: &App, schedule: ScheduleId) -> Result<ConcertId, ApiError> {
    app.schedules
        .concert_of(&app.db, schedule)
        .await?
        .ok_or(ApiError::NotFound("no such schedule"))
}

pub async fn seats(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let schedule = req.param(0, ScheduleId::from_path, "no such schedule")?;
    let token = gate::access(app, req).await?;
    gate::same_concert(&token, concert_of(app, schedule).await?)?;
    Ok(json(
        StatusCode::OK,
        &concerts::seats(&app.db, schedule).await?,
    ))
}

pub async fn hold(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let token = gate::access(app, req).await?;
    let body = req.json().await?;
    let schedule: ScheduleId = body.required("schedule_id")?;
    let seat: SeatNo = body.required("seat_no")?;
    gate::same_concert(&token, concert_of(app, schedule).await?)?;
    let r = reservations::hold(app, token.user_id, schedule, seat).await?;
    Ok(json(StatusCode::CREATED, &r))
}

/// A reservation the caller owns, for the caller's concert.
async fn owned(
    app: &App,
    req: &Req,
) -> Result<(reservations::Reservation, crate::tokens::AccessToken), ApiError> {
    let id = req.param(0, ReservationId::from_path, "no such reservation")?;
    let token = gate::access(app, req).await?;
    let r = reservations::get(&app.db, id).await?;
    if r.user_id != token.user_id {
        return Err(ApiError::Forbidden(
            "this reservation belongs to another user",
        ));
    }
    gate::same_concert(&token, concert_of(app, r.schedule_id).await?)?;
    Ok((r, token))
}

pub async fn get(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let (r, _) = owned(app, req).await?;
    Ok(json(StatusCode::OK, &r))
}

pub async fn cancel(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let (r, token) = owned(app, req).await?;
    reservations::cancel(&app.db, &app.seats, token.user_id, r.reservation_id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn pay(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let key = idempotency_key(req)?;
    let token = match (gate::access(app, req).await, &key) {
        (Ok(token), _) => token,
        // A retry of a payment that already went through: the payment revoked the token, but
        // the client deserves the first result rather than a 401.
        (Err(ApiError::TokenRevoked), Some(key)) => {
            let token = app.tokens.verify_access(req.require_bearer()?)?;
            let reservation: ReservationId = req.json().await?.required("reservation_id")?;
            return match payments::stored_result(app, token.user_id, key, reservation).await? {
                Some(stored) => {
                    metrics::counter!("queuegate_payments_total", "result" => "replayed")
                        .increment(1);
                    Ok(stored_response(stored, true))
                }
                None => Err(ApiError::TokenRevoked),
            };
        }
        (Err(e), _) => return Err(e),
    };
    let reservation: ReservationId = req.json().await?.required("reservation_id")?;
    let (stored, replayed) = payments::pay(app, &token, reservation, key.as_ref()).await?;
    Ok(stored_response(stored, replayed))
}
