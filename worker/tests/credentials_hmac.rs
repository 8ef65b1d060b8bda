//! HMAC signing of outbound webhooks. Standard Webhooks signatures are verified by the
//! reference `standardwebhooks` package from PyPI (installed into `tests/peers/.venv` by
//! `tests/peers/install-python.sh`); the GitHub, Stripe and custom schemes are checked on the
//! bytes the sink received. The published Standard Webhooks and GitHub test vectors are unit
//! tests of `credentials::hmac`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use support::{Received, Reply, Sink, credential, outbound, rest_call, retry, vars, write_secret};
use switchboard_worker::config::HmacConfig;
use switchboard_worker::credentials::hmac::hmac_sha256;

/// A Standard Webhooks secret: `whsec_` and the base64 of the key.
const SECRET: &str = "whsec_c3dpdGNoYm9hcmQtdGVzdC1rZXktMDEyMzQ1Njc4OQ==";

fn verify_with_reference(secret: &str, request: &Received) -> Result<(), String> {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let installed = Command::new("bash").arg(peers.join("install-python.sh")).status().unwrap();
    assert!(installed.success(), "pip install of the test peers failed");
    let headers: BTreeMap<String, String> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .filter_map(|name| request.header(name).map(|v| (name.to_string(), v.to_string())))
            .collect();
    let input = serde_json::json!({
        "secret": secret,
        "headers": headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(&request.body),
    });
    let mut child = Command::new(peers.join(".venv/bin/python"))
        .arg(peers.join("verify_standard_webhooks.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && said == "verified" { Ok(()) } else { Err(said) }
}

fn hmac_credential(
    dir: &Path,
    scheme: &str,
    header: Option<&str>,
) -> switchboard_worker::config::CredentialConfig {
    let mut config = credential("hmac", dir);
    config.hmac = Some(HmacConfig { scheme: scheme.into(), header: header.map(Into::into) });
    config
}

#[tokio::test]
async fn standard_webhooks_signatures_verify_with_the_reference_library() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "secret", format!("{SECRET}\n").as_bytes());
    let sink = Sink::start(vec![Reply::status(503)], Reply::status(204)).await;
    let mut call = rest_call(&sink.url(), "/hooks/incident");
    call.endpoint.credential = Some("signing".into());
    call.endpoint.retry = retry(2, 1, 1);
    let outbound = outbound(BTreeMap::from([(
        "signing".to_string(),
        hmac_credential(dir.path(), "standardWebhooks", None),
    )]));
    let hostile = "quote \" backslash \\ newline \n unicode é";
    let outcome =
        outbound.deliver(&call, &vars(&[("v", hostile)]), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W").await;
    assert!(outcome.is_delivered(), "{outcome:?}");

    let received = sink.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.header("webhook-id"), Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"));
        assert_eq!(request.header("webhook-id"), request.header("Idempotency-Key"));
        assert!(request.header("webhook-signature").unwrap().starts_with("v1,"));
        verify_with_reference(SECRET, request).unwrap();
    }

    // The verifier really checks: another key or another body is rejected.
    assert!(
        verify_with_reference("whsec_b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXk=", &received[0])
            .is_err()
    );
    let mut tampered = received[0].clone();
    tampered.body.push(b' ');
    assert!(verify_with_reference(SECRET, &tampered).is_err());
}

#[tokio::test]
async fn github_stripe_and_custom_signatures_cover_the_sent_body() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "secret", b"plain-shared-secret\n");
    let sink = Sink::always(200).await;
    for (scheme, header) in [("github", None), ("stripe", None), ("custom", Some("X-Signature"))] {
        let mut call = rest_call(&sink.url(), "/hooks");
        call.endpoint.credential = Some("signing".into());
        let outbound = outbound(BTreeMap::from([(
            "signing".to_string(),
            hmac_credential(dir.path(), scheme, header),
        )]));
        assert!(outbound.deliver(&call, &vars(&[("v", scheme)]), "id-1").await.is_delivered());
    }
    let received = sink.received();
    let key = b"plain-shared-secret";

    let github = &received[0];
    let expected = format!("sha256={}", hex::encode(hmac_sha256(key, &[&github.body])));
    assert_eq!(github.header("X-Hub-Signature-256"), Some(expected.as_str()));

    let stripe = &received[1];
    let value = stripe.header("Stripe-Signature").unwrap();
    let (t, v1) = value.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    assert_eq!(v1, hex::encode(hmac_sha256(key, &[t.as_bytes(), b".", &stripe.body])));

    let custom = &received[2];
    assert_eq!(
        custom.header("X-Signature"),
        Some(hex::encode(hmac_sha256(key, &[&custom.body])).as_str())
    );
}
