//! Gateway mode: the waiting room in front of an existing shop (the *origin*).
//!
//! With `UPSTREAM_URL` set, requests for the protected path prefixes (`UPSTREAM_PATHS`) that are
//! not queuegate's own routes are forwarded to the origin — but only for a visitor whose
//! admission to the prefix's line is live at that very moment. Each prefix has one line (its own
//! `=<concert id>`, else `UPSTREAM_CONCERT_ID`), so one shop can hold several sales at once, each
//! behind its own line, as a ticket site does. Because a line never admits more than
//! `max_active` at once, the origin never serves more of a sale's admitted visitors than that.
//!
//! This room owns the *how* of forwarding: the origin's keep-alive connections (`pool`) over
//! TCP or TLS (`transport`), their timeouts and metrics (`upstream`), what a forwarded request
//! and response look like (`forward`), upgraded connections (`tunnel`), and the grant cookie,
//! return paths and identity header (`grant`), and the grants confirmed a moment ago
//! (`confirmed`). *Whether* a request may pass is the API's gate
//! (`api::gate::Gate::gateway_grant`); the API's hook (`api::gateway`) puts the two together.

pub mod confirmed;
pub mod forward;
pub mod grant;
pub mod pool;
pub mod transport;
pub mod tunnel;
pub mod upstream;

use crate::config::{UpstreamSettings, is_own_path};
use crate::domain::ConcertId;
use hyper::HeaderMap;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::IpAddr;

/// Why a request could not be forwarded. Each names a fact, never an HTTP status
/// (`api::error` maps them).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Connection refused, reset, or no route to the origin.
    #[error("the origin could not be reached")]
    Unreachable,
    /// No connection or no response head within the configured time.
    #[error("the origin did not answer in time")]
    TimedOut,
    /// The origin answered with something that is not HTTP, or closed the connection mid-way.
    #[error("the origin's answer was unusable")]
    BadAnswer,
    /// The https origin's TLS handshake failed (its certificate did not verify, most often).
    #[error("the origin's TLS handshake failed")]
    UntrustedOrigin,
    /// The client's own request body broke off or was malformed (its fault, not the origin's).
    #[error("the request body could not be read")]
    ClientBody,
    /// A protected path that could mean something else to the origin than to us.
    #[error("{0}")]
    BadPath(&'static str),
    /// The visitor already holds `tunnel::MAX_PER_VISITOR` open tunnels on this instance.
    #[error("too many open connections to the shop")]
    TooManyTunnels,
}

/// The line that guards a protected path, with what this instance remembers of its grants and
/// the counters of what it decided.
#[derive(Clone, Copy)]
pub struct GuardingLine<'g> {
    pub concert: ConcertId,
    pub confirmed: &'g confirmed::ConfirmedGrants,
    pub decisions: &'g Decisions,
}

/// `queuegate_gateway_requests_total{concert, decision}` of one line, made once: a forward
/// bumps a counter it holds instead of looking one up by its labels.
pub struct Decisions {
    pub forwarded: metrics::Counter,
    pub tunnelled: metrics::Counter,
    pub redirected: metrics::Counter,
    pub refused: metrics::Counter,
    pub bad_path: metrics::Counter,
}

impl Decisions {
    fn new(concert: ConcertId) -> Self {
        let counter = |decision: &'static str| {
            metrics::counter!(
                "queuegate_gateway_requests_total",
                "concert" => concert.to_string(),
                "decision" => decision
            )
        };
        Decisions {
            forwarded: counter("forwarded"),
            tunnelled: counter("tunnelled"),
            redirected: counter("redirected"),
            refused: counter("refused"),
            bad_path: counter("bad_path"),
        }
    }
}

/// What an instance keeps per line it guards.
struct Line {
    confirmed: confirmed::ConfirmedGrants,
    decisions: Decisions,
}

/// The gateway-mode service: settings, the pooled client, and the proxies trusted to say how a
/// request arrived.
pub struct Gateway {
    settings: UpstreamSettings,
    upstream: upstream::Upstream,
    trusted_proxies: Vec<IpAddr>,
    /// Signs the identity header (when `UPSTREAM_IDENTITY_KEY` is set).
    identity: Option<grant::IdentitySigner>,
    /// Open tunnels per visitor.
    tunnels: std::sync::Arc<tunnel::Tunnels>,
    /// Per guarding line: grants confirmed live a moment ago (forgotten when their end is
    /// announced), and its decisions' counters.
    lines: HashMap<ConcertId, Line>,
}

