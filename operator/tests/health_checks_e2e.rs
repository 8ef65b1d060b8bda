//! Issue 7's acceptance, end to end: "a certificate expiring within the warning window and an
//! unreachable OAuth2 token endpoint each show up as a condition and an alert".
//!
//! ```text
//!  devcluster (pods run the built binary) ── operator process (chart RBAC, --status-interval 2s)
//!     Integration cert-watch  ─▶ worker pod ─▶ HTTPS target, rcgen certificate expiring in 3 days
//!     Integration token-watch ─▶ worker pod ─▶ HTTP target behind an OAuth2 Credential whose
//!                                              token URL refuses connections
//!  operator: worker /status ─▶ Healthy=False (CertificateExpiringSoon / TokenEndpointUnreachable)
//!            ─▶ alert to an Alertmanager-shaped receiver on loopback
//!  token endpoint comes up ─▶ token-watch Healthy=True, its alert resolves
//! ```
//!
//! Everything is a real process on loopback: the API server, the operator, the workers, the
//! TLS server and the receivers. A canary client secret must appear in no status, Event,
//! alert or operator log.

mod alerting_support;
mod support;
#[path = "../../worker/tests/tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::time::Duration;

use alerting_support::Receiver;
use kube::Api;
use serde_json::Value;
use support::cluster::{Env, eventually};
use switchboard::api::Integration;
use tls_support::{Pki, https_server};

const NS: &str = "health";
const WAIT: Duration = Duration::from_secs(120);
const CANARY: &str = "canary-e2e-client-secret";

/// An OAuth2 token endpoint that issues a token to every request, on `addr`.
async fn token_endpoint(addr: SocketAddr) {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({
            "access_token": "e2e-access-token", "token_type": "Bearer", "expires_in": 3600,
        }))
    });
    let listener = tokio::net::TcpListener::bind(addr).await.expect("the token port is free again");
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

fn integration(name: &str, target: &str, alertmanager: &str) -> String {
    format!(
        r#"apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {{name: {name}, namespace: {NS}}}
spec:
  owner: {{team: finance-systems, contact: finance@acme.example}}
  dataFlow: {{sourceSystem: Shop, targetSystem: Billing, classification: internal}}
  source: {{webhook: {{auth: {{type: none}}}}}}
  targets:
    - name: billing
      outboundMessage: {{name: {target}, method: post}}
  healthChecks: {{interval: 10s, timeout: 5s}}
  egress: {{allowCidrs: [127.0.0.0/8]}}
  alerting:
    threshold: {{consecutiveFailures: 1}}
    useDefaultRoutes: false
    routes:
      - name: am
        alertmanager: {{url: '{alertmanager}', insecureAllowHttp: true}}
"#
    )
}

fn outbound_message(name: &str, endpoint: &str, settings: &str) -> String {
    format!(
        r#"apiVersion: switchboard.dev/v1alpha1
kind: OutboundMessage
metadata: {{name: {name}, namespace: {NS}}}
spec:
  endpoint: {endpoint}
  {settings}
  methods: [{{name: post, httpMethod: POST, path: /invoices}}]
"#
    )
}

fn manifests(ca: &str, tls: SocketAddr, api: SocketAddr, token: SocketAddr, am: &str) -> String {
    let ca_block: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let objects = [
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: billing-ca, namespace: {NS}}}\nstringData:\n  ca.crt: |\n{ca_block}"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: billing-oauth, namespace: {NS}}}\nstringData: {{clientId: billing-worker, clientSecret: {CANARY}}}\n"
        ),
        format!(
            r#"apiVersion: switchboard.dev/v1alpha1
kind: Credential
metadata: {{name: billing-oauth, namespace: {NS}}}
spec:
  type: oauth2ClientCredentials
  secretRef: {{name: billing-oauth}}
  oauth2: {{tokenUrl: 'http://{token}/oauth/token', insecureAllowHttp: true}}
  owner: {{team: finance-systems, contact: finance@acme.example}}
"#
        ),
        outbound_message(
            "billing-tls",
            &format!("https://{tls}"),
            "tls: {caSecretRef: {name: billing-ca, key: ca.crt}}",
        ),
        outbound_message(
            "billing-api",
            &format!("http://{api}"),
            "insecureAllowHttp: true\n  credentialRef: {name: billing-oauth}",
        ),
        integration("cert-watch", "billing-tls", am),
        integration("token-watch", "billing-api", am),
    ];
    objects.join("---\n")
}

/// `Healthy` of an Integration: (status, reason, message).
fn healthy(integration: &Integration) -> Option<(String, String, String)> {
    let status = integration.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == "Healthy")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The alerts an Alertmanager-shaped receiver got for `integration`: (status, reason).
