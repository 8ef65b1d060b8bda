//! The pod runner: what a kubelet does, with local processes instead of containers.
//!
//! ```text
//!  store events ──▶ Pod added ──────────▶ PodRun (pod.rs): dir, IP, token, volumes,
//!               │                          init containers, containers (process.rs),
//!               │                          probes (probe.rs), restarts, status
//!               ├─▶ Pod deleted ────────▶ stop: SIGTERM to each process group, grace, SIGKILL;
//!               │                          the Pod's directory is removed
//!               └─▶ Secret / ConfigMap / ─▶ refresh the namespace's Pods: volumes follow the
//!                   ServiceAccount / Service   change, waiting containers retry
//! ```
//!
//! Each Pod gets a loopback address of its own (`addresses.rs`), reported as
//! `status.podIP`, and a directory `<cluster dir>/pods/<ns>_<name>_<uid>/` holding its root
//! (mount paths appear below it), its volumes and its logs. Which program stands for an
//! image is configured with [`ImageRule`]s; how argv, environment and paths are built is in
//! `env.rs`. Nothing runs as another user, nothing is isolated, and resource limits and
//! security contexts are not enforced: this runs programs you trust, on your machine, for
//! development and tests.

pub mod addresses;
pub mod env;
pub mod logs;
pub mod pod;
pub mod probe;
pub mod process;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::Core;
use crate::clock::Clock;
use crate::store::EventType;

/// The field manager and event source of the pod runner.
pub const MANAGER: &str = "kubelet";

/// What runs for an image.
#[derive(Clone, Debug)]
pub struct ImageRule {
    /// The image reference: exact (`example.com/app:1.0`), or a prefix ending in `*`
    /// (`ghcr.io/acme/app:*`, `*` for every image).
    pub image: String,
    /// The executable that stands for the image's entrypoint (`command[0]`); `None` runs
    /// `command[0]` from the host's `PATH`.
    pub executable: Option<PathBuf>,
    /// Extra environment of the process. Values may use `{pod_ip}`, `{pod_root}`,
    /// `{pod_name}`, `{pod_namespace}` and `{container}`; the container's own `env` wins.
    pub env: Vec<(String, String)>,
}

impl ImageRule {
    /// Whether the rule applies to `image`.
    pub fn matches(&self, image: &str) -> bool {
        match self.image.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix),
            None => image == self.image,
        }
    }
}

/// How the pod runner runs.
#[derive(Clone, Debug)]
pub struct PodRunnerConfig {
    /// Run Pods at all (without the runner, Pods stay Pending).
    pub enabled: bool,
    /// Image rules, first match wins. An image no rule matches makes its container wait
    /// with `ErrImagePull`.
    pub images: Vec<ImageRule>,
    /// First delay before a crashed container restarts; it doubles per restart up to 30
    /// times this (at most 5 minutes) and resets after 10 minutes of running (Kubernetes:
    /// 10 s).
    pub restart_backoff: Duration,
    /// The longest grace period between SIGTERM and SIGKILL, whatever the Pod asks.
    pub max_termination_grace: Duration,
}

impl Default for PodRunnerConfig {
    fn default() -> Self {
        PodRunnerConfig {
            enabled: true,
            images: Vec::new(),
            restart_backoff: Duration::from_secs(10),
            max_termination_grace: Duration::from_secs(10),
        }
    }
}

/// A ServiceAccount's token and a kubeconfig using it.
pub struct Credentials {
    /// The bearer token.
    pub token: String,
    /// A kubeconfig (YAML) for it.
    pub kubeconfig: String,
}

/// How processes reach the API server.
pub struct ApiAccess {
    /// Host of the API server (`127.0.0.1`).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The credentials of a ServiceAccount (namespace, name), if it exists.
    pub credentials: CredentialSource,
}

/// Looks up a ServiceAccount's credentials by namespace and name.
pub type CredentialSource = Box<dyn Fn(&str, &str) -> Option<Credentials> + Send + Sync>;

/// What every Pod run shares.
pub struct Shared {
    /// The API.
    pub core: Arc<Core>,
    /// The cluster clock.
    pub clock: Clock,
    /// The configuration.
    pub config: PodRunnerConfig,
    /// `<cluster dir>/pods`.
    pub pods_root: PathBuf,
    /// `<cluster dir>/volumes` (claims).
    pub claims_root: PathBuf,
    /// API server access for Pods.
    pub api: ApiAccess,
    /// Pod IPs.
    pub addresses: addresses::Addresses,
    /// Live process groups.
    pub groups: Arc<process::ProcessGroups>,
    /// Service addresses (for service link variables).
    pub services: Arc<crate::services::ServiceProxies>,
}

