//! The hold-expiry sweep: marks holds past their end as `expired`.
//!
//! Correctness never waits for it — readers and new holds already treat an expired hold as
//! free — so it only keeps the table tidy and the status honest for later reads. Every instance
//! runs it; concurrent sweeps simply find nothing left to do, since each row changes at most once
//! (`status = 'held'` is part of the condition).

use crate::db::Db;
use crate::store_error::StoreError;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

const BATCH: u64 = 500;

/// Marks expired holds in batches; returns how many it marked.
pub async fn run_once(db: &Db) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let marked = sqlx::query(
            "UPDATE reservations SET status = 'expired'
              WHERE status = 'held' AND expires_at <= NOW(6)
              ORDER BY expires_at LIMIT 500",
        )
        .execute(db.primary())
        .await?
        .rows_affected();
        total += marked;
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
