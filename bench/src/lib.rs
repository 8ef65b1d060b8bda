//! Harness of the operator benchmarks: devcluster in process, the CRDs, N Integrations, a
//! stand-in for the kubelet and controller-manager (workloads report available, pods get an
//! address), the operator as a real release process, and what it costs (peak resident
//! memory, CPU time from /proc).
//!
//! The stand-in follows the practice of controller scale tests (kwok): no container runs,
//! because 10,000 worker processes do not fit a 2-core machine; the operator sees exactly the
//! API objects it would see in a cluster.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// devcluster stands in for the cluster's API server, which the benchmarks do not measure:
/// with glibc's allocator, malloc and free were nearly half of its CPU, taken from the two
/// cores the operator shares with it. The operator runs as its own process, with the
/// `switchboard` binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Namespace of the benchmark objects.
pub const NS: &str = "bench";

/// devcluster with the CRDs and the shared objects the integrations reference.
pub async fn cluster() -> anyhow::Result<(devcluster::DevCluster, Client)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Like kwok: the benchmark plays the workload controllers itself (simulate_workloads), so
    // devcluster's own controllers and pod runner stay off.
    let config = devcluster::Config {
        history_limit: 400_000,
        workloads: devcluster::workloads::WorkloadSettings { enabled: false, ..Default::default() },
        pods: devcluster::kubelet::PodRunnerConfig { enabled: false, ..Default::default() },
        ..Default::default()
    };
    let cluster = devcluster::DevCluster::start(config).await?;
    let client = cluster.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in switchboard::api::crds() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    for crd in switchboard::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        loop {
            let got = crds.get(&name).await?;
            let established = got
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}}))?)
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "token"}, "stringData": {"token": "bench-token", "secret": "bench-signing"}}))?).await?;
    let apply = |value: serde_json::Value| {
        let client = client.clone();
        async move {
            let object: kube::api::DynamicObject = serde_json::from_value(value)?;
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                "switchboard.dev",
                "v1alpha1",
                &kind,
            ));
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, NS, &resource);
            api.create(&PostParams::default(), &object).await?;
            anyhow::Ok(())
        }
    };
    apply(json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential", "metadata": {"name": "token"},
        "spec": {"type": "bearer", "secretRef": {"name": "token"}, "rotation": {"maxAge": "90d"}}})).await?;
    apply(json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential", "metadata": {"name": "signing"},
        "spec": {"type": "hmac", "secretRef": {"name": "token"}, "rotation": {"maxAge": "90d"}}})).await?;
    apply(json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "OutboundMessage", "metadata": {"name": "tickets"},
        "spec": {"endpoint": "https://tickets.example.com/api", "credentialRef": {"name": "token"},
                 "methods": [{"name": "create", "path": "/tickets", "body": "{\"title\": \"${title}\"}", "variables": [{"name": "title"}]}]}})).await?;
    Ok((cluster, client))
}

/// The Integration of index `i`: Integration-sized (about 3 KiB as stored).
pub fn integration(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": format!("integration-{i:05}"), "namespace": NS},
        "spec": {
            "description": "Benchmark integration: monitoring alerts become tickets for the owning team.",
            "owner": {"team": format!("team-{}", i % 50), "contact": format!("team-{}@example.com", i % 50), "onCall": "primary"},
            "dataFlow": {"sourceSystem": "Monitoring", "targetSystem": "Tickets", "classification": "internal",
                          "fields": ["alert title", "severity", "service", "host"], "purpose": "Incident management"},
            "source": {"webhook": {"path": "/alerts", "auth": {"type": "signature", "credentialRef": {"name": "signing"}}}},
            "transform": {"filter": "body.status == 'triggered'", "fieldMap": {"title": "'[' + body.severity + '] ' + body.title"}},
            "targets": [{"name": "ticket", "outboundMessage": {"name": "tickets", "method": "create"}}],
            "alerting": {"routes": [{"name": "pager", "webhook": {"url": "https://alerts.example.com/hook"}}]}
        }
    })
}

