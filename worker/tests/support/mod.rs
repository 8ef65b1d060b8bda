//! Shared pieces of the outbound, credentials and delivery tests: a scripted HTTP sink on
//! loopback, call builders and credential directories.
//!
//! The sink is a real TCP server speaking HTTP/1.1 (one request per connection), scripted per
//! test with the replies to give in order. It records every request as it arrived (raw bytes,
//! parsed headers, body, and the tokio instant), so tests assert on exactly what went over
//! the wire. It runs on the test's runtime, so a paused tokio clock stays consistent.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_worker::config::{
    CircuitBreakerConfig, CredentialConfig, EgressConfig, EndpointConfig, MethodConfig,
    OutboundCall, RetryConfig, VariableConfig,
};
use switchboard_worker::delivery::Outbound;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the sink does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with a status, extra headers and a body.
    Respond { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Read the request and never answer.
    Hang,
    /// Read the request and reset the connection (RST).
    Reset,
    /// Read the request and close the connection without answering.
    Close,
    /// Answer 200 with a body shorter than its Content-Length, then close the connection.
    CutBody,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Respond { status, headers: vec![], body: vec![] }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Respond { status, headers: vec![(name.into(), value.into())], body: vec![] }
    }

    pub fn body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// One request as the sink received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: tokio::time::Instant,
    pub raw_head: String,
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// Every value of a header (case-insensitive name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.header_values(name);
        assert!(values.len() <= 1, "header {name} appears {} times", values.len());
        values.first().copied()
    }

    /// The request target (path and query).
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or_default()
    }
}

struct SinkState {
    script: VecDeque<Reply>,
    default: Reply,
    received: Vec<Received>,
}

/// A scripted HTTP sink.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    /// Start a sink that gives `script` in order, then `default` to every later request.
    pub async fn start(script: Vec<Reply>, default: Reply) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SinkState {
            script: script.into(),
            default,
            received: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(serve(stream, state));
            }
        });
        Sink { addr, state }
    }

    /// A sink that always answers `status`.
    pub async fn always(status: u16) -> Sink {
        Sink::start(vec![], Reply::status(status)).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<SinkState>>) {
    let Some(received) = read_request(&mut stream).await else { return };
    let reply = {
        let mut state = state.lock().unwrap();
        state.received.push(received);
        let default = state.default.clone();
        state.script.pop_front().unwrap_or(default)
    };
    match reply {
        Reply::Respond { status, headers, body } => {
            let mut head = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
        Reply::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Reply::Close => {
            let _ = stream.shutdown().await;
        }
        Reply::CutBody => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Read one HTTP/1.1 request (Content-Length bodies only; the worker sends no chunked ones).
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let at = tokio::time::Instant::now();
    let raw_head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = raw_head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { at, raw_head, request_line, headers, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A retry policy.
pub fn retry(max_attempts: u32, initial_backoff_ms: u64, max_backoff_ms: u64) -> RetryConfig {
    RetryConfig { max_attempts, initial_backoff_ms, max_backoff_ms }
}

/// A REST call to `url` + `path` with one declared variable `v` and a JSON body using it.
pub fn rest_call(url: &str, path: &str) -> OutboundCall {
    OutboundCall {
        endpoint: EndpointConfig {
            name: "sink".into(),
            url: url.into(),
            protocol: "rest".into(),
            soap_version: None,
            credential: None,
            client_certificate: None,
            ca_file: None,
            server_name: None,
            timeout_ms: 2_000,
            retry: retry(1, 100, 1_000),
            circuit_breaker: CircuitBreakerConfig { failure_threshold: 0, open_for_ms: 1_000 },
        },
        method: MethodConfig {
            name: "post".into(),
            http_method: "POST".into(),
            path: path.into(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body: Some(r#"{"v":"${v}"}"#.into()),
            content_type: None,
            soap_action: None,
            variables: vec![VariableConfig {
                name: "v".into(),
                default: Some("x".into()),
                max_length: 10_000,
            }],
            expected_statuses: vec![],
            capture: BTreeMap::new(),
        },
        variables: BTreeMap::new(),
    }
}

/// Variables from pairs.
pub fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An egress config that allows loopback (where the test peers are).
pub fn loopback_allowed() -> EgressConfig {
    EgressConfig { allow_cidrs: vec!["127.0.0.0/8".into()] }
}

/// An Outbound with these credentials and loopback allowed.
pub fn outbound(credentials: BTreeMap<String, CredentialConfig>) -> Outbound {
    Outbound::from_parts(&credentials, &loopback_allowed()).unwrap()
}

/// A credential config of `type_` whose files live in `dir`.
pub fn credential(type_: &str, dir: &Path) -> CredentialConfig {
    CredentialConfig {
        type_: type_.into(),
        directory: dir.display().to_string(),
        api_key: None,
        oauth2: None,
        hmac: None,
    }
}

/// Write a credential file atomically (new inode, as a Secret volume update does).
pub fn write_secret(dir: &Path, role_file: &str, content: &[u8]) {
    let tmp = dir.join(format!(".{role_file}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(role_file)).unwrap();
}

/// The OAuth2 token server of `tests/peers` (oauth2-mock-server), installed with npm on
/// first use and run with node on loopback.
pub struct OAuth2Peer {
    _child: tokio::process::Child,
    /// The token endpoint.
    pub token_url: String,
    counter: SocketAddr,
}

impl OAuth2Peer {
    /// Start a token server that accepts exactly this client id and secret.
    pub async fn start(client_id: &str, client_secret: &str) -> OAuth2Peer {
        use tokio::io::AsyncBufReadExt;
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let installed = std::process::Command::new("bash")
            .arg(peers.join("install.sh"))
            .status()
            .expect("bash runs tests/peers/install.sh");
        assert!(installed.success(), "npm install of the test peers failed");
        let mut child = tokio::process::Command::new("node")
            .arg("oauth2-server.mjs")
            .current_dir(&peers)
            .env("CLIENT_ID", client_id)
            .env("CLIENT_SECRET", client_secret)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = lines.next_line().await.unwrap().expect("the OAuth2 peer prints READY");
        let ports: Vec<u16> = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected peer output {ready:?}"))
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        OAuth2Peer {
            _child: child,
            token_url: format!("http://127.0.0.1:{}/token", ports[0]),
            counter: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        }
    }

    /// (token requests received, tokens issued) so far.
    pub async fn counts(&self) -> (u64, u64) {
        let mut stream = TcpStream::connect(self.counter).await.unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\nHost: counter\r\n\r\n").await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let at = find(&response, b"\r\n\r\n").unwrap() + 4;
        let counts: serde_json::Value = serde_json::from_slice(&response[at..]).unwrap();
        (counts["requests"].as_u64().unwrap(), counts["issued"].as_u64().unwrap())
    }
}
