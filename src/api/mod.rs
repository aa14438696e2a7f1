//! The HTTP API: routes, the gate, the error table, and one handler per route. Each handler
//! parses its request into domain types, asks the gate, calls one service operation and shapes
//! the answer. No SQL or Redis here.
//!
//! `Api` (in `state`) is the `http::Handler` the server runs: resolve the route, dispatch,
//! and turn any error into the contract's envelope.

pub mod admin;
pub mod booking;
pub mod error;
pub mod gate;
pub mod gateway;
pub mod json;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod queue;
pub mod routes;
pub mod state;
pub mod users;

use error::ApiError;
use hyper::header::{ALLOW, HeaderValue};
use routes::Route;
use state::Api;

use crate::http::handler::{Handler, Served};
use crate::http::{Req, Resp};

impl Handler for Api {
    async fn serve(&self, req: &mut Req) -> Served {
        // Gateway mode, before routing: a protected path that is not one of our own routes
        // goes to the origin (or to the waiting room), never to the route table.
        if let Some(gw) = self.gateway.as_deref()
            && let Some(guard) = gw.line_for(&req.path)
        {
            let result = Box::pin(gateway::forward(self, gw, guard, req)).await;
            return Served {
                route: gateway::ROUTE,
                resp: answer(result, req),
                quiet: false,
            };
        }
        let (route, result) = match routes::resolve(&req.method, &req.path) {
            Ok(m) => {
                req.params = m.params;
                (Some(m.route), dispatch(self, m.route, req).await)
            }
            Err(e) => (None, Err(e)),
        };
        Served {
            route: route.map_or(routes::UNMATCHED, Route::name),
            resp: answer(result, req),
            quiet: matches!(route, Some(Route::Metrics | Route::Healthz)),
        }
    }

    fn panicked(&self, request_id: &str) -> Resp {
        error::respond(&ApiError::Internal("handler panicked".into()), request_id)
    }
}

/// A handler's result as the answer: errors become the contract's envelope (logged when 5xx).
fn answer(result: Result<Resp, ApiError>, req: &Req) -> Resp {
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(error = %e, code = e.code(), "request failed");
            }
            let mut r = error::respond(&e, &req.request_id);
            if matches!(e, ApiError::MethodNotAllowed)
                && let Ok(v) = HeaderValue::from_str(&routes::allowed(&req.path).join(", "))
            {
                r.headers_mut().insert(ALLOW, v);
            }
            r
        }
    }
}

/// Each route's future is boxed on its own: they differ in size by orders of magnitude (a
/// payment's transaction holds kilobytes of state, a status poll a few hundred bytes), and an
/// unboxed `match` would make every request allocate and copy the largest one (8.5 KB, which
/// also sends glibc's allocator down its slow path for "large" requests).
async fn dispatch(api: &Api, route: Route, req: &mut Req) -> Result<Resp, ApiError> {
    use Route::*;
    match route {
        Healthz => ops::healthz(),
        Readyz => Box::pin(ops::readyz(api)).await,
        Metrics => ops::metrics(api),
        CreateUser => Box::pin(users::create(api, req)).await,
        GetBalance => Box::pin(users::balance(api, req)).await,
        ChargeBalance => Box::pin(users::charge(api, req)).await,
        ConcertSchedules => Box::pin(booking::schedules(api, req)).await,
        ScheduleSeats => Box::pin(booking::seats(api, req)).await,
        CreateReservation => Box::pin(booking::hold(api, req)).await,
        GetReservation => Box::pin(booking::get(api, req)).await,
        CancelReservation => Box::pin(booking::cancel(api, req)).await,
        CreatePayment => Box::pin(booking::pay(api, req)).await,
        AdminCreateConcert => Box::pin(admin::create_concert(api, req)).await,
        JoinQueue => Box::pin(queue::join(api, req)).await,
        QueueStatus => Box::pin(queue::status(api, req)).await,
        QueueEvents => Box::pin(queue::events(api, req)).await,
        QueueEventsTicket => Box::pin(queue::stream_ticket(api, req)).await,
        LeaveQueue => Box::pin(queue::leave(api, req)).await,
        AdminGetQueue => Box::pin(admin::get_queue(api, req)).await,
        AdminPutQueue => Box::pin(admin::put_queue(api, req)).await,
        ListConcerts => Box::pin(booking::list_concerts(api)).await,
        PageIndex => pages::index(),
        PageConcert => pages::concert_page(first_param(req)),
        PageAsset => pages::asset(first_param(req)),
        Docs => pages::docs(),
        OpenApiJson => openapi::serve(),
        GatewaySession => Box::pin(gateway::create_session(api, req)).await,
        GatewaySessionEnd => gateway::end_session(api, req),
    }
}

fn first_param(req: &Req) -> &str {
    req.params.first().map_or("", String::as_str)
}
