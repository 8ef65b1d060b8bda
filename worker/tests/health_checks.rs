//! Synthetic health checks against loopback servers: an HTTP target going down and up, HEAD
//! refused and OPTIONS used, an OAuth2 token endpoint (oauth2-mock-server) going away,
//! server and client certificates near expiry (rcgen), probes and their expected statuses,
//! the mail servers (Dovecot, aiosmtpd), and the worker process serving the results on
//! `/status` and `/metrics`. Rounds are run on demand (or polled with a bound); nothing
//! asserts on elapsed time.

mod email_support;
mod support;

use email_support::runtime_support;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use email_support::Pki;
use email_support::tls_support::https_server;
use switchboard_worker::config::WorkerConfig;
use switchboard_worker::delivery::{CircuitState, Outbound};
use switchboard_worker::health::HealthChecker;
use switchboard_worker::runtime::metrics::Metrics;
use switchboard_worker::status::HealthCheckStatus;

/// An HTTP server answering every request with the current status; HEAD gets 405 while
/// `head_refused` is set.
struct Controlled {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    head_refused: Arc<std::sync::atomic::AtomicBool>,
}

async fn controlled(status: u16) -> Controlled {
    let state = Arc::new(AtomicU16::new(status));
    let head_refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, h) = (state.clone(), head_refused.clone());
    let app = axum::Router::new().fallback(move |method: axum::http::Method| {
        let (s, h) = (s.clone(), h.clone());
        async move {
            if method == axum::http::Method::HEAD && h.load(Ordering::SeqCst) {
                return axum::http::StatusCode::METHOD_NOT_ALLOWED;
            }
            axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Controlled { addr, status: state, head_refused }
}

fn endpoint(name: &str, url: &str, extra: &str) -> String {
    format!(
        "endpoint: {{name: {name}, url: '{url}', protocol: rest, timeoutMs: 2000, \
         retry: {{maxAttempts: 1, initialBackoffMs: 10, maxBackoffMs: 10}}, \
         circuitBreaker: {{failureThreshold: 1, openForMs: 600000}}{extra}}}"
    )
}

fn http_target(name: &str, url: &str, extra: &str) -> String {
    format!(
        "- name: {name}\n  type: outboundMessage\n  {}\n  method: {{name: post, httpMethod: POST, path: /items}}\n",
        endpoint(name, url, extra)
    )
}

fn config(targets: &str, tail: &str, checks: &str) -> WorkerConfig {
    let text = format!(
        "apiVersion: worker.switchboard.dev/v1\nkind: WorkerConfig\n\
         subject: {{kind: Integration, namespace: ops, name: checked}}\n\
         owner: {{team: noc, contact: noc@acme.example}}\n\
         delivery: {{mode: durable, retry: {{maxAttempts: 1, initialBackoffMs: 10, maxBackoffMs: 10}}, deadLetterRetentionSeconds: 60, deadLetterMaxEntries: 10, concurrency: 1}}\n\
         egress: {{allowCidrs: [127.0.0.0/8]}}\n\
         healthChecks: {{intervalMs: 200, timeoutMs: 2000, certificateExpiryWarningSeconds: 1814400, {checks}}}\n\
         targets:\n{targets}{tail}"
    );
    WorkerConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn checker(config: &WorkerConfig) -> (HealthChecker, Outbound, Arc<Metrics>) {
    let outbound = Outbound::new(config).unwrap();
    let metrics = Arc::new(Metrics::for_config(config));
    let checker = HealthChecker::new(config, outbound.clone())
        .unwrap()
        .unwrap()
        .with_metrics(metrics.clone());
    (checker, outbound, metrics)
}

/// A `switchboard worker` process serving `config`, with its files in `dir`, once live.
async fn worker_process(
    dir: &std::path::Path,
    config: &WorkerConfig,
) -> runtime_support::WorkerProcess {
    let config_path = dir.join("worker.yaml");
    std::fs::write(&config_path, config.to_yaml()).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "admin-token").unwrap();
    let worker = runtime_support::WorkerProcess::start(
        &config_path,
        &dir.join("data"),
        &token,
        &dir.join("worker.log"),
        &[],
    );
    worker.wait_live().await;
    worker
}

fn find<'a>(statuses: &'a [HealthCheckStatus], name: &str) -> &'a HealthCheckStatus {
    statuses
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {statuses:#?}"))
}

#[tokio::test]
async fn an_http_target_going_down_and_up_flips_its_check_and_never_its_circuit() {
    let server = controlled(404).await;
    let dead = SocketAddr::from(([127, 0, 0, 1], runtime_support::free_port()));
    let targets = format!(
        "{}{}",
        http_target("sink", &format!("http://{}/api", server.addr), ""),
        http_target("gone", &format!("http://{dead}"), "")
    );
    let config = config(&targets, "", "targets: true, credentials: false");
    let (checker, outbound, metrics) = checker(&config);
    let call = match &config.targets[0].kind {
        switchboard_worker::config::TargetKind::OutboundMessage(call) => call.clone(),
        _ => unreachable!(),
    };

    let round = checker.run_round().await;
    let sink = find(&round, "target:sink");
    assert_eq!((sink.status.as_str(), sink.reason.as_str()), ("True", "Reachable"), "{sink:?}");
    assert!(sink.message.contains("HEAD answered HTTP 404"), "{}", sink.message);
    let gone = find(&round, "target:gone");
    assert_eq!((gone.status.as_str(), gone.reason.as_str()), ("False", "Unreachable"), "{gone:?}");
    let first_transition = sink.last_transition_time;

    server.status.store(503, Ordering::SeqCst);
    let round = checker.run_round().await;
    let sink = find(&round, "target:sink");
    assert_eq!((sink.status.as_str(), sink.reason.as_str()), ("False", "ServerError"), "{sink:?}");
    assert!(metrics.encode().contains("check=\"target:sink\"} 0"), "{}", metrics.encode());
    assert_eq!(outbound.circuit_state(&call), CircuitState::Closed, "checks never trip breakers");

    server.status.store(200, Ordering::SeqCst);
    server.head_refused.store(true, Ordering::SeqCst);
    let round = checker.run_round().await;
    let sink = find(&round, "target:sink");
    assert_eq!(sink.status, "True", "{sink:?}");
    assert!(sink.message.contains("OPTIONS answered HTTP 200"), "{}", sink.message);
    assert!(sink.last_transition_time > first_transition);
    let text = metrics.encode();
    assert!(text.contains("switchboard_worker_health_check{integration=\"checked\",namespace=\"ops\",owner_team=\"noc\",check=\"target:sink\"} 1"), "{text}");
    assert!(
        !text.contains("switchboard_outbound_attempts"),
        "checks count no delivery metric: {text}"
    );
}

#[tokio::test]
async fn an_oauth2_token_endpoint_that_goes_away_shows_false() {
    let peer = support::OAuth2Peer::start("worker", "canary-health-client-secret").await;
    let resource = controlled(200).await;
    let creds = tempfile::tempdir().unwrap();
    support::write_secret(creds.path(), "clientId", b"worker");
    support::write_secret(creds.path(), "clientSecret", b"canary-health-client-secret");
    let tail = format!(
        "credentials:\n  oauth: {{type: oauth2ClientCredentials, directory: {}, oauth2: {{tokenUrl: '{}', authStyle: basic, refreshSkewSeconds: 60}}}}\n",
        creds.path().display(),
        peer.token_url
    );
    let targets = http_target("api", &format!("http://{}", resource.addr), ", credential: oauth");
    let config = config(&targets, &tail, "targets: false, credentials: true");
    let (checker, _, _) = checker(&config);
    let round = checker.run_round().await;
    let token = find(&round, "token:oauth");
    assert_eq!(
        (token.status.as_str(), token.reason.as_str()),
        ("True", "TokenIssued"),
        "{token:?}"
    );
    assert_eq!(peer.counts().await.0, 1);
    checker.run_round().await;
    assert_eq!(peer.counts().await.0, 1, "a valid cached token needs no request");

    drop(peer);
    // Step past the token's expiry so that the next check must reach the endpoint.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    tokio::time::resume();
    let mut last = None;
    for _ in 0..50 {
        let round = checker.run_round().await;
        let token = find(&round, "token:oauth").clone();
        if token.status == "False" {
            last = Some(token);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = last.expect("the check turns False once the endpoint is gone");
    assert_eq!(token.reason, "TokenEndpointUnreachable", "{token:?}");
    assert!(!token.message.contains("canary-health-client-secret"), "{}", token.message);
}

#[tokio::test]
async fn certificates_near_expiry_are_false_with_their_date() {
    let pki = Pki::new();
    let (soon_cert, soon_key) = pki.server("soon", 2);
    let (fine_cert, fine_key) = pki.server("fine", 90);
    let soon = https_server(&soon_cert, &soon_key).await;
    let fine = https_server(&fine_cert, &fine_key).await;
    let ca = pki.ca_file().display().to_string();
    let client = tempfile::tempdir().unwrap();
    let (cert, key) = pki.issue(&["worker-client"], 5);
    std::fs::write(client.path().join("certificate"), cert).unwrap();
    std::fs::write(client.path().join("privateKey"), key).unwrap();
    let targets = format!(
        "{}{}",
        http_target("soon", &format!("https://{soon}"), &format!(", caFile: {ca}")),
        http_target("fine", &format!("https://{fine}"), &format!(", caFile: {ca}"))
    );
    let tail =
        format!("credentials:\n  client: {{type: mtls, directory: {}}}\n", client.path().display());
    let config = config(&targets, &tail, "targets: true, credentials: true");
    let (checker, _, metrics) = checker(&config);
    let round = checker.run_round().await;

    assert_eq!(find(&round, "target:soon").status, "True", "{round:#?}");
    let expiring = find(&round, &format!("certificate:{soon}"));
    assert_eq!(
        (expiring.status.as_str(), expiring.reason.as_str()),
        ("False", "CertificateExpiringSoon"),
        "{expiring:?}"
    );
    let not_after = expiring.not_after.expect("the date is reported");
    let left = not_after - chrono::Utc::now();
    assert!(left > chrono::Duration::zero() && left <= chrono::Duration::days(3), "{not_after}");
    assert!(
        expiring.message.contains(&not_after.format("%Y-%m-%d").to_string()),
        "{}",
        expiring.message
    );
    let valid = find(&round, &format!("certificate:{fine}"));
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "CertificateValid"),
        "{valid:?}"
    );
    let client = find(&round, "clientCertificate:client");
    assert_eq!(
        (client.status.as_str(), client.reason.as_str()),
        ("False", "CertificateExpiringSoon"),
        "{client:?}"
    );
    assert!(client.not_after.is_some());
    let text = metrics.encode();
    let line = format!(
        "switchboard_worker_certificate_expiry_timestamp_seconds{{integration=\"checked\",namespace=\"ops\",owner_team=\"noc\",check=\"certificate:{soon}\"}} {}",
        not_after.timestamp()
    );
    assert!(text.contains(&line), "{line}\n{text}");
}

#[tokio::test]
async fn probes_pass_on_their_expected_statuses_only() {
    let server = controlled(204).await;
    let url = format!("http://{}", server.addr);
    let probe = |name: &str, expected: &str| {
        format!(
            "{{name: {name}, call: {{{}, method: {{name: status, httpMethod: GET, path: /status, expectedStatuses: [{expected}]}}}}}}",
            endpoint("status-api", &url, "")
        )
    };
    let checks = format!(
        "targets: false, credentials: false, probes: [{}, {}]",
        probe("no-content", "204"),
        probe("ok-only", "200")
    );
    let config = config(&http_target("sink", &url, ""), "", &checks);
    let (checker, _, _) = checker(&config);
    let round = checker.run_round().await;
    assert_eq!(round.len(), 2, "only the probes: {round:#?}");
    let ok = find(&round, "probe:no-content");
    assert_eq!((ok.status.as_str(), ok.reason.as_str()), ("True", "ProbeSucceeded"), "{ok:?}");
    let bad = find(&round, "probe:ok-only");
    assert_eq!((bad.status.as_str(), bad.reason.as_str()), ("False", "ProbeFailed"), "{bad:?}");
    assert!(bad.message.contains("204"), "{}", bad.message);
}

#[tokio::test]
async fn mail_servers_are_checked_with_their_certificates() {
    let pki = Pki::new();
    let dovecot = email_support::Dovecot::start(&pki, "intake", "canary-health-imap", 10).await;
    let smtp =
        email_support::SmtpPeer::start("starttls", &pki, "relay", "canary-health-smtp", 0).await;
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("username"), "relay").unwrap();
    std::fs::write(creds.path().join("password"), "canary-health-smtp").unwrap();
    let ca = pki.ca_file().display().to_string();
    let targets = format!(
        "- name: mail\n  type: email\n  smtp: {{server: 'smtp://localhost:{}', credential: relay, caFile: {ca}}}\n  from: a@acme.example\n  to: [b@acme.example]\n  subject: s\n  body: b\n",
        smtp.port
    );
    let tail = format!(
        "source: {{type: imap, server: '{}', credential: relay, mailbox: INBOX, afterProcessing: markSeen, maxMessages: 5, caFile: {ca}}}\n\
         credentials:\n  relay: {{type: basic, directory: {}}}\n",
        dovecot.url(),
        creds.path().display()
    );
    let config = config(&targets, &tail, "targets: true, credentials: true");
    let (checker, _, _) = checker(&config);
    let round = checker.run_round().await;
    let imap = find(&round, "source:imap");
    assert_eq!(imap.status, "True", "{imap:?}");
    let imap_certificate = find(&round, &format!("certificate:127.0.0.1:{}", dovecot.port));
    assert_eq!(
        imap_certificate.reason, "CertificateExpiringSoon",
        "10 days is inside 21: {imap_certificate:?}"
    );
    let mail = find(&round, "target:mail");
    assert_eq!(mail.status, "True", "{mail:?}");
    let smtp_certificate = find(&round, &format!("certificate:localhost:{}", smtp.port));
    assert_eq!(smtp_certificate.reason, "CertificateValid", "{smtp_certificate:?}");
    assert!(smtp.attempts().is_empty(), "a check sends no mail");
    let all = format!("{round:?}");
    assert!(!all.contains("canary-health"), "{all}");
}

