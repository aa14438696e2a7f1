//! The events pump: refreshes every open event stream of this instance each `PUSH_INTERVAL`,
//! one `status_many` script call per concert (in chunks), and lets the hub push what changed.

use super::service::Queue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often positions are refreshed for open streams.
pub const PUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Comment lines keep idle proxies from closing quiet streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Places asked about per script call.
const CHUNK: usize = 2000;

pub async fn run(queue: Arc<Queue>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(PUSH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_keep_alive = Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => {
                queue.hub().close_all();
                return;
            }
        }
        for (concert, asked) in queue.hub().snapshot() {
            for chunk in asked.chunks(CHUNK) {
                match queue.store().status_many(concert, chunk).await {
                    Ok(places) => queue
                        .hub()
                        .deliver(concert, chunk, &places, |user, seq, p| {
                            queue.view(concert, user, seq, p)
                        }),
                    Err(e) => {
                        tracing::warn!(error = %e, %concert, "could not refresh event streams")
                    }
                }
            }
        }
        if last_keep_alive.elapsed() >= KEEP_ALIVE {
            queue.hub().keep_alive();
            last_keep_alive = Instant::now();
        }
    }
}
