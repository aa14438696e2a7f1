//! Open event streams of this instance, grouped by concert.
//!
//! Streams do not poll Redis themselves: the pump (`pump.rs`) asks for the status of all of a
//! concert's streams in one script call per interval and hands the answers here, and the hub
//! pushes an event only to streams whose place changed. Ten thousand streams cost a couple of
//! Redis calls per second, not ten thousand.

use super::model::Place;
use super::view::View;
use crate::domain::{LineId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What a stream carries; the HTTP layer decides how each looks on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// A new position, or the admission (then the stream ends).
    Update(View),
    /// The place vanished (left, idle, admission over); the stream ends.
    Gone,
    /// Nothing new; keeps idle proxies from closing a quiet stream.
    KeepAlive,
}

struct Subscriber {
    user: UserId,
    seq: u64,
    last_position: u64,
    tx: mpsc::Sender<StreamEvent>,
}

#[derive(Default)]
pub struct EventHub {
    streams: Mutex<HashMap<LineId, Vec<Subscriber>>>,
    /// Streams open right now (waiting ones and one-shot ones).
    open: Arc<AtomicUsize>,
}

/// Lives as long as the stream's response body; counts open streams.
pub struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("queuegate_sse_streams").increment(1.0);
        StreamGuard(open.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("queuegate_sse_streams").decrement(1.0);
    }
}

/// An open stream: its events and the guard that counts it.
pub type Stream = (mpsc::Receiver<StreamEvent>, StreamGuard);

impl EventHub {
    /// How many streams are open on this instance.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens a stream for a waiting place; `first` is sent before anything else.
    pub fn subscribe(
        &self,
        line: LineId,
        user: UserId,
        seq: u64,
        position: u64,
        first: StreamEvent,
    ) -> Stream {
        let (tx, rx) = mpsc::channel(16);
        let _ = tx.try_send(first);
        if let Ok(mut streams) = self.streams.lock() {
            streams.entry(line).or_default().push(Subscriber {
                user,
                seq,
                last_position: position,
                tx,
            });
        }
        (rx, StreamGuard::new(&self.open))
    }

    /// A one-shot stream (already admitted): the event, then the end.
    pub fn single(&self, event: StreamEvent) -> Stream {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(event);
        (rx, StreamGuard::new(&self.open))
    }

    /// Ends every stream (shutdown): bodies finish, connections can drain.
    pub fn close_all(&self) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.clear();
        }
    }

    /// The places with an open stream, per line (closed streams are dropped here).
    pub fn snapshot(&self) -> Vec<(LineId, Vec<(UserId, u64)>)> {
        let Ok(mut streams) = self.streams.lock() else {
            return Vec::new();
        };
        streams.retain(|_, subs| {
            subs.retain(|s| !s.tx.is_closed());
            !subs.is_empty()
        });
        streams
            .iter()
            .map(|(c, subs)| (*c, subs.iter().map(|s| (s.user, s.seq)).collect()))
            .collect()
    }

    /// Applies fresh places: `places[i]` answers `asked[i]`. `view` turns a place that moved
    /// or got in into its view; a stream that received its last event is dropped (its end).
    pub fn deliver<E>(
        &self,
        line: LineId,
        asked: &[(UserId, u64)],
        places: &[Place],
        view: impl Fn(UserId, u64, Place) -> Result<View, E>,
    ) {
        let Ok(mut streams) = self.streams.lock() else {
            return;
        };
        let Some(subs) = streams.get_mut(&line) else {
            return;
        };
        let answers: HashMap<(UserId, u64), Place> =
            asked.iter().copied().zip(places.iter().copied()).collect();
        subs.retain_mut(|s| {
            let Some(&place) = answers.get(&(s.user, s.seq)) else {
                return true; // subscribed after the snapshot: next round
            };
            let (event, last) = match place {
                // Still before the start: nothing new to tell.
                Place::PreQueue { .. } => return true,
                Place::Waiting { position } if position == s.last_position => return true,
                Place::Waiting { position } => match view(s.user, s.seq, place) {
                    Ok(v) => (StreamEvent::Update(v), Some(position)),
                    Err(_) => return true,
                },
                Place::Admitted { .. } => match view(s.user, s.seq, place) {
                    Ok(v) => (StreamEvent::Update(v), None),
                    Err(_) => return true,
                },
                Place::Gone => (StreamEvent::Gone, None),
            };
            let kind = match (&event, last) {
                (StreamEvent::Gone, _) => "gone",
                (_, Some(_)) => "position",
                _ => "admitted",
            };
            match s.tx.try_send(event) {
                Ok(()) => {
                    metrics::counter!("queuegate_sse_events_total", "kind" => kind).increment(1);
                    match last {
                        Some(p) => {
                            s.last_position = p;
                            true
                        }
                        None => false, // the last event: dropping the sender ends the stream
                    }
                }
                // Full (a slow reader): try again next round. Gone is final either way.
                Err(_) => !matches!(place, Place::Gone),
            }
        });
    }

    pub fn keep_alive(&self) {
        if let Ok(streams) = self.streams.lock() {
            for s in streams.values().flatten() {
                let _ = s.tx.try_send(StreamEvent::KeepAlive);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(position: u64) -> View {
        View::Waiting {
            position,
            eta_seconds: None,
            poll_after_ms: 1000,
        }
    }

    #[test]
    fn only_moved_places_get_events_and_final_events_end_streams() {
        let hub = EventHub::default();
        let c = LineId {
            concert: crate::domain::ConcertId::new(1).unwrap(),
            queue_id: 9,
        };
        let (u1, u2, u3) = (
            UserId::new(1).unwrap(),
            UserId::new(2).unwrap(),
            UserId::new(3).unwrap(),
        );
        let (mut r1, _g1) = hub.subscribe(c, u1, 10, 5, StreamEvent::Update(waiting(5)));
        let (mut r2, _g2) = hub.subscribe(c, u2, 11, 6, StreamEvent::Update(waiting(6)));
        let (mut r3, _g3) = hub.subscribe(c, u3, 12, 7, StreamEvent::Update(waiting(7)));
        for r in [&mut r1, &mut r2, &mut r3] {
            assert!(matches!(r.try_recv(), Ok(StreamEvent::Update(_))));
        }
        let asked = [(u1, 10), (u2, 11), (u3, 12)];
        let places = [
            Place::Waiting { position: 5 },
            Place::Waiting { position: 2 },
            Place::Gone,
        ];
        hub.deliver(c, &asked, &places, |_, _, p| match p {
            Place::Waiting { position } => Ok::<_, ()>(waiting(position)),
            _ => Err(()),
        });
        assert!(r1.try_recv().is_err(), "unchanged position: no event");
        assert_eq!(r2.try_recv().ok(), Some(StreamEvent::Update(waiting(2))));
        assert_eq!(r3.try_recv().ok(), Some(StreamEvent::Gone));
        assert_eq!(hub.snapshot()[0].1.len(), 2, "the gone stream was dropped");
    }
}
