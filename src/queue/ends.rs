//! Announcements that an admission ended early: paid, left, or replaced by a newer one.
//!
//! Two things in gateway mode outlive the store check that let them through, on *any*
//! instance, while the payment or the leave may arrive at another: tunnels (WebSockets), held
//! open for minutes, and the grants an instance remembers for a moment so that a visitor's
//! burst of requests costs one check (`gateway::confirmed`). The script that ends the
//! admission (`revoke.lua`, `leave.lua`, `grant.lua`) publishes a notice on the prefix's channel
//! in the same atomic step (no extra round trip, no end left unannounced by a crash in
//! between), and every gateway-mode instance subscribes.
//!
//! A notice is a hint, never the truth: it names a user, not an admission, so it makes a tunnel
//! check its grant at once and the memory forget the user's grant; the store's answer decides.
//! Redis pub/sub delivers at most once, and nothing while a subscriber reconnects, so the
//! listener tells its hearer whenever notices may have gone unheard (`Hearer::hearing`,
//! `Hearer::missed`); the memory then trusts nothing it holds, and the tunnels' periodic
//! recheck catches the rest. Natural expiry needs no notice: both know when an admission runs
//! out.

use crate::domain::{ConcertId, UserId};
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// The channel notices of one key prefix travel on (one per deployment, not per line: an
/// instance listens once whatever lines it guards).
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:admission-ends")
}

/// One notice: `<concert>:<user>`.
pub fn notice(concert: ConcertId, user: UserId) -> String {
    format!("{}:{}", concert.get(), user.get())
}

/// Reads a notice; `None` for anything else on the channel.
pub fn parse(notice: &str) -> Option<(ConcertId, UserId)> {
    let (concert, user) = notice.split_once(':')?;
    Some((
        ConcertId::new(concert.parse().ok()?)?,
        UserId::new(user.parse().ok()?)?,
    ))
}

/// What an instance does with what it hears on the channel.
pub trait Hearer: Send + 'static {
    /// `user`'s admission to `concert` may have ended.
    fn ended(&self, concert: ConcertId, user: UserId);
    /// Whether notices can be heard now: `false` from the first sign that the subscription
    /// broke, `true` once it is (re)confirmed. Notices sent in between are lost.
    fn hearing(&self, on: bool);
    /// Notices were skipped although the subscription held (the listener fell behind).
    fn missed(&self);
}

/// Listens for notices until `stop` says so, handing each to `hearer`. The subscription is
/// renewed after every reconnect, and the hearer is told when notices could not be heard (see
/// the module's doc).
pub async fn listen(
    subscriber: SubscriberClient,
    prefix: String,
    hearer: impl Hearer,
    mut stop: watch::Receiver<bool>,
) {
    let channel = channel(&prefix);
    let mut messages = subscriber.message_rx();
    let mut errors = subscriber.error_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let _connection = subscriber.connect();
    if !subscribe(&subscriber, &channel, &mut stop).await {
        return close(subscriber).await;
    }
    hearer.hearing(true);
    loop {
        // A broken connection shows as an error, then (once back) as a reconnect; either way
        // the subscription is confirmed again before notices count as heard.
        let renew = tokio::select! {
            message = messages.recv() => match message {
                Ok(m) => {
                    match m.value.as_str().as_deref().and_then(parse) {
                        Some((concert, user)) => {
                            metrics::counter!("queuegate_admission_end_notices_total").increment(1);
                            hearer.ended(concert, user);
                        }
                        None => tracing::debug!("ignored a malformed admission-end notice"),
                    }
                    false
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "admission-end notices arrived faster than handled");
                    hearer.missed();
                    false
                }
                Err(RecvError::Closed) => break,
            },
            error = errors.recv() => match error {
                Err(RecvError::Closed) => break,
                Ok((e, _)) => {
                    tracing::warn!(error = %e, "admission-end notices may be missed until the subscription is renewed");
                    true
                }
                Err(RecvError::Lagged(_)) => true,
            },
            reconnect = reconnects.recv() => match reconnect {
                Err(RecvError::Closed) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => true,
            },
            _ = stop.changed() => break,
        };
        if renew {
            hearer.hearing(false);
            if !subscribe(&subscriber, &channel, &mut stop).await {
                break;
            }
            hearer.hearing(true);
        }
    }
    close(subscriber).await;
}

/// Subscribes to `channel`, retrying until it succeeds (Redis may be down when the instance
/// starts, or coming back); `false` if told to stop first. Subscribing again to a channel
/// already subscribed changes nothing, so this also confirms a subscription.
async fn subscribe(
    subscriber: &SubscriberClient,
    channel: &str,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            subscribed = subscriber.subscribe(channel) => match subscribed {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not subscribe to admission-end notices yet");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.changed() => return false,
                    }
                }
            },
            _ = stop.changed() => return false,
        }
    }
}

/// How long a failed first subscription waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

async fn close(subscriber: SubscriberClient) {
    let _ = subscriber.quit().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_and_nothing_else_reads() {
        let (c, u) = (ConcertId::new(7).unwrap(), UserId::new(42).unwrap());
        assert_eq!(parse(&notice(c, u)), Some((c, u)));
        for bad in [
            "", "7", "7:", ":42", "0:42", "7:0", "7:42:1", "x:42", "7:-1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