#[tokio::test]
async fn the_worker_serves_its_checks_on_status_and_metrics() {
    let server = controlled(200).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &http_target("sink", &format!("http://{}", server.addr), ""),
        "",
        "targets: true, credentials: false",
    );
    let worker = worker_process(dir.path(), &config).await;
    let check = |status: &'static str| {
        move |doc: &serde_json::Value| {
            doc["healthChecks"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "target:sink" && c["status"] == status)
        }
    };
    let doc = worker.wait_status("target:sink True", check("True")).await;
    let entry = doc["healthChecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "target:sink")
        .unwrap()
        .clone();
    assert_eq!(entry["reason"], "Reachable");
    assert!(entry["lastChecked"].is_string() && entry["lastTransitionTime"].is_string(), "{entry}");
    assert_eq!(doc["ready"], true, "checks do not change readiness");

    server.status.store(502, Ordering::SeqCst);
    worker.wait_status("target:sink False", check("False")).await;
    let metrics = runtime_support::http_client()
        .get(format!("http://{}/metrics", worker.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("check=\"target:sink\"} 0"), "{metrics}");
}

/// Issue 7's acceptance, worker side: a real worker process checks an HTTPS target whose
/// certificate (rcgen) expires inside the warning window, and an OAuth2 credential whose token
/// URL refuses connections; `/status` names both failures, and no secret reaches `/status`
/// or the log.
#[tokio::test]
async fn the_worker_reports_an_expiring_certificate_and_an_unreachable_token_endpoint() {
    let pki = Pki::new();
    let (cert, key) = pki.server("billing", 3);
    let billing = https_server(&cert, &key).await;
    let refused = SocketAddr::from(([127, 0, 0, 1], runtime_support::free_port()));
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("billing-oauth");
    std::fs::create_dir(&creds).unwrap();
    support::write_secret(&creds, "clientId", b"canary-status-client-id");
    support::write_secret(&creds, "clientSecret", b"canary-status-client-secret");
    let tail = format!(
        "credentials:\n  billing-oauth: {{type: oauth2ClientCredentials, directory: {}, oauth2: {{tokenUrl: 'http://{refused}/oauth/token', authStyle: basic, refreshSkewSeconds: 60}}}}\n",
        creds.display()
    );
    let ca = pki.ca_file().display().to_string();
    let targets = http_target("billing", &format!("https://{billing}"), &format!(", caFile: {ca}"));
    let config = config(&targets, &tail, "targets: true, credentials: true");
    let worker = worker_process(dir.path(), &config).await;

    let certificate = format!("certificate:{billing}");
    let failing = |name: &str, doc: &serde_json::Value| {
        doc["healthChecks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name && c["status"] == "False")
            .cloned()
    };
    let doc = worker
        .wait_status("both checks False", |doc| {
            failing(&certificate, doc).is_some() && failing("token:billing-oauth", doc).is_some()
        })
        .await;

    let expiring = failing(&certificate, &doc).unwrap();
    assert_eq!(expiring["reason"], "CertificateExpiringSoon", "{expiring}");
    let not_after: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(expiring["notAfter"].clone()).expect("notAfter is reported");
    let left = not_after - chrono::Utc::now();
    assert!(left > chrono::Duration::zero() && left <= chrono::Duration::days(3), "{not_after}");
    assert!(expiring["consecutiveFailures"].as_u64() >= Some(1), "{expiring}");

    let token_check = failing("token:billing-oauth", &doc).unwrap();
    assert_eq!(token_check["reason"], "TokenEndpointUnreachable", "{token_check}");
    let message = token_check["message"].as_str().unwrap();
    assert!(message.contains("billing-oauth"), "the message names the credential: {message}");

    let target = doc["healthChecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "target:billing")
        .cloned()
        .unwrap();
    assert_eq!(target["status"], "True", "the target itself answers: {target}");

    let everything = format!("{doc}\n{}", std::fs::read_to_string(&worker.log).unwrap());
    for canary in ["canary-status-client-id", "canary-status-client-secret"] {
        assert!(!everything.contains(canary), "{canary} leaked:\n{everything}");
    }
}
