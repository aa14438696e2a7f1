//! The browser side: the waiting-room pages and their assets, compiled into the binary so the
//! gateway serves everything itself (no build step, no outside assets).
//!
//! `/` and `/concerts/{id}` both serve the same page shell; `app.js` reads the path and shows
//! the concert list or that concert's waiting room and booking steps.

use super::error::ApiError;
use crate::http::Resp;
use crate::http::response::bytes;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const DOCS_HTML: &str = include_str!("../../assets/docs.html");
const DOCS_JS: &str = include_str!("../../assets/docs.js");
const DOCS_CSS: &str = include_str!("../../assets/docs.css");

/// The API reference page: renders `/openapi.json` with the gateway's own script.
#[utoipa::path(get, path = "/docs", tag = "pages",
    responses((status = 200, description = "API reference (browser page)", content_type = "text/html", body = String)))]
pub fn docs() -> Result<Resp, ApiError> {
    Ok(with_cache(
        bytes(StatusCode::OK, "text/html; charset=utf-8", DOCS_HTML),
        "no-cache",
    ))
}

fn with_cache(mut r: Resp, policy: &'static str) -> Resp {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        ),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[utoipa::path(get, path = "/", tag = "pages",
    responses((status = 200, description = "The concert list (browser page)", content_type = "text/html", body = String)))]
pub fn index() -> Result<Resp, ApiError> {
    shell()
}

#[utoipa::path(get, path = "/concerts/{concert_id}", tag = "pages",
    params(("concert_id" = u64, Path)),
    responses(
        (status = 200, description = "The waiting room and booking steps (browser page)", content_type = "text/html", body = String),
        (status = 404, body = super::error::ErrorBody),
    ))]
pub fn concert_page(concert_id: &str) -> Result<Resp, ApiError> {
    crate::domain::ConcertId::from_path(concert_id)
        .ok_or_else(|| ApiError::not_found("no such concert"))?;
    shell()
}

fn shell() -> Result<Resp, ApiError> {
    Ok(with_cache(
        bytes(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "no-cache",
    ))
}

#[utoipa::path(get, path = "/assets/{file}", tag = "pages",
    params(("file" = String, Path, description = "app.js, app.css, docs.js or docs.css")),
    responses(
        (status = 200, description = "A static asset", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, body = super::error::ErrorBody),
    ))]
pub fn asset(name: &str) -> Result<Resp, ApiError> {
    let (content_type, body) = match name {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        "docs.js" => ("text/javascript; charset=utf-8", DOCS_JS),
        "docs.css" => ("text/css; charset=utf-8", DOCS_CSS),
        _ => return Err(ApiError::not_found("no such asset")),
    };
    Ok(with_cache(
        bytes(StatusCode::OK, content_type, body),
        "public, max-age=300",
    ))
}
