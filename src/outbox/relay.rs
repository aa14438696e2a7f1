//! The outbox relay: carries committed events out of the database, at least once, in order,
//! without duplicates. Every instance runs one; one of them works at a time.
//!
//! Claiming. Each tick a relay opens a transaction on its own connection and tries to lock the
//! single row of `outbox_relay_lease` with `FOR UPDATE SKIP LOCKED`. Whoever gets it is the
//! only relay at work for that transaction; the others see no row and skip the tick. A relay
//! whose process dies drops its connection and the database releases the lock at once, so
//! another instance takes over on its next tick (≤ `OUTBOX_RELAY_MS`) with no lease timeout to
//! wait out. A relay that hangs instead (a frozen process, a partitioned network) is cut off by
//! its connection's short `wait_timeout`: the relay uses its own connection at least every
//! second, so only a relay that stopped working goes quiet that long.
//!
//! Ordering. The leader reads unrelayed rows in id order and carries them out in that order,
//! stopping at the first failure, so nothing is published past a row that could not be. Rows
//! of one reservation have ids in commit order (see `record`), hence its events reach the
//! stream in commit order. (Rows of *different* reservations may commit out of id order; their
//! relative order in the stream is not promised.)
//!
//! Exactly once in the stream. Publishing is `lua/publish_events.lua` (up to `PUBLISH_CHUNK`
//! events per call, in order): per event, check its dedup key and XADD in one atomic step. A
//! row is marked relayed in the leader's transaction after it was published; if that commit is
//! lost (crash, database failure) the row is carried again later and the script recognises it
//! — even if a stalled old leader and a new one overlap.
//!
//! Side effects. `payment.completed` first revokes the paying admission
//! (`QueueStore::revoke(concert, user, Some(seq))`: idempotent, and it leaves a newer admission
//! of the same user alone). The request path revokes at once after commit; this is the
//! guarantee behind it for a process that died in between.