impl Gateway {
    pub fn new(settings: UpstreamSettings, trusted_proxies: Vec<IpAddr>) -> Result<Self, String> {
        let upstream = upstream::Upstream::new(&settings)?;
        let identity = settings
            .identity_key
            .as_ref()
            .map(grant::IdentitySigner::new)
            .transpose()?;
        let mut lines = HashMap::new();
        for g in &settings.paths {
            lines.entry(g.concert).or_insert_with(|| Line {
                confirmed: confirmed::ConfirmedGrants::new(settings.grant_cache),
                decisions: Decisions::new(g.concert),
            });
        }
        Ok(Gateway {
            tunnels: Default::default(),
            lines,
            identity,
            settings,
            upstream,
            trusted_proxies,
        })
    }

    /// The line guarding `path`, if it is a protected path that is not one of our own routes:
    /// that of the longest prefix it falls under. Own routes always win, so `UPSTREAM_PATHS=/`
    /// leaves `/`, `/v1/…`, `/concerts/…` and the rest to queuegate.
    pub fn line_for(&self, path: &str) -> Option<GuardingLine<'_>> {
        if is_own_path(path) {
            return None;
        }
        // (`paths` is longest first: the first match is the most specific.)
        let concert = self
            .settings
            .paths
            .iter()
            .find(|g| prefix_matches(&g.prefix, path))?
            .concert;
        let line = self.lines.get(&concert)?;
        Some(GuardingLine {
            concert,
            confirmed: &line.confirmed,
            decisions: &line.decisions,
        })
    }

    /// Does a line of this concert guard any path here?
    pub fn guards(&self, concert: ConcertId) -> bool {
        self.lines.contains_key(&concert)
    }

    /// Did the request reach us over TLS? Only a trusted proxy (`TRUSTED_PROXIES`) can say so,
    /// with `X-Forwarded-Proto: https`; anyone else could claim it.
    pub fn over_tls(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        self.trusted(peer)
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }

    pub fn trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.contains(&peer)
    }

    /// Forwards one request and returns the origin's answer, its head cleaned of hop-by-hop
    /// headers and its body still streaming.
    pub async fn forward(
        &self,
        out: forward::Outgoing<'_>,
        body: Option<Incoming>,
    ) -> Result<hyper::Response<pool::Forwarded>, GatewayError> {
        let (request, client_failed) =
            forward::request(out, body, &self.upstream, self.identity.as_ref())?;
        let response = self.upstream.send(request, &client_failed).await?;
        Ok(forward::response(response))
    }

    /// Forwards a request that asks to switch to `protocol` (a WebSocket handshake, say) on a
    /// connection of its own. If the origin switches, its `101` is returned (with the upgrade
    /// it granted) and a tunnel joins `visitor`'s connection to the origin's until either
    /// closes or the grant ends: `ends` is given the tunnel's `Nudge` and the recheck period,
    /// and makes the future that resolves then. Any other answer passes as a forward's does.
    pub async fn tunnel<E>(
        &self,
        out: forward::Outgoing<'_>,
        body: Option<Incoming>,
        protocol: hyper::header::HeaderValue,
        visitor: hyper::upgrade::OnUpgrade,
        ends: impl FnOnce(tunnel::Nudge, std::time::Duration) -> E,
    ) -> Result<hyper::Response<Incoming>, GatewayError>
    where
        E: std::future::Future<Output = tunnel::End> + Send + 'static,
    {
        let place = self
            .tunnels
            .take(out.identity.user)
            .ok_or(GatewayError::TooManyTunnels)?;
        let (mut request, client_failed) =
            forward::request(out, body, &self.upstream, self.identity.as_ref())?;
        tunnel::ask(request.headers_mut(), protocol);
        let mut response = self.upstream.send_upgrade(request, &client_failed).await?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(forward::response(response));
        }
        let origin = hyper::upgrade::on(&mut response);
        // A switch must say to what (RFC 9110 §15.2.2).
        let granted = response
            .headers()
            .get(hyper::header::UPGRADE)
            .cloned()
            .ok_or(GatewayError::BadAnswer)?;
        let mut response = forward::response(response);
        tunnel::ask(response.headers_mut(), granted);
        let ends = ends(place.nudge(), self.settings.tunnel_recheck);
        tunnel::spawn(place, visitor, origin, ends);
        Ok(response)
    }

    /// The queue store announced that `user`'s admission to `concert` may have ended (or this
    /// instance ended it): their grant is asked about again, and their open tunnels check it
    /// now (see `queue::ends`).
    pub fn admission_ended(&self, concert: ConcertId, user: crate::domain::UserId) {
        if let Some(line) = self.lines.get(&concert) {
            line.confirmed.forget(user);
            // (All of the user's tunnels check their grants, whichever line theirs is of.)
            self.tunnels.nudge(user);
        }
    }

    /// Whether the announcements of ends can be heard now (the subscription is up). While they
    /// cannot, every forward asks the store.
    pub fn hearing_ends(&self, on: bool) {
        for line in self.lines.values() {
            line.confirmed.hearing(on);
        }
        metrics::gauge!("queuegate_gateway_hearing_ends").set(if on { 1.0 } else { 0.0 });
    }

    /// Some announcements were skipped (the listener fell behind): trust nothing remembered.
    pub fn missed_ends(&self) {
        for line in self.lines.values() {
            line.confirmed.forget_all();
        }
    }

    /// The grants of `concert`'s line confirmed a moment ago (see `confirmed`); `None` when no
    /// path here is guarded by it.
    pub fn confirmed(&self, concert: ConcertId) -> Option<&confirmed::ConfirmedGrants> {
        self.lines.get(&concert).map(|line| &line.confirmed)
    }
}

