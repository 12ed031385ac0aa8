//! Warden's HTTP server: the routes, the operator action pipeline, the token endpoint,
//! metrics and the OpenAPI document.
//!
//! [`Application::build`] opens the store, loads the keys and binds its listener (port 0
//! works); [`Application::run`] serves until the shutdown future resolves, then drains.
//! [`routes::router`] is public so tests can drive the app.
//!
//! # Layout
//! - [`config`]: the typed configuration and its load order.
//! - [`pipeline`]: the operator action pipeline (DESIGN.md §3), in one place.
//! - [`auth`]: bearer tokens into a [`auth::Caller`]; the authority's keys; `_system` log.
//! - [`routes`]: one module per resource; [`routes::ROUTES`] lists them all.
//! - [`error`]: the one mapping of errors to RFC 9457 problems.
//! - [`request_id`], [`metrics`]: middleware.
//! - [`extract`]: request parsing at the edge. [`openapi`]: the document.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod request_id;
pub mod routes;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use warden_core::names::TenantId;
use warden_core::scopes::TicketPattern;
use warden_core::time::Timestamp;
use warden_store::{Store, StoreError, StoreOptions};

pub use config::Config;
pub use routes::router;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Signing keys or issuer keys could not be loaded.
    #[error("keys: {0}")]
    Keys(String),
    /// The listener could not be bound, or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared state of every request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<StateInner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct StateInner {
    /// The store.
    pub store: Store,
    /// The configuration.
    pub config: Arc<Config>,
    /// The token authority's keys and counters.
    pub authority: auth::Authority,
    /// The metrics registry.
    pub metrics: metrics::Metrics,
    /// The compiled ticket pattern.
    pub tickets: TicketPattern,
    /// The in-process event bus the outbox relay feeds (metadata-only JSON events).
    pub events: broadcast::Sender<String>,
    /// Poked after a commit that may have made jobs leasable; long-polls wait on it.
    pub work_available: tokio::sync::Notify,
    /// Flips to true when the server begins to shut down (open long-polls answer at once).
    pub shutdown: watch::Sender<bool>,
    known_tenants: Mutex<HashSet<TenantId>>,
}

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    /// Build the state over an open store.
    pub async fn new(store: Store, config: Config) -> Result<Self, ServerError> {
        let tickets = TicketPattern::new(&config.auth.ticket_pattern)
            .map_err(|e| ServerError::Keys(e.to_string()))?;
        let authority = auth::Authority::load(&store, &config).await?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self(Arc::new(StateInner {
            store,
            config: Arc::new(config),
            authority,
            metrics: metrics::Metrics::default(),
            tickets,
            events,
            work_available: tokio::sync::Notify::new(),
            shutdown: watch::channel(false).0,
            known_tenants: Mutex::new(HashSet::new()),
        })))
    }

    /// Make sure an outside issuer's tenant exists in the store (once per process).
    pub async fn ensure_tenant_cached(&self, tenant: &TenantId) -> Result<(), StoreError> {
        if self.known_tenants.lock().expect("lock").contains(tenant) {
            return Ok(());
        }
        self.store.ensure_tenant(tenant).await?;
        self.known_tenants
            .lock()
            .expect("lock")
            .insert(tenant.clone());
        Ok(())
    }
}

/// A built server: store open, keys loaded, listener bound.
#[derive(Debug)]
pub struct Application {
    state: AppState,
    listener: TcpListener,
}

impl Application {
    /// Open the store named by `config`, load the keys, create the `default` tenant, bind.
    pub async fn build(config: Config) -> Result<Self, ServerError> {
        config.validate()?;
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir)?;
        }
        let mut options = StoreOptions::new(config.store_url());
        options.sqlite_synchronous = config.sqlite.synchronous.clone();
        let store = Store::open(&options).await?;
        store
            .ensure_tenant(&TenantId::parse("default").expect("valid"))
            .await?;
        let listener = TcpListener::bind(config.listen).await?;
        let state = AppState::new(store, config).await?;
        Ok(Self { state, listener })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (tests use it to reach the store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves; then stop accepting, finish in-flight requests and
    /// return. Background loops stop with it.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = spawn_background(self.state.clone(), stop_rx);
        let app = router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        // Flush what is counted but not yet written.
        if let Err(e) = self
            .state
            .authority
            .flush_auth_failures(&self.state.store)
            .await
        {
            tracing::error!(error = %e, "could not flush authentication failures at shutdown");
        }
        self.state.store.close().await;
        Ok(())
    }
}

