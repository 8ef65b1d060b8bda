//! The client side of the dead-letter API: what `switchboard dlq list|show|replay` does, over
//! any way of reaching workers' admin ports.
//!
//! ```text
//!  DlqCommand ──▶ run_dlq_command ──▶ AdminTransport (one per worker) ──▶ GET/POST /v1/dead-letters...
//!                   list:   every worker, merged newest first, each entry with its worker
//!                   show:   each worker in turn until one knows the id (404: ask the next)
//!                   replay: the same, per id
//! ```
//!
//! A worker's dead letters live in its own store, so an integration with several pods (a
//! StatefulSet with a persistent queue per pod) has several stores; the command covers all of
//! them. [`UrlTransport`] reaches one worker by URL (`--url`, a port-forward or `switchboard
//! dev`); the operator crate adds one that goes through the Kubernetes API server's
//! `pods/proxy`. The admin token travels in a [`SecretString`] and is never printed.

use std::future::Future;
use std::io::Write;

use clap::Subcommand;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Subcommands of `switchboard dlq`.
#[derive(Subcommand, Debug, Clone)]
pub enum DlqCommand {
    /// List dead letters, newest first (of every worker pod with --integration).
    List {
        /// Include replayed ones.
        #[arg(long)]
        all: bool,
        /// Most entries (per worker, and in all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter with its event and attempt history.
    Show {
        /// Dead-letter id.
        id: String,
    },
    /// Put dead letters back into the queue; who and when are recorded.
    Replay {
        /// Dead-letter ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Who replays (default: $USER).
        #[arg(long, env = "USER")]
        by: Option<String>,
    },
}

/// What an admin API answered: the HTTP status and the body (JSON, or the text as a string).
#[derive(Clone, Debug, PartialEq)]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body; a body that is not JSON arrives as a string.
    pub body: Value,
}

impl AdminResponse {
    /// The body, or an error naming the status and the server's message.
    pub fn into_result(self) -> Result<Value, String> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let reason = http_reason(self.status);
        let message = self.body["message"]
            .as_str()
            .or(self.body.as_str())
            .map(|m| m.chars().take(300).collect::<String>())
            .unwrap_or_else(|| "request failed".into());
        let hint = match self.status {
            401 => " (the admin token was refused: is it the one the worker mounts?)",
            403 if self.body["error"] == "admin_token_not_configured" => {
                " (this worker runs without an admin token file)"
            }
            _ => "",
        };
        Err(format!("{} {reason}: {message}{hint}", self.status))
    }
}

fn http_reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// A way to reach one worker's admin API.
pub trait AdminTransport: Sync {
    /// The worker's pod name, when it has one (shown beside each entry).
    fn pod(&self) -> Option<&str>;
    /// A name for messages: the pod, or the URL.
    fn describe(&self) -> String;
    /// Send `method path_and_query` (with a JSON body) to the admin API, with the admin token.
    fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> impl Future<Output = Result<AdminResponse, String>> + Send;
}

/// Reaches a worker by its admin URL, with the token as `Authorization: Bearer`.
pub struct UrlTransport {
    base: String,
    token: SecretString,
    client: reqwest::Client,
}

impl UrlTransport {
    /// A transport to `url` (such as `http://127.0.0.1:9090`).
    pub fn new(url: &str, token: SecretString) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(UrlTransport { base: url.trim_end_matches('/').to_string(), token, client })
    }
}

impl AdminTransport for UrlTransport {
    fn pod(&self) -> Option<&str> {
        None
    }

    fn describe(&self) -> String {
        self.base.clone()
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<AdminResponse, String> {
        let mut request = self
            .client
            .request(method, format!("{}{path_and_query}", self.base))
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("admin API unreachable: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| format!("reading the answer: {e}"))?;
        Ok(AdminResponse { status, body: body_value(&bytes) })
    }
}

/// A response body as JSON, or as a string when it is not JSON.
pub fn body_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).trim().to_string()))
}

/// Read an admin token file (trimmed).
pub fn read_token_file(path: &std::path::Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {}", path.display(), e.kind()))?;
    Ok(SecretString::from(text.trim().to_string()))
}

