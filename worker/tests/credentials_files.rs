//! Credentials from mounted files: basic, bearer and API keys in every placement reach the
//! wire where they belong; rotated files are used from the next call; a missing file is an
//! error naming the credential and role; and a canary secret never appears in an outcome,
//! error or `Debug` output — even when the peer echoes it back in an error body.

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use support::{Reply, Sink, credential, outbound, rest_call, retry, vars, write_secret};
use switchboard_worker::config::{ApiKeyConfig, CredentialConfig, SecretRole};
use switchboard_worker::delivery::{DeliveryOutcome, FailureKind};
use switchboard_worker::outbound::http::HttpClients;

const CANARY: &str = "CANARY-s3cr3t-9d7e2b41";

fn assert_no_canary(texts: &[String]) {
    for text in texts {
        assert!(!text.contains(CANARY), "canary leaked: {text}");
        assert!(!text.contains(&CANARY[7..]), "canary leaked in part: {text}");
    }
}

fn api_key(dir: &std::path::Path, placement: &str, name: Option<&str>) -> CredentialConfig {
    let mut config = credential("apiKey", dir);
    config.api_key = Some(ApiKeyConfig { in_: placement.into(), name: name.map(Into::into) });
    config
}

#[tokio::test]
async fn basic_credentials_rotate_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "username", b"integration-user\n");
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.credential = Some("servicenow".into());
    let outbound =
        outbound(BTreeMap::from([("servicenow".to_string(), credential("basic", dir.path()))]));

    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.kind, FailureKind::Credential);
    assert!(
        failure.message.contains("\"servicenow\"")
            && failure.message.contains("password file is missing"),
        "{failure}"
    );
    assert_eq!(sink.count(), 0);

    write_secret(dir.path(), "password", format!("{CANARY}\n").as_bytes());
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    write_secret(dir.path(), "password", b"rotated\n");
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    let encode = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
    let seen: Vec<String> =
        sink.received().iter().map(|r| r.header("Authorization").unwrap().to_string()).collect();
    assert_eq!(
        seen,
        vec![encode(&format!("integration-user:{CANARY}")), encode("integration-user:rotated")]
    );
}

#[tokio::test]
async fn echoed_secrets_are_redacted_from_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "token", CANARY.as_bytes());
    let echo = format!(
        "<html>\r\nbad token: Bearer {CANARY}\r\nyou sent Authorization: Bearer {CANARY}</html>"
    );
    let sink = Sink::start(
        vec![Reply::body(503, "text/html", echo.clone())],
        Reply::body(401, "text/html", echo),
    )
    .await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.credential = Some("token".into());
    call.endpoint.retry = retry(3, 1, 1);
    let outbound =
        outbound(BTreeMap::from([("token".to_string(), credential("bearer", dir.path()))]));
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.status, Some(401));
    let excerpt = failure.excerpt.clone().unwrap();
    assert!(excerpt.contains("bad token: [REDACTED]"), "{excerpt}");
    assert_eq!(
        sink.received()[0].header("Authorization"),
        Some(format!("Bearer {CANARY}").as_str())
    );
    let credential = outbound.credentials().get("token").unwrap();
    assert_no_canary(&[
        format!("{outcome:?}"),
        failure.to_string(),
        format!("{outbound:?}"),
        format!("{:?}", outbound.credentials()),
        format!("{credential:?}"),
        format!("{:?}", credential.text(SecretRole::Token).unwrap()),
        format!("{:?}", credential.authorize(&HttpClients::new(Default::default())).await.unwrap()),
    ]);
}

#[tokio::test]
async fn api_keys_go_where_they_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "apiKey", format!("{CANARY}\n").as_bytes());
    let sink = Sink::always(202).await;
    let credentials = BTreeMap::from([
        ("header".to_string(), api_key(dir.path(), "header", Some("X-API-Key"))),
        ("query".to_string(), api_key(dir.path(), "query", Some("api_key"))),
        ("body".to_string(), api_key(dir.path(), "body", Some("routing_key"))),
    ]);
    let outbound = outbound(credentials);
    for name in ["header", "query", "body"] {
        let mut call = rest_call(&sink.url(), "/v2/enqueue");
        call.endpoint.credential = Some(name.into());
        assert!(outbound.deliver(&call, &vars(&[("v", "x")]), "d").await.is_delivered(), "{name}");
    }
    let received = sink.received();
    assert_eq!(received[0].header("X-API-Key"), Some(CANARY));
    assert_eq!(received[0].target(), "/v2/enqueue");
    assert_eq!(received[1].target(), format!("/v2/enqueue?api_key={CANARY}"));
    assert!(received[1].header("X-API-Key").is_none());
    let body: serde_json::Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(body, serde_json::json!({ "v": "x", "routing_key": CANARY }));
}

#[tokio::test]
async fn a_secret_url_rest_is_appended_and_kept_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rest = format!("/services/T0001/B0002/{CANARY}");
    write_secret(dir.path(), "apiKey", format!("{rest}\n").as_bytes());
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/");
    call.endpoint.credential = Some("slack".into());
    let outbound =
        outbound(BTreeMap::from([("slack".to_string(), api_key(dir.path(), "path", None))]));
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    assert_eq!(sink.received()[0].target(), rest);

    // A transport failure on that URL does not print it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    call.endpoint.url = format!("http://127.0.0.1:{port}");
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Exhausted { last, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(last.kind, FailureKind::Connect);
    assert_no_canary(&[format!("{outcome:?}"), last.to_string()]);

    // A rest that tries to leave the endpoint is refused.
    write_secret(dir.path(), "apiKey", b"//evil.example.com/x\n");
    call.endpoint.url = sink.url();
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert_eq!(outcome.failure().map(|f| f.kind), Some(FailureKind::Config), "{outcome:?}");
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn credential_values_must_be_one_line_of_text() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "token", format!("{CANARY}\r\nX-Injected: 1\n").as_bytes());
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.credential = Some("token".into());
    let outbound =
        outbound(BTreeMap::from([("token".to_string(), credential("bearer", dir.path()))]));
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Credential);
    assert!(failure.message.contains("token value is invalid"), "{failure}");
    assert_no_canary(&[format!("{outcome:?}")]);
    assert_eq!(sink.count(), 0);
}
