//! An end-to-end environment: devcluster with the Helm chart installed, and the operator as a
//! real process under the chart's ServiceAccount, so RBAC is enforced on every request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devcluster::{Config, DevCluster};

use super::{peer, workspace};

/// Namespace the chart is installed in.
pub const SYSTEM: &str = "switchboard-system";
/// Name of the chart's ServiceAccount (release `switchboard`).
pub const OPERATOR_SA: &str = "switchboard";

/// Wait until `check` returns `Some`, polling; panic with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// devcluster with the chart's CRDs, RBAC and ServiceAccount applied.
pub struct Env {
    /// The cluster.
    pub cluster: DevCluster,
    /// An admin client.
    pub admin: kube::Client,
    /// Admin kubeconfig, for kubectl.
    pub kubeconfig: PathBuf,
    /// The operator ServiceAccount's kubeconfig.
    pub operator_kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

/// The chart rendered by the Helm engine with `values` (JSON), as YAML.
pub fn render_chart(values: &str) -> String {
    let python = peer("python");
    let output = Command::new(python)
        .arg(workspace().join("scripts/helm.py"))
        .args(["render", "charts/switchboard", values])
        .current_dir(workspace())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "helm render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Env {
    /// Start devcluster and install the chart (without starting its Deployment: the operator
    /// runs as a local process under the chart's ServiceAccount instead).
    pub async fn start() -> Env {
        Env::start_with(Config::default()).await
    }

    /// Start with the pod runner running Switchboard images as this build's `switchboard`
    /// executable, as `switchboard dev` does: workers really run.
    pub async fn start_with_workers() -> Env {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_switchboard"));
        Env::start_with(Config {
            pods: devcluster::kubelet::PodRunnerConfig {
                images: vec![switchboard::dev::switchboard_image_rule(exe)],
                ..Default::default()
            },
            ..Config::default()
        })
        .await
    }

    /// Start with a devcluster configuration (e.g. a state directory).
    pub async fn start_with(config: Config) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = DevCluster::start(config).await.expect("devcluster starts");
        let admin = cluster.client().await.expect("admin client");
        let kubeconfig = cluster.kubeconfig_path().to_path_buf();
        // SWITCHBOARD_E2E_KEEP=1 keeps the scratch directory (operator logs) for debugging.
        let dir = tempfile::Builder::new()
            .prefix("switchboard-e2e-")
            .disable_cleanup(std::env::var_os("SWITCHBOARD_E2E_KEEP").is_some())
            .tempdir()
            .unwrap();
        if std::env::var_os("SWITCHBOARD_E2E_KEEP").is_some() {
            eprintln!("keeping {}", dir.path().display());
        }
        let env = Env { operator_kubeconfig: PathBuf::new(), cluster, admin, kubeconfig, dir };
        env.kubectl_ok(&["create", "namespace", SYSTEM]);
        let chart = render_chart(r#"{"replicaCount": 1}"#);
        let manifests = env.dir.path().join("chart.yaml");
        std::fs::write(&manifests, without_kind(&chart, "Deployment")).unwrap();
        env.kubectl_ok(&["apply", "--server-side", "-f", manifests.to_str().unwrap()]);
        env.kubectl_ok(&[
            "wait",
            "--for",
            "condition=Established",
            "crd",
            "--all",
            "--timeout=30s",
        ]);
        let operator_kubeconfig =
            env.cluster.service_account_kubeconfig(SYSTEM, OPERATOR_SA).expect("SA kubeconfig");
        Env { operator_kubeconfig, ..env }
    }

    /// Run kubectl as admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(workspace())
            .output()
            .expect("kubectl runs")
    }

    /// Run kubectl as admin and require success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Run kubectl as the operator's ServiceAccount.
    pub fn kubectl_as_operator(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .output()
            .expect("kubectl runs")
    }

    /// Start an operator process under the chart's ServiceAccount.
    pub fn operator(&self, identity: &str, leader_elect: bool) -> OperatorProcess {
        self.operator_with(identity, leader_elect, &[])
    }

    /// Start an operator process with extra arguments.
    pub fn operator_with(
        &self,
        identity: &str,
        leader_elect: bool,
        extra: &[&str],
    ) -> OperatorProcess {
        let port = free_port();
        let log = self.dir.path().join(format!("{identity}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "operator",
                &format!("--metrics-addr=127.0.0.1:{port}"),
                &format!("--leader-elect={leader_elect}"),
                &format!("--lease-namespace={SYSTEM}"),
                &format!("--identity={identity}"),
                "--log-level=info,switchboard=debug",
            ])
            .args(extra)
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the operator starts");
        OperatorProcess { child, log, port, identity: identity.into() }
    }

    /// Stop the API server and start it again on the same port with the same state.
    pub async fn restart(&mut self) {
        self.cluster.restart().await.expect("devcluster restarts");
    }

    /// A scratch directory that lives as long as the environment.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

/// Drop every document of `kind` from a multi-document YAML stream.
fn without_kind(yaml: &str, kind: &str) -> String {
    yaml.split("\n---\n")
        .filter(|doc| !doc.lines().any(|l| l == format!("kind: {kind}")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[path = "../../../worker/tests/ports_support/mod.rs"]
mod ports_support;
pub use ports_support::free_port;

/// An operator process; killed on drop.
pub struct OperatorProcess {
    /// The process.
    pub child: Child,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// Port of /livez, /readyz, /metrics.
    pub port: u16,
    /// Its identity.
    pub identity: String,
}

impl OperatorProcess {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the health server.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest_get(&url).await?;
        Some(response)
    }

    /// Send a signal (`KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET over a TCP stream (the health server speaks HTTP/1.1).
async fn reqwest_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut buffer = Vec::new();
    stream.read_to_end(&mut buffer).await.ok()?;
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// A controller context over `client` with empty caches, always leading: for calling one
/// reconcile step directly, outside the controllers.
pub fn bare_context(client: kube::Client) -> switchboard::controller::Context {
    use switchboard::controller::{Context, Stores};
    let stores = Stores {
        integrations: kube::runtime::reflector::store().0,
        credentials: kube::runtime::reflector::store().0,
        outbound_messages: kube::runtime::reflector::store().0,
        schedules: kube::runtime::reflector::store().0,
    };
    Context::new(
        client,
        switchboard::render::RenderSettings::default(),
        switchboard::controller::leader::LeaderGuard::always(),
        kube::runtime::events::Reporter { controller: "test".into(), instance: None },
        std::sync::Arc::new(switchboard::controller::metrics::Metrics::default()),
        stores,
        std::sync::Arc::new(switchboard::controller::index::RefIndex::default()),
    )
}
