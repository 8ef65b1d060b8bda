//! The worker process: config loading, wiring, servers, and graceful shutdown.
//!
//! ```text
//!  switchboard worker --config worker.yaml [--admin-token-file F]
//!     │ read + parse config ──error──▶ admin port only; /readyz 503 with the reason; wait
//!     │ open queue (data dir), compile transform, build routes, check credential files
//!     ├─▶ admin server   (:9090)  /livez /readyz /metrics /status /v1/dead-letters
//!     ├─▶ inbound server (:8080)  webhook / API routes           (webhook and api sources)
//!     ├─▶ dispatcher              queue → transform → targets     (durable mode)
//!     ├─▶ health checks           every healthChecks.intervalMs → /status, metrics
//!     └─▶ readiness loop          credential files re-checked; rotation needs no restart
//!  SIGTERM/SIGINT: stop accepting (503), drain in-flight requests, let deliveries in flight
//!  finish (bounded), flush the queue with fsync, exit 0.
//! ```

pub mod admin;
pub mod delivery;
pub mod health;
pub mod metrics;
pub mod outbound;
pub mod run_once;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::admin::AdminState;
use self::delivery::{Deliverer, Dispatcher, Pipeline, QueueSink, SynchronousSink};
use self::health::Health;
use self::metrics::Metrics;
use crate::config::{SourceConfig, WorkerConfig};
use crate::inbound::auth::SecretLookup;
use crate::inbound::{EventSink, InboundState};
use crate::queue::{Queue, QueueSettings, StoreCounters};
use crate::transform::Transform;

/// How long in-flight deliveries may finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The config file cannot be read.
    #[error("cannot read config {path}: {message}")]
    ConfigRead {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// The config does not parse.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The config parses but cannot be run.
    #[error("invalid worker config: {0}")]
    Invalid(String),
    /// The queue cannot be opened.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A port cannot be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        message: String,
    },
}

impl RuntimeError {
    /// Short category for metrics and the readiness reason.
    pub fn category(&self) -> &'static str {
        match self {
            RuntimeError::ConfigRead { .. } => "ConfigUnreadable",
            RuntimeError::Config(_) => "ConfigInvalid",
            RuntimeError::Invalid(_) => "ConfigInvalid",
            RuntimeError::Queue(_) => "QueueUnavailable",
            RuntimeError::Bind { .. } => "PortUnavailable",
        }
    }
}

/// Options of `switchboard worker`.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Rendered config file.
    pub config_path: PathBuf,
    /// File holding the admin API token.
    pub admin_token_file: Option<PathBuf>,
    /// Override of the inbound listen address.
    pub inbound_addr: Option<SocketAddr>,
    /// Override of the admin listen address.
    pub admin_addr: Option<SocketAddr>,
    /// Override of the data directory.
    pub data_dir: Option<PathBuf>,
    /// Address the inbound and admin ports listen on when no listen address is given
    /// (default: all addresses).
    pub bind_address: Option<IpAddr>,
    /// Directory the pod's file system appears under (see [`WorkerConfig::rebase`]).
    pub root: Option<PathBuf>,
}

impl WorkerOptions {
    fn listen(&self, explicit: Option<SocketAddr>, port: u16) -> SocketAddr {
        explicit.unwrap_or_else(|| {
            SocketAddr::new(self.bind_address.unwrap_or(IpAddr::from([0, 0, 0, 0])), port)
        })
    }
}

/// Read and parse a config file.
pub fn load_config(path: &Path) -> Result<WorkerConfig, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::ConfigRead {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(WorkerConfig::from_yaml(&text)?)
}

/// Read a config file below `root` (when given), with its paths moved below it too.
pub fn load_rooted_config(path: &Path, root: Option<&Path>) -> Result<WorkerConfig, RuntimeError> {
    let Some(root) = root else { return load_config(path) };
    let mut config = load_config(&rooted(path, root))?;
    config.rebase(root);
    Ok(config)
}

/// `path` below `root` when it is absolute and not there already.
pub fn rooted(path: &Path, root: &Path) -> PathBuf {
    let mut text = path.to_string_lossy().into_owned();
    crate::config::rebase_path(&mut text, root);
    PathBuf::from(text)
}

/// Queue limits from the config.
pub fn queue_settings(config: &WorkerConfig) -> QueueSettings {
    let tolerance = match &config.source {
        Some(SourceConfig::Webhook(w)) => u64::from(w.auth.tolerance_seconds),
        _ => 300,
    };
    QueueSettings {
        // Sender ids are remembered well past the replay window, so that a sender's retries
        // (same id, fresh timestamp) are recognised too.
        dedup_ttl_ms: (tolerance * 2).max(3600) * 1000,
        dead_letter_max_entries: u64::from(config.delivery.dead_letter_max_entries.max(1)),
        dead_letter_retention_ms: config.delivery.dead_letter_retention_seconds.max(60) * 1000,
        ..QueueSettings::default()
    }
}

