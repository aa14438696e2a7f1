//! In-process single flight per seat: while one request of this instance is taking a seat,
//! the others for the same seat wait for its outcome instead of hitting the lock. In a rush on
//! one seat, each instance sends one request to the lock and the database; its followers learn
//! "taken" from memory. (Across instances the Redlock and the database still decide.)

use crate::domain::{ScheduleId, SeatNo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

type Key = (ScheduleId, SeatNo);

#[derive(Default)]
pub struct SeatFlights {
    inflight: Arc<Mutex<HashMap<Key, watch::Receiver<Option<bool>>>>>,
}

pub enum Flight {
    /// Go ahead; report the outcome through the guard.
    Leader(LeaderGuard),
    /// Someone else here just took the seat.
    Taken,
    /// The leader did not take it (or took too long): try yourself.
    Open,
}

pub struct LeaderGuard {
    key: Key,
    tx: watch::Sender<Option<bool>>,
    inflight: Arc<Mutex<HashMap<Key, watch::Receiver<Option<bool>>>>>,
}

impl LeaderGuard {
    pub fn finish(self, held: bool) {
        let _ = self.tx.send(Some(held));
        // Drop removes the entry.
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if self.tx.borrow().is_none() {
            let _ = self.tx.send(Some(false));
        }
        if let Ok(mut m) = self.inflight.lock() {
            m.remove(&self.key);
        }
    }
}

impl SeatFlights {
    pub async fn enter(&self, schedule: ScheduleId, seat: SeatNo) -> Flight {
        let key = (schedule, seat);
        let follower = {
            let Ok(mut m) = self.inflight.lock() else {
                return Flight::Open;
            };
            match m.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    m.insert(key, rx);
                    return Flight::Leader(LeaderGuard {
                        key,
                        tx,
                        inflight: self.inflight.clone(),
                    });
                }
            }
        };
        let mut rx = follower;
        match tokio::time::timeout(Duration::from_secs(2), rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) if *v == Some(true) => Flight::Taken,
            _ => Flight::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (ScheduleId, SeatNo) {
        (ScheduleId::new(1).unwrap(), SeatNo::new(3).unwrap())
    }

    #[tokio::test]
    async fn followers_learn_the_leaders_outcome() {
        let flights = Arc::new(SeatFlights::default());
        let (s, n) = key();
        let Flight::Leader(guard) = flights.enter(s, n).await else {
            panic!("first in leads");
        };
        let f = flights.clone();
        let follower = tokio::spawn(async move { matches!(f.enter(s, n).await, Flight::Taken) });
        tokio::task::yield_now().await;
        guard.finish(true);
        assert!(follower.await.unwrap());
        // The flight is over: the next request leads again.
        assert!(matches!(flights.enter(s, n).await, Flight::Leader(_)));
    }

    #[tokio::test]
    async fn a_failed_or_dropped_leader_leaves_the_seat_open() {
        let flights = Arc::new(SeatFlights::default());
        let (s, n) = key();
        let Flight::Leader(guard) = flights.enter(s, n).await else {
            panic!("first in leads");
        };
        let f = flights.clone();
        let follower = tokio::spawn(async move { matches!(f.enter(s, n).await, Flight::Open) });
        tokio::task::yield_now().await;
        drop(guard);
        assert!(follower.await.unwrap());
    }
}
