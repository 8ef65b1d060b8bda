//! A database table as the target of a long-running webhook worker (the durable queue path):
//! events become rows, a repeated key updates its row, and the worker is ready with a
//! database target.

mod database_support;

use database_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_are_upserted_into_the_table() {
    postgres_sql("CREATE TABLE hook_tickets (id text PRIMARY KEY, title text NOT NULL)");
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{head}source:
  type: webhook
  path: /hook
  auth: {{type: none, toleranceSeconds: 300}}
  maxBodyBytes: 65536
transform:
  fieldMap:
    id: body.id
    title: body.title
  coalesceKeys: [id]
targets:
- name: tickets
  type: database
{connection}  table: hook_tickets
{creds}"#,
        head = config_head("tickets").replace("mode: synchronous", "mode: durable"),
        connection = postgres_connection_yaml("  "),
        creds = credentials_yaml(&dir),
    );
    let config_path = work.path().join("worker.yaml");
    std::fs::write(&config_path, config).unwrap();
    let token = work.path().join("token");
    std::fs::write(&token, "admin-token").unwrap();
    let mut worker = runtime_support::WorkerProcess::start(
        &config_path,
        &work.path().join("data"),
        &token,
        &work.path().join("worker.log"),
        &[],
    );
    worker.wait_live().await;
    let client = reqwest::Client::new();
    for (id, title) in [
        ("T-1", "disk full"),
        ("T-2", "x'); DROP TABLE hook_tickets; --"),
        ("T-1", "disk full again"),
    ] {
        let response = client
            .post(format!("http://{}/hook", worker.inbound))
            .json(&serde_json::json!({"id": id, "title": title}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let mut rows = String::new();
    for _ in 0..600 {
        rows = postgres_sql("SELECT id || '|' || title FROM hook_tickets ORDER BY id");
        if rows.contains("disk full again") && rows.contains("T-2") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, "T-1|disk full again\nT-2|x'); DROP TABLE hook_tickets; --");
    let (status, ready) = worker.admin_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    let log = std::fs::read_to_string(work.path().join("worker.log")).unwrap();
    assert!(!log.contains(CANARY_PASSWORD));
}
