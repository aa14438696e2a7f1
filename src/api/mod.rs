//! The HTTP API: each handler parses its request into domain types, asks the right gate, calls
//! one domain operation and shapes the answer. No SQL or Redis here.

mod admin;
mod booking;
pub mod openapi;
mod ops;
pub mod queue;
mod users;

use crate::app::App;
use crate::error::ApiError;
use crate::http::router::Route;
use crate::http::{Req, Resp};

pub async fn dispatch(
    app: &std::sync::Arc<App>,
    route: Route,
    req: &mut Req,
) -> Result<Resp, ApiError> {
    use Route::*;
    match route {
        Healthz => ops::healthz(),
        Readyz => ops::readyz(app).await,
        Metrics => ops::metrics(app),
        CreateUser => users::create(app, req).await,
        GetBalance => users::balance(app, req).await,
        ChargeBalance => users::charge(app, req).await,
        ConcertSchedules => booking::schedules(app, req).await,
        ScheduleSeats => booking::seats(app, req).await,
        CreateReservation => booking::hold(app, req).await,
        GetReservation => booking::get(app, req).await,
        CancelReservation => booking::cancel(app, req).await,
        CreatePayment => booking::pay(app, req).await,
        AdminCreateConcert => admin::create_concert(app, req).await,
        JoinQueue => queue::join(app, req).await,
        QueueStatus => queue::status(app, req).await,
        QueueEvents => queue::events(app, req).await,
        LeaveQueue => queue::leave(app, req).await,
        AdminGetQueue => admin::get_queue(app, req).await,
        ListConcerts => booking::list_concerts(app).await,
        PageIndex => crate::pages::index(),
        PageConcert => crate::pages::concert_page(&req.params[0]),
        PageAsset => crate::pages::asset(&req.params[0]),
        Docs => crate::pages::docs(),
        OpenApiJson => openapi::serve(),
        AdminPutQueue => admin::put_queue(app, req).await,
    }
}

/// Applies the rate limit of `scope` to this user and this request's client address.
fn rate_limit(
    app: &App,
    req: &Req,
    scope: crate::ratelimit::Scope,
    user: crate::domain::UserId,
) -> Result<(), ApiError> {
    let forwarded = req
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let address = app.limits.client_address(req.peer.ip(), forwarded);
    app.limits.check(scope, user, address)
}

/// The `Idempotency-Key` header, parsed.
fn idempotency_key(req: &Req) -> Result<Option<crate::domain::IdempotencyKey>, ApiError> {
    req.header("idempotency-key")
        .map(|raw| {
            crate::domain::IdempotencyKey::parse(raw)
                .map_err(|m| ApiError::validation("Idempotency-Key", m))
        })
        .transpose()
}

/// Sends a stored (possibly replayed) money result verbatim.
fn stored_response(stored: crate::idempotency::Stored, replayed: bool) -> Resp {
    let status = hyper::StatusCode::from_u16(stored.status).unwrap_or(hyper::StatusCode::OK);
    let mut resp = crate::http::response::raw_json(status, stored.body);
    if replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            hyper::header::HeaderValue::from_static("true"),
        );
    }
    resp
}
