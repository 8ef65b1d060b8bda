//! The request sink: a local stand-in for external systems.
//!
//! An HTTP server on a loopback address that answers every request plausibly and records
//! what it received, so programs under development can "call" ServiceNow, Slack or a SOAP
//! service with no network and no real accounts. It is not a mock of any of them: it does
//! not validate requests, keep state or return realistic data.
//!
//! ```text
//!  request ──▶ record (method, path, query, headers, bounded body; secrets redacted)
//!          ──▶ answer: OAuth2 token request  → 200 {"access_token": ..., "expires_in": 3600}
//!                      SOAP request           → 200 SOAP 1.1 envelope <XResponse/>
//!                      a matching SinkRule    → its status, {} JSON
//!                      anything else          → 200 {} JSON
//!  GET /_devcluster/sink/requests ──▶ the records as JSON (newest last)
//! ```
//!
//! Redaction: values of `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and of
//! every header, query parameter, form field or JSON key whose name contains `token`,
//! `secret`, `key`, `password`, `signature`, `auth`, `session` or `credential` are replaced
//! by `[redacted]`. Bodies are kept up to a limit (4 KiB by default) and counted beyond it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

/// Path of the records, as JSON.
pub const RECORDS_PATH: &str = "/_devcluster/sink/requests";
const REDACTED: &str = "[redacted]";

/// How the sink runs.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Where it listens (port 0 picks one).
    pub addr: SocketAddr,
    /// How many records it keeps (the oldest go first).
    pub capacity: usize,
    /// How many bytes of each body it keeps.
    pub body_limit: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), capacity: 500, body_limit: 4096 }
    }
}

/// A status to answer for some requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkRule {
    /// HTTP method, or any.
    pub method: Option<String>,
    /// Path prefix (the longest matching rule wins).
    pub path_prefix: String,
    /// Status to answer.
    pub status: u16,
}

/// One received request.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SinkRecord {
    /// Sequence number (from 1).
    pub seq: u64,
    /// When it arrived (RFC 3339).
    pub time: String,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string (redacted), if any.
    pub query: Option<String>,
    /// Headers (redacted).
    pub headers: Vec<(String, String)>,
    /// The body, up to the limit, as text (redacted when it is a form or JSON).
    pub body: String,
    /// Size of the whole body.
    pub body_bytes: usize,
    /// Whether `body` was cut.
    pub truncated: bool,
    /// Status answered.
    pub status: u16,
    /// What kind of answer was given: `json`, `oauth2-token` or `soap`.
    pub answer: &'static str,
}

struct SinkState {
    config: SinkConfig,
    records: Mutex<VecDeque<SinkRecord>>,
    rules: RwLock<Vec<SinkRule>>,
    notify: tokio::sync::watch::Sender<u64>,
}