use super::record::EventType;
use super::stream::{dedup_key, stream_key};
use crate::config::OutboxSettings;
use crate::db::Db;
use crate::domain::{ConcertId, LineId, UserId, rfc3339};
use crate::queue::store::QueueStore;
use crate::redis::{Script, int};
use crate::store_error::StoreError;
use chrono::NaiveDateTime;
use fred::prelude::*;
use sqlx::{Connection, MySqlConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Rows per relay transaction.
const BATCH: i64 = 500;
/// Events per publish script call: one round trip (and, on a Redis with `appendfsync always`,
/// one fsync) for many events.
const PUBLISH_CHUNK: usize = 100;
/// At most this many transactions per tick, so one tick cannot run for ever.
const MAX_BATCHES_PER_TICK: usize = 20;
/// A batch stops publishing after this long and commits what it did: the transaction (and the
/// lease) is never held for long, whatever Redis latency does.
const BATCH_TIME: Duration = Duration::from_secs(1);
/// The server closes the relay's connection after this many idle seconds (`wait_timeout`,
/// honoured by MariaDB and MySQL alike, inside a transaction too), which releases the lease a
/// hung relay holds. A working relay speaks at least every `OUTBOX_RELAY_MS` (≤ 1 s).
const WAIT_TIMEOUT_SECS: u32 = 10;
/// How often the leader deletes rows past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// At most this many rows per prune statement.
const PRUNE_CHUNK: u64 = 5000;
/// While failing, a warning at most this often (the relay retries every tick).
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox row {id}: {source}")]
    Row {
        id: u64,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(RelayError);

/// One unrelayed row (the last field: the revoked concert's line id, from `concerts`).
type Row = (
    u64,
    String,
    String,
    u64,
    String,
    Option<u64>,
    Option<u64>,
    NaiveDateTime,
    Option<u64>,
);

pub struct Relay {
    db: Db,
    queue: Arc<QueueStore>,
    prefix: String,
    script: Script,
    config: OutboxSettings,
}

/// What one tick did, for the caller's logging.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub leader: bool,
    pub published: u64,
    pub duplicates: u64,
}

impl Relay {
    pub fn new(db: Db, queue: Arc<QueueStore>, prefix: &str, config: OutboxSettings) -> Self {
        Relay {
            db,
            queue,
            prefix: prefix.to_owned(),
            script: Script::new(
                "publish_events",
                include_str!("../../lua/publish_events.lua"),
            ),
            config,
        }
    }

    /// Runs until `stop` says so.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.relay_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<MySqlConnection> = None;
        let mut last_prune = Instant::now();
        let mut failing: Option<(Instant, Instant)> = None; // (since, last warning)
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let prune = last_prune.elapsed() >= PRUNE_EVERY;
            match self.tick(&mut conn, prune).await {
                Ok(report) => {
                    if report.leader && prune {
                        last_prune = Instant::now();
                    }
                    if let Some((since, _)) = failing.take() {
                        tracing::info!(
                            failing_for_ms = since.elapsed().as_millis() as u64,
                            "outbox relay recovered"
                        );
                    }
                }
                Err(e) => {
                    if let RelayError::Store(_) = e {
                        // A database problem may have broken the connection: start afresh.
                        conn = None;
                    }
                    let now = Instant::now();
                    match &mut failing {
                        Some((_, warned)) if warned.elapsed() < WARN_EVERY => {}
                        Some((since, warned)) => {
                            *warned = now;
                            tracing::warn!(error = %e, failing_for_s = since.elapsed().as_secs(), "outbox relay still failing; events wait in the outbox");
                        }
                        None => {
                            failing = Some((now, now));
                            tracing::warn!(error = %e, "outbox relay failed; events wait in the outbox and go out in order once it recovers");
                        }
                    }
                }
            }
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    }

    /// One tick: relay (if publishing is on and this instance gets the lease), then publish
    /// the lag gauge from the database — every instance does, so no instance shows a stale lag.
    pub async fn tick(
        &self,
        conn: &mut Option<MySqlConnection>,
        prune: bool,
    ) -> Result<TickReport, RelayError> {
        let c = match conn {
            Some(c) => c,
            slot @ None => slot.insert(self.connect().await?),
        };
        let mut report = TickReport::default();
        let outcome = if self.config.relay {
            self.relay(c, &mut report).await
        } else {
            Ok(())
        };
        metrics::gauge!("queuegate_outbox_relay_leader").set(if report.leader { 1.0 } else { 0.0 });
        if report.leader && prune && outcome.is_ok() {
            self.prune(c).await?;
        }
        // The lag even when relaying failed (that is when it matters).
        let lag = oldest_unrelayed_age(c).await?;
        metrics::gauge!("queuegate_outbox_oldest_unrelayed_age_seconds").set(lag);
        outcome.map(|_| report)
    }

    /// The relay's own connection (kept across ticks), with the short idle limit.
    async fn connect(&self) -> Result<MySqlConnection, StoreError> {
        let mut c = self.db.primary().acquire().await?.detach();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET SESSION wait_timeout = {WAIT_TIMEOUT_SECS}"
        )))
        .execute(&mut c)
        .await?;
        Ok(c)
    }

    /// Batches while this instance holds the lease and there is work.
    async fn relay(
        &self,
        conn: &mut MySqlConnection,
        report: &mut TickReport,
    ) -> Result<(), RelayError> {
        for _ in 0..MAX_BATCHES_PER_TICK {
            let mut tx = conn.begin().await.map_err(StoreError::from)?;
            let lease: Option<u8> = sqlx::query_scalar(
                "SELECT id FROM outbox_relay_lease WHERE id = 1 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if lease.is_none() {
                tx.rollback().await.map_err(StoreError::from)?;
                return Ok(());
            }
            report.leader = true;
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT o.id, o.event_id, CAST(o.event_type AS CHAR), o.user_id, o.data,
                        o.revoke_concert_id, o.revoke_seq, o.created_at, c.queue_id
                   FROM outbox o LEFT JOIN concerts c ON c.id = o.revoke_concert_id
                  WHERE o.relayed_at IS NULL ORDER BY o.id LIMIT ?",
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let (done, failure) = self.carry(&rows, report).await;
            if !done.is_empty() {
                let marks = vec!["?"; done.len()].join(",");
                let sql = format!("UPDATE outbox SET relayed_at = NOW(6) WHERE id IN ({marks})");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for id in &done {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await.map_err(StoreError::from)?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            if let Some(e) = failure {
                return Err(e);
            }
            if (done.len() as i64) < BATCH && done.len() == rows.len() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Carries rows out in id order: for a payment its revocation, then the events, published
    /// in chunks (one script call each). Stops at the first failure, or when the batch has run
    /// for `BATCH_TIME`. Returns the ids carried out (a prefix of `rows`) and the failure.
    async fn carry(&self, rows: &[Row], report: &mut TickReport) -> (Vec<u64>, Option<RelayError>) {
        let started = Instant::now();
        let mut done = Vec::with_capacity(rows.len());
        let mut chunk: Vec<&Row> = Vec::with_capacity(PUBLISH_CHUNK);
        let mut failure = None;
        for row in rows {
            if chunk.len() >= PUBLISH_CHUNK || started.elapsed() >= BATCH_TIME {
                if let Err(e) = self.publish(&chunk, report).await {
                    return (done, Some(e));
                }
                done.extend(chunk.drain(..).map(|r| r.0));
                if started.elapsed() >= BATCH_TIME {
                    return (done, None);
                }
            }
            // The revocation comes before its event is published: a consumer that sees
            // `payment.completed` may rely on the access being over.
            if let Err(source) = self.revoke(row).await {
                failure = Some(RelayError::Row { id: row.0, source });
                break;
            }
            chunk.push(row);
        }
        // The rows before a failed revocation still go out.
        match self.publish(&chunk, report).await {
            Ok(()) => done.extend(chunk.iter().map(|r| r.0)),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
        (done, failure)
    }

    /// Revokes the admission a `payment.completed` row names (other rows: nothing to do).
    async fn revoke(&self, row: &Row) -> Result<(), StoreError> {
        let (id, _, _, user, _, revoke_concert, revoke_seq, _, queue_id) = row;
        let (Some(concert), Some(seq)) = (revoke_concert, revoke_seq) else {
            return Ok(());
        };
        let bad = || StoreError::bug(format!("outbox row {id} out of range"));
        let line = LineId {
            concert: ConcertId::new(*concert).ok_or_else(bad)?,
            queue_id: queue_id.ok_or_else(bad)?,
        };
        let concert = line.concert;
        let user = UserId::new(*user).ok_or_else(bad)?;
        let ended = self
            .queue
            .revoke(line, user, Some(*seq))
            .await
            .inspect_err(|_| {
                metrics::counter!("queuegate_outbox_failed_total", "step" => "revoke").increment(1);
            })?;
        let result = if ended { "ended" } else { "already_ended" };
        metrics::counter!("queuegate_outbox_revocations_total", "result" => result).increment(1);
        if ended {
            tracing::info!(%user, %concert, seq, "outbox relay revoked an admission after payment (the request path had not)");
        }
        Ok(())
    }

    /// Publishes `chunk` with one call of `publish_events.lua`, in order.
    async fn publish(&self, chunk: &[&Row], report: &mut TickReport) -> Result<(), RelayError> {
        let Some(first) = chunk.first() else {
            return Ok(());
        };
        let row_error = |source| RelayError::Row {
            id: first.0,
            source,
        };
        let mut keys: Vec<Key> = Vec::with_capacity(chunk.len() + 1);
        keys.push(stream_key(&self.prefix).into());
        let mut args: Vec<Value> = Vec::with_capacity(2 + 3 * chunk.len());
        args.push(int(self.config.events_maxlen));
        args.push(int(self.config.retention_hours.saturating_mul(3600)));
        let mut kinds = Vec::with_capacity(chunk.len());
        for (id, event_id, kind, _, data, _, _, created_at, _) in chunk.iter().copied() {
            let kind = EventType::parse(kind)
                .ok_or_else(|| StoreError::bug(format!("outbox row {id}: type {kind}")))
                .map_err(row_error)?;
            keys.push(dedup_key(&self.prefix, event_id).into());
            args.push(event_id.as_str().into());
            args.push(kind.as_str().into());
            args.push(with_at(data, *created_at).map_err(row_error)?.into());
            kinds.push(kind);
        }
        let appended: Vec<i64> = self
            .script
            .run(self.queue.pool().next_connected(), keys, args)
            .await
            .map_err(|e| {
                metrics::counter!("queuegate_outbox_failed_total", "step" => "publish")
                    .increment(1);
                row_error(e.into())
            })?;
        if appended.len() != kinds.len() {
            return Err(row_error(StoreError::bug(
                "publish_events: reply of the wrong length",
            )));
        }
        for (kind, new) in kinds.into_iter().zip(appended) {
            if new == 1 {
                report.published += 1;
                metrics::counter!("queuegate_outbox_published_total", "type" => kind.as_str())
                    .increment(1);
            } else {
                report.duplicates += 1;
                metrics::counter!("queuegate_outbox_duplicates_total").increment(1);
            }
        }
        Ok(())
    }

    /// Deletes relayed rows past the retention, a chunk at a time (a few chunks per run).
    async fn prune(&self, conn: &mut MySqlConnection) -> Result<(), StoreError> {
        for _ in 0..10 {
            let deleted = sqlx::query(
                "DELETE FROM outbox WHERE relayed_at < NOW(6) - INTERVAL ? HOUR LIMIT ?",
            )
            .bind(self.config.retention_hours)
            .bind(PRUNE_CHUNK)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            metrics::counter!("queuegate_outbox_pruned_total").increment(deleted);
            if deleted < PRUNE_CHUNK {
                break;
            }
        }
        Ok(())
    }
}

/// Seconds since the oldest unrelayed event was written; 0 when every event is out.
async fn oldest_unrelayed_age(conn: &mut MySqlConnection) -> Result<f64, StoreError> {
    let micros: Option<i64> = sqlx::query_scalar(
        "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM outbox
          WHERE relayed_at IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(micros.map_or(0.0, |m| m.max(0) as f64 / 1e6))
}

/// The published `data`: the stored object plus `at`, the time the event was written (the
/// database clock, as every other time the API shows). Same bytes on every retry.
fn with_at(data: &str, created_at: NaiveDateTime) -> Result<String, StoreError> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(data).map_err(StoreError::bug)?;
    object.insert("at".into(), rfc3339(created_at.and_utc()).into());
    serde_json::to_string(&object).map_err(StoreError::bug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_data_adds_the_time_the_event_was_written() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 250_000_000)
            .unwrap()
            .naive_utc();
        let out = with_at(r#"{"user_id":3,"amount":900}"#, at).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user_id": 3, "amount": 900, "at": "2027-01-15T08:00:00.250Z"})
        );
        assert_eq!(with_at(r#"{"user_id":3,"amount":900}"#, at).unwrap(), out);
        assert!(with_at("not json", at).is_err());
    }
}