/// Segment-wise prefix match: `/shop` matches `/shop` and `/shop/x`, not `/shopping`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Refuses a protected path whose meaning could change on the way to the origin: empty
/// segments, `.`/`..` segments (also percent-encoded), encoded slashes or backslashes, and raw
/// backslashes. Such a path could climb out of a protected prefix once the origin normalises it.
pub fn check_path(path: &str) -> Result<(), GatewayError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(GatewayError::BadPath("the path must start with /"));
    };
    if path.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
        return Err(GatewayError::BadPath(
            "the path holds a backslash or a control character",
        ));
    }
    // Without allocating: every forwarded request passes here.
    if path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                [w[1], w[2].to_ascii_lowercase()],
                [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0']
            )
    }) {
        return Err(GatewayError::BadPath(
            "the path holds an encoded slash, backslash or NUL",
        ));
    }
    // An empty segment anywhere but last (a trailing slash, `/shop/`, means what it says).
    if path.contains("//") {
        return Err(GatewayError::BadPath(
            "the path holds an empty segment (//)",
        ));
    }
    if rest.split('/').any(is_dot_segment) {
        return Err(GatewayError::BadPath("the path holds a . or .. segment"));
    }
    Ok(())
}

/// `.` or `..`, each dot written as itself or percent-encoded (`%2e`, `%2E`).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', more @ ..] => more,
            [b'%', b'2', b'e' | b'E', more @ ..] => more,
            _ => return false,
        };
        dots += 1;
    }
    (1..=2).contains(&dots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/shop", "/shop"));
        assert!(prefix_matches("/shop", "/shop/"));
        assert!(prefix_matches("/shop", "/shop/checkout"));
        assert!(!prefix_matches("/shop", "/shopping"));
        assert!(!prefix_matches("/shop", "/"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/a/b", "/a/b/c"));
        assert!(!prefix_matches("/a/b", "/a/bc"));
    }

    #[test]
    fn paths_that_could_climb_out_are_refused() {
        for ok in [
            "/shop",
            "/shop/",
            "/shop/a.b/c",
            "/shop/..x",
            "/shop/%41",
            "/shop/...",
            "/shop/%2e%2e%2e",
            "/shop/%2",
            "/shop/%2%2ee",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/shop/../admin",
            "/shop/./x",
            "/shop/%2e%2e/admin",
            "/shop/%2E./admin",
            "/shop/.%2e",
            "/shop/%2e",
            "/shop/%2F",
            "/shop/%5c",
            "/shop/..",
            "/shop//x",
            "/shop/%2fadmin",
            "/shop/%5Cadmin",
            "/shop\\admin",
            "/shop/%00",
            "shop",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
