//! Shared helpers of the inbound, queue, transform and runtime tests: configs, credential
//! files, servers on loopback, the worker process, the Python signing helper (an independent
//! implementation), raw HTTP. (`support` is the outbound tests' own.)
#![allow(dead_code)]

#[path = "../ports_support/mod.rs"]
mod ports_support;
pub use ports_support::free_port;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use switchboard_worker::config::WorkerConfig;
use switchboard_worker::credentials::CredentialStore;
use switchboard_worker::inbound::{InboundState, router, routes_for};
use switchboard_worker::queue::{Queue, QueueSettings};
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

/// A Python with the `standardwebhooks` package: the venv of the test peers, installed by
/// `tests/peers/install-python.sh` from its pinned requirements (pip reaches PyPI).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let status =
            Command::new("bash").arg(peers.join("install-python.sh")).status().expect("bash");
        assert!(status.success(), "installing the Python test peers failed");
        peers.join(".venv/bin/python")
    })
    .clone()
}

/// Sign with the Python helper.
pub fn python_sign(args: &[&str], body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, body).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/runtime_support/sign.py");
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
        Arc::new(CredentialStore::new(&config.credentials).unwrap()),
        Arc::new(QueueSink { queue: queue.clone(), fast: None }),
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

/// The `switchboard` binary of this build profile, built (or brought up to date) by cargo on
/// first use: the tests run the real process, as a pod does.
pub fn switchboard_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let manifest =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("Cargo.toml");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "switchboard",
            "--bin",
            "switchboard",
            "--manifest-path",
        ])
        .arg(&manifest);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build");
        assert!(status.success(), "building the switchboard binary failed");
        profile_dir.join("switchboard")
    })
    .clone()
}

/// What the local sink was sent.
#[derive(Default)]
pub struct SinkState {
    /// Deliveries per event id (the `id` field of the JSON body).
    pub received: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    /// Idempotency keys seen per event id.
    pub keys:
        std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>,
    /// While true, ids starting with `hostile-` get a 500 with a hostile 10 MB body.
    pub refuse_hostile: std::sync::atomic::AtomicBool,
}

/// A local HTTP sink on loopback: `POST /sink` records the body's `id`.
pub async fn start_sink() -> (SocketAddr, Arc<SinkState>) {
    use axum::response::IntoResponse;
    let state = Arc::new(SinkState::default());
    state.refuse_hostile.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = state.clone();
    let app = axum::Router::new().route(
        "/sink",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = v["id"].as_str().unwrap_or_default().to_string();
                if id.starts_with("hostile-")
                    && s.refuse_hostile.load(std::sync::atomic::Ordering::SeqCst)
                {
                    let mut hostile = String::from(
                        "<html>\r\nSet-Cookie: evil=1\r\n\r\n<script>alert(1)</script>\u{1b}[2J",
                    );
                    hostile.push_str(&"X".repeat(10 * 1024 * 1024));
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [("content-type", "text/html")],
                        hostile,
                    )
                        .into_response();
                }
                *s.received.lock().unwrap().entry(id.clone()).or_default() += 1;
                if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
                    s.keys.lock().unwrap().entry(id).or_default().insert(k.to_string());
                }
                axum::http::StatusCode::NO_CONTENT.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

/// An outbound target posting `{"id": ..., "title": ...}` to the sink.
pub fn sink_target_yaml(sink: SocketAddr, max_attempts: u32) -> String {
    format!(
        r#"targets:
- name: sink
  type: outboundMessage
  endpoint:
    name: local-sink
    url: http://{sink}
    protocol: rest
    timeoutMs: 5000
    retry: {{maxAttempts: {max_attempts}, initialBackoffMs: 10, maxBackoffMs: 50}}
    circuitBreaker: {{failureThreshold: 1000, openForMs: 1000}}
  method:
    name: post
    httpMethod: POST
    path: /sink
    contentType: application/json
    body: '{{"id": "${{id}}", "title": "${{title}}"}}'
    variables:
    - {{name: id, maxLength: 200}}
    - {{name: title, maxLength: 1000, default: ""}}
egress:
  allowCidrs: [127.0.0.0/8]
"#
    )
}

/// A running `switchboard worker` process.
pub struct WorkerProcess {
    pub child: std::process::Child,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Start the binary; stdout and stderr go to `log` (appended).
    pub fn start(
        config: &Path,
        data: &Path,
        token: &Path,
        log: &Path,
        extra: &[&str],
    ) -> WorkerProcess {
        let inbound = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(switchboard_bin())
            .arg("worker")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .arg("--admin-token-file")
            .arg(token)
            .arg("--inbound-addr")
            .arg(inbound.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start switchboard worker");
        WorkerProcess { child, inbound, admin, log: log.to_path_buf() }
    }

    /// Wait until `/livez` answers (bounded: the process must come up within a minute).
    pub async fn wait_live(&self) {
        let client = http_client();
        for _ in 0..600 {
            if client.get(format!("http://{}/livez", self.admin)).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "worker did not come up; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// GET an admin path as JSON.
    pub async fn admin_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = http_client().get(format!("http://{}{path}", self.admin)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// The status document.
    pub async fn status(&self) -> serde_json::Value {
        self.admin_json("/status").await.1
    }

    /// Poll `/status` until `done` holds (bounded), returning the last document.
    pub async fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..1200 {
            last = self.status().await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{what} never happened; last status: {last}");
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `switchboard dlq ...` against a worker; (exit success, stdout, stderr).
pub fn dlq(worker: &WorkerProcess, token: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(switchboard_bin())
        .arg("dlq")
        .args(args)
        .arg("--url")
        .arg(format!("http://{}", worker.admin))
        .arg("--token-file")
        .arg(token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