struct Handle {
    ns: String,
    stop: watch::Sender<bool>,
    refresh: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

/// Runs Pods until `shutdown` turns true; then stops every Pod (each with its grace
/// period) and kills whatever is left.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let core = shared.core.clone();
    let mut notify = core.store.subscribe();
    let mut cursor = core.store.current_rv();
    let mut runs: HashMap<String, Handle> = HashMap::new();
    full_pass(&shared, &mut runs);
    loop {
        match core.store.events_since(cursor) {
            Ok(events) => {
                for e in events {
                    cursor = e.rv;
                    if !e.key.group.is_empty() {
                        continue;
                    }
                    match e.key.resource.as_str() {
                        "pods" => {
                            let pod = e.object.value();
                            let uid = pod
                                .pointer("/metadata/uid")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            if e.kind == EventType::Deleted || crate::workloads::deleting(&pod) {
                                end(&mut runs, &uid);
                            } else {
                                consider(&shared, &mut runs, pod);
                            }
                        }
                        "secrets" | "configmaps" | "serviceaccounts" | "services" => {
                            for h in runs.values().filter(|h| h.ns == e.namespace) {
                                h.refresh.send_modify(|n| *n += 1);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => {
                cursor = core.store.current_rv();
                full_pass(&shared, &mut runs);
            }
        }
        tokio::select! {
            r = notify.changed() => if r.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    // Stop every Pod, each with its grace period, then make sure nothing is left.
    let wait = shared.config.max_termination_grace + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (_, h) in runs.drain() {
        let _ = h.stop.send(true);
        tasks.push((h.task, h.dir));
    }
    for (task, dir) in tasks {
        let _ = tokio::time::timeout(wait, task).await;
        let _ = std::fs::remove_dir_all(dir);
    }
    shared.groups.kill_all();
}

fn full_pass(shared: &Arc<Shared>, runs: &mut HashMap<String, Handle>) {
    let key = crate::resources::ResourceKey::new("", "pods");
    let pods: Vec<Value> =
        shared.core.store.list(&key, None, None).1.into_iter().map(|(_, _, o)| o.value()).collect();
    let live: std::collections::HashSet<String> = pods
        .iter()
        .filter(|p| !crate::workloads::deleting(p))
        .filter_map(|p| p.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string))
        .collect();
    let gone: Vec<String> = runs.keys().filter(|u| !live.contains(*u)).cloned().collect();
    for uid in gone {
        end(runs, &uid);
    }
    for pod in pods {
        if !crate::workloads::deleting(&pod) {
            consider(shared, runs, pod);
        }
    }
}

/// Starts a Pod that is not running yet and has not finished.
fn consider(shared: &Arc<Shared>, runs: &mut HashMap<String, Handle>, pod: Value) {
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    if uid.is_empty() || runs.contains_key(&uid) {
        return;
    }
    if matches!(crate::workloads::pods::phase(&pod), "Succeeded" | "Failed") {
        return;
    }
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (refresh_tx, refresh_rx) = watch::channel(0u64);
    let run = Arc::new(pod::PodRun::new(shared.clone(), pod.clone(), stop_rx, refresh_rx));
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let dir = logs::pod_dir(&shared.pods_root, &ns, name, &uid);
    let task = tokio::spawn(pod::run(run));
    runs.insert(uid, Handle { ns, stop: stop_tx, refresh: refresh_tx, task, dir });
}

/// Stops a Pod's processes and removes its directory.
fn end(runs: &mut HashMap<String, Handle>, uid: &str) {
    if let Some(h) = runs.remove(uid) {
        let _ = h.stop.send(true);
        tokio::spawn(async move {
            let _ = h.task.await;
            let _ = std::fs::remove_dir_all(&h.dir);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rules_match_exactly_or_by_prefix() {
        let exact = ImageRule { image: "example.com/app:1".into(), executable: None, env: vec![] };
        let prefix =
            ImageRule { image: "ghcr.io/acme/app:*".into(), executable: None, env: vec![] };
        let any = ImageRule { image: "*".into(), executable: None, env: vec![] };
        assert!(exact.matches("example.com/app:1"));
        assert!(!exact.matches("example.com/app:2"));
        assert!(prefix.matches("ghcr.io/acme/app:0.1.0"));
        assert!(!prefix.matches("ghcr.io/acme/other:0.1.0"));
        assert!(any.matches("busybox"));
    }
}