/// A running sink.
pub struct RequestSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RequestSink {
    /// Starts a sink.
    pub async fn start(config: SinkConfig) -> std::io::Result<RequestSink> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let (notify, _) = tokio::sync::watch::channel(0);
        let state = Arc::new(SinkState {
            config,
            records: Mutex::new(VecDeque::new()),
            rules: RwLock::new(Vec::new()),
            notify,
        });
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await.map(|_| ());
                })
                .await;
        });
        Ok(RequestSink { addr, state, shutdown, task: Some(task) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule for the status of matching requests.
    pub fn add_rule(&self, rule: SinkRule) {
        let mut rules = self.state.rules.write().unwrap_or_else(|p| p.into_inner());
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }

    /// The records, oldest first.
    pub fn records(&self) -> Vec<SinkRecord> {
        self.state.records.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Notifications carrying the newest sequence number.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.notify.subscribe()
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RequestSink {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn handle(State(state): State<Arc<SinkState>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    if method == "GET" && path == RECORDS_PATH {
        let records = state
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>();
        return respond(StatusCode::OK, "application/json", json!({"items": records}).to_string());
    }
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await.unwrap_or_default();
    let content_type = header_str(&headers, "content-type").to_ascii_lowercase();
    let text = String::from_utf8_lossy(&body).into_owned();
    let token_request = method == "POST"
        && (text.contains("grant_type=")
            || path.ends_with("/token")
            || path.ends_with("oauth_token.do")
            || path.ends_with("/oauth2/token"));
    let soap = headers.contains_key("soapaction")
        || content_type.contains("soap+xml")
        || (content_type.contains("xml") && text.contains("Envelope"));
    let (status, content, answer_body, answer) = if token_request {
        (
            200,
            "application/json",
            json!({"access_token": "devcluster-sink-token", "token_type": "Bearer", "expires_in": 3600}).to_string(),
            "oauth2-token",
        )
    } else if soap {
        (200, "text/xml; charset=utf-8", soap_answer(&text), "soap")
    } else {
        (
            rule_status(&state, &method, &path).unwrap_or(200),
            "application/json",
            "{}".to_string(),
            "json",
        )
    };
    let limit = state.config.body_limit;
    let kept = String::from_utf8_lossy(&body[..body.len().min(limit)]).into_owned();
    let record_body = redact_body(&kept, &content_type);
    let mut records = state.records.lock().unwrap_or_else(|p| p.into_inner());
    let seq = records.back().map_or(1, |r| r.seq + 1);
    records.push_back(SinkRecord {
        seq,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        method,
        path,
        query: query.map(|q| redact_form(&q)),
        headers: headers
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().to_string();
                let value = if secret_header(&name) {
                    REDACTED.to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect(),
        body: record_body,
        body_bytes: body.len(),
        truncated: body.len() > limit,
        status,
        answer,
    });
    while records.len() > state.config.capacity {
        records.pop_front();
    }
    drop(records);
    state.notify.send_replace(seq);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if code == StatusCode::NO_CONTENT {
        return respond(code, content, String::new());
    }
    respond(code, content, answer_body)
}

fn respond(code: StatusCode, content_type: &str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn rule_status(state: &SinkState, method: &str, path: &str) -> Option<u16> {
    let rules = state.rules.read().unwrap_or_else(|p| p.into_inner());
    rules
        .iter()
        .filter(|r| r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)))
        .filter(|r| path.starts_with(&r.path_prefix))
        .max_by_key(|r| (r.path_prefix.len(), r.method.is_some()))
        .map(|r| r.status)
}

/// A SOAP 1.1 envelope answering the request's operation with an empty `<OperationResponse/>`.
fn soap_answer(request: &str) -> String {
    let operation = request
        .find("Body")
        .and_then(|i| request[i..].find('>').map(|j| &request[i + j + 1..]))
        .and_then(|rest| {
            let start = rest.find('<')? + 1;
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
                .collect();
            Some(name.rsplit(':').next().unwrap_or("").to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Operation".into());
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
         <soap:Body><{operation}Response xmlns=\"urn:devcluster:sink\"/></soap:Body></soap:Envelope>"
    )
}

fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "secret", "key", "password", "signature", "auth", "session", "credential"]
        .iter()
        .any(|w| n.contains(w))
}

fn secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie" | "set-cookie")
        || secret_name(name)
}

fn redact_form(s: &str) -> String {
    s.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret_name(k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_json(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if secret_name(k) && !x.is_object() && !x.is_array() {
                    *x = json!(REDACTED);
                } else {
                    redact_json(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        _ => {}
    }
}

fn redact_body(body: &str, content_type: &str) -> String {
    if content_type.contains("x-www-form-urlencoded")
        || (body.contains('=') && !body.contains(['{', '<', ' ']))
    {
        return redact_form(body);
    }
    if let Ok(mut v) = serde_json::from_str::<Value>(body) {
        redact_json(&mut v);
        return v.to_string();
    }
    if content_type.contains("json") {
        // Cut JSON cannot be parsed: keep nothing rather than a half-redacted body.
        return format!("[{} bytes of JSON not shown]", body.len());
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_forms_json_and_headers() {
        assert_eq!(
            redact_form("grant_type=client_credentials&client_id=a&client_secret=s3cr3t"),
            "grant_type=client_credentials&client_id=a&client_secret=[redacted]"
        );
        let body = redact_body(
            r#"{"routing_key":"abc","event":{"summary":"x","api_token":"t"}}"#,
            "application/json",
        );
        assert!(!body.contains("abc") && !body.contains("\"t\""), "{body}");
        assert!(body.contains("summary"));
        assert!(
            secret_header("authorization")
                && secret_header("x-api-key")
                && secret_header("webhook-signature")
        );
        assert!(!secret_header("content-type"));
        assert_eq!(
            redact_body("{\"password\": \"cut", "application/json"),
            "[17 bytes of JSON not shown]"
        );
    }

    #[test]
    fn soap_answers_name_the_operation() {
        let req = r#"<soapenv:Envelope xmlns:soapenv="x"><soapenv:Body><bil:CloseDay xmlns:bil="y"/></soapenv:Body></soapenv:Envelope>"#;
        assert!(soap_answer(req).contains("<CloseDayResponse xmlns=\"urn:devcluster:sink\"/>"));
    }
}
