//! Gateway mode's settings (`UPSTREAM_*`): the origin behind the line, the paths it guards,
//! and the paths that are always queuegate's own.

use super::env::Env;
use super::values::{ConfigError, Secret};
use crate::domain::ConcertId;
use std::time::Duration;

/// The first path segments queuegate serves itself (`api::routes`; a test there keeps the two in
/// step), plus the root `/`. Gateway mode never forwards a path under one of them, whatever
/// `UPSTREAM_PATHS` says, so the waiting room, its API and its pages cannot be shadowed by the
/// origin — nor the origin reached through a path that looks like ours.
pub const OWN_PATH_SEGMENTS: &[&str] = &[
    "v1",
    "healthz",
    "readyz",
    "metrics",
    "openapi.json",
    "docs",
    "concerts",
    "assets",
];

/// True for `/` and every path whose first segment is one of queuegate's own (or empty, as in
/// `//host/…`).
pub fn is_own_path(path: &str) -> bool {
    let first = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .next()
        .unwrap_or("");
    first.is_empty() || OWN_PATH_SEGMENTS.contains(&first)
}

/// Gateway mode (`UPSTREAM_URL` set): the origin behind the line and the paths the line guards.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// `http://host[:port]` or `https://host[:port]` of the origin, without a trailing slash.
    pub base: String,
    /// PEM file of the certificate authorities an https origin's certificate must chain to,
    /// instead of the public (Mozilla) roots: for an origin with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// Protected path prefixes, matched segment-wise: `/shop` guards `/shop` and `/shop/…`, not
    /// `/shopping`; `/` guards every path that is not queuegate's own.
    pub paths: Vec<String>,
    /// The line that guards them: only a live admission to this concert passes.
    pub concert_id: ConcertId,
    /// Time to open a TCP connection to the origin.
    pub connect_timeout: Duration,
    /// Time from sending a request until the origin's response head arrives (connect included).
    pub first_byte_timeout: Duration,
    /// Key of the HMAC-SHA256 identity header the origin checks; unset = no identity header.
    pub identity_key: Option<Secret>,
    /// How often an open tunnel's grant is checked again. Ends announced by the queue store
    /// close tunnels at once; this bounds how long one whose announcement was lost (the
    /// subscriber reconnecting, say) stays open.
    pub tunnel_recheck: Duration,
}

/// Reads the `UPSTREAM_*` variables; all but `UPSTREAM_URL` are ignored while it is unset.
pub(super) fn upstream(env: &Env<'_>) -> Result<Option<UpstreamSettings>, ConfigError> {
    let Some(url) = env.raw("UPSTREAM_URL") else {
        return Ok(None);
    };
    let base =
        upstream_base(&url).map_err(|reason| env.error("UPSTREAM_URL", url.clone(), reason))?;
    let paths_raw = env.string("UPSTREAM_PATHS", "/");
    let paths = upstream_paths(&paths_raw)
        .map_err(|reason| env.error("UPSTREAM_PATHS", paths_raw.clone(), &reason))?;
    let concert_id = match env.raw("UPSTREAM_CONCERT_ID") {
        None => {
            return Err(env.error(
                "UPSTREAM_CONCERT_ID",
                String::new(),
                "required when UPSTREAM_URL is set (the concert whose line guards UPSTREAM_PATHS)",
            ));
        }
        Some(raw) => ConcertId::from_path(&raw).ok_or_else(|| {
            env.error(
                "UPSTREAM_CONCERT_ID",
                raw,
                "expected a concert id (a positive integer)",
            )
        })?,
    };
    let identity_key = match env.raw("UPSTREAM_IDENTITY_KEY") {
        Some(k) if k.len() >= 32 => Some(Secret::new(k)),
        Some(k) => {
            return Err(env.error(
                "UPSTREAM_IDENTITY_KEY",
                "<hidden>".into(),
                &format!("must be at least 32 bytes (got {})", k.len()),
            ));
        }
        None => None,
    };
    let ca_file = env.raw("UPSTREAM_CA_FILE").map(std::path::PathBuf::from);
    if ca_file.is_some() && !base.starts_with("https://") {
        return Err(env.error(
            "UPSTREAM_URL",
            url,
            "UPSTREAM_CA_FILE is set, so the origin is expected at https://",
        ));
    }
    Ok(Some(UpstreamSettings {
        base,
        ca_file,
        paths,
        concert_id,
        connect_timeout: Duration::from_millis(env.int(
            "UPSTREAM_CONNECT_TIMEOUT_MS",
            2000,
            1,
            60_000,
        )?),
        first_byte_timeout: Duration::from_millis(env.int(
            "UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
            30_000,
            1,
            600_000,
        )?),
        identity_key,
        tunnel_recheck: Duration::from_millis(env.int(
            "UPSTREAM_TUNNEL_RECHECK_MS",
            1000,
            100,
            600_000,
        )?),
    }))
}

/// `http[s]://host[:port][/]` → `http[s]://host[:port]` (lower-case scheme).
fn upstream_base(url: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "expected http://host:port or https://host:port";
    let lower = url.to_ascii_lowercase();
    let scheme = if lower.starts_with("https://") {
        "https"
    } else if lower.starts_with("http://") {
        "http"
    } else {
        return Err(SHAPE);
    };
    let uri: hyper::Uri = url.parse().map_err(|_| SHAPE)?;
    let authority = uri.authority().ok_or(SHAPE)?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported");
    }
    if authority.host().is_empty() {
        return Err(SHAPE);
    }
    if uri.path() != "/" || uri.query().is_some() || url.ends_with('?') {
        return Err("expected no path or query after host:port (paths are forwarded as they are)");
    }
    Ok(format!("{scheme}://{}", authority.as_str()))
}

/// Comma-separated absolute path prefixes, each of plain segments (no `.`/`..`, no empty
/// segment, no `%`, `?`, `#`, backslash, space or control character), none inside queuegate's
/// own paths (`/v1`, `/concerts`, …). A trailing `/` is dropped; `/` alone means "everything
/// that is not queuegate's own".
fn upstream_paths(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.starts_with('/') {
            return Err(format!("`{p}` must start with /"));
        }
        if p.bytes().any(|b| {
            b.is_ascii_control() || matches!(b, b' ' | b'%' | b'?' | b'#' | b'\\') || !b.is_ascii()
        }) {
            return Err(format!("`{p}` may hold only plain path characters"));
        }
        let trimmed = if p == "/" { p } else { p.trim_end_matches('/') };
        if trimmed != "/" {
            let segments: Vec<&str> = trimmed[1..].split('/').collect();
            if segments
                .iter()
                .any(|s| s.is_empty() || *s == "." || *s == "..")
            {
                return Err(format!("`{p}` has an empty, `.` or `..` segment"));
            }
            if OWN_PATH_SEGMENTS.contains(&segments[0]) {
                return Err(format!(
                    "`{p}` is inside queuegate's own paths (/{}), which are never forwarded",
                    segments[0]
                ));
            }
        }
        if !out.iter().any(|q| q == trimmed) {
            out.push(trimmed.to_owned());
        }
    }
    if out.is_empty() {
        return Err("expected comma-separated path prefixes such as /shop".into());
    }
    Ok(out)
}