fn alerts_for(receiver: &Receiver, integration: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for request in receiver.received() {
        assert_eq!(request.path, "/api/v2/alerts");
        for alert in request.json().as_array().cloned().unwrap_or_default() {
            if alert["labels"]["integration"] == integration {
                let resolved = alert["endsAt"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t <= k8s_openapi::jiff::Timestamp::now());
                let state = if resolved { "resolved" } else { "firing" };
                let reason = alert["annotations"]["reason"].as_str().unwrap_or_default();
                out.push((state.to_string(), reason.to_string()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_certificate_and_an_unreachable_token_endpoint_are_conditions_and_alerts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let (cert, key) = pki.server("billing", 3);
    let tls = https_server(&cert, &key).await;
    let ca = std::fs::read_to_string(pki.ca_file()).unwrap();
    let api = Receiver::start(200).await;
    let api_addr: SocketAddr = format!("127.0.0.1:{}", api.port).parse().unwrap();
    let token = SocketAddr::from(([127, 0, 0, 1], support::cluster::free_port()));
    let am = Receiver::start(200).await;

    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_switchboard"));
    let env = Env::start_with(devcluster::Config {
        pods: devcluster::kubelet::PodRunnerConfig {
            images: vec![switchboard::dev::switchboard_image_rule(binary)],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let operator = env.operator_with("health-op", false, &["--status-interval=2s"]);
    let file = env.scratch().join("health.yaml");
    std::fs::write(&file, manifests(&ca, tls, api_addr, token, &am.url(""))).unwrap();
    env.kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let integrations: Api<Integration> = Api::namespaced(env.admin.clone(), NS);

    let unhealthy = |name: &'static str, reason: &'static str| {
        let integrations = integrations.clone();
        async move {
            let what = format!("{name} Healthy=False {reason}");
            eventually(&what, WAIT, || async {
                let object = integrations.get(name).await.ok()?;
                let (status, found, _) = healthy(&object)?;
                (status == "False" && found == reason).then_some(object)
            })
            .await
        }
    };

    // The certificate: a condition naming the check, the check in status, an alert.
    let cert_watch = unhealthy("cert-watch", "CertificateExpiringSoon").await;
    let (_, _, message) = healthy(&cert_watch).unwrap();
    let check_name = format!("certificate:{tls}");
    assert!(
        message.starts_with(&format!("health check {check_name} fails (CertificateExpiringSoon)")),
        "{message}"
    );
    let checks = &cert_watch.status.as_ref().unwrap().health_checks;
    let certificate = checks.iter().find(|c| c.name == check_name).expect("the check in status");
    assert_eq!(
        (certificate.status.as_str(), certificate.reason.as_str()),
        ("False", "CertificateExpiringSoon")
    );
    assert!(certificate.not_after.is_some(), "{certificate:?}");
    let target = checks.iter().find(|c| c.name == "target:billing").unwrap();
    assert_eq!(target.status, "True", "the server itself answers: {target:?}");

    // The token endpoint: the root cause is named, not the target that gets no token.
    let token_watch = unhealthy("token-watch", "TokenEndpointUnreachable").await;
    let (_, _, message) = healthy(&token_watch).unwrap();
    assert!(
        message.starts_with("health check token:billing-oauth fails (TokenEndpointUnreachable)"),
        "{message}"
    );

    for (name, reason) in
        [("cert-watch", "CertificateExpiringSoon"), ("token-watch", "TokenEndpointUnreachable")]
    {
        let fired = eventually(&format!("an alert for {name}"), WAIT, || async {
            let alerts = alerts_for(&am, name);
            (!alerts.is_empty()).then_some(alerts)
        })
        .await;
        assert_eq!(fired[0], ("firing".to_string(), reason.to_string()), "{name}: {fired:?}");
        eventually(&format!("{name} status.alert firing"), WAIT, || async {
            let object = integrations.get(name).await.ok()?;
            (object.status?.alert?.state == "firing").then_some(())
        })
        .await;
    }

    // The token endpoint comes up: token-watch recovers and its alert resolves, while the
    // certificate keeps cert-watch unhealthy.
    token_endpoint(token).await;
    eventually("token-watch Healthy=True", WAIT, || async {
        let object = integrations.get("token-watch").await.ok()?;
        (healthy(&object)?.0 == "True").then_some(())
    })
    .await;
    eventually("token-watch's alert resolved", WAIT, || async {
        alerts_for(&am, "token-watch").iter().any(|(state, _)| state == "resolved").then_some(())
    })
    .await;
    let cert_watch = integrations.get("cert-watch").await.unwrap();
    assert_eq!(healthy(&cert_watch).unwrap().1, "CertificateExpiringSoon");
    assert!(
        !alerts_for(&am, "cert-watch").iter().any(|(state, _)| state == "resolved"),
        "the certificate still expires"
    );

    // Warning Events record the transitions; no output carries the client secret.
    let events = env.kubectl_ok(&["get", "events", "-n", NS, "-o", "json"]);
    assert!(events.contains("CertificateExpiringSoon"), "{events}");
    assert!(events.contains("TokenEndpointUnreachable"), "{events}");
    let statuses = env.kubectl_ok(&["get", "integrations", "-n", NS, "-o", "json"]);
    let alerts: Vec<String> = am.received().iter().map(|r| r.text_without_url()).collect();
    let everything =
        format!("{events}\n{statuses}\n{}\n{}", alerts.join("\n"), operator.log_text());
    assert!(!everything.contains(CANARY), "the client secret leaked");
    let parsed: Value = serde_json::from_str(&statuses).unwrap();
    assert_eq!(parsed["items"].as_array().map(Vec::len), Some(2));
}
