//! Alert routes end to end: devcluster holds the Integration, its Credentials, Secrets and
//! default-route ConfigMaps; the router reads them as the operator's ServiceAccount (RBAC
//! enforced) and notifies PagerDuty-, Slack-, Teams-shaped and generic webhook receivers and
//! a real SMTP server (aiosmtpd), all on loopback.
//!
//! Canary secret values are planted in every Secret and in the integration's last error;
//! the test then searches every message, header, log line, error, Event, status and metric
//! for them. Two routes are dead (a receiver answering 503, and the cloud metadata address
//! that the egress rule refuses): they are reported, and the other routes still get the
//! alert.

mod alerting_support;
mod support;

use std::sync::Arc;

use alerting_support::{Received, Receiver, SmtpSink, capture_logs, email_text};
use base64::Engine as _;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use support::cluster::{Env, OPERATOR_SA, SYSTEM};
use switchboard::alerting::model::fingerprint;
use switchboard::alerting::{Action, AlertRouter, AlertSettings, NotifyOutcome};
use switchboard::api::Integration;
use switchboard::controller::leader::LeaderGuard;
use switchboard::controller::metrics::Metrics;
use switchboard_worker::inbound::signature::{SignatureScheme, SigningKey, verify};

const NS: &str = "shop";
const PD_KEY: &str = "PDKEYcanary7f3a91e2";
const SLACK_PATH: &str = "/T0001/B0001/SLACKcanary8c2e41";
const TEAMS_SIG: &str = "TEAMScanary44d1b7c0";
const HMAC_SECRET: &str = "HMACcanary0b9e5577d3";
const SMTP_PASSWORD: &str = "SMTPcanary91ab02ff";
const URL_TOKEN: &str = "TOKENcanary5d1c3e";

fn secrets() -> Vec<String> {
    let hmac = base64::engine::general_purpose::STANDARD.encode(HMAC_SECRET);
    [
        PD_KEY,
        SLACK_PATH,
        "SLACKcanary8c2e41",
        TEAMS_SIG,
        HMAC_SECRET,
        &hmac,
        SMTP_PASSWORD,
        URL_TOKEN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn secret_yaml(namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data.iter().map(|(k, v)| format!("  {k}: {v:?}")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData:\n{}\n",
        data.join("\n")
    )
}

struct Receivers {
    pagerduty: Receiver,
    slack: Receiver,
    teams: Receiver,
    hook: Receiver,
    dead: Receiver,
    smtp: SmtpSink,
}

fn manifests(r: &Receivers) -> String {
    let hmac = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(HMAC_SECRET));
    let slack_default = json!([{
        "name": "team-slack",
        "slack": {"url": r.slack.url("/services"), "insecureAllowHttp": true, "credentialRef": {"name": "slack-path"}},
    }]);
    let cluster_default = json!([{
        "name": "audit",
        "webhook": {"url": r.hook.url("/alerts"), "insecureAllowHttp": true, "credentialRef": {"name": "audit-hmac"}},
    }]);
    let routes = json!([
        {"name": "pager", "pagerduty": {"url": r.pagerduty.url("/v2/enqueue"), "insecureAllowHttp": true, "credentialRef": {"name": "pd-key"}}},
        {"name": "teams", "teams": {"url": r.teams.url("/workflows/alerts/invoke?api-version=1"), "insecureAllowHttp": true, "credentialRef": {"name": "teams-sig"}}},
        {"name": "mail", "email": {"smtp": {"server": format!("smtp://127.0.0.1:{}", r.smtp.port), "insecureAllowPlaintext": true, "credentialRef": {"name": "smtp-login"}},
                                   "from": "alerts@switchboard.test", "to": ["sre-oncall@example.com"]}},
        {"name": "dead", "webhook": {"url": r.dead.url("/hook"), "insecureAllowHttp": true}},
        {"name": "metadata", "webhook": {"url": "http://169.254.169.254/latest/meta-data", "insecureAllowHttp": true}},
    ]);
    let credential = |namespace: &str, name: &str, spec: Value| {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
               "metadata": {"name": name, "namespace": namespace}, "spec": spec})
        .to_string()
    };
    let configmap = |namespace: &str, routes: &Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "switchboard-alert-routes", "namespace": namespace},
               "data": {"routes.yaml": yaml_serde::to_string(routes).unwrap()}})
        .to_string()
    };
    let integration = json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Integration",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {
            "owner": {"team": "sre", "contact": "sre@example.com", "onCall": "sre-primary"},
            "dataFlow": {"sourceSystem": "Shop", "targetSystem": "ERP", "classification": "confidential"},
            "source": {"webhook": {"auth": {"type": "none"}}},
            "targets": [{"name": "erp", "outboundMessage": {"name": "erp", "method": "post"}}],
            "alerting": {"threshold": {"consecutiveFailures": 3}, "severity": "warning",
                         "runbookUrl": "https://runbooks.example.com/orders", "routes": routes},
        },
    });
    [
        secret_yaml(NS, "pd-key", &[("apiKey", PD_KEY)]),
        secret_yaml(NS, "slack-path", &[("apiKey", SLACK_PATH)]),
        secret_yaml(NS, "teams-sig", &[("apiKey", TEAMS_SIG)]),
        secret_yaml(NS, "smtp-login", &[("username", "alerts"), ("password", SMTP_PASSWORD)]),
        secret_yaml(SYSTEM, "audit-hmac", &[("secret", &hmac)]),
        credential(NS, "pd-key", json!({"type": "apiKey", "secretRef": {"name": "pd-key"}, "apiKey": {"in": "body", "name": "routing_key"}})),
        credential(NS, "slack-path", json!({"type": "apiKey", "secretRef": {"name": "slack-path"}, "apiKey": {"in": "path"}})),
        credential(NS, "teams-sig", json!({"type": "apiKey", "secretRef": {"name": "teams-sig"}, "apiKey": {"in": "query", "name": "sig"}})),
        credential(NS, "smtp-login", json!({"type": "basic", "secretRef": {"name": "smtp-login"}})),
        credential(SYSTEM, "audit-hmac", json!({"type": "hmac", "secretRef": {"name": "audit-hmac"}})),
        configmap(NS, &slack_default),
        configmap(SYSTEM, &cluster_default),
        integration.to_string(),
    ]
    .join("\n---\n")
}

