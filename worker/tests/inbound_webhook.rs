//! The webhook receiver against real peers on loopback: signatures from an independent
//! implementation (the `standardwebhooks` package) and from published examples, replay and
//! timestamp windows, body limits with and without Content-Length, malformed bodies,
//! CloudEvents, and a canary secret that no answer may contain.

mod runtime_support;

use std::sync::atomic::Ordering;

use runtime_support::*;

fn webhook_config(root: &std::path::Path, scheme: &str, secret: &str, max_body: u32) -> String {
    let dir = credential_dir(root, "hook", &[("secret", secret.as_bytes())]);
    format!(
        "{}source:\n  type: webhook\n  path: /hook\n  auth: {{type: signature, credential: hook, toleranceSeconds: 300}}\n  maxBodyBytes: {max_body}\ncredentials:\n  hook:\n    type: hmac\n    directory: {}\n    hmac: {{scheme: {scheme}}}\n",
        config_head("durable"),
        dir.display()
    )
}

async fn standard_server(max_body: u32) -> (Inbound, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = whsec(CANARY);
    let config = webhook_config(dir.path(), "standardWebhooks", &secret, max_body);
    (start_inbound(&config, dir).await, secret)
}

fn client() -> reqwest::Client {
    runtime_support::http_client()
}

async fn post_standard(
    addr: std::net::SocketAddr,
    id: &str,
    ts: i64,
    sig: &str,
    body: &'static [u8],
) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{addr}/hook"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn standard_webhooks_signed_by_the_reference_library_are_accepted_once() {
    let (server, secret) = standard_server(1 << 20).await;
    let body: &'static [u8] = br#"{"type":"invoice.paid","amount":42}"#;
    let ts = now();
    let sig = python_sign(&["standard", &secret, "msg_1", &ts.to_string()], body);
    let (status, answer) = post_standard(server.addr, "msg_1", ts, &sig, body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let id = answer["id"].as_str().expect("the answer names the stored event").to_string();
    // A replay inside the window is recognised by id and not stored again.
    let (status, answer) = post_standard(server.addr, "msg_1", ts, &sig, body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "duplicate");
    let stored = server.queue.pending_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.id, id);
    assert_eq!(stored[0].1.body, body);
    assert!(!stored[0].1.request.headers.contains_key("webhook-signature"));
    let c = server.queue.counters();
    assert_eq!(c.accepted.load(Ordering::Relaxed), 1);
    assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn rotation_several_signatures_one_valid() {
    let (server, secret) = standard_server(1 << 20).await;
    let body: &'static [u8] = br#"{"a":1}"#;
    let ts = now();
    let good = python_sign(&["standard", &secret, "msg_rot", &ts.to_string()], body);
    let old = python_sign(&["standard", &whsec("previous-key"), "msg_rot", &ts.to_string()], body);
    let header = format!("{old} {good}");
    let (status, _) = post_standard(server.addr, "msg_rot", ts, &header, body).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn bad_signatures_and_stale_timestamps_are_refused_with_precise_reasons() {
    let (server, secret) = standard_server(1 << 20).await;
    let body: &'static [u8] = br#"{"a":1}"#;
    let ts = now();
    let sig = python_sign(&["standard", &secret, "msg_2", &ts.to_string()], body);
    // Signed for another id.
    let (status, answer) = post_standard(server.addr, "msg_other", ts, &sig, body).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("signature_mismatch")));
    // Validly signed, but outside ±300 s, both ways. (The exact boundary is checked with an
    // injected clock in the unit tests; here the margin keeps slow signing from mattering.)
    for skew in [-400, 400] {
        let t = now() + skew;
        let sig = python_sign(&["standard", &secret, "msg_3", &t.to_string()], body);
        let (status, answer) = post_standard(server.addr, "msg_3", t, &sig, body).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("timestamp_out_of_window")));
    }
    // The specification's own example is correctly signed but years old.
    let spec = python_sign(
        &[
            "standard",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
        ],
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(spec, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let (status, answer) = post_standard(
        server.addr,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        &spec,
        br#"{"test": 2432232314}"#,
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("timestamp_out_of_window")));
    // Missing and malformed headers.
    let r = client().post(format!("http://{}/hook", server.addr)).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, answer) = post_standard(server.addr, "m", ts, "v1,***", body).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("signature_malformed")));
    assert!(server.queue.pending_after(0, 10).unwrap().is_empty());
    let metrics = server.metrics.encode();
    assert!(metrics.contains(r#"reason="timestamp_out_of_window"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"reason="signature_mismatch"} 1"#), "{metrics}");
    assert!(!metrics.contains(CANARY));
}

#[tokio::test]
async fn body_limit_with_and_without_content_length() {
    let (server, secret) = standard_server(1024).await;
    let big = vec![b'a'; 4096];
    // Declared length above the limit.
    let r = client()
        .post(format!("http://{}/hook", server.addr))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Chunked: no Content-Length, cut off while reading.
    let mut req = format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nwebhook-id: m\r\nwebhook-timestamp: {}\r\nwebhook-signature: v1,AAAA\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        now()
    )
    .into_bytes();
    for _ in 0..4 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'a'; 0x400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let addr = server.addr;
    let (status, text) = tokio::task::spawn_blocking(move || raw_http(addr, &req)).await.unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("body_too_large"));
    // A chunked body under the limit, correctly signed, passes.
    let body = br#"{"small":true}"#;
    let ts = now();
    let sig = python_sign(&["standard", &secret, "msg_chunk", &ts.to_string()], body);
    let mut req = format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nwebhook-id: msg_chunk\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, text) = tokio::task::spawn_blocking(move || raw_http(addr, &req)).await.unwrap();
    assert_eq!(status, 202, "{text}");
}

