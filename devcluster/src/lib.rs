//! devcluster: an in-process Kubernetes API server for development and end-to-end tests.
//!
//! It knows Kubernetes, not any particular operator. [`DevCluster::start`] serves the
//! Kubernetes API on a loopback port (HTTP and HTTPS on the same port), writes an admin
//! kubeconfig, and hands out `kube::Client`s; [`DevCluster::restart`] stops and starts it on
//! the same port with the same state. [`DevCluster::core`] is the in-process handle that
//! controllers use to read, watch and write through the same admission path as clients.
//! See `README.md` for what is implemented and where it knowingly differs from a real API
//! server.
//!
//! ```text
//!  kubectl / kube::Client ──HTTPS──▶ http (auth, RBAC, routing, tables, watch, pods/log, pods/proxy)
//!                                      │
//!                                      ▼
//!        in-process controllers ──▶ api::Core (admission: schema, defaults, managedFields)
//!        gc, namespaces                │
//!        workloads (Deployment, …)     ▼
//!        kubelet (Pods as processes)  store (objects, resourceVersions, history, state dir)
//!        services (loopback proxies)
//! ```
//!
//! [`kubelet`] runs each Pod's containers as local processes on an address of its own
//! (chosen by [`kubelet::ImageRule`]s in [`Config::pods`]); [`workloads`] turns Deployments,
//! StatefulSets, Jobs and CronJobs into Pods; [`services`] makes cluster IPs reachable on
//! loopback; [`sink::RequestSink`] stands in for external systems.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod builtin;
mod cel_rules;
pub mod clock;
pub mod discovery;
pub mod error;
pub mod events;
pub mod gc;
pub mod http;
pub mod kubelet;
pub mod managed;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod proxy;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod services;
pub mod sink;
pub mod store;
pub mod table;
pub mod tls;
pub mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use api::Core;
pub use auth::UserInfo;
pub use error::ApiError;

/// How to run a cluster.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keep state here (objects, CA, tokens, kubeconfigs) across restarts; `None` keeps it
    /// in memory (and kubeconfigs in a temporary directory).
    pub state_dir: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How many recent changes watches can resume from before getting `410 Gone`.
    pub history_limit: usize,
    /// How often idle watches get a bookmark.
    pub bookmark_interval: Duration,
    /// The workload controllers (Deployment, ReplicaSet, StatefulSet, Job, CronJob).
    pub workloads: workloads::WorkloadSettings,
    /// The cluster's wall clock (tests move it forward).
    pub clock: clock::Clock,
    /// The pod runner: which programs stand for which images, restart back-off.
    pub pods: kubelet::PodRunnerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: None,
            port: 0,
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(5),
            workloads: workloads::WorkloadSettings::default(),
            clock: clock::Clock::default(),
            pods: kubelet::PodRunnerConfig::default(),
        }
    }
}

