//! The waiting room as the API sees it: join, status, event streams, leave, and the admission
//! check behind the booking gate. It owns the queue store, the event hub and the signing keys
//! it needs to hand out access tokens — and it is the one place an access token is made.

use super::batch::Coalescer;
use super::hub::{EventHub, Stream, StreamEvent};
use super::marks::Marks;
use super::model::{Access, JoinItem, JoinKind, Joined, Place};
use super::store::QueueStore;
use super::view::{View, expires_at};
use crate::config::QueueDefaults;
use crate::domain::{ConcertId, LineId, UserId};
use crate::store_error::StoreError;
use crate::tokens::{AccessToken, QueueToken, StreamTicket, TokenKeys};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Left, idle too long, admission over, or paid.
    #[error("this queue place no longer exists")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stream ticket opens one stream, once.
    #[error("this stream ticket was already used; ask for a new one")]
    TicketUsed,
    /// This instance keeps as many streams open as it may; poll the status instead.
    #[error("too many open event streams here; poll /v1/queue/status instead")]
    TooManyStreams,
}

/// A place taken (or found, or restored) by joining.
pub struct JoinOutcome {
    pub how: JoinKind,
    pub queue_token: String,
    pub view: View,
}

pub struct Queue {
    store: Arc<QueueStore>,
    tokens: Arc<TokenKeys>,
    defaults: QueueDefaults,
    hub: EventHub,
    /// Most streams open at once on this instance (0 = no cap).
    max_streams: usize,
    /// Marks this instance wrote recently (a fresh one needs no rewrite).
    marks: Marks,
    /// Concurrent polls of a line share one script call; so do joins and access checks.
    statuses: Arc<Coalescer<(UserId, u64, bool), Place>>,
    joins: Arc<Coalescer<JoinItem, Joined>>,
    accesses: Arc<Coalescer<(UserId, u64), Access>>,
}

impl Queue {
    pub fn new(
        store: Arc<QueueStore>,
        tokens: Arc<TokenKeys>,
        defaults: QueueDefaults,
        max_streams: usize,
    ) -> Self {
        metrics::gauge!("queuegate_sse_streams_limit").set(max_streams as f64);
        Queue {
            store,
            tokens,
            hub: EventHub::default(),
            max_streams,
            marks: Marks::new(defaults.idle_secs),
            statuses: Coalescer::new("status"),
            joins: Coalescer::new("join"),
            accesses: Coalescer::new("access"),
            defaults,
        }
    }

    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// Where the place (user, seq) stands, through the line's shared status call; the mark
    /// is sent only when this instance's own mark is not fresh.
    async fn place(&self, line: LineId, user: UserId, seq: u64) -> Result<Place, QueueError> {
        let mark = self.marks.needs_mark(line, seq);
        let store = self.store.clone();
        let idle = self.defaults.idle_secs;
        let place = self
            .statuses
            .submit(line, (user, seq, mark), move |line, items| {
                let store = store.clone();
                async move { store.status_batch(line, idle, &items).await }
            })
            .await?;
        if mark && matches!(place, Place::Waiting { .. }) {
            self.marks.marked(line, seq);
        }
        Ok(place)
    }

    pub fn store(&self) -> &Arc<QueueStore> {
        &self.store
    }

    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    pub fn defaults(&self) -> &QueueDefaults {
        &self.defaults
    }

    /// Takes a place in `line`, or returns the one `user` has. `restore` is a queue token the
    /// caller kept: it brings the original place back if the store lost it.
    pub async fn join(
        &self,
        line: LineId,
        user: UserId,
        restore: Option<&QueueToken>,
    ) -> Result<JoinOutcome, QueueError> {
        let item = JoinItem {
            user,
            restore: restore.map(|q| (q.seq, q.epoch.to_string())),
        };
        let store = self.store.clone();
        let joined = self
            .joins
            .submit(line, item, move |line, items| {
                let store = store.clone();
                async move { store.join_batch(line, &items).await }
            })
            .await?;
        if matches!(joined.place, Place::Waiting { .. }) {
            self.marks.marked(line, joined.seq);
        }
        // The timer's list of concerts; a failure here must not undo a place already taken.
        // A restored place means the store lost its data, the timer's set of concerts with it.
        let registered = if joined.how == JoinKind::Restored {
            Box::pin(self.store.add_to_timer(line)).await
        } else {
            self.store.register_line(line).await
        };
        if let Err(e) = registered {
            tracing::warn!(error = %e, %line, "could not register the line for admission");
        }
        join_counted(line.concert, joined.how.as_str());
        let q = QueueToken {
            user_id: user,
            concert_id: line.concert,
            queue_id: line.queue_id,
            seq: joined.seq,
            epoch: joined.epoch,
        };
        Ok(JoinOutcome {
            how: joined.how,
            queue_token: self.tokens.mint_queue(&q),
            view: self.view(line, user, q.seq, joined.place)?,
        })
    }

    /// Where the token's place stands now (and a mark that its holder is still here).
    pub async fn status(&self, q: &QueueToken) -> Result<View, QueueError> {
        let place = self.place(q.line(), q.user_id, q.seq).await?;
        status_counter(&place).increment(1);
        self.view(q.line(), q.user_id, q.seq, place)
    }