#[tokio::test]
async fn malformed_bodies_get_a_clear_400_after_verification() {
    let (server, secret) = standard_server(1 << 20).await;
    for (i, (ct, body, reason)) in [
        ("application/json", &b"{\"a\": tru"[..], "malformed_json"),
        ("application/xml", &b"<a><b></a>"[..], "malformed_xml"),
        (
            "application/xml",
            &b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>"[..],
            "malformed_xml",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("msg_bad_{i}");
        let ts = now();
        let sig = python_sign(&["standard", &secret, &id, &ts.to_string()], body);
        let r = client()
            .post(format!("http://{}/hook", server.addr))
            .header("content-type", ct)
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["error"], reason, "{answer}");
    }
    assert!(server.queue.pending_after(0, 10).unwrap().is_empty());
}

#[tokio::test]
async fn github_documented_signature_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(dir.path(), "github", "It's a Secret to Everybody", 1 << 20);
    let server = start_inbound(&config, dir).await;
    let r = client()
        .post(format!("http://{}/hook", server.addr))
        .header("content-type", "text/plain")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )
        .body("Hello, World!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client()
        .post(format!("http://{}/hook", server.addr))
        .header(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )
        .body("Hello, World?")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let stored = server.queue.pending_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].1.source_id.as_deref().unwrap().ends_with("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
}

#[tokio::test]
async fn stripe_scheme_with_its_timestamp_window() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("whsec_{CANARY}");
    let config = webhook_config(dir.path(), "stripe", &secret, 1 << 20);
    let server = start_inbound(&config, dir).await;
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    for (skew, expected) in [(0i64, 202u16), (-400, 401)] {
        let ts = (now() + skew).to_string();
        let header = python_sign(&["stripe", &secret, &ts], body);
        let r = client()
            .post(format!("http://{}/hook", server.addr))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expected);
    }
}

#[tokio::test]
async fn cloudevents_both_modes_and_dedup_on_source_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}source:\n  type: webhook\n  path: /events\n  auth: {{type: none, toleranceSeconds: 300}}\n  maxBodyBytes: 65536\n",
        config_head("durable")
    );
    let server = start_inbound(&config, dir).await;
    let url = format!("http://{}/events", server.addr);
    let binary = || {
        client()
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "e-1")
            .header("ce-source", "/billing")
            .header("ce-type", "invoice.paid")
            .header("content-type", "application/json")
            .body(r#"{"amount":5}"#)
    };
    assert_eq!(binary().send().await.unwrap().status().as_u16(), 202);
    assert_eq!(binary().send().await.unwrap().status().as_u16(), 200);
    // Structured, same id from another source: a different event.
    let structured = r#"{"specversion":"1.0","id":"e-1","source":"/crm","type":"contact.new","datacontenttype":"application/json","data":{"name":"Ada"}}"#;
    let r = client()
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(structured)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let stored = server.queue.pending_after(0, 10).unwrap();
    assert_eq!(stored.len(), 2);
    let (_, first) = &stored[0];
    assert_eq!(first.request.cloud_event.as_ref().unwrap()["type"], "invoice.paid");
    let (_, second) = &stored[1];
    assert_eq!(second.request.cloud_event.as_ref().unwrap()["source"], "/crm");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&second.body).unwrap(),
        serde_json::json!({"name":"Ada"})
    );
    // Missing required attribute.
    let r = client()
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "x")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn missing_credential_file_is_a_503_and_no_answer_leaks_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(dir.path(), "standardWebhooks", &whsec(CANARY), 1 << 20);
    let secret_file = dir.path().join("hook").join("secret");
    let server = start_inbound(&config, dir).await;
    std::fs::remove_file(&secret_file).unwrap();
    let r = client()
        .post(format!("http://{}/hook", server.addr))
        .header("webhook-id", "m")
        .header("webhook-timestamp", now().to_string())
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("credential_unavailable"), "{text}");
    // A rotated secret applies to the next request, without a restart.
    let rotated = whsec("rotated-key");
    std::fs::write(&secret_file, &rotated).unwrap();
    let body: &'static [u8] = b"{}";
    let ts = now();
    let sig = python_sign(&["standard", &rotated, "msg_rotated", &ts.to_string()], body);
    let (status, _) = post_standard(server.addr, "msg_rotated", ts, &sig, body).await;
    assert_eq!(status, 202);
    assert!(!server.metrics.encode().contains(CANARY));
}
