//! `switchboard worker run-once` pulling a paginated REST source (page and cursor styles)
//! from a local server, through the transform, into the sink.

mod runtime_support;

use std::collections::BTreeMap;

use runtime_support::*;

/// A REST source with 7 incidents: `?page=N&limit=M` pages and `?cursor=C` cursors.
async fn start_source() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/api/incidents",
        axum::routing::get(|q: axum::extract::Query<BTreeMap<String, String>>| async move {
            let all: Vec<serde_json::Value> = (1..=7)
                .map(|i| serde_json::json!({"number": format!("INC{i:04}"), "short": format!("incident {i}"), "active": i != 3}))
                .collect();
            if let Some(cursor) = q.get("cursor") {
                let start: usize = if cursor.is_empty() { 0 } else { cursor.trim_start_matches('c').parse().unwrap() };
                let page: Vec<_> = all.iter().skip(start).take(3).cloned().collect();
                let next = (start + 3 < all.len()).then(|| format!("c{}", start + 3));
                return axum::Json(serde_json::json!({"result": page, "meta": {"next": next}}));
            }
            let page: usize = q.get("page").map(|p| p.parse().unwrap()).unwrap_or(1);
            let limit: usize = q.get("limit").map(|p| p.parse().unwrap()).unwrap_or(100);
            let items: Vec<_> = all.iter().skip((page - 1) * limit).take(limit).cloned().collect();
            axum::Json(serde_json::json!({"result": items}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(source: std::net::SocketAddr, sink: std::net::SocketAddr, pagination: &str) -> String {
    format!(
        r#"{}source:
  type: rest
  request:
    endpoint:
      name: itsm
      url: http://{source}
      protocol: rest
      timeoutMs: 5000
      retry: {{maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 50}}
      circuitBreaker: {{failureThreshold: 100, openForMs: 1000}}
    method: {{name: list, httpMethod: GET, path: /api/incidents}}
  recordsPointer: /result
  pagination: {pagination}
transform:
  filter: "body.active"
  fieldMap:
    id: body.number
    title: body.short
{}"#,
        config_head("durable"),
        sink_target_yaml(sink, 2)
    )
}

fn run_once(config_yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.yaml");
    std::fs::write(&path, config_yaml).unwrap();
    let termination = dir.path().join("termination");
    let out = std::process::Command::new(switchboard_bin())
        .args(["worker", "run-once", "--config"])
        .arg(&path)
        .arg("--termination-log")
        .arg(&termination)
        .output()
        .unwrap();
    std::fs::write(&termination, "").ok();
    let message = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_cursor_pagination_deliver_every_record_once() {
    let source = start_source().await;
    for pagination in [
        "{type: page, param: page, sizeParam: limit, pageSize: 3, maxPages: 10}",
        "{type: cursor, param: cursor, pageSize: 3, cursorPointer: /meta/next, maxPages: 10}",
    ] {
        let (sink, state) = start_sink().await;
        let yaml = config(source, sink, pagination);
        let (code, log) = tokio::task::spawn_blocking(move || run_once(&yaml)).await.unwrap();
        assert_eq!(code, 0, "{pagination}: {log}");
        assert!(
            log.contains("pulled 7 records from 3 page(s): 6 delivered, 1 filtered, 0 failed"),
            "{log}"
        );
        let received = state.received.lock().unwrap().clone();
        assert_eq!(received.len(), 6, "{received:?}");
        assert!(received.values().all(|n| *n == 1));
        assert!(!received.contains_key("INC0003"), "the filter dropped the inactive one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_limit_and_an_unreachable_source_are_reported() {
    let source = start_source().await;
    let (sink, state) = start_sink().await;
    let yaml = config(
        source,
        sink,
        "{type: page, param: page, sizeParam: limit, pageSize: 2, maxPages: 2}",
    );
    let (code, log) = tokio::task::spawn_blocking(move || run_once(&yaml)).await.unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("pulled 4 records from 2 page(s)"), "{log}");
    assert_eq!(state.received.lock().unwrap().len(), 3);
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = config(closed, sink, "{type: none, param: page, pageSize: 100, maxPages: 1}");
    let (code, log) = tokio::task::spawn_blocking(move || run_once(&yaml)).await.unwrap();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("page 1 of itsm.list failed"), "{log}");
}