/// The periodic loops: outbox relay, `_system` failure flush, lease recovery and promotion
/// of due jobs, planner statistics (PostgreSQL), issuer key refresh.
fn spawn_background(
    state: AppState,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let s = state.clone();
    tasks.push(every(Duration::from_millis(100), stop.clone(), move || {
        let s = s.clone();
        async move { relay_outbox(&s).await }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move {
            s.authority.prune_failed_client_auth();
            if let Err(e) = s.authority.flush_auth_failures(&s.store).await {
                tracing::error!(error = %e, "could not write authentication failures to _system");
            }
        }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move { sweep_jobs(&s).await }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move { fire_schedules(&s).await }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(5), stop.clone(), move || {
        let s = s.clone();
        async move {
            match s.store.refresh_planner_stats().await {
                Ok(t) if !t.is_empty() => {
                    tracing::info!(tables = ?t, "refreshed planner statistics")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not refresh planner statistics"),
            }
        }
    }));
    if state
        .authority
        .issuers
        .iter()
        .any(|i| i.config.jwks_url.is_some())
    {
        let s = state.clone();
        let http = reqwest::Client::new();
        tasks.push(every(Duration::from_secs(300), stop, move || {
            let (s, http) = (s.clone(), http.clone());
            async move { s.authority.refresh_issuers(&http).await }
        }));
    }
    tasks
}

fn every<F, Fut>(
    period: Duration,
    mut stop: watch::Receiver<bool>,
    mut f: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => f().await,
                _ = stop.changed() => break,
            }
        }
    })
}

/// Return expired leases and promote due jobs; wake long-polls if anything became leasable.
async fn sweep_jobs(state: &AppState) {
    let recovered = state
        .store
        .recover_expired_leases()
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "lease recovery failed; will retry");
            0
        });
    let promoted = state.store.promote_due_jobs().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "promotion of due jobs failed; will retry");
        0
    });
    if recovered > 0 {
        tracing::info!(recovered, "expired leases returned");
    }
    if recovered + promoted > 0 {
        state.work_available.notify_waiters();
    }
}

/// Produce the runs of schedules whose fire time has come; wake long-polls for them.
async fn fire_schedules(state: &AppState) {
    let catchup = state
        .config
        .schedules
        .catchup_secs
        .saturating_mul(1_000_000) as i64;
    match state
        .store
        .fire_due_schedules(Timestamp::now(), catchup)
        .await
    {
        Ok(r) => {
            if r.created > 0 {
                state
                    .metrics
                    .add("warden_schedule_runs_total", Vec::new(), r.created as u64);
                state.work_available.notify_waiters();
            }
            if r.skipped > 0 {
                state.metrics.add(
                    "warden_schedule_runs_skipped_total",
                    Vec::new(),
                    r.skipped as u64,
                );
            }
            if r.deferred > 0 {
                state.metrics.add(
                    "warden_schedule_runs_deferred_total",
                    Vec::new(),
                    r.deferred as u64,
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "scheduler pass failed; will retry"),
    }
}

/// Deliver outbox events to the in-process bus, then forget them.
async fn relay_outbox(state: &AppState) {
    loop {
        let batch = match state.store.outbox_peek(1000).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not read; will retry");
                return;
            }
        };
        let Some(last) = batch.last().map(|e| e.id) else {
            return;
        };
        for e in &batch {
            // No subscriber is not an error: the bus is best-effort fan-out after commit.
            let _ = state.events.send(e.payload.clone());
        }
        if let Err(e) = state.store.outbox_ack(last).await {
            tracing::warn!(error = %e, "outbox relay could not acknowledge; will redeliver");
            return;
        }
        state.metrics.add(
            "warden_events_relayed_total",
            Vec::new(),
            batch.len() as u64,
        );
        if batch.len() < 1000 {
            return;
        }
    }
}
