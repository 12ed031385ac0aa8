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

pub mod alerts;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod ledger;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod request_id;
pub mod routes;
pub mod waiters;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use warden_core::names::{JobType, QueueName, TenantId};
use warden_core::scopes::TicketPattern;
use warden_core::time::Timestamp;
use warden_store::{Store, StoreError};

pub use config::Config;
pub use routes::router;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened or migrated. (Not a `source`: the message already
    /// holds it, and a chain printed with `{:#}` would say it twice.)
    #[error("store: {0}")]
    Store(StoreError),
    /// Signing keys or issuer keys could not be loaded.
    #[error("keys: {0}")]
    Keys(String),
    /// The listener could not be bound, or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
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
    /// Checkpoint keys and origins.
    pub ledger: ledger::Ledger,
    /// The leader's alert rule state.
    pub alerts: alerts::Evaluator,
    /// The metrics registry.
    pub metrics: metrics::Metrics,
    /// The compiled ticket pattern.
    pub tickets: TicketPattern,
    /// The in-process event bus the outbox relay feeds (metadata-only JSON events).
    pub events: broadcast::Sender<events::BusEvent>,
    /// Where the outbox relay publishes (the in-process bus first); see
    /// [`AppState::add_transport`].
    transports: std::sync::RwLock<Vec<std::sync::Arc<dyn events::EventTransport>>>,
    /// This node's waiting long-polls. Wake them through [`AppState::wake_workers`] or
    /// [`AppState::wake_workers_for`], which also tell the other nodes.
    pub waiters: waiters::Waiters,
    /// This process's id among the nodes sharing a PostgreSQL database.
    pub node_id: String,
    /// Whether this node runs the periodic loops (see `warden_store::cluster`).
    pub leader: std::sync::atomic::AtomicBool,
    /// Asks the announcer to send one `NOTIFY` to the other nodes (coalesced).
    announce: tokio::sync::Notify,
    /// Flips to true when the server begins to shut down (open long-polls answer at once).
    pub shutdown: watch::Sender<bool>,
    known_tenants: Mutex<HashSet<TenantId>>,
    /// Bulk actions writing right now on this node (see [`AppState::bulk_action`]).
    bulk_in_flight: std::sync::atomic::AtomicUsize,
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
        let ledger = ledger::Ledger::load(&store, &config).await?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self(Arc::new(StateInner {
            store,
            config: Arc::new(config),
            authority,
            ledger,
            alerts: alerts::Evaluator::default(),
            metrics: metrics::Metrics::default(),
            tickets,
            transports: std::sync::RwLock::new(vec![std::sync::Arc::new(events::InProcess(
                events.clone(),
            ))]),
            events,
            waiters: waiters::Waiters::default(),
            node_id: uuid::Uuid::now_v7().to_string(),
            leader: std::sync::atomic::AtomicBool::new(false),
            announce: tokio::sync::Notify::new(),
            shutdown: watch::channel(false).0,
            known_tenants: Mutex::new(HashSet::new()),
            bulk_in_flight: std::sync::atomic::AtomicUsize::new(0),
        })))
    }

    /// Publish outbox events to `transport` too (a broker; the in-process bus is always
    /// there).
    pub fn add_transport(&self, transport: std::sync::Arc<dyn events::EventTransport>) {
        self.transports.write().expect("lock").push(transport);
    }

    /// Mark a bulk action (a bulk replay) as writing until the guard drops: derived
    /// background work (search indexing, planner statistics) waits for it, up to
    /// [`BULK_DEFER_MAX`].
    pub fn bulk_action(&self) -> BulkGuard {
        self.bulk_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BulkGuard(self.clone())
    }

    /// Whether a bulk action is writing on this node.
    pub fn bulk_in_flight(&self) -> bool {
        self.bulk_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    }

    /// Jobs may have become leasable (in `tenant`, when known), which ones is not known:
    /// wake all of this node's long-polls (of that tenant) now, and the other nodes'
    /// through one `NOTIFY` (PostgreSQL; bursts coalesce into one).
    pub fn wake_workers(&self, tenant: Option<&TenantId>) {
        self.waiters.wake_all(tenant);
        self.announce.notify_one();
    }

    /// Jobs of these (queue, type)s became leasable in `tenant`, one pair per job: wake
    /// as many of this node's long-polls as could take them (see [`waiters`]), and the
    /// other nodes as [`AppState::wake_workers`] does.
    pub fn wake_workers_for<'a>(
        &self,
        tenant: &TenantId,
        jobs: impl IntoIterator<Item = (&'a QueueName, &'a JobType)>,
    ) {
        let mut counts: std::collections::HashMap<(&QueueName, &JobType), u64> =
            std::collections::HashMap::new();
        for job in jobs {
            *counts.entry(job).or_default() += 1;
        }
        if counts.is_empty() {
            return;
        }
        for ((queue, job_type), n) in counts {
            self.waiters.wake_for(tenant, queue, job_type, n);
        }
        self.announce.notify_one();
    }

    /// Whether this node currently leads (runs the periodic loops).
    pub fn is_leader(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::Relaxed)
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
        let store = Store::open(&config.store_options()?).await?;
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
        // Tell open long-polls and live tails first, so the drain does not wait on them.
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.shutdown.send_replace(true);
        };
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

