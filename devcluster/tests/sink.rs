//! The request sink answers like the systems it stands in for and records what it got,
//! without the secrets.

use devcluster::sink::{RECORDS_PATH, RequestSink, SinkConfig, SinkRule};
use serde_json::Value;

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), code.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_answers_plausibly_and_records_without_secrets() {
    let sink = RequestSink::start(SinkConfig::default()).await.unwrap();
    let url = sink.url();
    sink.add_rule(SinkRule {
        method: Some("POST".into()),
        path_prefix: "/acme.service-now.com/api/now/table/".into(),
        status: 201,
    });

    let (body, code) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            curl(&[
                "-d",
                "grant_type=client_credentials&client_id=app&client_secret=CANARY-1",
                &format!("{url}/acme.service-now.com/oauth_token.do"),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, "200");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 0);

    let (body, code) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            curl(&[
                "-H", "Authorization: Bearer CANARY-2", "-H", "Content-Type: application/json",
                "-d", r#"{"short_description":"disk full","api_key":"CANARY-3"}"#,
                &format!("{url}/acme.service-now.com/api/now/table/incident?sysparm_fields=number&token=CANARY-4"),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!((body.as_str(), code.as_str()), ("{}", "201"), "the rule's status");

    let (body, code) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            curl(&[
                "-H", "Content-Type: text/xml", "-H", "SOAPAction: urn:CloseDay",
                "-d", r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><b:CloseDay xmlns:b="urn:b"/></s:Body></s:Envelope>"#,
                &format!("{url}/billing.acme.example/soap"),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, "200");
    assert!(body.contains("CloseDayResponse") && body.contains("Envelope"), "{body}");

    let records = sink.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].answer, "oauth2-token");
    assert_eq!(records[1].path, "/acme.service-now.com/api/now/table/incident");
    assert_eq!(records[1].status, 201);
    assert!(records[1].body.contains("disk full"));
    assert_eq!(records[2].answer, "soap");
    let (listed, code) =
        tokio::task::spawn_blocking(move || curl(&[&format!("{url}{RECORDS_PATH}")]))
            .await
            .unwrap();
    assert_eq!(code, "200");
    for canary in ["CANARY-1", "CANARY-2", "CANARY-3", "CANARY-4"] {
        assert!(!listed.contains(canary), "{canary} leaked: {listed}");
        assert!(!format!("{records:?}").contains(canary));
    }
    sink.stop().await;
}
