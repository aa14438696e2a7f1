//! The hold-expiry sweep: marks holds past their end as `expired`.
//!
//! Correctness never waits for it — readers and new holds already treat an expired hold as
//! free — so it keeps the table tidy, the status honest for later reads, and tells the booking
//! events stream (`reservation.expired`, written in the same transaction). Every instance runs
//! it; each batch locks the rows it expires with `SKIP LOCKED`, so concurrent sweeps take
//! different rows and each row changes (and gets its event) exactly once.

use crate::db::Db;
use crate::domain::{ConcertId, ReservationId, ScheduleId, SeatNo, UserId};
use crate::outbox::{self, Event, ReservationFacts};
use crate::store_error::StoreError;
use std::collections::HashMap;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

const BATCH: usize = 500;

/// Marks expired holds in batches; returns how many it marked.
pub async fn run_once(db: &Db) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let marked = crate::store_error::retry_busy(|| expire_batch(db)).await?;
        total += marked as u64;
        if marked < BATCH {
            break;
        }
    }
    if total > 0 {
        metrics::counter!("queuegate_holds_expired_total").increment(total);
        tracing::info!(expired = total, "sweep marked expired holds");
    }
    metrics::gauge!("queuegate_sweep_last_success_timestamp_seconds")
        .set(chrono::Utc::now().timestamp() as f64);
    Ok(total)
}

type Expiring = (u64, u64, u64, u8, i64);

/// One transaction: lock up to `BATCH` expired holds (skipping rows another transaction holds
/// — a concurrent sweep, or a hold or payment that decides them itself), mark them expired by
/// id, and write their `reservation.expired` events. Returns how many it marked.
async fn expire_batch(db: &Db) -> Result<usize, StoreError> {
    let mut tx = db.primary().begin().await?;
    let rows: Vec<Expiring> = sqlx::query_as(
        "SELECT id, user_id, schedule_id, seat_no, price FROM reservations
          WHERE status = 'held' AND expires_at <= NOW(6)
          ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let concerts = concerts_of(&mut tx, &rows).await?;
    let marks = vec!["?"; rows.len()].join(",");
    let sql = format!(
        "UPDATE reservations SET status = 'expired' WHERE status = 'held' AND id IN ({marks})"
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in &rows {
        update = update.bind(row.0);
    }
    let marked = update.execute(&mut *tx).await?.rows_affected();
    if marked != rows.len() as u64 {
        // The rows are locked by this transaction: nobody can have changed them.
        return Err(StoreError::bug(
            "sweep: locked holds changed under the lock",
        ));
    }
    let bad = || StoreError::bug("sweep: reservation row out of range");
    let mut events = Vec::with_capacity(rows.len());
    for (id, user, schedule, seat, price) in &rows {
        events.push(Event::expired(&ReservationFacts {
            reservation_id: ReservationId::new(*id).ok_or_else(bad)?,
            user_id: UserId::new(*user).ok_or_else(bad)?,
            concert_id: *concerts.get(schedule).ok_or_else(bad)?,
            schedule_id: ScheduleId::new(*schedule).ok_or_else(bad)?,
            seat_no: SeatNo::new(u64::from(*seat)).ok_or_else(bad)?,
            amount: *price,
        })?);
    }
    outbox::record(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// The concert of each schedule in `rows` (a plain read: schedules are not locked).
async fn concerts_of(
    conn: &mut sqlx::MySqlConnection,
    rows: &[Expiring],
) -> Result<HashMap<u64, ConcertId>, StoreError> {
    let mut schedules: Vec<u64> = rows.iter().map(|r| r.2).collect();
    schedules.sort_unstable();
    schedules.dedup();
    let marks = vec!["?"; schedules.len()].join(",");
    let sql = format!("SELECT id, concert_id FROM schedules WHERE id IN ({marks})");
    let mut q = sqlx::query_as::<_, (u64, u64)>(sqlx::AssertSqlSafe(sql));
    for s in &schedules {
        q = q.bind(s);
    }
    Ok(q.fetch_all(conn)
        .await?
        .into_iter()
        .filter_map(|(s, c)| Some((s, ConcertId::new(c)?)))
        .collect())
}

/// Schedules the sweep every `every_secs` on tokio-cron-scheduler.
pub async fn schedule(db: Db, every_secs: u64) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let job = Job::new_repeated_async(Duration::from_secs(every_secs), move |_id, _lock| {
        let db = db.clone();
        Box::pin(async move {
            if let Err(e) = run_once(&db).await {
                tracing::warn!(error = %e, "hold sweep failed; next run retries");
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
