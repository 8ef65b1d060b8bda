//! Versioned inbound API routes: each route with its own authentication (bearer, basic,
//! none), methods, path parameters that reach the stored event, and route-specific targets.

mod runtime_support;

use base64::Engine as _;
use runtime_support::*;

async fn api_server() -> Inbound {
    let dir = tempfile::tempdir().unwrap();
    let bearer =
        credential_dir(dir.path(), "api-token", &[("token", format!("{CANARY}\n").as_bytes())]);
    let basic = credential_dir(
        dir.path(),
        "api-basic",
        &[("username", b"svc-reporting"), ("password", CANARY.as_bytes())],
    );
    let config = format!(
        r#"{}source:
  type: api
  maxBodyBytes: 4096
  routes:
  - name: create-incident
    version: v1
    method: POST
    path: /incidents
    auth: {{type: bearer, credential: api-token, toleranceSeconds: 300}}
    targets: [servicenow]
  - name: update-incident
    version: v2
    method: PUT
    path: /incidents/{{number}}/notes/{{note}}
    auth: {{type: basic, credential: api-basic, toleranceSeconds: 300}}
  - name: ping
    version: v1
    method: GET
    path: /ping
    auth: {{type: none, toleranceSeconds: 300}}
credentials:
  api-token: {{type: bearer, directory: {}}}
  api-basic: {{type: basic, directory: {}}}
"#,
        config_head("durable"),
        bearer.display(),
        basic.display()
    );
    start_inbound(&config, dir).await
}

#[tokio::test]
async fn bearer_route_with_its_targets() {
    let server = api_server().await;
    let client = http_client();
    let url = format!("http://{}/v1/incidents?priority=2", server.addr);
    let r = client
        .post(&url)
        .bearer_auth(CANARY)
        .json(&serde_json::json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    for bad in ["wrong", &CANARY[..CANARY.len() - 1]] {
        let r = client.post(&url).bearer_auth(bad).body("{}").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(!r.text().await.unwrap().contains(CANARY));
    }
    let r = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The version is part of the route: v2 of this path does not exist.
    let r = client
        .post(format!("http://{}/v2/incidents", server.addr))
        .bearer_auth(CANARY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Wrong method.
    let r = client.get(&url).bearer_auth(CANARY).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let stored = server.queue.pending_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    let event = &stored[0].1;
    assert_eq!(event.route, "create-incident");
    assert_eq!(event.pending_targets, vec!["servicenow".to_string()]);
    assert_eq!(event.request.query["priority"], "2");
    assert!(!event.request.headers.contains_key("authorization"));
}

#[tokio::test]
async fn basic_route_with_path_parameters() {
    let server = api_server().await;
    let client = http_client();
    let url = format!("http://{}/v2/incidents/INC0012/notes/7", server.addr);
    let r = client
        .put(&url)
        .basic_auth("svc-reporting", Some(CANARY))
        .header("content-type", "application/xml")
        .body("<note><text>restarted</text></note>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r =
        client.put(&url).basic_auth("svc-reporting", Some("nope")).body("").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let garbage = base64::engine::general_purpose::STANDARD.encode("no-colon");
    let r =
        client.put(&url).header("authorization", format!("Basic {garbage}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Body limit of the API.
    let r = client
        .put(&url)
        .basic_auth("svc-reporting", Some(CANARY))
        .body(vec![b'x'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let stored = server.queue.pending_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    let params = &stored[0].1.request.params;
    assert_eq!(params["number"], "INC0012");
    assert_eq!(params["note"], "7");
    let metrics = server.metrics.encode();
    assert!(
        metrics.contains(r#"route="update-incident",reason="credentials_invalid"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="update-incident",reason="body_too_large"} 1"#), "{metrics}");
    assert!(!metrics.contains(CANARY));
}

#[tokio::test]
async fn unauthenticated_route_and_unknown_paths() {
    let server = api_server().await;
    let client = http_client();
    let r = client.get(format!("http://{}/v1/ping", server.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client.get(format!("http://{}/v1/nothing", server.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
