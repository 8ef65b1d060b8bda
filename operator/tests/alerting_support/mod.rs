//! Peers of the alerting tests: receivers that record what they get (PagerDuty-, Slack-,
//! Teams-shaped and generic HTTP endpoints), a real SMTP server (aiosmtpd), a real
//! Alertmanager and a real Prometheus, all on loopback ports; and a log capture.
//!
//! A missing peer fails the test with instructions (run `./scripts/test-peers`); nothing is
//! skipped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;

use crate::support::cluster::{eventually, free_port};
use crate::support::{peer, workspace};

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Everything but the path and query, as text (for secret searches).
    pub fn text_without_url(&self) -> String {
        let headers: Vec<String> = self.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        format!("{}\n{}", headers.join("\n"), String::from_utf8_lossy(&self.body))
    }
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

/// An HTTP endpoint that records every request and answers with a fixed status.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: ReceiverState,
}

async fn record(
    State(state): State<ReceiverState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.received.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect(),
        body: body.to_vec(),
    });
    StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}

impl Receiver {
    /// Start one answering `status`.
    pub async fn start(status: u16) -> Receiver {
        let state =
            ReceiverState { received: Arc::default(), status: Arc::new(AtomicU16::new(status)) };
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { port, state }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it got so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

/// Path of a program from Debian's packages; fails with instructions when missing.
pub fn debian_tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|c| c.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "test peer {name} is missing: run ./scripts/test-peers (the README's test command does), \
             or install Debian's package `{package}`"
        )
    })
}

/// A child process killed on drop, with its output in a file.
pub struct Peer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (config, data, log).
    pub dir: tempfile::TempDir,
}

impl Peer {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// GET `path` as JSON, `None` until it answers 200.
    pub async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest::get(url).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Wait until `path` answers 200.
    pub async fn wait_ready(&self, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        eventually(&format!("{url} to answer"), Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(url).await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager on a free loopback port whose only receiver is `webhook_url`
/// (firing and resolved notifications), grouping per integration with short waits.
pub fn alertmanager(webhook_url: &str) -> Peer {
    let program = debian_tool("prometheus-alertmanager", "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, namespace, integration]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 24h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n"
    );
    std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
    let args = vec![
        "--config.file=alertmanager.yml".to_string(),
        "--storage.path=data".to_string(),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_string(),
        "--log.level=debug".to_string(),
    ];
    start_in(program, args, dir, port)
}

/// The chart's Prometheus rules, from the chart rendered by the Helm engine, as a rules file.
pub fn chart_rules() -> String {
    let rendered =
        crate::support::cluster::render_chart(r#"{"metrics":{"prometheusRule":{"enabled":true}}}"#);
    let rule = rendered
        .split("\n---\n")
        .map(|doc| yaml_serde::from_str::<serde_json::Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    yaml_serde::to_string(&serde_json::json!({"groups": rule["spec"]["groups"]})).unwrap()
}

/// A real Prometheus on a free loopback port, evaluating `rules` (a rules file's text) every
/// second over a scrape of `target` (`127.0.0.1:PORT`) every second.
pub fn prometheus(rules: &str, target: &str) -> Peer {
    prometheus_scraping(
        rules,
        &format!(
            "  - job_name: switchboard-operator\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
}

/// A real Prometheus on a free loopback port, evaluating `rules` every second over
/// `scrape_configs` (the YAML list items, indented by two spaces) scraped every second.
pub fn prometheus_scraping(rules: &str, scrape_configs: &str) -> Peer {
    let program = debian_tool("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n{scrape_configs}"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let args = vec![
        "--config.file=prometheus.yml".to_string(),
        "--storage.tsdb.path=data".to_string(),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    start_in(program, args, dir, port)
}

fn start_in(program: PathBuf, args: Vec<String>, dir: tempfile::TempDir, port: u16) -> Peer {
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new(&program)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    Peer { child, port, dir }
}

/// A real SMTP server (aiosmtpd) requiring AUTH with `user` and `password`.
pub struct SmtpSink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Start it and wait until it listens.
    pub fn start(user: &str, password: &str) -> SmtpSink {
        let python = peer("python");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("messages.jsonl");
        let port = free_port();
        let script = workspace().join("operator/tests/alerting_support/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&out)
            .arg(port.to_string())
            .args([user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink did not start (is aiosmtpd installed? run ./scripts/test-peers)"
        );
        SmtpSink { child, port, out, _dir: dir }
    }

    /// Messages accepted so far: `{"from", "to", "data"}`.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the process logs through `tracing`, from the first call on.
pub fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The decoded text of an email (quoted-printable or base64 body).
pub fn email_text(raw: &str) -> String {
    let (headers, body) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n")).unwrap();
    let lower = headers.to_ascii_lowercase();
    let body = if lower.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).unwrap())
            .unwrap()
    } else if lower.contains("content-transfer-encoding: quoted-printable") {
        decode_quoted_printable(body)
    } else {
        body.to_string()
    };
    format!("{headers}\n\n{body}")
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 3 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