/// Held while a bulk action writes; see [`AppState::bulk_action`].
#[derive(Debug)]
pub struct BulkGuard(AppState);

impl Drop for BulkGuard {
    fn drop(&mut self) {
        self.0
            .bulk_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The longest derived background work waits for bulk actions before it runs anyway.
pub const BULK_DEFER_MAX: Duration = Duration::from_secs(30);

/// Whether a derived background task skips this round: while a bulk action writes,
/// search indexing (5,000 FTS or GIN rows a round, some 100 ms of the one SQLite writer)
/// would take a tenth of the bulk action's time, and `ANALYZE` of the tables it grows
/// (PostgreSQL) competes for the same two cores, so they wait, but not longer than
/// [`BULK_DEFER_MAX`] since they first waited (`waiting_since`, updated here).
fn defer_for_bulk_actions(
    bulk_in_flight: bool,
    waiting_since: &mut Option<std::time::Instant>,
    now: std::time::Instant,
) -> bool {
    if !bulk_in_flight {
        *waiting_since = None;
        return false;
    }
    let since = *waiting_since.get_or_insert(now);
    if now.duration_since(since) < BULK_DEFER_MAX {
        return true;
    }
    *waiting_since = None;
    false
}

/// A derived background task's place behind bulk actions: since when it has waited.
#[derive(Debug, Default)]
struct BulkDeferral(Mutex<Option<std::time::Instant>>);

impl BulkDeferral {
    /// Whether the task skips this round ([`defer_for_bulk_actions`]).
    fn skip(&self, state: &AppState) -> bool {
        defer_for_bulk_actions(
            state.bulk_in_flight(),
            &mut self.0.lock().expect("not poisoned"),
            std::time::Instant::now(),
        )
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
    tasks.push(tokio::spawn(lead(state.clone(), stop.clone())));
    tasks.push(tokio::spawn(listen_for_work(state.clone(), stop.clone())));
    tasks.push(tokio::spawn(announce_work(state.clone(), stop.clone())));
    // The periodic loops below run on the leader only.
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move {
            if s.is_leader() {
                sweep_jobs(&s).await
            }
        }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move {
            if s.is_leader() {
                fire_schedules(&s).await
            }
        }
    }));
    let s = state.clone();
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        async move {
            if s.is_leader() {
                archive_finished_jobs(&s).await
            }
        }
    }));
    let s = state.clone();
    let waiting = Arc::new(BulkDeferral::default());
    tasks.push(every(Duration::from_secs(1), stop.clone(), move || {
        let s = s.clone();
        let waiting = waiting.clone();
        async move {
            if s.is_leader() {
                ledger::cut_due_checkpoints(&s).await;
                alerts::evaluate(&s).await;
                if waiting.skip(&s) {
                    return;
                }
                match s.store.index_audit_search(5_000).await {
                    Ok(n) => s
                        .metrics
                        .add("warden_audit_search_indexed_total", Vec::new(), n),
                    Err(e) => {
                        tracing::warn!(error = %e, "audit search indexing failed; will retry")
                    }
                }
            }
        }
    }));
    let s = state.clone();
    let period = Duration::from_secs(state.config.ledger.retention_interval_secs.max(1));
    tasks.push(every(period, stop.clone(), move || {
        let s = s.clone();
        async move {
            if s.is_leader()
                && let Err(e) = ledger::run_retention(&s).await
            {
                tracing::error!(error = %e, "audit retention failed; will retry");
            }
        }
    }));
    if state.config.ledger.self_check_secs > 0 {
        let s = state.clone();
        let period = Duration::from_secs(state.config.ledger.self_check_secs);
        tasks.push(every(period, stop.clone(), move || {
            let s = s.clone();
            async move {
                if s.is_leader() {
                    ledger::self_check(&s).await;
                }
            }
        }));
    }
    let s = state.clone();
    let waiting = Arc::new(BulkDeferral::default());
    tasks.push(every(Duration::from_secs(5), stop.clone(), move || {
        let s = s.clone();
        let waiting = waiting.clone();
        async move {
            if !s.is_leader() {
                return;
            }
            if waiting.skip(&s) {
                return;
            }
            match s.store.refresh_planner_stats().await {
                Ok(t) if !t.is_empty() => {
                    tracing::info!(tables = ?t, "refreshed planner statistics")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not refresh planner statistics"),
            }
        }
    }));
    // Every node takes up keys rotated in the store (`warden keys rotate`) within seconds.
    let s = state.clone();
    tasks.push(every(KEY_RELOAD_EVERY, stop.clone(), move || {
        let s = s.clone();
        async move { s.reload_keys().await }
    }));
    if state.authority.has_issuer_urls() {
        let s = state.clone();
        tasks.push(every(Duration::from_secs(300), stop, move || {
            let s = s.clone();
            async move { s.authority.refresh_issuers().await }
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

/// How often every node looks for signing keys rotated in the store.
pub const KEY_RELOAD_EVERY: Duration = Duration::from_secs(5);

impl AppState {
    /// Take up token and checkpoint keys rotated in the store since the last look.
    pub async fn reload_keys(&self) {
        match self.authority.reload_keys(&self.store).await {
            Ok(true) => {
                tracing::info!(kid = %self.authority.signing_key().kid(), "now signing tokens with a rotated key")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not reload token keys; keeping the current ones")
            }
        }
        match self.ledger.reload_keys(&self.store).await {
            Ok(true) => tracing::info!("now signing checkpoints with a rotated key"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not reload checkpoint keys; keeping the current ones")
            }
        }
    }
}

/// Hold or seek leadership: every second, a leader checks it still holds the lock (and
/// steps down at once if not); a follower tries to take it. Stepping down at shutdown
/// closes the lock's connection, so another node takes over within a second.
async fn lead(state: AppState, mut stop: watch::Receiver<bool>) {
    use std::sync::atomic::Ordering;
    let mut held: Option<warden_store::cluster::Leadership> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        match held.as_mut() {
            Some(l) => {
                if !l.still_held().await {
                    tracing::warn!(node = %state.node_id, "lost leadership; stepping down");
                    state.leader.store(false, Ordering::Relaxed);
                    held = None;
                }
            }
            None => match state.store.try_lead().await {
                Ok(Some(l)) => {
                    tracing::info!(node = %state.node_id, "leading: running the periodic loops");
                    held = Some(l);
                    state.leader.store(true, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not try for leadership; will retry"),
            },
        }
        state.metrics.set_gauge(
            "warden_leader",
            Vec::new(),
            if state.is_leader() { 1.0 } else { 0.0 },
        );
    }
    state.leader.store(false, Ordering::Relaxed);
    if let Some(l) = held {
        l.release().await;
    }
}

/// Wake this node's long-polls when another node made work leasable (PostgreSQL).
async fn listen_for_work(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut listener = match state.store.work_listener(&state.node_id).await {
        Ok(Some(l)) => l,
        Ok(None) => return, // SQLite: one process, woken in memory.
        Err(e) => {
            tracing::error!(error = %e, "cannot LISTEN for other nodes' work; long-polls will only be woken by this node");
            return;
        }
    };
    loop {
        tokio::select! {
            r = listener.recv() => match r {
                Ok(()) => state.waiters.wake_all(None),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // Wake-ups may have been missed meanwhile: let waiters look once.
                    state.waiters.wake_all(None);
                }
            },
            _ = stop.changed() => break,
        }
    }
}

/// Send one `NOTIFY` per burst of [`AppState::wake_workers`] calls (PostgreSQL).
async fn announce_work(state: AppState, mut stop: watch::Receiver<bool>) {
    if state.store.backend() != warden_store::Backend::Postgres {
        return;
    }
    loop {
        tokio::select! {
            _ = state.announce.notified() => {
                if let Err(e) = state.store.announce_work(&state.node_id).await {
                    tracing::warn!(error = %e, "could not NOTIFY other nodes of new work");
                }
            }
            _ = stop.changed() => break,
        }
    }
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
        state.wake_workers(None);
    }
    if let Err(e) = state.store.prune_queue_stats().await {
        tracing::warn!(error = %e, "could not prune queue statistics; will retry");
    }
    if let Err(e) = state.store.fold_depth_deltas().await {
        tracing::warn!(error = %e, "could not fold queue-depth deltas; will retry");
    }
}

/// Move jobs finished more than `jobs.archive_after_secs` ago out of the hot table, then
/// delete moved jobs older than `jobs.done_retention_secs` (when set).
async fn archive_finished_jobs(state: &AppState) {
    let ago = |secs: u64| {
        Timestamp::now().saturating_add_micros(-(secs.saturating_mul(1_000_000) as i64))
    };
    let moved = ago(state.config.jobs.archive_after_secs);
    drain(
        state,
        "warden_jobs_archived_total",
        "move finished jobs out of the hot table",
        || state.store.archive_finished_jobs(moved, DRAIN_BATCH),
    )
    .await;
    let retention = state.config.jobs.done_retention_secs;
    if retention > 0 {
        let expired = ago(retention);
        drain(
            state,
            "warden_jobs_purged_total",
            "delete expired finished jobs",
            || state.store.purge_done_jobs(expired, DRAIN_BATCH),
        )
        .await;
    }
}

/// Rows one step of [`drain`] handles at most.
const DRAIN_BATCH: u32 = 2_000;

/// Run `step` until it handles fewer than [`DRAIN_BATCH`] rows, at most ten times a pass,
/// so a backlog drains in bounded transactions; count what it handled in `metric`.
async fn drain<F, Fut>(state: &AppState, metric: &'static str, what: &str, step: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = warden_store::StoreResult<u64>>,
{
    for _ in 0..10 {
        match step().await {
            Ok(n) => {
                state.metrics.add(metric, Vec::new(), n);
                if n < u64::from(DRAIN_BATCH) {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not {what}; will retry");
                return;
            }
        }
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
                state.wake_workers(None);
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

/// Deliver outbox events to every transport, then forget them; if a transport fails,
/// keep them for the next pass (nothing acknowledged is lost, some may repeat).
pub async fn relay_outbox(state: &AppState) {
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
        let transports = state.transports.read().expect("lock").clone();
        for e in &batch {
            for t in &transports {
                if let Err(err) = t.publish(&e.topic, &e.payload).await {
                    tracing::warn!(error = %err, "event transport refused; will retry");
                    state
                        .metrics
                        .add("warden_event_transport_failures_total", Vec::new(), 1);
                    return;
                }
            }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{BULK_DEFER_MAX, defer_for_bulk_actions};

    #[test]
    fn derived_background_work_waits_for_bulk_actions_but_not_forever() {
        let t0 = Instant::now();
        let mut since = None;
        assert!(
            !defer_for_bulk_actions(false, &mut since, t0),
            "idle: index"
        );
        assert!(defer_for_bulk_actions(true, &mut since, t0), "bulk: wait");
        let almost = t0 + BULK_DEFER_MAX - Duration::from_millis(1);
        assert!(defer_for_bulk_actions(true, &mut since, almost));
        // Waited long enough: index this round, then wait again from here.
        let late = t0 + BULK_DEFER_MAX;
        assert!(!defer_for_bulk_actions(true, &mut since, late));
        assert!(defer_for_bulk_actions(
            true,
            &mut since,
            late + Duration::from_secs(1)
        ));
        // The bulk action ended: the clock resets.
        assert!(!defer_for_bulk_actions(
            false,
            &mut since,
            late + Duration::from_secs(2)
        ));
        assert_eq!(since, None);
    }
}
