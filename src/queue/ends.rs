//! Announcements that an admission ended early: paid, left, or replaced by a newer one.
//!
//! A request is checked against the store when it arrives, so it needs no announcement. What
//! does is a grant that outlives its check — gateway mode's tunnels (WebSockets), held open for
//! minutes — on *any* instance, while the payment or the leave arrived at another. The script
//! that ends the admission (`revoke.lua`, `leave.lua`, `grant.lua`) publishes a notice on the
//! prefix's channel in the same atomic step (no extra round trip, no end left unannounced by a
//! crash in between), and every instance that holds tunnels subscribes.
//!
//! A notice is a hint, never the truth: Redis pub/sub delivers at most once (nothing while a
//! subscriber reconnects), and a notice names a user, not an admission. So a notice only makes
//! a tunnel check its grant at once; the store's answer decides, and the periodic recheck still
//! catches what a lost notice would have. Natural expiry needs no notice: a tunnel knows when
//! its admission runs out.

use crate::domain::{ConcertId, UserId};
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// Listens for notices until `stop` says so, handing each to `ended`. The subscription is
/// renewed after every reconnect (notices sent in between are lost; see the module's doc).
pub async fn listen(
    subscriber: SubscriberClient,
    prefix: String,
    ended: impl Fn(ConcertId, UserId) + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let channel = channel(&prefix);
    let mut messages = subscriber.message_rx();
    let _connection = subscriber.connect();
    let renewals = subscriber.manage_subscriptions();
    // The client renews only the subscriptions that succeeded, so the first one is retried
    // until it does (Redis may be down when the instance starts).
    loop {
        tokio::select! {
            subscribed = subscriber.subscribe(channel.as_str()) => match subscribed {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not subscribe to admission-end notices yet");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.changed() => return close(subscriber, renewals).await,
                    }
                }
            },
            _ = stop.changed() => return close(subscriber, renewals).await,
        }
    }
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(m) => match m.value.as_str().as_deref().and_then(parse) {
                    Some((concert, user)) => {
                        metrics::counter!("queuegate_admission_end_notices_total").increment(1);
                        ended(concert, user);
                    }
                    None => tracing::debug!("ignored a malformed admission-end notice"),
                },
                Err(RecvError::Lagged(n)) => {
                    // The periodic recheck covers the notices skipped.
                    tracing::warn!(skipped = n, "admission-end notices arrived faster than handled");
                }
                Err(RecvError::Closed) => break,
            },
            _ = stop.changed() => break,
        }
    }
    close(subscriber, renewals).await;
}

/// How long a failed first subscription waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

async fn close(subscriber: SubscriberClient, renewals: JoinHandle<()>) {
    renewals.abort();
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
