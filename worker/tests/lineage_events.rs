//! OpenLineage run events of `switchboard worker run-once`, captured by a local HTTP sink:
//! START then COMPLETE for a good run, START then FAIL for a failing one, each with the job,
//! the datasets and the owner and classification facets; an unreachable lineage endpoint
//! does not fail the run.

mod database_support;

use std::sync::{Arc, Mutex};

use database_support::*;

type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// Serves `/files/people.json`, accepts `POST /sink` and records `POST /lineage` bodies.
async fn peer() -> (std::net::SocketAddr, Events) {
    let events: Events = Arc::default();
    let recorded = events.clone();
    let app = axum::Router::new()
        .route(
            "/files/people.json",
            axum::routing::get(|| async {
                r#"[{"id": "1", "name": "Ada"}, {"id": "2", "name": "Grace"}]"#
            }),
        )
        .route("/sink", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }))
        .route(
            "/lineage",
            axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(event);
                    axum::http::StatusCode::CREATED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, events)
}

fn config(peer: std::net::SocketAddr, file: &str, lineage_url: &str) -> String {
    format!(
        r#"{head}source:
  type: file
  fetch:
{endpoint_files}    method: {{name: download, httpMethod: GET, path: /files/{file}}}
  format: json
  maxBytes: 65536
  maxRejectedPercent: 0
transform:
  fieldMap:
    id: record.id
targets:
- name: directory
  type: outboundMessage
{endpoint_directory_api}  method:
    name: post
    httpMethod: POST
    path: /sink
    body: '{{"id": "${{id}}"}}'
    variables:
    - {{name: id, maxLength: 100}}
lineage:
  url: {lineage_url}
  namespace: acme-prod
"#,
        head = config_head("hr-import"),
        endpoint_files = endpoint_yaml("    ", "files", &format!("http://{peer}"), 5000),
        endpoint_directory_api =
            endpoint_yaml("  ", "directory-api", &format!("http://{peer}"), 5000),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_run_emits_start_then_complete_with_datasets_and_facets() {
    let (peer, events) = peer().await;
    let data = tempfile::tempdir().unwrap();
    let run =
        run_once(&config(peer, "people.json", &format!("http://{peer}/lineage")), data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    let events = events.lock().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["START", "COMPLETE"]);
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    let event = &events[1];
    assert_eq!(event["job"]["namespace"], "acme-prod");
    assert_eq!(event["job"]["name"], "hr-import");
    assert_eq!(event["job"]["facets"]["ownership"]["owners"][0]["name"], "team:hr-platform");
    assert_eq!(event["job"]["facets"]["switchboard"]["classification"], "pii");
    assert_eq!(event["inputs"][0]["namespace"], format!("http://{peer}"));
    assert_eq!(event["inputs"][0]["name"], "/files/people.json");
    assert_eq!(event["inputs"][0]["facets"]["dataSource"]["name"], "Workday");
    assert_eq!(event["outputs"][0]["name"], "/sink");
    assert_eq!(event["outputs"][0]["facets"]["dataSource"]["name"], "Directory");
    assert!(event["schemaURL"].as_str().unwrap().contains("openlineage.io/spec"));
    assert!(event["eventTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_emits_start_then_fail_with_the_error() {
    let (peer, events) = peer().await;
    let data = tempfile::tempdir().unwrap();
    let run =
        run_once(&config(peer, "missing.json", &format!("http://{peer}/lineage")), data.path());
    assert_eq!(run.code, 1, "{}", run.message);
    let events = events.lock().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["START", "FAIL"]);
    let message = events[1]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
    assert!(message.contains("FetchFailed") && message.contains("404"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_lineage_endpoint_does_not_fail_the_run() {
    let (peer, _) = peer().await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data = tempfile::tempdir().unwrap();
    let run =
        run_once(&config(peer, "people.json", &format!("http://{closed}/lineage")), data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    assert!(run.log.contains("OpenLineage event not accepted"), "{}", run.log);
}
