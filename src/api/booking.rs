//! Booking routes, all behind the access gate: schedules, seats, holds, payments; plus the
//! public list of concerts on sale.

use super::error::{ApiError, ErrorBody};
use super::gate::Gate;
use super::json::{JsonObject, idempotency_key, stored_response};
use super::routes::param;
use super::state::Api;
use crate::booking::catalogue::{OnSale, Schedules, Seats};
use crate::booking::payments::{Checkout, MAX_CHECKOUT, PayFor, Payment};
use crate::booking::reservations::Reservation;
use crate::domain::{ConcertId, FromJson, ReservationId, ScheduleId, SeatNo};
use crate::http::response::{empty, json};
use crate::http::{Req, Resp};
use crate::ratelimit::Scope;
use hyper::StatusCode;
use serde_json::Value;

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

/// Body of `POST /v1/payments`: one hold (`reservation_id`) or a checkout of several
/// (`reservation_ids`, 1..=4 distinct holds of the caller in this concert, all or nothing).
#[derive(utoipa::ToSchema)]
pub struct Pay {
    pub reservation_id: Option<ReservationId>,
    #[schema(min_items = 1, max_items = 4)]
    pub reservation_ids: Option<Vec<ReservationId>>,
}

impl Pay {
    fn parse(b: &JsonObject) -> Result<PayFor, ApiError> {
        match (b.get("reservation_id"), b.get("reservation_ids")) {
            (Some(_), Some(_)) => Err(ApiError::validation(
                "reservation_ids",
                "send either reservation_id or reservation_ids, not both",
            )),
            (_, None | Some(Value::Null)) => Ok(PayFor::One(b.required("reservation_id")?)),
            (_, Some(Value::Array(items))) => {
                let field = "reservation_ids";
                if items.is_empty() || items.len() > MAX_CHECKOUT {
                    return Err(ApiError::validation(
                        field,
                        format!("must hold 1..={MAX_CHECKOUT} reservation ids"),
                    ));
                }
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    let id = ReservationId::from_json(item)
                        .map_err(|m| ApiError::validation(field, m))?;
                    if ids.contains(&id) {
                        return Err(ApiError::validation(field, "must not repeat an id"));
                    }
                    ids.push(id);
                }
                Ok(PayFor::Checkout(ids))
            }
            (_, Some(_)) => Err(ApiError::validation(
                "reservation_ids",
                "must be an array of reservation ids",
            )),
        }
    }
}

/// What `POST /v1/payments` answers: one `Payment` for `reservation_id`, a `Checkout` for
/// `reservation_ids`. Documents the answer only: the handler sends the stored JSON.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PaymentAnswer {
    One(Payment),
    Checkout(Checkout),
}

#[utoipa::path(get, path = "/v1/concerts", tag = "booking",
    responses((status = 200, description = "Concerts with dates still to come", body = OnSale), (status = 503, body = ErrorBody)))]
pub async fn list_concerts(api: &Api) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &api.catalogue.on_sale().await?))
}

#[utoipa::path(get, path = "/v1/concerts/{concert_id}/schedules", tag = "booking",
    params(("concert_id" = u64, Path)),
    security(("access_token" = [])),
    responses(
        (status = 200, description = "Dates open for booking", body = Schedules, links(
            ("seats" = (operation_id = "seats", parameters(("schedule_id" = "$response.body#/schedules/0/schedule_id")),
                description = "The seat map of the first date")),
        )),
        (status = 401, description = "Missing, invalid or revoked access token", body = ErrorBody),
        (status = 403, description = "Access token for another concert", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn schedules(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let concert = param(req, 0, ConcertId::from_path, "no such concert")?;
    let token = api.gate.access(req).await?;
    Gate::same_concert(&token, concert)?;
    Ok(json(
        StatusCode::OK,
        &api.catalogue.schedules(concert).await?,
    ))
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
pub async fn seats(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let schedule = param(req, 0, ScheduleId::from_path, "no such schedule")?;
    let token = api.gate.access(req).await?;
    Gate::same_concert(&token, api.catalogue.concert_of(schedule).await?)?;
    Ok(json(StatusCode::OK, &api.catalogue.seats(schedule).await?))
}

#[utoipa::path(post, path = "/v1/reservations", tag = "booking", request_body = HoldSeat,
    security(("access_token" = [])),
    responses(
        (status = 201, description = "The seat is held until expires_at (never past the admission's end)", body = Reservation, links(
            ("get" = (operation_id = "get", parameters(("reservation_id" = "$response.body#/reservation_id")),
                description = "The hold's current status")),
            ("cancel" = (operation_id = "cancel", parameters(("reservation_id" = "$response.body#/reservation_id")),
                description = "Release the seat")),
            ("pay" = (operation_id = "pay", request_body = json!({"reservation_id": "$response.body#/reservation_id"}),
                description = "Pay for the hold")),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "SEAT_UNAVAILABLE (with reservation_id when the hold is the caller's own) or HOLD_LIMIT_REACHED", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (see Retry-After)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn hold(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let token = api.gate.access(req).await?;
    api.rate_limit(req, Scope::Hold, token.user_id)?;
    let body = HoldSeat::parse(&JsonObject::read(req).await?)?;
    Gate::same_concert(&token, api.catalogue.concert_of(body.schedule_id).await?)?;
    let r = api
        .holds
        .hold(&token, body.schedule_id, body.seat_no)
        .await?;
    Ok(json(StatusCode::CREATED, &r))
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
pub async fn get(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let id = param(req, 0, ReservationId::from_path, "no such reservation")?;
    let token = api.gate.access(req).await?;
    Ok(json(
        StatusCode::OK,
        &api.reservations.get(&token, id).await?,
    ))
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
pub async fn cancel(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let id = param(req, 0, ReservationId::from_path, "no such reservation")?;
    let token = api.gate.access(req).await?;
    api.reservations.cancel(&token, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[utoipa::path(post, path = "/v1/payments", tag = "booking", request_body = Pay,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats return the first result, even with a newer or already revoked access token")),
    security(("access_token" = [])),
    responses(
        (status = 201, description = "Paid: the seats are sold, the access token revoked and the caller's other holds in this concert released. One `Payment` for `reservation_id`; a `Checkout` for `reservation_ids`", body = PaymentAnswer),
        (status = 200, description = "A replay of an earlier result", body = PaymentAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 402, description = "INSUFFICIENT_BALANCE (with balance and due)", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "HOLD_EXPIRED or ALREADY_PAID", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn pay(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let key = idempotency_key(req)?;
    let token = match (api.gate.access(req).await, &key) {
        (Ok(token), _) => token,
        // A retry of a payment that already went through: the payment revoked the token, but
        // the client deserves the first result rather than a 401.
        (Err(ApiError::TokenRevoked(why)), Some(key)) => {
            let token = api.gate.access_claims(req)?;
            let what = Pay::parse(&JsonObject::read(req).await?)?;
            return match api
                .payments
                .stored_result(token.user_id, key, &what)
                .await?
            {
                Some(stored) => {
                    metrics::counter!("queuegate_payments_total", "result" => "replayed")
                        .increment(1);
                    Ok(stored_response(stored, true))
                }
                None => Err(ApiError::TokenRevoked(why)),
            };
        }
        (Err(e), _) => return Err(e),
    };
    let what = Pay::parse(&JsonObject::read(req).await?)?;
    let (stored, replayed) = api.payments.pay(&token, &what, key.as_ref()).await?;
    Ok(stored_response(stored, replayed))
}
