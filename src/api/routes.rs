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

pub fn resolve(method: &Method, path: &str) -> Result<Matched, ApiError> {
    use Route::*;
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let segs: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    let get = Method::GET;
    let post = Method::POST;
    let put = Method::PUT;
    let delete = Method::DELETE;
    let (candidates, params): (Vec<(Method, Route)>, Vec<&str>) = match segs.as_slice() {
        [] => (vec![(get, PageIndex)], vec![]),
        ["concerts", id] => (vec![(get, PageConcert)], vec![id]),
        ["assets", file] => (vec![(get, PageAsset)], vec![file]),
        ["v1", "concerts"] => (vec![(get, ListConcerts)], vec![]),
        ["docs"] => (vec![(get, Docs)], vec![]),
        ["openapi.json"] => (vec![(get, OpenApiJson)], vec![]),
        ["healthz"] => (vec![(get, Healthz)], vec![]),
        ["readyz"] => (vec![(get, Readyz)], vec![]),
        ["metrics"] => (vec![(get, Metrics)], vec![]),
        ["v1", "users"] => (vec![(post, CreateUser)], vec![]),
        ["v1", "users", id, "balance"] => (vec![(get, GetBalance)], vec![id]),
        ["v1", "users", id, "balance", "charge"] => (vec![(post, ChargeBalance)], vec![id]),
        ["v1", "queue"] => (vec![(post, JoinQueue), (delete, LeaveQueue)], vec![]),
        ["v1", "queue", "status"] => (vec![(get, QueueStatus)], vec![]),
        ["v1", "queue", "events"] => (vec![(get, QueueEvents)], vec![]),
        ["v1", "queue", "events", "ticket"] => (vec![(post, QueueEventsTicket)], vec![]),
        ["v1", "concerts", id, "schedules"] => (vec![(get, ConcertSchedules)], vec![id]),
        ["v1", "schedules", id, "seats"] => (vec![(get, ScheduleSeats)], vec![id]),
        ["v1", "reservations"] => (vec![(post, CreateReservation)], vec![]),
        ["v1", "reservations", id] => (
            vec![(get, GetReservation), (delete, CancelReservation)],
            vec![id],
        ),
        ["v1", "payments"] => (vec![(post, CreatePayment)], vec![]),
        ["v1", "gateway", "session"] => (
            vec![(post, GatewaySession), (delete, GatewaySessionEnd)],
            vec![],
        ),
        ["v1", "admin", "concerts"] => (vec![(post, AdminCreateConcert)], vec![]),
        ["v1", "admin", "concerts", id, "queue"] => {
            (vec![(get, AdminGetQueue), (put, AdminPutQueue)], vec![id])
        }
        _ => return Err(ApiError::not_found("no such route")),
    };
    match candidates.iter().find(|(m, _)| m == method) {
        Some((_, route)) => Ok(Matched {
            route: *route,
            params: params.into_iter().map(str::to_owned).collect(),
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
