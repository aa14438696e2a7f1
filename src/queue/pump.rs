//! The events pump: refreshes every open event stream of this instance each `PUSH_INTERVAL`,
//! one status call per line (in chunks), and lets the hub push what changed.

use super::model::Place;
use super::service::Queue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often positions are refreshed for open streams.
pub const PUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Comment lines keep idle proxies from closing quiet streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Places asked about per script call (a few ms of Redis time at most).
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
        let idle = queue.defaults().idle_secs;
        for (line, asked) in queue.hub().snapshot() {
            for chunk in asked.chunks(CHUNK) {
                // An open stream counts as being seen; marks go only where they are not fresh.
                let items: Vec<_> = chunk
                    .iter()
                    .map(|(user, seq)| (*user, *seq, queue.marks().needs_mark(line, *seq)))
                    .collect();
                match queue.store().status_batch(line, idle, &items).await {
                    Ok(places) => {
                        for ((_, seq, mark), place) in items.iter().zip(&places) {
                            if *mark && matches!(place, Place::Waiting { .. }) {
                                queue.marks().marked(line, *seq);
                            }
                        }
                        queue.hub().deliver(line, chunk, &places, |user, seq, p| {
                            queue.view(line, user, seq, p)
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %line, "could not refresh event streams")
                    }
                }
            }
        }
        if last_keep_alive.elapsed() >= KEEP_ALIVE {
            queue.hub().keep_alive();
            queue.marks().prune();
            last_keep_alive = Instant::now();
        }
    }
}