/// Which credential files are missing or unreadable, as one reason text.
pub fn check_credentials(
    needed: &[(String, crate::config::SecretRole)],
    secrets: &dyn SecretLookup,
) -> Option<String> {
    let problems: Vec<String> = needed
        .iter()
        .filter_map(|(credential, role)| secrets.secret(credential, *role).err())
        .collect();
    (!problems.is_empty()).then(|| format!("CredentialUnavailable: {}", problems.join("; ")))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| RuntimeError::Bind { addr: addr.to_string(), message: e.to_string() })
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serve only the admin port, reporting `reason` on `/readyz`, until shutdown. Used when
/// the config cannot be loaded: the pod stays up and says why instead of crash-looping.
async fn serve_not_ready(
    options: &WorkerOptions,
    reason: String,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    tracing::error!(reason = %reason, "worker cannot start; serving /readyz with the reason");
    let health = Arc::new(Health::default());
    health.set_not_ready(Some(reason));
    let admin_addr = options.listen(options.admin_addr, crate::config::ADMIN_PORT);
    let state = Arc::new(AdminState {
        subject: ("Unknown".into(), String::new(), String::new()),
        delivery_mode: "unknown".into(),
        started_at: Utc::now(),
        health,
        metrics: Arc::new(Metrics::new("", "", "")),
        counters: Arc::new(StoreCounters::default()),
        queue: None,
        circuits: None,
        token_file: options.admin_token_file.clone(),
        health_checks: None,
    });
    let listener = bind(admin_addr).await?;
    axum::serve(listener, admin::router(state))
        .with_graceful_shutdown(wait_for(shutdown))
        .await
        .map_err(|e| RuntimeError::Bind { addr: admin_addr.to_string(), message: e.to_string() })
}

