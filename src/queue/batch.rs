//! Coalescing: concurrent calls for one line on one instance share one script call.
//!
//! A request that finds no call of its line in flight sends its own at once, from its own task
//! (no added latency at low load); requests that arrive while a call is in flight wait for it
//! to finish and then go together in the next call, sent by a driver task. Redis runs a line
//! on one thread, so what a poll costs *there* is the ceiling of a whole sale: one EVALSHA for
//! 50 polls costs far less than 50 EVALSHAs.

use crate::domain::LineId;
use crate::store_error::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The most items one call carries.
pub const MAX_BATCH: usize = 256;

/// Scheduler rounds a driver lets pass before it takes the pending items. Each round the
/// runtime reads the sockets that became ready and runs the requests they carry, so requests
/// already on their way join this call instead of the next; a round with nothing ready
/// costs one look at the sockets. A call has a fixed price in Redis (reading it, waking up
/// for it, the script's start) that its items share, and Redis's one thread is the ceiling of
/// a sale. Measured at 64 connections (`cpu-split.sh`, alternating pairs, BENCHMARKS.md):
/// with no round a freshly spawned driver runs straight after its spawner (tokio's LIFO slot)
/// and carries 18.6 polls; with one, 25 polls or 27 joins; with four, 40–44 polls or 50–57
/// joins, Redis's CPU per poll and per join 9–30 % lower, throughput unchanged within the
/// noise, and ~0.3 ms more p50 at saturation. More rounds gather little more (16: 46 polls).
const GATHER_ROUNDS: usize = 4;

type Waiter<O> = oneshot::Sender<Result<O, StoreError>>;

struct Slot<I, O> {
    /// A call of this line is in flight (sent by a lead request or a driver task).
    busy: bool,
    pending: Vec<(I, Waiter<O>)>,
}

