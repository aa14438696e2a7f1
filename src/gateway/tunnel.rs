//! Upgraded connections (WebSockets, mostly) between an admitted visitor and the origin.
//!
//! A shop's live seat map or checkout timer often talks over a WebSocket: an HTTP/1.1 request
//! with `Connection: upgrade` that the origin answers `101 Switching Protocols`, after which the
//! connection carries another protocol. Such a request passes the same gate as any forward (a
//! live grant, checked against the queue store), goes to the origin on a connection of its own,
//! and, if the origin switches, both connections are handed to a tunnel that copies bytes each
//! way until one side closes — or until the grant ends.
//!
//! A forward is checked when it arrives; a tunnel lives on, so it is checked again every
//! `RECHECK` and closed when the admission ends (paid, left, expired or revoked), when its
//! access token runs out, or when the store cannot say (fail closed, as forwards do).

use hyper::HeaderMap;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;

/// How often a tunnel's grant is checked again: how long a revoked visitor may keep talking to
/// the origin over a connection opened before the revocation.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Why a tunnel closed (a metrics label and a log field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The visitor or the origin closed it, or the connection failed.
    Closed,
    /// The admission ended: paid, left, expired or revoked.
    Revoked,
    /// The access token ran out.
    Expired,
    /// The queue store could not confirm the grant (fail closed).
    Unconfirmed,
}

impl End {
    pub fn label(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Revoked => "revoked",
            End::Expired => "expired",
            End::Unconfirmed => "unconfirmed",
        }
    }
}

/// The protocol a request asks to switch to (`Upgrade`), if it asks (`Connection: upgrade`).
pub fn asked(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts the upgrade back on a message whose hop-by-hop headers were removed: it is the one
/// hop-by-hop request a proxy passes on, by asking the next hop itself.
pub fn ask(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Copies bytes between the visitor's and the origin's upgraded connections until either side
/// closes or `ends` resolves, on a task of its own (the visitor's request has been answered).
pub fn spawn(
    visitor: OnUpgrade,
    origin: OnUpgrade,
    ends: impl Future<Output = End> + Send + 'static,
) {
    tokio::spawn(async move {
        let open = Counted::new();
        let end = tokio::select! {
            end = ends => end,
            end = copy(visitor, origin) => end,
        };
        drop(open);
        metrics::counter!("queuegate_gateway_tunnels_closed_total", "reason" => end.label())
            .increment(1);
        tracing::info!(reason = end.label(), "tunnel closed");
    });
}

/// One open tunnel in `queuegate_gateway_tunnels_open`, for as long as it lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!("queuegate_gateway_tunnels_open").increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("queuegate_gateway_tunnels_open").decrement(1.0);
    }
}

/// Both upgrades (the visitor's resolves once our `101` is written), then both directions.
async fn copy(visitor: OnUpgrade, origin: OnUpgrade) -> End {
    let (visitor, origin) = match tokio::try_join!(visitor, origin) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "an upgrade did not complete");
            return End::Closed;
        }
    };
    let (mut visitor, mut origin) = (TokioIo::new(visitor), TokioIo::new(origin));
    if let Err(e) = tokio::io::copy_bidirectional(&mut visitor, &mut origin).await {
        tracing::debug!(error = %e, "tunnel ended with an error");
    }
    End::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_asked_only_with_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(asked(&h), None, "Upgrade without Connection: upgrade");
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(asked(&h), Some(HeaderValue::from_static("websocket")));
        h.remove(UPGRADE);
        assert_eq!(asked(&h), None, "Connection: upgrade without Upgrade");
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("upgraded"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(asked(&h), None, "a token is compared whole");
    }

    #[test]
    fn asking_again_replaces_what_was_there() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close"));
        ask(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[UPGRADE], "websocket");
    }
}