/// Failures of starting, stopping or connecting to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened or saved.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Certificates could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Files or sockets failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Building a client failed.
    #[error("building a client: {0}")]
    Client(String),
    /// The ServiceAccount does not exist.
    #[error("serviceaccount {0} not found")]
    NoServiceAccount(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

struct Running {
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A running (or stopped) cluster.
pub struct DevCluster {
    config: Config,
    dir: PathBuf,
    temporary: bool,
    addr: SocketAddr,
    pki: tls::Pki,
    tokens: Arc<auth::Tokens>,
    core: Arc<Core>,
    running: Option<Running>,
    groups: Arc<kubelet::process::ProcessGroups>,
    services: Arc<services::ServiceProxies>,
}

impl DevCluster {
    /// Starts a cluster.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let (dir, temporary) = match &config.state_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("devcluster-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let (pki, tokens, store) = if temporary {
            (
                tls::Pki::generate()?,
                auth::Tokens::generate(),
                store::Store::in_memory(config.history_limit),
            )
        } else {
            (
                tls::Pki::load_or_generate(&dir)?,
                auth::Tokens::load_or_generate(&dir).map_err(io("token secrets"))?,
                store::Store::open(&dir.join("store"), config.history_limit)?,
            )
        };
        let core = Arc::new(Core::new(Arc::new(store)));
        bootstrap(&core);
        let mut cluster = DevCluster {
            addr: SocketAddr::from(([127, 0, 0, 1], config.port)),
            config,
            dir,
            temporary,
            pki,
            tokens: Arc::new(tokens),
            core,
            running: None,
            groups: Arc::new(kubelet::process::ProcessGroups::default()),
            services: Arc::new(services::ServiceProxies::default()),
        };
        cluster.serve().await?;
        Ok(cluster)
    }

    async fn serve(&mut self) -> Result<(), Error> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(io(format!("binding {}", self.addr)))?;
        self.addr = listener.local_addr().map_err(io("reading the bound address"))?;
        let state = Arc::new(http::AppState {
            core: self.core.clone(),
            tokens: self.tokens.clone(),
            address: self.addr.to_string(),
            bookmark_interval: self.config.bookmark_interval,
            pods_root: self.dir.join("pods"),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tls = self.pki.server_config()?;
        let server = tokio::spawn(http::serve(listener, http::router(state), tls, rx.clone()));
        let controllers = tokio::spawn(gc::run(self.core.clone(), rx.clone()));
        let mut tasks = vec![server, controllers];
        if self.config.workloads.enabled {
            let ctx = Arc::new(workloads::Ctx {
                core: self.core.clone(),
                clock: self.config.clock.clone(),
                settings: self.config.workloads.clone(),
            });
            tasks.push(tokio::spawn(workloads::run(ctx, rx.clone())));
        }
        tasks.push(tokio::spawn(services::run(
            self.core.clone(),
            self.services.clone(),
            rx.clone(),
        )));
        if self.config.pods.enabled {
            let shared = Arc::new(kubelet::Shared {
                core: self.core.clone(),
                clock: self.config.clock.clone(),
                config: self.config.pods.clone(),
                pods_root: self.dir.join("pods"),
                claims_root: self.dir.join("volumes"),
                api: self.api_access(),
                addresses: kubelet::addresses::Addresses::default(),
                groups: self.groups.clone(),
                services: self.services.clone(),
            });
            tasks.push(tokio::spawn(kubelet::run(shared, rx.clone())));
        }
        self.running = Some(Running { shutdown: tx, tasks });
        self.write_kubeconfig(&self.kubeconfig_path(), "admin", self.tokens.admin_token())?;
        tracing::info!(url = %self.url(), "devcluster serving");
        Ok(())
    }

    /// How Pods reach this API server: its address, CA and ServiceAccount credentials.
    fn api_access(&self) -> kubelet::ApiAccess {
        let core = self.core.clone();
        let tokens = self.tokens.clone();
        let url = self.url();
        let ca = self.pki.ca_pem.clone();
        kubelet::ApiAccess {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            ca_pem: self.pki.ca_pem.clone(),
            credentials: Box::new(move |ns, name| {
                let sa = core.store.get(
                    &resources::ResourceKey::new("", "serviceaccounts"),
                    ns,
                    name,
                )?;
                let v = sa.value();
                let uid = v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                let token = tokens.service_account_token(ns, name, uid);
                let user = format!("system:serviceaccount:{ns}:{name}");
                let kubeconfig = kubeconfig_yaml(&url, &ca, &user, &token);
                Some(kubelet::Credentials { token, kubeconfig })
            }),
        }
    }

    /// Where a Service's ports are reachable on this machine (its proxy's addresses).
    pub fn service_addresses(&self, namespace: &str, name: &str) -> Vec<services::LocalPort> {
        self.services.addresses(namespace, name)
    }

    /// How many container processes are running.
    pub fn running_processes(&self) -> usize {
        self.groups.len()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>` (the same port also speaks plain HTTP).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory holding state and kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        self.tokens.admin_token()
    }

    /// The CA certificate (PEM) that signs the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The cluster clock.
    pub fn clock(&self) -> &clock::Clock {
        &self.config.clock
    }

    /// The in-process API handle (store, registry, admission).
    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A kubeconfig (YAML) for a user with `token`.
    pub fn kubeconfig(&self, user: &str, token: &str) -> String {
        kubeconfig_yaml(&self.url(), &self.pki.ca_pem, user, token)
    }

    fn write_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<(), Error> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(path, self.kubeconfig(user, token))
            .map_err(io(format!("writing {}", path.display())))
    }

    /// The bearer token of a ServiceAccount (which must exist).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let key = resources::ResourceKey::new("", "serviceaccounts");
        let sa = self
            .core
            .store
            .get(&key, namespace, name)
            .ok_or_else(|| Error::NoServiceAccount(format!("{namespace}/{name}")))?;
        let v: Value = sa.value();
        let uid = v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        Ok(self.tokens.service_account_token(namespace, name, uid))
    }

    /// Writes (and returns the path of) a kubeconfig for a ServiceAccount.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, Error> {
        let token = self.service_account_token(namespace, name)?;
        let path =
            self.dir.join("serviceaccounts").join(namespace).join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, &format!("system:serviceaccount:{namespace}:{name}"), &token)?;
        Ok(path)
    }

    async fn client_for(&self, yaml: String) -> Result<kube::Client, Error> {
        let kc =
            kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Client(e.to_string()))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Client(e.to_string()))?;
        kube::Client::try_from(cfg).map_err(|e| Error::Client(e.to_string()))
    }

    /// A `kube::Client` for the admin user (over HTTPS, verifying the cluster CA).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        self.client_for(self.kubeconfig("admin", self.tokens.admin_token())).await
    }

    /// A `kube::Client` acting as a ServiceAccount.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, Error> {
        let token = self.service_account_token(namespace, name)?;
        self.client_for(
            self.kubeconfig(&format!("system:serviceaccount:{namespace}:{name}"), &token),
        )
        .await
    }

    /// Stops serving (closing every connection and watch) and saves the state.
    pub async fn stop(&mut self) -> Result<(), Error> {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(true);
            for t in r.tasks {
                let _ = t.await;
            }
        }
        self.groups.kill_all();
        self.core.store.flush()?;
        self.core.store.compact()?;
        Ok(())
    }

    /// Stops and starts again on the same port. With a state directory the state is reloaded
    /// from disk; otherwise the in-memory state is kept. resourceVersions continue.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await?;
        if !self.temporary {
            let store = store::Store::open(&self.dir.join("store"), self.config.history_limit)?;
            self.core = Arc::new(Core::new(Arc::new(store)));
        }
        self.serve().await
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(true);
            for t in r.tasks {
                t.abort();
            }
        }
        // Whatever the pod runner could not stop in time dies with the cluster.
        self.groups.kill_all();
        let _ = self.core.store.flush();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A kubeconfig (YAML) for `user` with `token` at `url`, trusting `ca_pem`.
fn kubeconfig_yaml(url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": user, "namespace": "default"}}],
        "current-context": "devcluster",
        "preferences": {},
    });
    yaml_serde::to_string(&doc).unwrap_or_default()
}

/// Creates what a fresh cluster has: the standard namespaces and their default
/// ServiceAccounts.
fn bootstrap(core: &Core) {
    let ns = core.registry.get("", "v1", "namespaces").expect("namespaces registered");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if core.store.get(&ns.key(), "", name).is_none() {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            if let Err(e) = core.create(&ns, "", body, &api::WriteOptions::default(), "devcluster")
            {
                tracing::error!(error = %e, namespace = name, "bootstrapping a namespace failed");
            }
        }
    }
}
