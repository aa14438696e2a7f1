//! Booking routes, all behind the access gate: schedules, seats, holds, payments; plus the
//! public list of concerts on sale.

use super::{idempotency_key, stored_response};
use crate::app::App;
use crate::booking::concerts::{Catalogue, Schedules, Seats};
use crate::booking::payments::Payment;
use crate::booking::reservations::Reservation;
use crate::booking::{concerts, payments, reservations};
use crate::domain::{ConcertId, ReservationId, ScheduleId, SeatNo};
use crate::error::ApiError;
use crate::gate;
use crate::http::request::JsonObject;
use crate::http::response::{ErrorBody, empty, json};
use crate::http::{Req, Resp};
use hyper::StatusCode;
use std::sync::Arc;

/// Body of `POST /v1/reservations`.
#[derive(utoipa::ToSchema)]
pub struct HoldSeat {
    pub schedule_id: ScheduleId,
    pub seat_no: SeatNo,
}

impl HoldSeat {
    fn parse(b: &JsonObject) -> Result<Self, ApiError> {
        Ok(HoldSeat {
            schedule_id: b.required("schedule_id")?,
            seat_no: b.required("seat_no")?,
        })
    }
}

/// Body of `POST /v1/payments`.
#[derive(utoipa::ToSchema)]
pub struct Pay {
    pub reservation_id: ReservationId,
}

impl Pay {
    fn parse(b: &JsonObject) -> Result<Self, ApiError> {
        Ok(Pay {
            reservation_id: b.required("reservation_id")?,
        })
    }
}

#[utoipa::path(get, path = "/v1/concerts", tag = "booking",
    responses((status = 200, description = "Concerts with dates still to come", body = Catalogue), (status = 503, body = ErrorBody)))]
pub async fn list_concerts(app: &App) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &concerts::on_sale(&app.db).await?))
}

#[utoipa::path(get, path = "/v1/concerts/{concert_id}/schedules", tag = "booking",
    params(("concert_id" = u64, Path)),
    security(("access_token" = [])),
    responses(
        (status = 200, description = "Dates open for booking", body = Schedules),
        (status = 401, description = "Missing, invalid or revoked access token", body = ErrorBody),
        (status = 403, description = "Access token for another concert", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/v1/schedules/{schedule_id}/seats", tag = "booking",
    params(("schedule_id" = u64, Path)),
    security(("access_token" = [])),
    responses(
        (status = 200, description = "Seats 1..=50", body = Seats),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn seats(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let schedule = req.param(0, ScheduleId::from_path, "no such schedule")?;
    let token = gate::access(app, req).await?;
    gate::same_concert(&token, concert_of(app, schedule).await?)?;
    Ok(json(
        StatusCode::OK,
        &concerts::seats(&app.db, schedule).await?,
    ))
}

#[utoipa::path(post, path = "/v1/reservations", tag = "booking", request_body = HoldSeat,
    security(("access_token" = [])),
    responses(
        (status = 201, description = "The seat is held until expires_at", body = Reservation),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "SEAT_UNAVAILABLE or HOLD_LIMIT_REACHED", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (see Retry-After)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn hold(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let token = gate::access(app, req).await?;
    super::rate_limit(app, req, crate::ratelimit::Scope::Hold, token.user_id)?;
    let body = HoldSeat::parse(&req.json().await?)?;
    gate::same_concert(&token, concert_of(app, body.schedule_id).await?)?;
    let r = reservations::hold(app, token.user_id, body.schedule_id, body.seat_no).await?;
    Ok(json(StatusCode::CREATED, &r))
}

/// A reservation the caller owns, for the caller's concert.
async fn owned(
    app: &App,
    req: &Req,
) -> Result<(Reservation, crate::tokens::AccessToken), ApiError> {
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

#[utoipa::path(get, path = "/v1/reservations/{reservation_id}", tag = "booking",
    params(("reservation_id" = u64, Path)),
    security(("access_token" = [])),
    responses(
        (status = 200, body = Reservation),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Another user's reservation", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn get(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let (r, _) = owned(app, req).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(delete, path = "/v1/reservations/{reservation_id}", tag = "booking",
    params(("reservation_id" = u64, Path)),
    security(("access_token" = [])),
    responses(
        (status = 204, description = "Cancelled; the seat is free at once"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not held any more (HOLD_EXPIRED, ALREADY_PAID)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn cancel(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let (r, token) = owned(app, req).await?;
    reservations::cancel(&app.db, &app.seats, token.user_id, r.reservation_id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[utoipa::path(post, path = "/v1/payments", tag = "booking", request_body = Pay,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats return the first result, even with a newer or already revoked access token")),
    security(("access_token" = [])),
    responses(
        (status = 201, description = "Paid: the seat is sold and the access token revoked", body = Payment),
        (status = 200, description = "A replay of an earlier result", body = Payment),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 402, description = "INSUFFICIENT_BALANCE", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "HOLD_EXPIRED or ALREADY_PAID", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn pay(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let key = idempotency_key(req)?;
    let token = match (gate::access(app, req).await, &key) {
        (Ok(token), _) => token,
        // A retry of a payment that already went through: the payment revoked the token, but
        // the client deserves the first result rather than a 401.
        (Err(ApiError::TokenRevoked), Some(key)) => {
            let token = app.tokens.verify_access(req.require_bearer()?)?;
            let body = Pay::parse(&req.json().await?)?;
            return match payments::stored_result(app, token.user_id, key, body.reservation_id)
                .await?
            {
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
    let body = Pay::parse(&req.json().await?)?;
    let (stored, replayed) = payments::pay(app, &token, body.reservation_id, key.as_ref()).await?;
    Ok(stored_response(stored, replayed))
}
