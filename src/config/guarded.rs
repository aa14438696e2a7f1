//! Which paths gateway mode guards, and by which line: `UPSTREAM_PATHS` parsed, and the paths
//! that are always queuegate's own (never forwarded, whatever it says).

use crate::domain::ConcertId;

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

/// One protected prefix and the line whose live admission opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardedPath {
    pub prefix: String,
    pub concert: ConcertId,
}

/// Why `UPSTREAM_PATHS` was refused.
#[derive(Debug)]
pub(super) enum PathsError {
    /// This prefix names no line, and `UPSTREAM_CONCERT_ID` (the default line) is unset.
    NoLine(String),
    Bad(String),
}

/// Comma-separated absolute path prefixes, each of plain segments (no `.`/`..`, no empty
/// segment, no `%`, `?`, `#`, backslash, space or control character), none inside queuegate's
/// own paths (`/v1`, `/concerts`, …), each optionally followed by `=<concert id>`: the line that
/// guards it, `default` (`UPSTREAM_CONCERT_ID`) when none is named. A trailing `/` is dropped;
/// `/` alone means "everything that is not queuegate's own". Returned longest prefix first, so
/// the first that matches a path is the most specific (`/=7,/vip=9`: `/vip/…` is line 9's).
pub(super) fn upstream_paths(
    raw: &str,
    default: Option<ConcertId>,
) -> Result<Vec<GuardedPath>, PathsError> {
    let bad = |m: String| PathsError::Bad(m);
    let mut out: Vec<GuardedPath> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (p, named) = match entry.split_once('=') {
            None => (entry, None),
            Some((p, id)) => {
                let id = id.trim();
                let concert = ConcertId::from_path(id).ok_or_else(|| {
                    bad(format!(
                        "`{entry}`: after = comes the guarding line's concert id (a positive integer), not `{id}`"
                    ))
                })?;
                (p.trim(), Some(concert))
            }
        };
        if !p.starts_with('/') {
            return Err(bad(format!("`{p}` must start with /")));
        }
        if p.bytes().any(|b| {
            b.is_ascii_control() || matches!(b, b' ' | b'%' | b'?' | b'#' | b'\\') || !b.is_ascii()
        }) {
            return Err(bad(format!("`{p}` may hold only plain path characters")));
        }
        let trimmed = if p == "/" { p } else { p.trim_end_matches('/') };
        if trimmed != "/" {
            let segments: Vec<&str> = trimmed[1..].split('/').collect();
            if segments
                .iter()
                .any(|s| s.is_empty() || *s == "." || *s == "..")
            {
                return Err(bad(format!("`{p}` has an empty, `.` or `..` segment")));
            }
            if OWN_PATH_SEGMENTS.contains(&segments[0]) {
                return Err(bad(format!(
                    "`{p}` is inside queuegate's own paths (/{}), which are never forwarded",
                    segments[0]
                )));
            }
        }
        let concert = named
            .or(default)
            .ok_or_else(|| PathsError::NoLine(trimmed.to_owned()))?;
        match out.iter().find(|q| q.prefix == trimmed) {
            Some(q) if q.concert != concert => {
                return Err(bad(format!(
                    "`{trimmed}` is guarded twice, by concerts {} and {concert}",
                    q.concert
                )));
            }
            Some(_) => {}
            None => out.push(GuardedPath {
                prefix: trimmed.to_owned(),
                concert,
            }),
        }
    }
    if out.is_empty() {
        return Err(bad(
            "expected comma-separated path prefixes such as /shop (or /shop=7)".into(),
        ));
    }
    // Longest first; equal lengths cannot both match one path, so their order is moot (kept
    // stable for the logs).
    out.sort_by_key(|g| std::cmp::Reverse(g.prefix.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths_are_recognised() {
        // `//…` counts as our own too: such a path is never forwarded (and never becomes a
        // return path that a browser would read as another host).
        for p in [
            "/",
            "",
            "/v1",
            "/v1/queue",
            "/concerts/1",
            "/assets/app.js",
            "/metrics",
            "//evil.example/shop",
        ] {
            assert!(is_own_path(p), "{p}");
        }
        for p in ["/shop", "/shop/v1", "/v1x", "/concertsx/1"] {
            assert!(!is_own_path(p), "{p}");
        }
    }
}
