//! Building and wiring: connects to every dependency once, builds each service with exactly
//! what it needs, hands the API to the HTTP server, and runs the background jobs beside it.
//! Nothing here decides anything; tests build the same `App` on port 0.

use crate::api::gate::Gate;
use crate::api::routes::RAW_STREAMS;
use crate::api::state::Api;
use crate::booking::catalogue::Catalogue;
use crate::booking::holds::Holds;
use crate::booking::keys::SeatKeys;
use crate::booking::payments::Payments;
use crate::booking::reservations::Reservations;
use crate::booking::seat_board::SeatBoard;
use crate::config::Settings;
use crate::db::{Db, DbSetupError};
use crate::gateway::Gateway;
use crate::health::Probes;
use crate::http::lifecycle::Lifecycle;
use crate::http::server::ServerConfig;
use crate::lock::Redlock;
use crate::queue::service::Queue;
use crate::queue::store::QueueStore;
use crate::ratelimit::RateLimiter;
use crate::redis::watch::WatchedPool;
use crate::tokens::TokenKeys;
use crate::wallet::Wallet;
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
    #[error("cannot reach the queue Redis ({topology}) at {url} within {} s", REDIS_START_LIMIT.as_secs())]
    RedisUnreachable { topology: &'static str, url: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start background jobs: {0}")]
    Jobs(String),
    #[error("cannot set up gateway mode: {0}")]
    Gateway(String),
}

/// How long `serve` waits for the queue Redis at start before giving up (exit 2).
const REDIS_START_LIMIT: Duration = Duration::from_secs(10);

impl StartError {
    /// Configuration the operator must fix (exit 2), as opposed to a failure at run time.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StartError::Redis(_) | StartError::RedisUnreachable { .. } | StartError::Gateway(_)
        )
    }
}

/// The wired application. The handles beside `api` are for jobs, the CLI and tests.
pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub redis: Arc<WatchedPool>,
    pub tokens: Arc<TokenKeys>,
    pub queue: Arc<Queue>,
    pub api: Arc<Api>,
    pub lifecycle: Arc<Lifecycle>,
}

impl App {
    /// Connects to everything (lazily where a dependency may be down) and, with
    /// `AUTO_MIGRATE`, creates and migrates the database.
    pub async fn build(settings: Settings) -> Result<Arc<App>, StartError> {
        // The metrics recorder before anything makes a metric handle: a handle made before it
        // is installed records nothing, ever (the gateway makes its counters and its upstream
        // histogram once, when it is built).
        let metrics = crate::metrics::handle();
        // Then: a gateway-mode setting that cannot work (an unreadable CA file, say) is the
        // operator's to fix, and says so before anything is connected.
        let gateway = match &settings.upstream {
            None => None,
            Some(u) => {
                let gw = Gateway::new(u.clone(), settings.rate_limits.trusted_proxies.clone())
                    .map_err(StartError::Gateway)?;
                if u.identity_key.is_none() {
                    tracing::warn!(
                        "gateway mode without UPSTREAM_IDENTITY_KEY: the origin is not told who each admitted visitor is"
                    );
                }
                let guarded: Vec<String> = u
                    .paths
                    .iter()
                    .map(|g| format!("{} by line {}", g.prefix, g.concert))
                    .collect();
                tracing::info!(origin = %u.base, paths = %guarded.join(", "), "gateway mode");
                Some(Arc::new(gw))
            }
        };
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
        let redis = Arc::new(WatchedPool::connect(&settings.redis_url, 8)?);
        if !redis.wait_connected(REDIS_START_LIMIT).await {
            return Err(StartError::RedisUnreachable {
                topology: redis.topology().as_str(),
                url: settings.redis_url.clone(),
            });
        }
        let pool = redis.pool().clone();
        let redlock = Arc::new(connect_redlock(&settings).await?);
        let tokens = Arc::new(TokenKeys::new(settings.jwt_secret.expose().as_bytes()));

        let store = Arc::new(QueueStore::new(
            pool.clone(),
            settings.redis_key_prefix.clone(),
        ));
        if let Err(e) = store.load_scripts().await {
            tracing::warn!(error = %e, "could not preload Lua scripts; they load on first use");
        }
        let queue = Arc::new(Queue::new(
            store.clone(),
            tokens.clone(),
            settings.queue,
            settings.sse_max_streams,
        ));

        let seat_keys = SeatKeys::new(settings.redis_key_prefix.clone());
        let board = Arc::new(SeatBoard::new(pool.clone(), seat_keys.clone()));
        let catalogue = Arc::new(Catalogue::new(db.clone()));
        let lifecycle = Arc::new(Lifecycle::default());
        let api = Arc::new(Api {
            gate: Gate::new(tokens.clone(), queue.clone(), settings.admin_token.clone()),
            tokens: tokens.clone(),
            queue: queue.clone(),
            catalogue: catalogue.clone(),
            holds: Holds::new(
                db.clone(),
                board.clone(),
                redlock.clone(),
                seat_keys,
                settings.hold_ttl_secs,
            ),
            reservations: Reservations::new(db.clone(), board.clone(), catalogue.clone()),
            payments: Payments::new(db.clone(), board, catalogue, store),
            wallet: Wallet::new(db.clone()),
            limits: RateLimiter::new(settings.rate_limits.clone()),
            probes: Probes::new(redis.clone(), db.clone(), redlock),
            metrics,
            lifecycle: lifecycle.clone(),
            gateway,
        });
        Ok(Arc::new(App {
            settings,
            db,
            redis,
            tokens,
            queue,
            api,
            lifecycle,
        }))
    }

    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let addr = self.settings.listen_addr;
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })
    }
}