/// Run `switchboard worker` until SIGTERM. `deliverer` delivers to the config's targets.
pub async fn run_worker(
    options: WorkerOptions,
    make_deliverer: impl FnOnce(&WorkerConfig) -> Result<Arc<dyn Deliverer>, String>,
) -> Result<(), RuntimeError> {
    let shutdown = shutdown_signal();
    let config = match load_rooted_config(&options.config_path, options.root.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("{}: {e}", e.category());
            serve_not_ready(&options, reason, shutdown).await?;
            return Err(e);
        }
    };
    let started = match start(&options, &config, make_deliverer, shutdown.clone()).await {
        Ok(started) => started,
        Err(e @ RuntimeError::Invalid(_)) => {
            let reason = format!("{}: {e}", e.category());
            serve_not_ready(&options, reason, shutdown).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    started.wait(shutdown).await
}

struct Started {
    queue: Queue,
    inbound: Option<Arc<InboundState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
}

impl Started {
    async fn wait(self, shutdown: watch::Receiver<bool>) -> Result<(), RuntimeError> {
        wait_for(shutdown).await;
        if let Some(inbound) = &self.inbound {
            inbound.accepting.store(false, Ordering::Relaxed);
        }
        for server in self.servers {
            let _ = server.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.queue.close().await?;
        tracing::info!("worker stopped");
        Ok(())
    }
}

async fn start(
    options: &WorkerOptions,
    config: &WorkerConfig,
    make_deliverer: impl FnOnce(&WorkerConfig) -> Result<Arc<dyn Deliverer>, String>,
    shutdown: watch::Receiver<bool>,
) -> Result<Started, RuntimeError> {
    let mut metrics = Metrics::for_config(config);
    let health = Arc::new(Health::default());
    let data_dir =
        options.data_dir.clone().unwrap_or_else(|| PathBuf::from(&config.server.data_dir));
    let queue = Queue::open(&data_dir, queue_settings(config))?;

    let transform = Transform::compile(
        &config.transform,
        config.targets.iter().map(|t| (t.name.as_str(), t.when.as_deref())),
    )
    .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let deliverer = make_deliverer(config).map_err(RuntimeError::Invalid)?;
    deliverer.register_metrics(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let secrets: Arc<dyn SecretLookup> = match deliverer.secrets() {
        Some(secrets) => secrets,
        None => Arc::new(
            crate::credentials::CredentialStore::new(&config.credentials)
                .map_err(|e| RuntimeError::Invalid(e.to_string()))?,
        ),
    };
    let circuits = {
        let d = deliverer.clone();
        Arc::new(move || d.circuits())
            as Arc<dyn Fn() -> Vec<crate::status::CircuitInfo> + Send + Sync>
    };
    // Health checks share the deliveries' credentials and token caches, never their breakers.
    let health_checks = match &config.health_checks {
        None => None,
        Some(_) => {
            let outbound = match deliverer.outbound() {
                Some(outbound) => outbound,
                None => crate::delivery::Outbound::new(config)
                    .map_err(|e| RuntimeError::Invalid(e.to_string()))?,
            };
            crate::health::HealthChecker::new(config, outbound)
                .map_err(|e| RuntimeError::Invalid(format!("healthChecks: {e}")))?
                .map(|checker| Arc::new(checker.with_metrics(metrics.clone())))
        }
    };
    let pipeline =
        Arc::new(Pipeline::new(transform, config.targets.clone(), deliverer, metrics.clone()));
    let synchronous = config.delivery.mode == "synchronous";

    let mut tasks = Vec::new();
    let mut servers = Vec::new();
    let (fast_tx, fast_rx) =
        tokio::sync::mpsc::channel(config.delivery.concurrency.max(1) as usize * 4);
    let mut needed = Vec::new();
    let mut inbound_state = None;

    let admin_addr = options.listen(options.admin_addr, config.server.admin_port);
    let admin_state = Arc::new(AdminState {
        subject: (
            config.subject.kind.clone(),
            config.subject.namespace.clone(),
            config.subject.name.clone(),
        ),
        delivery_mode: config.delivery.mode.clone(),
        started_at: Utc::now(),
        health: health.clone(),
        metrics: metrics.clone(),
        counters: queue.counters().clone(),
        queue: Some(queue.clone()),
        circuits: Some(circuits),
        token_file: options.admin_token_file.clone(),
        health_checks: health_checks.clone(),
    });

    if let Some(source) = config
        .source
        .as_ref()
        .filter(|s| matches!(s, SourceConfig::Webhook(_) | SourceConfig::Api(_)))
    {
        let routes = crate::inbound::routes_for(source, &config.credentials)
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        // With an mtls route the inbound port speaks TLS; the first mtls Credential's
        // certificate and key are the worker's server identity.
        let tls = match routes.iter().find(|r| r.auth.needs_tls()).and_then(|r| r.auth.credential())
        {
            Some(name) => {
                let store = crate::credentials::CredentialStore::new(&config.credentials)
                    .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
                let certificate =
                    store.get(name).ok().and_then(|c| c.client_certificate().cloned()).ok_or_else(
                        || {
                            RuntimeError::Invalid(format!(
                                "credential {name:?} is not an mtls credential"
                            ))
                        },
                    )?;
                needed.push((name.to_string(), crate::config::SecretRole::Certificate));
                needed.push((name.to_string(), crate::config::SecretRole::PrivateKey));
                Some(
                    crate::inbound::tls::server_config(certificate)
                        .map_err(RuntimeError::Invalid)?,
                )
            }
            None => None,
        };
        for r in &routes {
            needed.extend(r.auth.required_secrets());
        }
        let sink: Arc<dyn EventSink> = if synchronous {
            Arc::new(SynchronousSink {
                pipeline: pipeline.clone(),
                queue: queue.clone(),
                health: health.clone(),
                metrics: metrics.clone(),
            })
        } else {
            Arc::new(QueueSink { queue: queue.clone(), fast: Some(fast_tx.clone()) })
        };
        let state =
            InboundState::new(secrets.clone(), sink, metrics.clone(), queue.counters().clone());
        let router = crate::inbound::router(routes, state.clone());
        let addr = options.listen(options.inbound_addr, config.server.inbound_port);
        let listener = bind(addr).await?;
        tracing::info!(%addr, source = source.kind(), mode = %config.delivery.mode, "inbound listening");
        let rx = shutdown.clone();
        servers.push(match tls {
            Some(tls) => tokio::spawn(async move {
                crate::inbound::tls::serve(listener, tls, router, rx, SHUTDOWN_GRACE).await;
                Ok(())
            }),
            None => tokio::spawn(async move {
                axum::serve(listener, router).with_graceful_shutdown(wait_for(rx)).await
            }),
        });
        inbound_state = Some(state);
    }

    if !synchronous {
        let dispatcher = Dispatcher {
            queue: queue.clone(),
            pipeline: pipeline.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            concurrency: config.delivery.concurrency.max(1) as usize,
            fast: Some(fast_rx),
        };
        let rx = shutdown.clone();
        tasks.push(tokio::spawn(async move { dispatcher.run(rx, SHUTDOWN_GRACE).await }));
    }

    if let Some(checker) = health_checks {
        tracing::info!(checks = ?checker.check_names(), interval_ms = checker.interval().as_millis() as u64,
            "health checks scheduled");
        tasks.push(tokio::spawn(checker.run(shutdown.clone())));
    }

    // Readiness: credential files re-checked, so a Secret mounted late (or rotated) needs no
    // restart; expired dedup ids and old dead letters pruned.
    health.set_not_ready(check_credentials(&needed, secrets.as_ref()));
    {
        let (health, secrets, queue, mut rx) =
            (health.clone(), secrets.clone(), queue.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let mut prune = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => health.set_not_ready(check_credentials(&needed, secrets.as_ref())),
                    _ = prune.tick() => {
                        if let Err(e) = queue.prune().await {
                            tracing::warn!(error = %e, "queue maintenance failed");
                        }
                    }
                    _ = rx.changed() => break,
                }
            }
        }));
    }

    let admin_listener = bind(admin_addr).await?;
    tracing::info!(addr = %admin_addr, "admin listening");
    let rx = shutdown.clone();
    servers.push(tokio::spawn(async move {
        axum::serve(admin_listener, admin::router(admin_state))
            .with_graceful_shutdown(wait_for(rx))
            .await
    }));
    Ok(Started { queue, inbound: inbound_state, tasks, servers })
}
