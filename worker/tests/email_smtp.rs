//! Email targets against a real SMTP server (aiosmtpd from PyPI, see `email_support`):
//! the received message (headers, body, AUTH, TLS), a Message-ID that stays the same when a
//! 451 is retried, STARTTLS required on smtp://, 5xx permanent, CR/LF refused in subjects,
//! the SSRF guard, and no password in any output.

mod email_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use email_support::{Pki, SmtpPeer};
use switchboard_worker::config::{
    CredentialConfig, EgressConfig, EmailTargetConfig, RetryConfig, SmtpConfig, TargetConfig,
    TargetKind, WorkerConfig,
};
use switchboard_worker::delivery::Outbound;
use switchboard_worker::email::smtp::EmailTarget;
use switchboard_worker::outbound::egress::EgressPolicy;

const USER: &str = "switchboard";
const CANARY: &str = "canary-smtp-9d41b7-password";

fn credentials(dir: &std::path::Path, password: &str) -> BTreeMap<String, CredentialConfig> {
    std::fs::write(dir.join("username"), USER).unwrap();
    std::fs::write(dir.join("password"), format!("{password}\n")).unwrap();
    BTreeMap::from([(
        "relay".to_string(),
        CredentialConfig {
            type_: "basic".into(),
            directory: dir.display().to_string(),
            api_key: None,
            oauth2: None,
            hmac: None,
        },
    )])
}

fn email_config(server: String, pki: &Pki, plaintext: bool, to: &str) -> EmailTargetConfig {
    EmailTargetConfig {
        smtp: SmtpConfig {
            server,
            credential: Some("relay".into()),
            insecure_allow_plaintext: plaintext,
            ca_file: Some(pki.ca_file().display().to_string()),
        },
        from: "Switchboard <switchboard@acme.example>".into(),
        to: vec![to.into(), "second@acme.example".into()],
        subject: "[${severity}] ${title} ✓".into(),
        body: "Alert ${title}\nline two\n.\nafter a lone dot\n".into(),
    }
}

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig { max_attempts, initial_backoff_ms: 10, max_backoff_ms: 50 }
}

fn loopback() -> EgressConfig {
    EgressConfig { allow_cidrs: vec!["127.0.0.0/8".into()] }
}

fn target(
    config: &EmailTargetConfig,
    dir: &std::path::Path,
    password: &str,
    attempts: u32,
) -> EmailTarget {
    let outbound = Outbound::from_parts(&credentials(dir, password), &loopback()).unwrap();
    EmailTarget::new(
        "notify",
        config,
        outbound,
        Arc::new(EgressPolicy::new(&loopback()).unwrap()),
        retry(attempts),
    )
    .unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn header<'a>(message: &'a mail_parser::Message<'a>, name: &str) -> String {
    message.header_raw(name).unwrap_or_default().trim().to_string()
}

#[tokio::test]
async fn implicit_tls_through_the_worker_deliverer_with_auth_and_a_stable_message_id() {
    let pki = Pki::new();
    let peer = SmtpPeer::start("implicit", &pki, USER, CANARY, 0).await;
    let dir = tempfile::tempdir().unwrap();
    // Through the runtime's deliverer, as a worker builds it from its config.
    let config = WorkerConfig::from_yaml(
        "apiVersion: worker.switchboard.dev/v1\nkind: WorkerConfig\n\
         subject: {kind: Integration, namespace: ops, name: mail}\n\
         owner: {team: noc, contact: noc@acme.example}\n\
         delivery: {mode: durable, retry: {maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 50}, deadLetterRetentionSeconds: 60, deadLetterMaxEntries: 10, concurrency: 1}\n\
         egress: {allowCidrs: [127.0.0.0/8]}\n"
    )
    .unwrap();
    let mut config = config;
    config.credentials = credentials(dir.path(), CANARY);
    config.targets = vec![TargetConfig {
        name: "notify".into(),
        when: None,
        kind: TargetKind::Email(email_config(
            format!("smtps://localhost:{}", peer.port),
            &pki,
            false,
            "oncall@acme.example",
        )),
    }];
    let deliverer = switchboard_worker::runtime::outbound::deliverer_for(&config).unwrap();
    let variables: BTreeMap<String, serde_json::Value> = [
        ("severity".to_string(), serde_json::json!("critical")),
        ("title".to_string(), serde_json::json!("disk full on db-1")),
    ]
    .into();
    let outcome = deliverer.deliver(&config.targets[0], &variables, "evt-42").await;
    assert!(outcome.delivered, "{outcome:?}");
    assert_eq!(outcome.attempts.len(), 1);

    let attempts = peer.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["login"], USER);
    assert_eq!(attempts[0]["tls"], true);
    assert_eq!(attempts[0]["mailFrom"], "switchboard@acme.example");
    assert_eq!(
        attempts[0]["rcptTos"],
        serde_json::json!(["oncall@acme.example", "second@acme.example"])
    );
    let raw = &peer.messages()[0];
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    assert_eq!(message.subject(), Some("[critical] disk full on db-1 ✓"));
    assert_eq!(
        message.from().unwrap().first().unwrap().address(),
        Some("switchboard@acme.example")
    );
    assert_eq!(header(&message, "Auto-Submitted"), "auto-generated");
    let sent_id = header(&message, "Message-ID");
    let sender = target(
        &email_config(format!("smtps://localhost:{}", peer.port), &pki, false, "x@acme.example"),
        dir.path(),
        CANARY,
        1,
    );
    assert_eq!(sent_id, sender.message_id("evt-42"), "derived from delivery id and target");
    assert!(sent_id.ends_with("@acme.example>"), "{sent_id}");
    let body = message.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(body.contains("Alert disk full on db-1\nline two\n.\nafter a lone dot"), "{body:?}");
}

