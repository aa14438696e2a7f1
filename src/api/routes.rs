//! Routing: method + path to a `Route`, with path parameters captured. A known path with the
//! wrong method is a 405 (with `Allow`), an unknown path a 404. `Route::name` is the path
//! template, used as the metrics label so label cardinality stays bounded.

use super::error::ApiError;
use hyper::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    CreateUser,
    GetBalance,
    ChargeBalance,
    JoinQueue,
    QueueStatus,
    QueueEvents,
    QueueEventsTicket,
    LeaveQueue,
    ConcertSchedules,
    ScheduleSeats,
    CreateReservation,
    GetReservation,
    CancelReservation,
    CreatePayment,
    AdminCreateConcert,
    AdminGetQueue,
    AdminPutQueue,
    ListConcerts,
    PageIndex,
    PageConcert,
    PageAsset,
    Docs,
    OpenApiJson,
    GatewaySession,
    GatewaySessionEnd,
}

impl Route {
    pub fn name(self) -> &'static str {
        use Route::*;
        match self {
            Healthz => "/healthz",
            Readyz => "/readyz",
            Metrics => "/metrics",
            CreateUser => "/v1/users",
            GetBalance => "/v1/users/{user_id}/balance",
            ChargeBalance => "/v1/users/{user_id}/balance/charge",
            JoinQueue | LeaveQueue => "/v1/queue",
            QueueStatus => "/v1/queue/status",
            QueueEvents => "/v1/queue/events",
            QueueEventsTicket => "/v1/queue/events/ticket",
            ConcertSchedules => "/v1/concerts/{concert_id}/schedules",
            ScheduleSeats => "/v1/schedules/{schedule_id}/seats",
            CreateReservation => "/v1/reservations",
            GetReservation | CancelReservation => "/v1/reservations/{reservation_id}",
            CreatePayment => "/v1/payments",
            AdminCreateConcert => "/v1/admin/concerts",
            AdminGetQueue | AdminPutQueue => "/v1/admin/concerts/{concert_id}/queue",
            ListConcerts => "/v1/concerts",
            PageIndex => "/",
            PageConcert => "/concerts/{concert_id}",
            PageAsset => "/assets/{file}",
            Docs => "/docs",
            OpenApiJson => "/openapi.json",
            GatewaySession | GatewaySessionEnd => "/v1/gateway/session",
        }
    }
}

impl Route {
    /// Every route with its method, for checks that nothing is left out (OpenAPI, docs).
    pub const ALL: &'static [(&'static str, Route)] = &[
        ("GET", Route::Healthz),
        ("GET", Route::Readyz),
        ("GET", Route::Metrics),
        ("POST", Route::CreateUser),
        ("GET", Route::GetBalance),
        ("POST", Route::ChargeBalance),
        ("POST", Route::JoinQueue),
        ("GET", Route::QueueStatus),
        ("GET", Route::QueueEvents),
        ("POST", Route::QueueEventsTicket),
        ("DELETE", Route::LeaveQueue),
        ("GET", Route::ConcertSchedules),
        ("GET", Route::ScheduleSeats),
        ("POST", Route::CreateReservation),
        ("GET", Route::GetReservation),
        ("DELETE", Route::CancelReservation),
        ("POST", Route::CreatePayment),
        ("POST", Route::AdminCreateConcert),
        ("GET", Route::AdminGetQueue),
        ("PUT", Route::AdminPutQueue),
        ("GET", Route::ListConcerts),
        ("GET", Route::PageIndex),
        ("GET", Route::PageConcert),
        ("GET", Route::PageAsset),
        ("GET", Route::Docs),
        ("GET", Route::OpenApiJson),
        ("POST", Route::GatewaySession),
        ("DELETE", Route::GatewaySessionEnd),
    ];
}