/// Create integrations `range`, `parallel` at a time.
pub async fn create_integrations(
    client: &Client,
    range: std::ops::Range<usize>,
    parallel: usize,
) -> anyhow::Result<()> {
    let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "switchboard.dev",
        "v1alpha1",
        "Integration",
    ));
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), NS, &resource);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let object: kube::api::DynamicObject = serde_json::from_value(integration(i))?;
                api.create(&PostParams::default(), &object).await?;
                Ok(())
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The loopback address of the worker pod of integration `i` (127.1.0.1 upwards).
pub fn pod_ip(i: usize) -> std::net::Ipv4Addr {
    let n = i as u32 + 1;
    std::net::Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Stand-in for the controller-manager and kubelet: every worker Deployment reports its
/// replicas available, and (with `pods`) gets one Running pod whose address is `pod_ip(i)`.
pub async fn simulate_workloads(client: Client, pods: bool) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let stream = watcher(deployments.clone(), watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let Ok(event) = event else { continue };
        let objects = match event {
            watcher::Event::Apply(d) | watcher::Event::InitApply(d) => vec![d],
            _ => continue,
        };
        for d in objects {
            let generation = d.metadata.generation.unwrap_or(1);
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let current = d.status.as_ref().is_some_and(|s| {
                s.observed_generation == Some(generation) && s.available_replicas == Some(replicas)
            });
            if current {
                continue;
            }
            let status = json!({"status": {"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas}});
            let _ = deployments
                .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                .await;
            if pods {
                let integration =
                    d.labels().get("switchboard.dev/integration").cloned().unwrap_or_default();
                let index: usize =
                    integration.trim_start_matches("integration-").parse().unwrap_or(0);
                let labels: BTreeMap<String, String> = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                let pod = json!({"metadata": {"name": format!("{}-0", d.name_any()), "labels": labels},
                    "spec": {"containers": [{"name": "worker", "image": "switchboard"}]}});
                if let Ok(pod) = serde_json::from_value::<Pod>(pod)
                    && pod_api.create(&PostParams::default(), &pod).await.is_ok()
                {
                    let status = json!({"status": {"phase": "Running", "podIP": pod_ip(index).to_string(),
                        "conditions": [{"type": "Ready", "status": "True"}]}});
                    let _ = pod_api
                        .patch_status(
                            &format!("{}-0", d.name_any()),
                            &PatchParams::default(),
                            &Patch::Merge(&status),
                        )
                        .await;
                }
            }
        }
    }
}

/// An operator process (a release build), as admin; killed on drop.
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Start `binary operator` against the cluster's admin kubeconfig.
    /// `SWITCHBOARD_BENCH_LOG=FILE` keeps its log (at `info`, `debug` for switchboard) in
    /// FILE; otherwise its warnings and errors go to a file in the temporary directory, so
    /// that a crash can be shown ([`Operator::log_tail`]).
    pub fn start(binary: &Path, kubeconfig: &Path, extra: &[String]) -> anyhow::Result<Operator> {
        let (level, log) = match std::env::var_os("SWITCHBOARD_BENCH_LOG") {
            Some(path) => ("--log-level=info,switchboard=debug", PathBuf::from(path)),
            None => (
                "--log-level=warn",
                std::env::temp_dir()
                    .join(format!("switchboard-bench-operator-{}.log", std::process::id())),
            ),
        };
        // A group of its own: a wrapper (heaptrack, perf) and the operator under it end together.
        let child = Command::new(binary)
            .process_group(0)
            .args(["operator", "--leader-elect=false", "--metrics-addr=127.0.0.1:0", level])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        Ok(Operator { child, log })
    }

    /// The operator's exit status, once it has exited (it never should during a benchmark).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the operator's log, and where the whole log is.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("{tail}\n(log: {})", self.log.display())
    }

    /// Peak resident memory so far, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_kib(self.child.id(), "VmHWM") as f64 / 1024.0
    }

    /// Resident memory now, in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> f64 {
        proc_status_kib(self.child.id(), "VmRSS") as f64 / 1024.0
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> =
            stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        ticks / 100.0
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Ready and Healthy of one Integration as a watch last saw them.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Ready's status ("True", "False", "Unknown"), if set.
    pub ready: Option<String>,
    /// Ready's reason, if set.
    pub ready_reason: Option<String>,
    /// Healthy's status, if set.
    pub healthy: Option<String>,
    /// Healthy's reason, if set.
    pub healthy_reason: Option<String>,
}

/// Watch Integrations; call `seen` with the name and its conditions on every change.
pub async fn watch_conditions(client: Client, mut seen: impl FnMut(&str, Observed) + Send) {
    let api: Api<switchboard::api::Integration> = Api::namespaced(client, NS);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let Ok(watcher::Event::Apply(i) | watcher::Event::InitApply(i)) = event else { continue };
        let condition = |type_: &str| {
            i.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == type_)).cloned()
        };
        let ready = condition("Ready");
        let healthy = condition("Healthy");
        seen(
            &i.name_any(),
            Observed {
                ready: ready.as_ref().map(|c| c.status.clone()),
                ready_reason: ready.map(|c| c.reason),
                healthy: healthy.as_ref().map(|c| c.status.clone()),
                healthy_reason: healthy.map(|c| c.reason),
            },
        );
    }
}

/// One progress line: how many are Ready, and the reasons of the others by count.
pub fn progress_line(
    elapsed: Duration,
    observed: &std::collections::HashMap<String, Observed>,
    total: usize,
) -> String {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut ready = 0;
    for o in observed.values() {
        if o.ready.as_deref() == Some("True") {
            ready += 1;
        } else {
            *reasons
                .entry(o.ready_reason.clone().unwrap_or_else(|| "no status".into()))
                .or_default() += 1;
        }
    }
    let unseen = total.saturating_sub(observed.len());
    if unseen > 0 {
        reasons.insert("not seen yet".into(), unseen);
    }
    let others: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("  {:>6.1} s  Ready {ready}/{total}  {}", elapsed.as_secs_f64(), others.join(", "))
}

/// A ratio line: measured against a target, and whether the target holds.
pub fn ratio(what: &str, measured: f64, target: f64, lower_is_better: bool, unit: &str) -> String {
    let ok = if lower_is_better { measured <= target } else { measured >= target };
    let ratio =
        if lower_is_better { target / measured.max(f64::EPSILON) } else { measured / target };
    format!(
        "{what:<44} {measured:>10.1} {unit:<6} target {} {target:<8} ratio {ratio:>5.2}  {}",
        if lower_is_better { "≤" } else { "≥" },
        if ok { "ok" } else { "MISSED" }
    )
}

/// The built `switchboard` binary to benchmark.
pub fn binary(path: Option<PathBuf>) -> PathBuf {
    path.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/switchboard")
    })
}
