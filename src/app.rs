//! The application: every shared resource in one place, built once from `Settings`, plus the
//! background jobs that run beside the HTTP server. Tests build the same `App` on port 0.

use crate::booking::seat_board::SeatBoard;
use crate::booking::{ConcertCache, ScheduleCache};
use crate::config::Settings;
use crate::db::{Db, DbSetupError};
use crate::lock::Redlock;
use crate::queue::QueueStore;
use crate::queue::events::EventHub;
use crate::tokens::TokenKeys;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("invalid Redis configuration: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start background jobs: {0}")]
    Jobs(String),
}

pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub queue: QueueStore,
    pub redlock: Redlock,
    pub tokens: TokenKeys,
    pub seats: SeatBoard,
    pub flights: crate::booking::flights::SeatFlights,
    pub limits: crate::ratelimit::RateLimiter,
    /// Set at SIGTERM: the instance is leaving (see `Settings::shutdown_drain`).
    pub draining: std::sync::atomic::AtomicBool,
    pub schedules: ScheduleCache,
    pub concerts: ConcertCache,
    pub events: EventHub,
    pub metrics: PrometheusHandle,
}

impl App {
    /// Connects to everything (lazily where a dependency may be down) and, with
    /// `AUTO_MIGRATE`, creates and migrates the database.
    pub async fn build(settings: Settings) -> Result<Arc<App>, StartError> {
        let metrics = crate::metrics::handle();
        if settings.jwt_secret_is_default {
            tracing::warn!(
                "JWT_SECRET is not set: using the development key (never do this in production)"
            );
        }
        if settings.auto_migrate {
            Db::ensure_database(&settings.database_url).await?;
        }
        let db = Db::connect_lazy(
            &settings.database_url,
            settings.database_replica_url.as_deref(),
            settings.database_max_connections,
        )?;
        if settings.auto_migrate {
            db.migrate().await?;
        }
        let pool = crate::redis::pool(&settings.redis_url, 8)?;
        if !crate::redis::wait_connected(&pool, Duration::from_secs(3)).await {
            tracing::warn!(url = %settings.redis_url, "queue Redis is not reachable yet; queue routes answer 503 until it is");
        }
        let queue = QueueStore::new(pool.clone(), settings.redis_key_prefix.clone());
        if let Err(e) = queue.load_scripts().await {
            tracing::warn!(error = %e, "could not preload Lua scripts; they load on first use");
        }
        let masters = settings
            .redlock_urls
            .iter()
            .map(|u| crate::redis::lock_client(u))
            .collect::<Result<Vec<_>, _>>()?;
        // Give the masters a moment to connect so the first holds take the lock path; a master
        // that is down does not hold up the start (it keeps reconnecting in the background).
        futures_util::future::join_all(masters.iter().map(|m| {
            tokio::time::timeout(
                Duration::from_secs(1),
                fred::interfaces::ClientLike::wait_for_connect(m),
            )
        }))
        .await;
        let redlock = Redlock::new(masters, settings.lock_ttl);
        let seats = SeatBoard::new(pool, settings.redis_key_prefix.clone());
        let limits = crate::ratelimit::RateLimiter::new(settings.rate_limits.clone());
        Ok(Arc::new(App {
            limits,
            draining: Default::default(),
            tokens: TokenKeys::new(settings.jwt_secret.as_bytes()),
            settings,
            db,
            queue,
            redlock,
            seats,
            flights: Default::default(),
            schedules: ScheduleCache::default(),
            concerts: ConcertCache::default(),
            events: EventHub::default(),
            metrics,
        }))
    }

    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let addr = self.settings.listen_addr;
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })
    }
}

/// Background work that runs beside the server; stopped together on shutdown.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    scheduler: Option<tokio_cron_scheduler::JobScheduler>,
}

impl Background {
    pub async fn start(app: &Arc<App>) -> Result<Background, StartError> {
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(metrics_upkeep(app.clone(), stop_rx.clone())),
            tokio::spawn(crate::queue::ticker::run(app.clone(), stop_rx.clone())),
            tokio::spawn(crate::queue::events::run(app.clone(), stop_rx.clone())),
        ];
        let scheduler = crate::booking::sweep::schedule(app.clone())
            .await
            .map_err(|e| StartError::Jobs(e.to_string()))?;
        Ok(Background {
            stop,
            tasks,
            scheduler: Some(scheduler),
        })
    }

    /// Signals every job to stop (event streams close at once so connections can drain).
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut s) = self.scheduler.take() {
            let _ = s.shutdown().await;
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Refreshes gauges that are read rather than counted: pool sizes, lock quorum; and lets the
/// Prometheus recorder drain its histogram buffers.
async fn metrics_upkeep(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        app.db.record_pool_metrics();
        let up = app.redlock.masters_up().await;
        metrics::gauge!("queuegate_redlock_masters_up").set(up as f64);
        metrics::gauge!("queuegate_redlock_masters").set(app.redlock.masters() as f64);
        app.metrics.run_upkeep();
        app.limits.prune();
    }
}

/// Runs the server and its background jobs until `shutdown` resolves.
pub async fn run_until(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let background = Background::start(&app).await?;
    let grace = app.settings.shutdown_grace;
    let shutdown = async {
        shutdown.await;
        background.signal_stop();
    };
    crate::http::server::run(app, listener, shutdown, grace).await;
    background.stop().await;
    Ok(())
}
