//! Database pulls with a watermark through `switchboard worker run-once`, from a real
//! PostgreSQL server into a local HTTP sink: a second run reads only the new rows, a run
//! killed in the middle skips nothing when run again, and the recorded watermark never moves
//! back.

mod database_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use database_support::*;

#[derive(Default)]
struct Sink {
    received: Mutex<BTreeMap<String, u32>>,
    requests: AtomicUsize,
    /// Once this many requests were answered, further requests hang (the run gets stuck).
    hang_after: AtomicUsize,
    hanging: AtomicBool,
}

async fn start_sink() -> (std::net::SocketAddr, Arc<Sink>) {
    let sink = Arc::new(Sink { hang_after: AtomicUsize::new(usize::MAX), ..Sink::default() });
    let s = sink.clone();
    let app = axum::Router::new().route(
        "/customers",
        axum::routing::post(move |body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let n = s.requests.fetch_add(1, Ordering::SeqCst);
                if n >= s.hang_after.load(Ordering::SeqCst) {
                    s.hanging.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = v["id"].as_str().unwrap_or_default().to_string();
                *s.received.lock().unwrap().entry(id).or_default() += 1;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, sink)
}

fn pull_config(sink: std::net::SocketAddr, creds: &std::path::Path) -> String {
    format!(
        r#"{head}source:
  type: database
{connection}  query: >-
    SELECT id, name, updated_at FROM pull_customers
    WHERE updated_at > :watermark ORDER BY updated_at
  watermark: {{column: updated_at, initial: "2026-01-01T00:00:00Z"}}
  batchSize: 2
transform:
  filter: "record.name != ''"
  fieldMap:
    id: string(record.id)
    name: record.name
targets:
- name: crm
  type: outboundMessage
{endpoint_crm}  method:
    name: upsert
    httpMethod: POST
    path: /customers
    contentType: application/json
    body: '{{"id": "${{id}}", "name": "${{name}}"}}'
    variables:
    - {{name: id, maxLength: 100}}
    - {{name: name, maxLength: 100}}
{creds}"#,
        head = config_head("crm-sync"),
        endpoint_crm = endpoint_yaml("  ", "crm", &format!("http://{sink}"), 60000),
        connection = postgres_connection_yaml("  "),
        creds = credentials_yaml(creds),
    )
}

/// Rows `from..=to`, updated one second apart; rows 5 and 6 share a timestamp, so that a
/// batch boundary can fall between equal values.
fn add_rows(from: u32, to: u32) {
    postgres_sql(&format!(
        "INSERT INTO pull_customers (id, name, updated_at) SELECT i, 'customer ' || i, \
         timestamptz '2026-03-01T00:00:00.000001Z' + make_interval(secs => CASE WHEN i = 6 THEN 5 ELSE i END) \
         FROM generate_series({from}, {to}) AS i"
    ));
}

fn watermark(data: &std::path::Path) -> Option<String> {
    run_state(data)["watermark"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_resume_after_the_watermark_and_a_crash_skips_nothing() {
    postgres_sql(
        "CREATE TABLE pull_customers (id integer PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL)",
    );
    add_rows(1, 7);
    let (sink, state) = start_sink().await;
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let data = tempfile::tempdir().unwrap();
    let config = pull_config(sink, &dir);

    // First run: every row, once; the watermark is the greatest updated_at.
    let run = run_once(&config, data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    assert!(run.message.starts_with("Succeeded: read 7, created 7"), "{}", run.message);
    assert_eq!(state.received.lock().unwrap().len(), 7);
    let first = watermark(data.path()).unwrap();
    assert_eq!(first, "2026-03-01T00:00:07.000001Z");

    // Second run with two new rows: only those.
    add_rows(8, 9);
    let run = run_once(&config, data.path());
    assert_eq!(run.code, 0, "{}", run.message);
    assert!(run.message.starts_with("Succeeded: read 2, created 2"), "{}", run.message);
    assert!(
        state.received.lock().unwrap().values().all(|n| *n == 1),
        "{:?}",
        state.received.lock().unwrap()
    );
    let second = watermark(data.path()).unwrap();
    assert_eq!(second, "2026-03-01T00:00:09.000001Z");

    // A crash in the middle: five new rows, the sink hangs after two of them, the process is
    // killed while it waits.
    add_rows(10, 14);
    state.hang_after.store(state.requests.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
    let (mut cmd, _) = run_once_command(&config, data.path());
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.hanging.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the run never reached the hanging sink");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_crash = watermark(data.path()).unwrap();
    // Rows 10 and 11 (one batch) were delivered and recorded; row 12 was in flight.
    assert!(after_crash.as_str() >= second.as_str(), "{after_crash} < {second}");
    assert!(after_crash.as_str() < "2026-03-01T00:00:12", "{after_crash} skips row 12");

    // Run again: the rest arrives; duplicates are allowed, gaps are not.
    state.hang_after.store(usize::MAX, Ordering::SeqCst);
    let run = run_once(&config, data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    let received = state.received.lock().unwrap().clone();
    for id in 1..=14 {
        assert!(received.contains_key(&id.to_string()), "row {id} was skipped: {received:?}");
    }
    let last = watermark(data.path()).unwrap();
    assert_eq!(last, "2026-03-01T00:00:14.000001Z");
    assert!(last >= after_crash);
    for output in [&run.message, &run.log, &run_state(data.path()).to_string()] {
        assert!(!output.contains(CANARY_PASSWORD), "password leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_query_fails_rather_than_skipping() {
    postgres_sql(
        "CREATE TABLE pull_unordered (id integer PRIMARY KEY, name text, updated_at timestamptz)",
    );
    postgres_sql(
        "INSERT INTO pull_unordered VALUES (1, 'a', '2026-03-01T00:00:03Z'), (2, 'b', '2026-03-01T00:00:01Z'), (3, 'c', '2026-03-01T00:00:02Z')",
    );
    let (sink, _) = start_sink().await;
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let config = pull_config(sink, &dir)
        .replace("FROM pull_customers", "FROM pull_unordered")
        .replace("ORDER BY updated_at", "ORDER BY id");
    let data = tempfile::tempdir().unwrap();
    let run = run_once(&config, data.path());
    assert_eq!(run.code, 1, "{}", run.message);
    assert!(run.message.contains("ORDER BY updated_at"), "{}", run.message);
    assert_eq!(watermark(data.path()), None);
}