#[tokio::test]
async fn a_451_is_retried_with_the_same_message_id() {
    let pki = Pki::new();
    let peer = SmtpPeer::start("starttls", &pki, USER, CANARY, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let sender = target(
        &email_config(
            format!("smtp://localhost:{}", peer.port),
            &pki,
            false,
            "oncall@acme.example",
        ),
        dir.path(),
        CANARY,
        3,
    );
    let outcome = sender.deliver(&vars(&[("severity", "warning"), ("title", "t")]), "evt-7").await;
    assert!(outcome.delivered, "{outcome:?}");
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(outcome.attempts[0].reason, "smtp_451");
    let attempts = peer.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["accepted"], false);
    assert_eq!(attempts[1]["accepted"], true);
    assert_eq!(attempts[0]["messageId"], attempts[1]["messageId"]);
    assert_eq!(attempts[1]["messageId"], outcome.message_id);
    assert_eq!(attempts[1]["tls"], true, "STARTTLS was used");
}

#[tokio::test]
async fn starttls_is_required_unless_plaintext_is_allowed() {
    let pki = Pki::new();
    let peer = SmtpPeer::start("plain", &pki, USER, CANARY, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!("smtp://localhost:{}", peer.port);
    let strict =
        target(&email_config(server.clone(), &pki, false, "a@acme.example"), dir.path(), CANARY, 3);
    let outcome = strict.deliver(&vars(&[("severity", "s"), ("title", "t")]), "evt-1").await;
    assert!(!outcome.delivered);
    assert_eq!(outcome.attempts.len(), 1, "a missing STARTTLS is permanent: {outcome:?}");
    assert_eq!(outcome.reason, "smtp_client", "{outcome:?}");
    assert!(peer.attempts().is_empty(), "nothing was sent in plaintext");

    let relaxed =
        target(&email_config(server, &pki, true, "a@acme.example"), dir.path(), CANARY, 1);
    let outcome = relaxed.deliver(&vars(&[("severity", "s"), ("title", "t")]), "evt-2").await;
    assert!(outcome.delivered, "{outcome:?}");
    assert_eq!(peer.attempts()[0]["tls"], false);
}

#[tokio::test]
async fn a_5xx_is_permanent_and_injection_and_egress_are_refused() {
    let pki = Pki::new();
    let peer = SmtpPeer::start("implicit", &pki, USER, CANARY, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!("smtps://127.0.0.1:{}", peer.port);
    let rejecting = target(
        &email_config(server.clone(), &pki, false, "reject@acme.example"),
        dir.path(),
        CANARY,
        5,
    );
    let outcome = rejecting.deliver(&vars(&[("severity", "s"), ("title", "t")]), "evt-1").await;
    assert!(!outcome.delivered);
    assert_eq!(outcome.attempts.len(), 1, "5xx is not retried: {outcome:?}");
    assert!(outcome.reason.starts_with("smtp_5"), "{outcome:?}");

    let sender =
        target(&email_config(server.clone(), &pki, false, "a@acme.example"), dir.path(), CANARY, 5);
    let injected = vars(&[("severity", "s"), ("title", "x\r\nBcc: victim@evil.example")]);
    let outcome = sender.deliver(&injected, "evt-2").await;
    assert!(!outcome.delivered);
    assert!(outcome.attempts.is_empty(), "refused before any connection: {outcome:?}");
    assert_eq!(outcome.reason, "template");
    let missing = sender.deliver(&vars(&[("severity", "s")]), "evt-3").await;
    assert_eq!(missing.reason, "template", "{missing:?}");

    // Without the allow-list, loopback is refused by the SSRF guard.
    let outbound =
        Outbound::from_parts(&credentials(dir.path(), CANARY), &EgressConfig::default()).unwrap();
    let guarded = EmailTarget::new(
        "notify",
        &email_config(server, &pki, false, "a@acme.example"),
        outbound,
        Arc::new(EgressPolicy::default()),
        retry(3),
    )
    .unwrap();
    let outcome = guarded.deliver(&vars(&[("severity", "s"), ("title", "t")]), "evt-4").await;
    assert_eq!((outcome.delivered, outcome.reason.as_str()), (false, "egress"), "{outcome:?}");
    assert_eq!(peer.attempts().len(), 0);
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let pki = Pki::new();
    let peer = SmtpPeer::start("implicit", &pki, USER, "the-right-password", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let sender = target(
        &email_config(format!("smtps://localhost:{}", peer.port), &pki, false, "a@acme.example"),
        dir.path(),
        CANARY,
        3,
    );
    let outcome = sender.deliver(&vars(&[("severity", "s"), ("title", "t")]), "evt-1").await;
    assert!(!outcome.delivered);
    assert_eq!(outcome.attempts.len(), 1, "535 is permanent: {outcome:?}");
    let everything = format!("{outcome:?} {sender:?} {}", outcome.message);
    assert!(!everything.contains(CANARY), "{everything}");
    assert!(peer.attempts().is_empty());
}
