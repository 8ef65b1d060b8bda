//! Shared helpers of the worker's integration tests: configs, credential files, servers on
//! loopback, the Python signing helper (an independent implementation), raw HTTP.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use switchboard_worker::config::WorkerConfig;
use switchboard_worker::inbound::{InboundState, router, routes_for};
use switchboard_worker::queue::{Queue, QueueSettings};
use switchboard_worker::runtime::credentials::CredentialFiles;
use switchboard_worker::runtime::delivery::QueueSink;
use switchboard_worker::runtime::metrics::Metrics;

/// A value planted in every secret: no output may ever contain it.
pub const CANARY: &str = "canary-7f3a9c1e-secret";

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().unwrap().join("target"))
}

/// A Python with the `standardwebhooks` package, in a venv under `target/test-tools`
/// (created on first use; pip reaches PyPI).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = target_dir().join("test-tools").join("venv");
        let py = venv.join("bin").join("python");
        let ok = |py: &Path| {
            Command::new(py)
                .args(["-c", "import standardwebhooks"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !ok(&py) {
            let status =
                Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3");
            assert!(status.success(), "python3 -m venv failed");
            let status = Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "standardwebhooks==1.1.0"])
                .status()
                .expect("pip");
            assert!(status.success(), "pip install standardwebhooks failed");
        }
        py
    })
    .clone()
}

/// Sign with the Python helper.
pub fn python_sign(args: &[&str], body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, body).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sign.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .arg(&body_path)
        .output()
        .expect("run sign.py");
    assert!(out.status.success(), "sign.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Write a credential directory with `files` (role file name → content).
pub fn credential_dir(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

/// Base64 of a secret, as a Standard Webhooks `whsec_` secret.
pub fn whsec(raw: &str) -> String {
    use base64::Engine as _;
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// A running inbound server backed by a real queue.
pub struct Inbound {
    pub addr: SocketAddr,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub dir: tempfile::TempDir,
}

/// Start the inbound routes of `config_yaml` on loopback, durable mode, queue in a temp dir.
pub async fn start_inbound(config_yaml: &str, dir: tempfile::TempDir) -> Inbound {
    let config = WorkerConfig::from_yaml(config_yaml).expect("config parses");
    let queue = Queue::open(&dir.path().join("data"), QueueSettings::default()).unwrap();
    let metrics = Arc::new(Metrics::for_config(&config));
    let routes = routes_for(config.source.as_ref().unwrap(), &config.credentials).unwrap();
    let state = InboundState::new(
        Arc::new(CredentialFiles::new(&config.credentials)),
        Arc::new(QueueSink { queue: queue.clone() }),
        metrics.clone(),
        queue.counters().clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(routes, state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Inbound { addr, queue, metrics, dir }
}

/// The head of a worker config, with `source` and `credentials` YAML appended by the caller.
pub fn config_head(mode: &str) -> String {
    [
        "apiVersion: worker.switchboard.dev/v1",
        "kind: WorkerConfig",
        "subject: {kind: Integration, namespace: ops, name: alerts}",
        "owner: {team: noc, contact: noc@example.com}",
        "delivery:",
        &format!("  mode: {mode}"),
        "  retry: {maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50}",
        "  deadLetterRetentionSeconds: 86400",
        "  deadLetterMaxEntries: 1000",
        "  concurrency: 8",
        "",
    ]
    .join("\n")
}

/// Send raw bytes over HTTP/1.1 and return (status, whole response text).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Unix time now, in seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HTTP client for tests (ring as the process's TLS provider, as the worker installs).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}