/// Percent-encode one path segment.
pub fn encode_segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Run a `dlq` command against the given workers, writing to `out` (errors that concern one
/// worker or one id go to standard error; the result says whether everything worked).
pub async fn run_dlq_command<T: AdminTransport>(
    command: &DlqCommand,
    json_output: bool,
    workers: &[T],
    out: &mut impl Write,
) -> Result<(), String> {
    if workers.is_empty() {
        return Err("no worker to ask".into());
    }
    match command {
        DlqCommand::List { all, limit } => list(workers, *all, *limit, json_output, out).await,
        DlqCommand::Show { id } => {
            let (worker, mut body) = find(
                workers,
                Method::GET,
                &format!("/v1/dead-letters/{}", encode_segment(id)),
                None,
                id,
            )
            .await?;
            if let Some(pod) = worker.pod() {
                body["pod"] = json!(pod);
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&body).unwrap_or_default()).ok();
            Ok(())
        }
        DlqCommand::Replay { ids, by } => {
            let by = by.clone().unwrap_or_else(|| "unknown".into());
            let mut failed = 0;
            for id in ids {
                let path = format!("/v1/dead-letters/{}/replay", encode_segment(id));
                match find(workers, Method::POST, &path, Some(json!({"by": by})), id).await {
                    Ok((worker, mut body)) if json_output => {
                        if let Some(pod) = worker.pod() {
                            body["pod"] = json!(pod);
                        }
                        writeln!(out, "{body}").ok();
                    }
                    Ok((worker, body)) => {
                        let on = worker.pod().map(|p| format!(" on {p}")).unwrap_or_default();
                        writeln!(
                            out,
                            "replayed {id}{on} as event {} (by {by})",
                            body["eventId"].as_str().unwrap_or_default()
                        )
                        .ok();
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {id}: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} of {} replays failed", ids.len()));
            }
            Ok(())
        }
    }
}

/// Ask each worker in turn until one has the entry. A refused token (401, 403) or an entry
/// that is already replayed (409) decides at once; a worker that fails otherwise (503 while
/// it starts, unreachable) is reported only when no other worker has the entry.
async fn find<'w, T: AdminTransport>(
    workers: &'w [T],
    method: Method,
    path: &str,
    body: Option<Value>,
    id: &str,
) -> Result<(&'w T, Value), String> {
    let mut failed = Vec::new();
    for worker in workers {
        let response = match worker.send(method.clone(), path, body.clone()).await {
            Ok(response) => response,
            Err(e) => {
                failed.push(format!("{}: {e}", worker.describe()));
                continue;
            }
        };
        match response.status {
            404 if response.body["error"] == "not_found" => {}
            200..=299 | 401 | 403 | 409 => {
                return match response.into_result() {
                    Ok(body) => Ok((worker, body)),
                    Err(e) if workers.len() > 1 => Err(format!("{}: {e}", worker.describe())),
                    Err(e) => Err(e),
                };
            }
            _ => {
                let error = response.into_result().err().unwrap_or_default();
                failed.push(format!("{}: {error}", worker.describe()));
            }
        }
    }
    let asked: Vec<String> = workers.iter().map(AdminTransport::describe).collect();
    let mut message = format!("dead letter {id} not found (asked {})", asked.join(", "));
    if !failed.is_empty() {
        message.push_str(&format!("; failed: {}", failed.join("; ")));
    }
    Err(message)
}

