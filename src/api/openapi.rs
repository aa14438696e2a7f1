//! The OpenAPI 3 description, generated from the handlers' annotations and the very types they
//! parse and serialise, so it cannot drift from the code; a test checks that every route the
//! router knows is described.

use super::error::ApiError;
use crate::http::Resp;
use crate::http::response::bytes;
use hyper::StatusCode;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "queuegate",
        description = "A waiting-room gateway for concert ticket sales: a fair line per concert, controlled admission, seat holds and payments from a pre-charged wallet. Errors are always {\"error\": {\"code\", \"message\", \"request_id\"}}; every response carries x-request-id.",
        version = "1.0.0"
    ),
    paths(
        super::users::create,
        super::users::balance,
        super::users::charge,
        super::queue::join,
        super::queue::status,
        super::queue::events,
        super::queue::stream_ticket,
        super::queue::leave,
        super::booking::list_concerts,
        super::booking::schedules,
        super::booking::seats,
        super::booking::hold,
        super::booking::get,
        super::booking::cancel,
        super::booking::pay,
        super::admin::create_concert,
        super::admin::get_queue,
        super::admin::put_queue,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::pages::index,
        super::pages::concert_page,
        super::pages::asset,
        super::pages::docs,
        super::gateway::create_session,
        super::gateway::end_session,
        serve,
    ),
    components(schemas(crate::booking::payments::Checkout)),
    modifiers(&BearerTokens),
    tags(
        (name = "users", description = "Users and wallets (user token)"),
        (name = "queue", description = "The waiting room (user token to join, queue token after)"),
        (name = "booking", description = "Dates, seats, holds, payments (access token)"),
        (name = "admin", description = "Operators (ADMIN_TOKEN)"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "pages", description = "Browser pages and documentation"),
        (name = "gateway", description = "Gateway mode (UPSTREAM_URL set): requests for the protected path prefixes (UPSTREAM_PATHS) that are not queuegate's own routes are forwarded to the origin only with a live admission to the guarding line (the prefix's own `=<concert id>`, else UPSTREAM_CONCERT_ID; the longest matching prefix decides): the grant cookie qg_grant (one access token per line the visitor was admitted to, `~` between them), or an access token in Authorization: Bearer. Without one, a browser (GET/HEAD accepting text/html) gets 303 See Other to /concerts/{id}?return=<path>, and any other client 403 NOT_ADMITTED with `queue_url` and `concert_id` in the error body. Origin unreachable or answering garbage: 502 BAD_GATEWAY; no response head within UPSTREAM_FIRST_BYTE_TIMEOUT_MS: 504 GATEWAY_TIMEOUT; both with Retry-After. A path with . or .. segments, //, encoded slashes or backslashes: 400. Whatever the origin answers is passed on as it is (hop-by-hop headers removed; `Cache-Control: private` added when the origin set no Cache-Control, so that no shared cache hands an admitted visitor's page to others)."),
    )
)]
pub struct ApiDoc;

/// The four bearer schemes: which kind of token each route takes.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("user_token", "A `user` token from POST /v1/users"),
            ("queue_token", "A `queue` token from POST /v1/queue"),
            (
                "access_token",
                "An `access` token from the queue status once admitted",
            ),
            ("admin_token", "The ADMIN_TOKEN"),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(what.to_owned());
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The document, rendered once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "pages",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub fn serve() -> Result<Resp, ApiError> {
    Ok(bytes(StatusCode::OK, "application/json", document()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::Route;

    #[test]
    fn every_route_is_described() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        for (method, route) in Route::ALL {
            let path = &doc["paths"][route.name()];
            assert!(
                path.get(method.to_lowercase()).is_some(),
                "{method} {} is missing from the OpenAPI document",
                route.name()
            );
        }
        let described: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            described,
            Route::ALL.len(),
            "the document describes a route the router lacks"
        );
    }
}