async fn set_health(api: &Api<Integration>, healthy: bool, failures: u64) {
    let now = Timestamp::now().to_string();
    let (status, reason, message) = if healthy {
        ("True", "RunsSucceed", "the last runs succeeded".to_string())
    } else {
        ("False", "TargetUnavailable", "ERP answered 503".to_string())
    };
    let patch = json!({"status": {
        "conditions": [{"type": "Healthy", "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": now}],
        "consecutiveFailures": failures,
        "lastFailure": {"time": now, "reason": "TargetUnavailable",
            "message": format!("ERP refused routing key {PD_KEY} at https://erp.example.com/api?token={URL_TOKEN}")},
        "dataFlow": {"sourceSystem": "Shop", "targetSystem": "ERP", "classification": "confidential",
                     "sourceEndpoint": "/webhook",
                     "targets": [{"name": "erp", "kind": "outboundMessage", "endpoint": "https://erp.example.com/api"}]},
    }});
    api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// What the status aggregation does with an outcome: store it in status.alert.
async fn store(api: &Api<Integration>, outcome: &NotifyOutcome) {
    let patch = json!({"status": {"alert": outcome.state}});
    api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn router(client: kube::Client, metrics: Arc<Metrics>) -> AlertRouter {
    let reporter =
        Reporter { controller: "switchboard-operator".into(), instance: Some("test".into()) };
    AlertRouter::new(client, metrics, LeaderGuard::always(), reporter, AlertSettings::new(SYSTEM))
}

fn assert_no_secret(place: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "a secret value ({secret}) leaked into {place}:\n{text}");
    }
}

