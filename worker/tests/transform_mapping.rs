//! The CEL transform inside the running worker: the filter drops (and counts) events, the
//! field map reads body, headers, query and CloudEvents attributes, target conditions pick
//! targets, and a mapping error dead-letters that one event with the reason (durable mode).

mod runtime_support;

use runtime_support::*;

#[tokio::test]
async fn filter_field_map_and_mapping_errors_in_durable_mode() {
    let (sink, state) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{}source:
  type: webhook
  path: /events
  auth: {{type: none, toleranceSeconds: 300}}
  maxBodyBytes: 65536
transform:
  filter: "event.type != 'ping' && body.severity != 'debug'"
  fieldMap:
    id: "body.alert.id + '-' + query.env"
    title: "'[' + headers['x-team'] + '] ' + body.alert.title + ' (' + event.source + ')'"
{}"#,
        config_head("durable"),
        sink_target_yaml(sink, 1)
    );
    let config_path = dir.path().join("worker.yaml");
    std::fs::write(&config_path, config).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-tests").unwrap();
    let worker = WorkerProcess::start(
        &config_path,
        &dir.path().join("data"),
        &token,
        &dir.path().join("log"),
        &[],
    );
    worker.wait_live().await;
    let client = http_client();
    let send = |id: &str, ty: &str, body: serde_json::Value| {
        client
            .post(format!("http://{}/events?env=prod", worker.inbound))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "/monitoring")
            .header("ce-type", ty)
            .header("x-team", "noc")
            .json(&body)
            .send()
    };
    let good =
        serde_json::json!({"severity": "critical", "alert": {"id": "A1", "title": "disk full"}});
    assert_eq!(send("1", "alert", good).await.unwrap().status().as_u16(), 202);
    assert_eq!(send("2", "ping", serde_json::json!({})).await.unwrap().status().as_u16(), 202);
    assert_eq!(
        send("3", "alert", serde_json::json!({"severity": "debug"}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let unmappable = serde_json::json!({"severity": "critical", "alert": {"title": "no id"}});
    assert_eq!(send("4", "alert", unmappable).await.unwrap().status().as_u16(), 202);

    let status = worker
        .wait_status("all four handled", |st| {
            let c = &st["counters"];
            c["delivered"] == 1 && c["filtered"] == 2 && c["deadLettered"] == 1
        })
        .await;
    assert_eq!(status["lastFailure"]["reason"], "MappingFailed");
    assert!(status["lastFailure"]["message"].as_str().unwrap().contains("fieldMap.id"), "{status}");
    assert_eq!(state.received.lock().unwrap().keys().cloned().collect::<Vec<_>>(), ["A1-prod"]);
    let (ok, out, err) = dlq(&worker, &token, &["list", "--json"]);
    assert!(ok, "{err}");
    let items: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(items[0]["reason"], "mapping_failed");
    let metrics = http_client()
        .get(format!("http://{}/metrics", worker.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchboard_worker_filtered_total{integration=\"alerts\",namespace=\"ops\",owner_team=\"noc\"} 2"), "{metrics}");
    assert!(metrics.contains("reason=\"mapping_failed\"} 1"), "{metrics}");
}

#[tokio::test]
async fn an_invalid_expression_keeps_the_worker_not_ready_with_the_reason() {
    let (sink, _) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}source:\n  type: webhook\n  path: /events\n  auth: {{type: none, toleranceSeconds: 300}}\n  maxBodyBytes: 1024\ntransform:\n  filter: \"body.a.all(x, body.a.all(y, body.a.all(z, true)))\"\n{}",
        config_head("durable"),
        sink_target_yaml(sink, 1)
    );
    let config_path = dir.path().join("worker.yaml");
    std::fs::write(&config_path, config).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let worker = WorkerProcess::start(
        &config_path,
        &dir.path().join("data"),
        &token,
        &dir.path().join("log"),
        &[],
    );
    worker.wait_live().await;
    let (code, body) = worker.admin_json("/readyz").await;
    assert_eq!(code, 503);
    assert!(body["reason"].as_str().unwrap().contains("comprehensions nested 3 deep"), "{body}");
}