pub struct Coalescer<I, O> {
    lines: Mutex<HashMap<LineId, Slot<I, O>>>,
    /// `queuegate_queue_batch_size{call=<name>}`, its handle made once: looking it up by name
    /// builds a key and takes the registry's lock, on every call (the recorder is installed
    /// before the services are built).
    batch_size: metrics::Histogram,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// `name` labels the batch-size metric ("status", "join", "access").
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Coalescer {
            lines: Mutex::new(HashMap::new()),
            batch_size: metrics::histogram!("queuegate_queue_batch_size", "call" => name),
        })
    }

    /// Submits one item of `line` and waits for its answer. `call` sends a batch (its answers
    /// in the same order). The task that started a line's calls sends the items of later
    /// submits too, with its own `call`: every submit of a coalescer must pass an equivalent
    /// call.
    pub async fn submit<F, Fut>(
        self: &Arc<Self>,
        line: LineId,
        item: I,
        call: F,
    ) -> Result<O, StoreError>
    where
        F: Fn(LineId, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        let lead = {
            let mut lines = self
                .lines
                .lock()
                .map_err(|_| StoreError::bug("coalescer lock poisoned"))?;
            let slot = lines.entry(line).or_insert_with(|| Slot {
                busy: false,
                pending: Vec::new(),
            });
            if slot.busy {
                // Only a request that waits for another's call needs a channel for its answer.
                let (tx, rx) = oneshot::channel();
                slot.pending.push((item, tx));
                Err(rx)
            } else {
                slot.busy = true;
                Ok(item)
            }
        };
        match lead {
            // Boxed: the lead holds the script call's future (kilobytes), which the usual
            // case — waiting for another's call — should not carry in every request.
            Ok(item) => Box::pin(self.lead(line, item, call)).await,
            Err(rx) => rx
                .await
                .map_err(|_| StoreError::bug("coalesced call dropped its answer"))?,
        }
    }

    /// The line was idle: this item goes at once, from the caller's own task, alone — no
    /// hand-off to another task, so at low load coalescing costs nothing. Items that arrive
    /// while it is in flight are handed to a driver task when it ends (`Handoff`), also when
    /// the caller stops waiting, so a dropped request never strands them.
    async fn lead<F, Fut>(self: &Arc<Self>, line: LineId, item: I, call: F) -> Result<O, StoreError>
    where
        F: Fn(LineId, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        self.batch_size.record(1.0);
        let sent = call(line, vec![item]);
        let handoff = Handoff {
            coalescer: self.clone(),
            line,
            call: Some(call),
            _sent: std::marker::PhantomData,
        };
        let answer = sent.await;
        drop(handoff);
        let mut answers = answer?;
        match (answers.pop(), answers.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(StoreError::bug("a batch answer of the wrong length")),
        }
    }

    /// Sends the line's pending items, batch after batch, until none are left.
    async fn drive<F, Fut>(self: Arc<Self>, line: LineId, call: F)
    where
        F: Fn(LineId, Vec<I>) -> Fut,
        Fut: Future<Output = Result<Vec<O>, StoreError>>,
    {
        loop {
            // Let the tasks that are ready run first, for a few scheduler rounds (see
            // `GATHER_ROUNDS`): on a busy instance they are requests of this line about to be
            // submitted, and they join this batch instead of the next. When nothing else is
            // ready a round costs one look at the sockets (a lone request never gets here: it
            // leads its own call).
            for _ in 0..GATHER_ROUNDS {
                tokio::task::yield_now().await;
            }
            let batch: Vec<(I, Waiter<O>)> = {
                let Ok(mut lines) = self.lines.lock() else {
                    return;
                };
                let Some(slot) = lines.get_mut(&line) else {
                    return;
                };
                if slot.pending.is_empty() {
                    lines.remove(&line);
                    return;
                }
                let n = slot.pending.len().min(MAX_BATCH);
                slot.pending.drain(..n).collect()
            };
            self.batch_size.record(batch.len() as f64);
            let (items, waiters): (Vec<I>, Vec<Waiter<O>>) = batch.into_iter().unzip();
            let expected = items.len();
            match call(line, items).await {
                Ok(answers) if answers.len() == expected => {
                    for (waiter, answer) in waiters.into_iter().zip(answers) {
                        let _ = waiter.send(Ok(answer));
                    }
                }
                Ok(_) => {
                    for waiter in waiters {
                        let _ =
                            waiter.send(Err(StoreError::bug("a batch answer of the wrong length")));
                    }
                }
                Err(e) => {
                    for waiter in waiters {
                        let _ = waiter.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Ends a lead call: releases the idle line, or hands the items that queued behind the call
/// to a driver task. Runs on drop, so it also happens when the leading request is cancelled.
struct Handoff<I, O, F, Fut>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(LineId, Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
{
    coalescer: Arc<Coalescer<I, O>>,
    line: LineId,
    call: Option<F>,
    _sent: std::marker::PhantomData<fn() -> Fut>,
}

impl<I, O, F, Fut> Drop for Handoff<I, O, F, Fut>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(LineId, Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
{
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        let queued = match self.coalescer.lines.lock() {
            Ok(mut lines) => match lines.get(&self.line) {
                Some(slot) if !slot.pending.is_empty() => true,
                _ => {
                    lines.remove(&self.line);
                    false
                }
            },
            Err(_) => false,
        };
        if queued && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.coalescer.clone().drive(self.line, call));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConcertId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn line() -> LineId {
        LineId {
            concert: ConcertId::new(1).unwrap(),
            queue_id: 1,
        }
    }

    #[tokio::test]
    async fn concurrent_items_share_calls_and_get_their_own_answers() {
        let c: Arc<Coalescer<u64, u64>> = Coalescer::new("test");
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let submit = |n: u64| {
            let c = c.clone();
            let calls = calls.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                c.submit(line(), n, move |_, items: Vec<u64>| {
                    let calls = calls.clone();
                    let gate = gate.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Hold the first call open until the others have queued behind it.
                        let _ = gate.acquire().await.map(|p| p.forget());
                        Ok(items.iter().map(|i| i * 10).collect())
                    }
                })
                .await
            })
        };
        let first = submit(1);
        // Let the first call start before the rest arrive.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=50).map(submit).collect();
        tokio::task::yield_now().await;
        gate.add_permits(100);
        assert_eq!(first.await.unwrap().unwrap(), 10);
        for (i, h) in rest.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap(), (i as u64 + 2) * 10);
        }
        let n = calls.load(Ordering::SeqCst);
        assert!(
            n <= 3,
            "49 items behind one call went in few calls, not {n}"
        );
    }

    /// A request that becomes ready a couple of scheduler rounds after a call returns (its
    /// bytes were still being read) rides on the driver's next call instead of a call of its
    /// own: the driver lets `GATHER_ROUNDS` rounds pass before it takes the pending items.
    #[tokio::test]
    async fn items_a_few_rounds_behind_join_the_drivers_call() {
        let c: Arc<Coalescer<u64, u64>> = Coalescer::new("test");
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let call = {
            let (gate, sizes) = (gate.clone(), sizes.clone());
            move |_: LineId, items: Vec<u64>| {
                let (gate, sizes) = (gate.clone(), sizes.clone());
                async move {
                    let first = {
                        let mut sizes = sizes.lock().unwrap();
                        sizes.push(items.len());
                        sizes.len() == 1
                    };
                    if first {
                        let _ = gate.acquire().await.map(|p| p.forget());
                    }
                    Ok(items)
                }
            }
        };
        let lead = {
            let (c, call) = (c.clone(), call.clone());
            tokio::spawn(async move { c.submit(line(), 1, call).await })
        };
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let queued = {
            let (c, call) = (c.clone(), call.clone());
            tokio::spawn(async move { c.submit(line(), 2, call).await })
        };
        tokio::task::yield_now().await;
        // Submitted two rounds after the lead's answer, when the driver already exists.
        let late = {
            let (c, call) = (c.clone(), call.clone());
            let lead = lead;
            tokio::spawn(async move {
                let led = lead.await;
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                (led, c.submit(line(), 3, call).await)
            })
        };
        gate.add_permits(10);
        let (led, third) = late.await.unwrap();
        assert_eq!(led.unwrap().unwrap(), 1);
        assert_eq!(third.unwrap(), 3);
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        assert_eq!(*sizes.lock().unwrap(), vec![1, 2], "calls and their sizes");
    }

    #[tokio::test]
    async fn a_failed_call_fails_each_of_its_items() {
        let c: Arc<Coalescer<u64, u64>> = Coalescer::new("test");
        // One call as in production (every submit of a line passes the same call): it fails
        // the first time it is made and answers afterwards.
        let made = Arc::new(AtomicUsize::new(0));
        let call = move |_: LineId, items: Vec<u64>| {
            let first = made.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err(StoreError::Unavailable(
                        crate::store_error::Dependency::Redis,
                    ))
                } else {
                    Ok(items)
                }
            }
        };
        let r = c.submit(line(), 7, call.clone()).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))));
        // And the line is usable again afterwards.
        let ok = c.submit(line(), 7, call).await;
        assert_eq!(ok.unwrap(), 7);
    }

    #[tokio::test]
    async fn items_queued_behind_a_cancelled_lead_are_still_answered() {
        let c: Arc<Coalescer<u64, u64>> = Coalescer::new("test");
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let call = {
            let (gate, calls) = (gate.clone(), calls.clone());
            move |_: LineId, items: Vec<u64>| {
                let (gate, calls) = (gate.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.acquire().await.map(|p| p.forget());
                    Ok(items.iter().map(|i| i + 1).collect())
                }
            }
        };
        let lead = {
            let (c, call) = (c.clone(), call.clone());
            tokio::spawn(async move { c.submit(line(), 1, call).await })
        };
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let (c, call) = (c.clone(), call.clone());
            tokio::spawn(async move { c.submit(line(), 2, call).await })
        };
        // Let the second item queue behind the lead's call, then drop the lead mid-call.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        lead.abort();
        assert!(lead.await.unwrap_err().is_cancelled());
        gate.add_permits(10);
        assert_eq!(queued.await.unwrap().unwrap(), 3);
        // And the line is free again: a new item leads a call of its own.
        assert_eq!(c.submit(line(), 5, call).await.unwrap(), 6);
    }
}