    /// A single-use ticket that opens the event stream of `q`'s place (for EventSource, which
    /// cannot send the queue token in a header).
    pub fn stream_ticket(&self, q: &QueueToken) -> String {
        self.tokens.mint_stream_ticket(q)
    }

    /// Opens the event stream a ticket names, using up the ticket.
    pub async fn open_stream_with_ticket(&self, t: &StreamTicket) -> Result<Stream, QueueError> {
        if !self.store.redeem_ticket(t.line, &t.jti).await? {
            return Err(QueueError::TicketUsed);
        }
        self.open_stream(t.line, t.user_id, t.seq).await
    }

    /// Opens the event stream of the place (user, seq) in `line`: a first position and a place
    /// in the hub, or a single admitted event.
    pub async fn open_stream(
        &self,
        line: LineId,
        user: UserId,
        seq: u64,
    ) -> Result<Stream, QueueError> {
        if self.max_streams > 0 && self.hub.open_streams() >= self.max_streams {
            metrics::counter!("queuegate_sse_refused_total").increment(1);
            return Err(QueueError::TooManyStreams);
        }
        let place = self.place(line, user, seq).await?;
        let view = self.view(line, user, seq, place)?;
        Ok(match place {
            Place::Waiting { position } => {
                self.hub
                    .subscribe(line, user, seq, position, StreamEvent::Update(view))
            }
            // Position 0 stands for "no position yet": the first position after the draw is
            // news.
            Place::PreQueue { .. } => {
                self.hub
                    .subscribe(line, user, seq, 0, StreamEvent::Update(view))
            }
            _ => self.hub.single(StreamEvent::Update(view)),
        })
    }

    /// Frees the token's place. Returns whether there was one.
    pub async fn leave(&self, q: &QueueToken) -> Result<bool, QueueError> {
        let left = self.store.leave(q.line(), q.user_id, q.seq).await?;
        if left {
            metrics::counter!("queuegate_queue_leaves_total", "concert" => q.concert_id.to_string())
                .increment(1);
        }
        Ok(left)
    }

    /// Does the admission an access token names still admit (and if not, why not)?
    pub async fn check_access(&self, t: &AccessToken) -> Result<Access, QueueError> {
        let store = self.store.clone();
        let access = self
            .accesses
            .submit(t.line(), (t.user_id, t.seq), move |line, items| {
                let store = store.clone();
                async move { store.check_access_batch(line, &items).await }
            })
            .await?;
        Ok(access)
    }

    /// Admits `user` at once, outside the line (operators and tests); returns the access token.
    pub async fn grant(
        &self,
        line: LineId,
        user: UserId,
        ttl_secs: u64,
    ) -> Result<String, QueueError> {
        let (seq, ends_ms) = self.store.grant(line, user, ttl_secs).await?;
        Ok(self.access_token(line, user, seq, ends_ms))
    }

    /// The one translation of a place into what its holder sees.
    pub fn view(
        &self,
        line: LineId,
        user: UserId,
        seq: u64,
        place: Place,
    ) -> Result<View, QueueError> {
        match place {
            Place::PreQueue { starts_ms } => Ok(View::pre_queue(
                starts_ms,
                now_ms(),
                f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0,
            )),
            Place::Waiting { position } => Ok(View::waiting(
                position,
                &self.store.pace(line),
                &self.defaults,
            )),
            Place::Admitted { ends_ms } => Ok(View::Admitted {
                access_token: self.access_token(line, user, seq, ends_ms),
                access_expires_at: expires_at(ends_ms),
            }),
            Place::Gone => Err(QueueError::Gone),
        }
    }

    /// The one place an access token is made: bound to one admission (its `seq`), ending
    /// when the admission does.
    fn access_token(&self, line: LineId, user: UserId, seq: u64, ends_ms: u64) -> String {
        self.tokens.mint_access(&AccessToken {
            user_id: user,
            concert_id: line.concert,
            queue_id: line.queue_id,
            seq,
            exp: ends_ms / 1000,
        })
    }
}

/// `queuegate_queue_status_total` for this answer. The four handles are made once: looking a
/// counter up by name and label on every poll was a measurable share of a poll's CPU.
fn status_counter(place: &Place) -> &'static metrics::Counter {
    static COUNTERS: std::sync::OnceLock<[metrics::Counter; 4]> = std::sync::OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        ["pre_queue", "waiting", "admitted", "gone"]
            .map(|result| metrics::counter!("queuegate_queue_status_total", "result" => result))
    });
    &counters[match place {
        Place::PreQueue { .. } => 0,
        Place::Waiting { .. } => 1,
        Place::Admitted { .. } => 2,
        Place::Gone => 3,
    }]
}

/// Counts a join in `queuegate_queue_joins_total`. The handle of each (concert, result) is
/// made once per worker thread: building the key (the concert id as a label string) and
/// looking it up on every join was ~1 % of a join's CPU.
fn join_counted(concert: ConcertId, result: &'static str) {
    use std::cell::RefCell;
    thread_local! {
        static COUNTERS: RefCell<HashMap<(ConcertId, &'static str), metrics::Counter>> =
            RefCell::new(HashMap::new());
    }
    COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry((concert, result))
            .or_insert_with(|| {
                metrics::counter!("queuegate_queue_joins_total", "concert" => concert.to_string(), "result" => result)
            })
            .increment(1);
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