/// Path parameter `i` parsed as an id; a segment that is no id names no resource (404).
pub fn param<T>(
    req: &crate::http::Req,
    i: usize,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> Result<T, ApiError> {
    req.params
        .get(i)
        .and_then(|s| parse(s))
        .ok_or_else(|| ApiError::not_found(what))
}

pub struct Matched {
    pub route: Route,
    pub params: Vec<String>,
}

/// Request-line prefixes the server serves on the raw socket: event streams live for minutes,
/// and a raw connection costs a fraction of a hyper one (see `http::raw`).
pub const RAW_STREAMS: &[&[u8]] = &[b"GET /v1/queue/events"];

/// Label for requests that matched no route (keeps metrics bounded under path scanning).
pub const UNMATCHED: &str = "unmatched";

/// The (at most two) methods a path takes, and the route each leads to.
type Choices = [Option<(Method, Route)>; 2];

pub fn resolve(method: &Method, path: &str) -> Result<Matched, ApiError> {
    use Route::*;
    // Every route has at most MAX_SEGMENTS segments: the path is split into an array on the
    // stack (no allocation on the way to a handler).
    const MAX_SEGMENTS: usize = 6;
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let mut buf = [""; MAX_SEGMENTS];
    let mut n = 0;
    if !trimmed.is_empty() {
        for seg in trimmed.split('/') {
            if n == MAX_SEGMENTS {
                return Err(ApiError::not_found("no such route"));
            }
            buf[n] = seg;
            n += 1;
        }
    }
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let one = |m: Method, r: Route| [Some((m, r)), None];
    let (candidates, param): (Choices, Option<&str>) = match &buf[..n] {
        [] => (one(get, PageIndex), None),
        ["concerts", id] => (one(get, PageConcert), Some(*id)),
        ["assets", file] => (one(get, PageAsset), Some(*file)),
        ["v1", "concerts"] => (one(get, ListConcerts), None),
        ["docs"] => (one(get, Docs), None),
        ["openapi.json"] => (one(get, OpenApiJson), None),
        ["healthz"] => (one(get, Healthz), None),
        ["readyz"] => (one(get, Readyz), None),
        ["metrics"] => (one(get, Metrics), None),
        ["v1", "users"] => (one(post, CreateUser), None),
        ["v1", "users", id, "balance"] => (one(get, GetBalance), Some(*id)),
        ["v1", "users", id, "balance", "charge"] => (one(post, ChargeBalance), Some(*id)),
        ["v1", "queue"] => ([Some((post, JoinQueue)), Some((delete, LeaveQueue))], None),
        ["v1", "queue", "status"] => (one(get, QueueStatus), None),
        ["v1", "queue", "events"] => (one(get, QueueEvents), None),
        ["v1", "queue", "events", "ticket"] => (one(post, QueueEventsTicket), None),
        ["v1", "concerts", id, "schedules"] => (one(get, ConcertSchedules), Some(*id)),
        ["v1", "schedules", id, "seats"] => (one(get, ScheduleSeats), Some(*id)),
        ["v1", "reservations"] => (one(post, CreateReservation), None),
        ["v1", "reservations", id] => (
            [
                Some((get, GetReservation)),
                Some((delete, CancelReservation)),
            ],
            Some(*id),
        ),
        ["v1", "payments"] => (one(post, CreatePayment), None),
        ["v1", "gateway", "session"] => (
            [
                Some((post, GatewaySession)),
                Some((delete, GatewaySessionEnd)),
            ],
            None,
        ),
        ["v1", "admin", "concerts"] => (one(post, AdminCreateConcert), None),
        ["v1", "admin", "concerts", id, "queue"] => (
            [Some((get, AdminGetQueue)), Some((put, AdminPutQueue))],
            Some(*id),
        ),
        _ => return Err(ApiError::not_found("no such route")),
    };
    match candidates.iter().flatten().find(|(m, _)| m == method) {
        Some((_, route)) => Ok(Matched {
            route: *route,
            params: param.map(|p| vec![p.to_owned()]).unwrap_or_default(),
        }),
        None => Err(ApiError::MethodNotAllowed),
    }
}

/// The methods a path accepts, for the `Allow` header of a 405.
pub fn allowed(path: &str) -> Vec<&'static str> {
    [
        ("GET", Method::GET),
        ("POST", Method::POST),
        ("PUT", Method::PUT),
        ("DELETE", Method::DELETE),
    ]
    .into_iter()
    .filter(|(_, m)| resolve(m, path).is_ok())
    .map(|(name, _)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_with_params() {
        let m = resolve(&Method::POST, "/v1/users/12/balance/charge").unwrap();
        assert_eq!(m.route, Route::ChargeBalance);
        assert_eq!(m.params, vec!["12"]);
        let m = resolve(&Method::DELETE, "/v1/reservations/9").unwrap();
        assert_eq!(m.route, Route::CancelReservation);
        assert_eq!(resolve(&Method::GET, "/").unwrap().route, Route::PageIndex);
        assert_eq!(
            resolve(&Method::GET, "/v1").err().map(|e| e.code()),
            Some("NOT_FOUND")
        );
    }

    /// Gateway mode never forwards a path under one of queuegate's own first segments; every
    /// route must live under one of them, or a protected prefix could shadow it.
    #[test]
    fn every_route_is_inside_the_own_paths_gateway_mode_never_forwards() {
        for (_, route) in Route::ALL {
            assert!(
                crate::config::is_own_path(route.name()),
                "{} is outside config::OWN_PATH_SEGMENTS",
                route.name()
            );
        }
    }

    #[test]
    fn wrong_method_is_405_and_unknown_path_404() {
        assert!(matches!(
            resolve(&Method::PATCH, "/v1/users"),
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            resolve(&Method::GET, "/v1/nope"),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(allowed("/v1/reservations/3"), vec!["GET", "DELETE"]);
    }
}
