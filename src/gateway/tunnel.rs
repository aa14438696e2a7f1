//! Upgraded connections (WebSockets, mostly) between an admitted visitor and the origin.
//!
//! A shop's live seat map or checkout timer often talks over a WebSocket: an HTTP/1.1 request
//! with `Connection: upgrade` that the origin answers `101 Switching Protocols`, after which the
//! connection carries another protocol. Such a request passes the same gate as any forward (a
//! live grant, checked against the queue store), goes to the origin on a connection of its own,
//! and, if the origin switches, both connections are handed to a tunnel that copies bytes each
//! way until one side closes — or until the grant ends.
//!
//! A forward is checked when it arrives; a tunnel lives on, so its grant is checked again —
//! at once when the queue store announces that the visitor's admission ended on any instance
//! (`queue::ends`, rung here through `Tunnels::nudge`), and every `UPSTREAM_TUNNEL_RECHECK_MS`
//! in case an announcement was lost — and it is closed when the admission ends (paid, left,
//! expired or revoked), when its access token runs out, or when the store cannot say (fail
//! closed, as forwards do).
//!
//! A tunnel holds a connection to the origin for as long as it lives, so one visitor may hold
//! at most `MAX_PER_VISITOR` on an instance (tabs of a shop, each with its socket, fit; a
//! script opening thousands does not): `max_active` bounds the visitors the origin serves, this
//! bounds what each of them can hold open.

use crate::domain::UserId;
use hyper::HeaderMap;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, futures::Notified};

/// Each direction's copy buffer. An open tunnel's memory is mostly these two (tokio's default,
/// 8 KiB each, made an idle WebSocket cost 16.7 KiB of the gateway's RSS: `scripts/bench.sh
/// tunnel`); a shop's socket messages are small, and a larger one only takes more reads.
const BUFFER: usize = 2 * 1024;

/// Open tunnels one admitted visitor may hold on one instance.
pub const MAX_PER_VISITOR: u32 = 8;

/// The open tunnels per visitor on this instance, and the bell that makes them check their
/// grant at once (rung when the queue store announces that the visitor's admission ended).
#[derive(Default)]
pub struct Tunnels {
    open: Mutex<HashMap<UserId, Held>>,
}

struct Held {
    count: u32,
    nudge: Arc<Notify>,
}

impl Tunnels {
    /// A place for one more tunnel of `user`, or `None` when they hold `MAX_PER_VISITOR`.
    /// The place is given back when the returned value is dropped.
    pub fn take(self: &Arc<Self>, user: UserId) -> Option<Place> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let held = open.entry(user).or_insert_with(|| Held {
            count: 0,
            nudge: Arc::new(Notify::new()),
        });
        if held.count >= MAX_PER_VISITOR {
            return None;
        }
        held.count += 1;
        Some(Place {
            tunnels: self.clone(),
            user,
            nudge: Nudge(held.nudge.clone()),
        })
    }

    /// Makes every open tunnel of `user` check its grant now. Returns how many were nudged.
    pub fn nudge(&self, user: UserId) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        match open.get(&user) {
            Some(held) => {
                held.nudge.notify_waiters();
                held.count
            }
            None => 0,
        }
    }
}

/// One tunnel's place in `Tunnels`, given back on drop.
pub struct Place {
    tunnels: Arc<Tunnels>,
    user: UserId,
    nudge: Nudge,
}

impl Place {
    /// What tells this tunnel's grant check to look now.
    pub fn nudge(&self) -> Nudge {
        self.nudge.clone()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self
            .tunnels
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.get_mut(&self.user) {
            held.count = held.count.saturating_sub(1);
            if held.count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Rung when a tunnel's grant may have ended (`Tunnels::nudge`).
#[derive(Clone)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    /// Resolves at the next nudge after it was first polled or `enable`d.
    pub fn notified(&self) -> Notified<'_> {
        self.0.notified()
    }
}

/// Why a tunnel closed (a metrics label and a log field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The visitor or the origin closed it, or the connection failed.
    Closed,
    /// The admission was ended: paid, left, or replaced by a newer one.
    Revoked,
    /// The admission, or its access token, ran out.
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
    place: Place,
    visitor: OnUpgrade,
    origin: OnUpgrade,
    ends: impl Future<Output = End> + Send + 'static,
) {
    tokio::spawn(async move {
        let _place = place;
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
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut visitor, &mut origin, BUFFER, BUFFER).await
    {
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
    fn a_visitor_holds_at_most_so_many_tunnels_and_gets_places_back() {
        let tunnels = Arc::new(Tunnels::default());
        let (a, b) = (UserId::new(1).unwrap(), UserId::new(2).unwrap());
        let mut held: Vec<Place> = (0..MAX_PER_VISITOR)
            .map(|_| tunnels.take(a).unwrap())
            .collect();
        assert!(tunnels.take(a).is_none(), "one more than allowed");
        let other = tunnels
            .take(b)
            .expect("another visitor is not counted with them");
        held.pop();
        assert_eq!(tunnels.open.lock().unwrap()[&a].count, MAX_PER_VISITOR - 1);
        held.push(tunnels.take(a).expect("a place given back is free again"));
        drop(held);
        drop(other);
        assert!(
            !tunnels.open.lock().unwrap().contains_key(&a),
            "all of a's places back"
        );
        assert!(
            tunnels.open.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }

    #[tokio::test]
    async fn a_nudge_reaches_every_tunnel_of_that_visitor_and_no_other() {
        let tunnels = Arc::new(Tunnels::default());
        let (a, b) = (UserId::new(1).unwrap(), UserId::new(2).unwrap());
        let (a1, a2, b1) = (
            tunnels.take(a).unwrap(),
            tunnels.take(a).unwrap(),
            tunnels.take(b).unwrap(),
        );
        let (n1, n2, nb) = (a1.nudge(), a2.nudge(), b1.nudge());
        let mut w1 = std::pin::pin!(n1.notified());
        let mut w2 = std::pin::pin!(n2.notified());
        let mut wb = std::pin::pin!(nb.notified());
        for w in [w1.as_mut(), w2.as_mut(), wb.as_mut()] {
            w.enable();
        }
        assert_eq!(tunnels.nudge(a), 2);
        let woke = |w: std::pin::Pin<&mut Notified<'_>>| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            w.poll(&mut cx).is_ready()
        };
        assert!(
            woke(w1.as_mut()) && woke(w2.as_mut()),
            "both of a's tunnels"
        );
        assert!(!woke(wb.as_mut()), "b's tunnel was not rung");
        drop((a1, a2));
        assert_eq!(tunnels.nudge(a), 0, "a holds no tunnel any more");
        assert_eq!(tunnels.nudge(b), 1);
        assert!(woke(wb.as_mut()));
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