async fn list<T: AdminTransport>(
    workers: &[T],
    all: bool,
    limit: usize,
    json_output: bool,
    out: &mut impl Write,
) -> Result<(), String> {
    let state = if all { "all" } else { "pending" };
    let path = format!("/v1/dead-letters?state={state}&limit={limit}");
    let mut items: Vec<Value> = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        let answer = match worker.send(Method::GET, &path, None).await {
            Ok(response) => response.into_result(),
            Err(e) => Err(e),
        };
        match answer {
            Ok(body) => {
                for mut item in body["items"].as_array().cloned().unwrap_or_default() {
                    if let Some(pod) = worker.pod() {
                        item["pod"] = json!(pod);
                    }
                    items.push(item);
                }
            }
            Err(e) if workers.len() > 1 => errors.push(format!("{}: {e}", worker.describe())),
            Err(e) => return Err(e),
        }
    }
    // Newest first across workers (RFC 3339 times in UTC sort as text).
    items.sort_by(|a, b| {
        b["deadLetteredAt"].as_str().unwrap_or("").cmp(a["deadLetteredAt"].as_str().unwrap_or(""))
    });
    items.truncate(limit);
    let with_pods = workers.iter().any(|w| w.pod().is_some());
    if json_output {
        writeln!(out, "{}", serde_json::to_string_pretty(&items).unwrap_or_default()).ok();
    } else {
        let pod_width = items.iter().filter_map(|i| i["pod"].as_str()).map(str::len).max();
        let pod_column = |pod: &str| match pod_width {
            Some(width) if with_pods => format!("{:<width$} ", pod, width = width.max(3)),
            _ if with_pods => "POD ".to_string(),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}{:<38} {:<21} {:<9} {:<22} {:>8}  MESSAGE",
            pod_column("POD"),
            "ID",
            "DEAD-LETTERED",
            "STATE",
            "REASON",
            "ATTEMPTS"
        )
        .ok();
        for item in &items {
            let at = item["deadLetteredAt"].as_str().unwrap_or_default();
            writeln!(
                out,
                "{}{:<38} {:<21} {:<9} {:<22} {:>8}  {}",
                pod_column(item["pod"].as_str().unwrap_or_default()),
                item["id"].as_str().unwrap_or_default(),
                at.get(..19).unwrap_or(at),
                item["state"].as_str().unwrap_or_default(),
                item["reason"].as_str().unwrap_or_default(),
                item["attempts"].as_u64().unwrap_or_default(),
                item["message"].as_str().unwrap_or_default().chars().take(80).collect::<String>(),
            )
            .ok();
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        Err(format!("{} of {} worker pods could not be listed", errors.len(), workers.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// A worker answering from a table of (method path) → response, recording requests.
    struct FakeWorker {
        pod: &'static str,
        answers: BTreeMap<String, AdminResponse>,
        asked: Mutex<Vec<String>>,
    }

    impl FakeWorker {
        fn new(pod: &'static str, answers: &[(&str, u16, Value)]) -> Self {
            FakeWorker {
                pod,
                answers: answers
                    .iter()
                    .map(|(k, status, body)| {
                        (k.to_string(), AdminResponse { status: *status, body: body.clone() })
                    })
                    .collect(),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl AdminTransport for FakeWorker {
        fn pod(&self) -> Option<&str> {
            Some(self.pod)
        }
        fn describe(&self) -> String {
            format!("pod {}", self.pod)
        }
        async fn send(
            &self,
            method: Method,
            path: &str,
            _body: Option<Value>,
        ) -> Result<AdminResponse, String> {
            let key = format!("{method} {path}");
            self.asked.lock().unwrap().push(key.clone());
            Ok(self.answers.get(&key).cloned().unwrap_or(AdminResponse {
                status: 404,
                body: json!({"error": "not_found", "message": "no such dead letter"}),
            }))
        }
    }

    fn entry(id: &str, at: &str) -> Value {
        json!({"id": id, "deadLetteredAt": at, "state": "pending", "reason": "status_400",
            "attempts": 1, "message": "refused"})
    }

    const LIST: &str = "GET /v1/dead-letters?state=pending&limit=100";

    #[tokio::test]
    async fn list_covers_every_pod_and_names_the_pod_of_each_entry() {
        let a = FakeWorker::new(
            "w-0",
            &[(LIST, 200, json!({"items": [entry("old", "2026-01-01T00:00:00Z")]}))],
        );
        let b = FakeWorker::new(
            "w-1",
            &[(LIST, 200, json!({"items": [entry("new", "2026-01-02T00:00:00Z")]}))],
        );
        let command = DlqCommand::List { all: false, limit: 100 };
        let mut out = Vec::new();
        run_dlq_command(&command, true, &[a, b], &mut out).await.unwrap();
        let items: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(items[0]["id"], "new", "newest first across pods");
        assert_eq!(items[0]["pod"], "w-1");
        assert_eq!(items[1]["pod"], "w-0");

        let a = FakeWorker::new(
            "w-0",
            &[(LIST, 200, json!({"items": [entry("old", "2026-01-01T00:00:00Z")]}))],
        );
        let mut table = Vec::new();
        run_dlq_command(&command, false, &[a], &mut table).await.unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.starts_with("POD "), "{table}");
        assert!(table.lines().nth(1).unwrap().starts_with("w-0 "), "{table}");
    }

    #[tokio::test]
    async fn show_and_replay_find_the_pod_that_holds_the_entry() {
        let a = FakeWorker::new("w-0", &[]);
        let b = FakeWorker::new(
            "w-1",
            &[
                ("GET /v1/dead-letters/x%201", 200, json!({"id": "x 1"})),
                ("POST /v1/dead-letters/x%201/replay", 200, json!({"id": "x 1", "eventId": "e-9"})),
            ],
        );
        let workers = [a, b];
        let mut out = Vec::new();
        run_dlq_command(&DlqCommand::Show { id: "x 1".into() }, false, &workers, &mut out)
            .await
            .unwrap();
        let shown: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(shown["pod"], "w-1");
        let mut out = Vec::new();
        let replay = DlqCommand::Replay { ids: vec!["x 1".into()], by: Some("alice".into()) };
        run_dlq_command(&replay, false, &workers, &mut out).await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "replayed x 1 on w-1 as event e-9 (by alice)\n"
        );
        assert_eq!(workers[0].asked.lock().unwrap().len(), 2, "the first pod was asked first");

        // A pod that cannot answer does not hide the entry on another.
        let starting = FakeWorker::new(
            "w-2",
            &[(
                "GET /v1/dead-letters/x%201",
                503,
                json!({"error": "not_ready", "message": "the dead-letter store is not open"}),
            )],
        );
        let again =
            FakeWorker::new("w-1", &[("GET /v1/dead-letters/x%201", 200, json!({"id": "x 1"}))]);
        let mut out = Vec::new();
        run_dlq_command(
            &DlqCommand::Show { id: "x 1".into() },
            false,
            &[starting, again],
            &mut out,
        )
        .await
        .unwrap();

        let missing = run_dlq_command(
            &DlqCommand::Show { id: "nope".into() },
            false,
            &workers,
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(
            missing.contains("dead letter nope not found (asked pod w-0, pod w-1)"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn a_refused_token_is_a_clear_401() {
        let refused =
            json!({"error": "unauthorized", "message": "a valid admin token is required"});
        let a = FakeWorker::new("w-0", &[(LIST, 401, refused)]);
        let error = run_dlq_command(
            &DlqCommand::List { all: false, limit: 100 },
            false,
            &[a],
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(error.starts_with("401 Unauthorized: a valid admin token is required"), "{error}");
    }
}
