//! The hold-expiry sweep: marks holds past their end as `expired`.
//!
//! Correctness never waits for it — readers and new holds already treat an expired hold as
//! free — so it only keeps the table tidy and the status honest for later reads. Every instance
//! runs it; concurrent sweeps simply find nothing left to do, since each row changes at most once
//! (`status = 'held'` is part of the condition).

use crate::app::App;
use crate::error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

const BATCH: u64 = 500;

/// Marks expired holds in batches; returns how many it marked.
pub async fn run_once(app: &App) -> Result<u64, ApiError> {
    let mut total = 0;
    loop {
        let marked = sqlx::query(
            "UPDATE reservations SET status = 'expired'
              WHERE status = 'held' AND expires_at <= NOW(6)
              ORDER BY expires_at LIMIT 500",
        )
        .execute(app.db.primary())
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
    Ok(total)
}

/// Schedules the sweep every `SWEEP_INTERVAL_SECS` on tokio-cron-scheduler.
pub async fn schedule(app: Arc<App>) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let every = Duration::from_secs(app.settings.sweep_interval_secs);
    let job = Job::new_repeated_async(every, move |_id, _lock| {
        let app = app.clone();
        Box::pin(async move {
            if let Err(e) = run_once(&app).await {
                tracing::warn!(error = %e, "hold sweep failed; next run retries");
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