/// One client per Redlock master. Each gets a moment to connect so the first holds take the
/// lock path; a master that is down does not hold up the start (it keeps reconnecting).
async fn connect_redlock(settings: &Settings) -> Result<Redlock, StartError> {
    let masters = settings
        .redlock_urls
        .iter()
        .map(|u| crate::redis::lock_client(u))
        .collect::<Result<Vec<_>, _>>()?;
    futures_util::future::join_all(masters.iter().map(|m| {
        tokio::time::timeout(
            Duration::from_secs(1),
            fred::interfaces::ClientLike::wait_for_connect(m),
        )
    }))
    .await;
    Ok(Redlock::new(masters, settings.lock_ttl))
}

/// Gateway mode hears the announced ends of admissions.
struct GatewayHearer(Arc<crate::gateway::Gateway>);

impl crate::queue::ends::Hearer for GatewayHearer {
    fn ended(&self, concert: crate::domain::ConcertId, user: crate::domain::UserId) {
        self.0.admission_ended(concert, user);
    }
    fn hearing(&self, on: bool) {
        self.0.hearing_ends(on);
    }
    fn missed(&self) {
        self.0.missed_ends();
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
        let mut tasks = vec![
            tokio::spawn(upkeep(app.api.clone(), stop_rx.clone())),
            tokio::spawn(crate::queue::ticker::run(
                app.queue.store().clone(),
                app.settings.queue,
                stop_rx.clone(),
            )),
            tokio::spawn(crate::queue::pump::run(app.queue.clone(), stop_rx.clone())),
            tokio::spawn(app.redis.clone().watch(stop_rx.clone())),
            tokio::spawn(
                crate::outbox::relay::Relay::new(
                    app.db.clone(),
                    app.queue.store().clone(),
                    &app.settings.redis_key_prefix,
                    app.settings.outbox,
                )
                .run(stop_rx.clone()),
            ),
        ];
        if let Some(gw) = app.api.gateway.clone() {
            // Tunnels close, and remembered grants are forgotten, as soon as any instance ends
            // their admission (`queue::ends`).
            let subscriber = crate::redis::subscriber(&app.settings.redis_url)?;
            tasks.push(tokio::spawn(crate::queue::ends::listen(
                subscriber,
                app.settings.redis_key_prefix.clone(),
                GatewayHearer(gw),
                stop_rx.clone(),
            )));
        }
        let scheduler =
            crate::booking::sweep::schedule(app.db.clone(), app.settings.sweep_interval_secs)
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

/// Publishes the dependency probes as gauges, lets the Prometheus recorder drain its
/// histogram buffers, and forgets rate-limit state that has refilled.
async fn upkeep(api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        api.probes.publish().await;
        api.metrics.run_upkeep();
        api.limits.prune();
    }
}

/// Runs the server and its background jobs until `shutdown` resolves.
pub async fn run_until(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let background = Background::start(&app).await?;
    let config = ServerConfig {
        header_read_timeout: app.settings.header_read_timeout,
        grace: app.settings.shutdown_grace,
        drain: app.settings.shutdown_drain,
        raw_streams: RAW_STREAMS,
    };
    let shutdown = async {
        shutdown.await;
        background.signal_stop();
    };
    crate::http::server::run(
        app.api.clone(),
        app.lifecycle.clone(),
        listener,
        config,
        shutdown,
    )
    .await;
    background.stop().await;
    Ok(())
}