/// Every secret but the ones this receiver must get, where it must get them.
fn assert_only_expected_secret(place: &str, received: &Received, allowed_in_body: Option<&str>) {
    let mut text = received.text_without_url();
    if let Some(allowed) = allowed_in_body {
        text = text.replacen(allowed, "", 1);
    }
    assert_no_secret(place, &text);
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_reach_every_route_and_failing_routes_are_reported_without_secrets() {
    let logs = capture_logs();
    let env = Env::start().await;
    let receivers = Receivers {
        pagerduty: Receiver::start(202).await,
        slack: Receiver::start(200).await,
        teams: Receiver::start(202).await,
        hook: Receiver::start(204).await,
        dead: Receiver::start(503).await,
        smtp: SmtpSink::start("alerts", SMTP_PASSWORD),
    };
    env.kubectl_ok(&["create", "namespace", NS]);
    let file = env.scratch().join("alerting.yaml");
    std::fs::write(&file, manifests(&receivers)).unwrap();
    env.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let admin: Api<Integration> = Api::namespaced(env.admin.clone(), NS);
    set_health(&admin, false, 5).await;

    let operator = env.cluster.service_account_client(SYSTEM, OPERATOR_SA).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let first = router(operator.clone(), metrics.clone());
    let integration = admin.get("orders").await.unwrap();
    let decision =
        first.evaluate(&integration, Timestamp::now()).expect("the threshold is crossed");
    assert_eq!(decision.action, Action::Fire);
    let fired = first.notify(decision).await.unwrap();
    assert_eq!(fired.state.state, "firing");
    assert_eq!(fired.state.failed_routes, ["dead", "metadata"], "{fired:?}");
    let categories: Vec<(&str, &str)> = fired
        .routes
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|f| (r.route.as_str(), f.category)))
        .collect();
    assert_eq!(categories, [("dead", "status"), ("metadata", "egress")], "{fired:?}");
    store(&admin, &fired).await;

    let fp = fingerprint(NS, "orders");
    // PagerDuty: one trigger, dedup key = fingerprint, routing key in the body.
    let pd = receivers.pagerduty.received();
    assert_eq!(pd.len(), 1);
    let event = pd[0].json();
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], fp.as_str());
    assert_eq!(event["routing_key"], PD_KEY);
    assert_eq!(event["payload"]["severity"], "warning");
    assert_eq!(event["payload"]["group"], "sre");
    assert!(
        event["payload"]["summary"].as_str().unwrap().contains("shop/orders (team sre) is failing")
    );
    assert_eq!(event["links"][0]["href"], "https://runbooks.example.com/orders");
    assert_only_expected_secret("the PagerDuty event", &pd[0], Some(PD_KEY));
    // The last error mentioned the routing key and a URL token: both are gone.
    let details = event["payload"]["custom_details"]["last_error"].as_str().unwrap();
    assert!(
        details.contains("[REDACTED]") && details.contains("https://erp.example.com/api"),
        "{details}"
    );

    // Slack (namespace default): the secret path completes the URL; Block Kit content.
    let slack = receivers.slack.received();
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].path, format!("/services{SLACK_PATH}"));
    let message = slack[0].json();
    assert!(message["text"].as_str().unwrap().starts_with("[FIRING]"));
    assert_eq!(message["blocks"][0]["type"], "header");
    assert_only_expected_secret("the Slack message", &slack[0], None);

    // Teams: the sig query parameter; an Adaptive Card.
    let teams = receivers.teams.received();
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0].query.as_deref(), Some(format!("api-version=1&sig={TEAMS_SIG}").as_str()));
    let card = &teams[0].json()["attachments"][0];
    assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_only_expected_secret("the Teams message", &teams[0], None);

    // The cluster default webhook: Standard Webhooks signature verifies with the secret.
    let hooks = receivers.hook.received();
    assert_eq!(hooks.len(), 1);
    let scheme = SignatureScheme::StandardWebhooks;
    let key = SigningKey::from_secret(
        &scheme,
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(HMAC_SECRET))
            .as_bytes(),
    )
    .unwrap();
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in &hooks[0].headers {
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    verify(&scheme, &key, &headers, &hooks[0].body, Timestamp::now().as_second(), 300)
        .expect("the signature verifies");
    assert_eq!(hooks[0].json()["type"], "switchboard.alert.firing");
    assert_eq!(hooks[0].json()["data"]["labels"]["owner_team"], "sre");
    assert_only_expected_secret("the webhook", &hooks[0], None);

    // Email: one message through SMTP AUTH, no secret in it.
    let mails = receivers.smtp.messages();
    assert_eq!(mails.len(), 1);
    let mail = email_text(mails[0]["data"].as_str().unwrap());
    assert!(
        mail.contains("Subject: [FIRING] Integration shop/orders (team sre) is failing"),
        "{mail}"
    );
    assert!(mail.contains("Shop → ERP"), "{mail}");
    assert_eq!(mails[0]["to"], json!(["sre-oncall@example.com"]));
    assert_no_secret("the firing email", &mail);

    // The dead route was tried exactly max_attempts times; the metadata address never.
    assert_eq!(receivers.dead.received().len(), 3);

    // Still failing, same process: nothing is sent again.
    let integration = admin.get("orders").await.unwrap();
    assert!(first.evaluate(&integration, Timestamp::now()).is_none(), "deduplicated");
    // A restarted operator: only the failed routes are tried again, nobody is paged twice.
    let restarted = router(operator.clone(), metrics.clone());
    let retry =
        restarted.evaluate(&integration, Timestamp::now()).expect("failed routes are retried");
    assert_eq!(retry.action, Action::RetryFailed(vec!["dead".into(), "metadata".into()]));
    let retried = restarted.notify(retry).await.unwrap();
    assert_eq!(retried.state, fired.state);
    store(&admin, &retried).await;
    assert_eq!(receivers.pagerduty.received().len(), 1);
    assert_eq!(receivers.slack.received().len(), 1);
    assert_eq!(receivers.teams.received().len(), 1);
    assert_eq!(receivers.hook.received().len(), 1);
    assert_eq!(receivers.smtp.messages().len(), 1);
    assert_eq!(receivers.dead.received().len(), 6);

    // Healthy again: one resolve to every route.
    set_health(&admin, true, 0).await;
    let integration = admin.get("orders").await.unwrap();
    let resolve = restarted.evaluate(&integration, Timestamp::now()).expect("resolve");
    assert_eq!(resolve.action, Action::Resolve);
    let resolved = restarted.notify(resolve).await.unwrap();
    assert_eq!(resolved.state.state, "resolved");
    assert_eq!(resolved.state.failed_routes, ["dead", "metadata"]);
    store(&admin, &resolved).await;
    let integration = admin.get("orders").await.unwrap();
    assert!(restarted.evaluate(&integration, Timestamp::now()).is_none(), "resolved once");

    let pd = receivers.pagerduty.received();
    assert_eq!(pd.len(), 2);
    assert_eq!(
        pd[1].json(),
        json!({"event_action": "resolve", "dedup_key": fp, "routing_key": PD_KEY})
    );
    let slack = receivers.slack.received();
    assert_eq!(slack.len(), 2);
    assert!(slack[1].json()["text"].as_str().unwrap().starts_with("[RESOLVED]"));
    let teams = receivers.teams.received();
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[1].json()["attachments"][0]["content"]["body"][0]["color"], "Good");
    let hooks = receivers.hook.received();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[1].json()["type"], "switchboard.alert.resolved");
    assert_ne!(hooks[0].header("webhook-id"), hooks[1].header("webhook-id"));
    let mails = receivers.smtp.messages();
    assert_eq!(mails.len(), 2);
    let resolved_mail = email_text(mails[1]["data"].as_str().unwrap());
    assert!(resolved_mail.contains("Subject: [RESOLVED]"), "{resolved_mail}");
    assert!(resolved_mail.contains("In-Reply-To:"), "the resolve answers the firing email");
    for (i, received) in pd.iter().enumerate() {
        assert_only_expected_secret(&format!("PagerDuty event {i}"), received, Some(PD_KEY));
    }
    for received in slack.iter().chain(&teams).chain(&hooks).chain(&receivers.dead.received()) {
        assert_only_expected_secret("a notification", received, None);
    }
    assert_no_secret("the resolve email", &resolved_mail);

    // Visibility: Events name the failed routes and the categories.
    let events: Api<Event> = Api::namespaced(env.admin.clone(), NS);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let notes: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.reason.clone().unwrap_or_default(), e.note.clone().unwrap_or_default()))
        .collect();
    let failed_notes: Vec<&String> =
        notes.iter().filter(|(r, _)| r == "AlertRouteFailed").map(|(_, n)| n).collect();
    assert!(
        failed_notes
            .iter()
            .any(|n| n.contains("route dead (webhook)") && n.contains("status (HTTP 503)")),
        "{notes:?}"
    );
    assert!(
        failed_notes.iter().any(|n| n.contains("route metadata (webhook)") && n.contains("egress")),
        "{notes:?}"
    );
    assert!(notes.iter().any(|(r, _)| r == "AlertFiring"), "{notes:?}");
    assert!(notes.iter().any(|(r, _)| r == "AlertResolved"), "{notes:?}");
    assert_no_secret("the Events", &format!("{events:?}"));

    // Metrics.
    let text = metrics.encode();
    for expected in [
        r#"switchboard_alert_notifications_total{route_kind="pagerduty",result="success"} 2"#,
        r#"switchboard_alert_notifications_total{route_kind="email",result="success"} 2"#,
        r#"switchboard_alert_notifications_total{route_kind="slack",result="success"} 2"#,
        r#"switchboard_alert_notifications_total{route_kind="teams",result="success"} 2"#,
        r#"switchboard_alert_notifications_total{route_kind="webhook",result="success"} 2"#,
        r#"switchboard_alert_notifications_total{route_kind="webhook",result="status"} 3"#,
        r#"switchboard_alert_notifications_total{route_kind="webhook",result="egress"} 3"#,
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    assert_no_secret("the metrics", &text);

    // Status, outcomes (errors included) and logs.
    let stored = admin.get("orders").await.unwrap();
    assert_no_secret(
        "the status",
        &serde_json::to_string(&stored.status.as_ref().unwrap().alert).unwrap(),
    );
    for outcome in [&fired, &retried, &resolved] {
        assert_no_secret("an outcome", &format!("{outcome:?}"));
    }
    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(log.contains("alert route failed"), "the log records failures");
    assert_no_secret("the log", &log);
}
