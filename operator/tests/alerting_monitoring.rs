//! Alerting against a real Alertmanager and a real Prometheus (Debian's packages), on
//! loopback ports.
//!
//! - Alertmanager: the router fires an integration's alert at Alertmanager's API v2; it holds
//!   exactly one alert, labelled with the owner team, and notifies its receiver once; a
//!   refresh after a "restart" adds nothing; resolving resolves it there too.
//! - Prometheus: the chart's rules, taken from the chart rendered by the Helm engine, pass
//!   `promtool check rules` and `promtool test rules`, and evaluate without errors over a
//!   scrape of the operator's metrics in which one integration is unhealthy.

mod alerting_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use alerting_support::{Receiver, alertmanager, chart_rules, debian_tool, prometheus};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use support::cluster::eventually;
use switchboard::alerting::{Action, AlertRouter, AlertSettings};
use switchboard::api::Integration;
use switchboard::controller::leader::LeaderGuard;
use switchboard::controller::metrics::{
    ConditionSource, CredentialLabels, IntegrationConditionLabels, Metrics, ObjectLabels,
};
use switchboard::controller::object::Unchecked;
use switchboard::controller::run::{certificate_expiry, integration_conditions};

const WAIT: Duration = Duration::from_secs(60);

/// An integration whose only route is the Alertmanager at `url`, failing since `since`.
fn failing_integration(url: &str, since: Timestamp) -> Integration {
    let mut integration: Integration = serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "owner": {"team": "sre", "contact": "sre@example.com", "onCall": "sre-primary"},
            "dataFlow": {"sourceSystem": "Shop", "targetSystem": "ERP", "classification": "confidential"},
            "source": {"webhook": {"auth": {"type": "none"}}},
            "targets": [{"name": "erp", "outboundMessage": {"name": "erp", "method": "post"}}],
            "alerting": {
                "threshold": {"consecutiveFailures": 3},
                "useDefaultRoutes": false,
                "routes": [{"name": "am", "alertmanager": {"url": url, "insecureAllowHttp": true}}],
            },
        },
    }))
    .unwrap();
    set_health(&mut integration, false, since, 4);
    integration
}

fn set_health(integration: &mut Integration, healthy: bool, since: Timestamp, failures: u64) {
    let status = integration.status.get_or_insert_with(Default::default);
    status.conditions = vec![
        serde_json::from_value(json!({
            "type": "Healthy",
            "status": if healthy { "True" } else { "False" },
            "reason": if healthy { "RunsSucceed" } else { "TargetUnavailable" },
            "message": if healthy { "runs succeed" } else { "ERP answered 503" },
            "lastTransitionTime": since.to_string(),
        }))
        .unwrap(),
    ];
    status.consecutive_failures = Some(failures);
}

fn router(leader: LeaderGuard) -> AlertRouter {
    // The route has no credential and no defaults are read, so the API is only asked to
    // take Events, which fail here (nothing listens on port 9) and are only logged.
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let reporter = Reporter { controller: "switchboard-operator".into(), instance: None };
    let settings = AlertSettings::new("switchboard-system");
    AlertRouter::new(client, Arc::new(Metrics::default()), leader, reporter, settings)
}

/// A guard of a replica that does not hold the lease.
fn standby_guard() -> LeaderGuard {
    switchboard::controller::leader::Elector::new(
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap(),
        "x",
        "x",
        "x",
        Default::default(),
    )
    .guard()
}

/// Alertmanager's webhook notifications: (status, number of alerts, first alert's labels).
fn notifications(receiver: &Receiver) -> Vec<(String, usize, Value)> {
    receiver
        .received()
        .iter()
        .map(|r| {
            let body = r.json();
            let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
            (
                body["status"].as_str().unwrap_or_default().to_string(),
                alerts.len(),
                alerts[0]["labels"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_holds_one_alert_per_failing_integration_and_resolves_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hook = Receiver::start(200).await;
    let am = alertmanager(&hook.url("/hook"));
    am.wait_ready("/-/ready").await;
    let url = format!("http://127.0.0.1:{}", am.port);
    let started = Timestamp::now() - Duration::from_secs(120);
    let mut integration = failing_integration(&url, started);

    // A standby replica decides the same but sends nothing.
    let standby = router(standby_guard());
    let decision =
        standby.evaluate(&integration, Timestamp::now()).expect("the threshold is crossed");
    assert!(standby.notify(decision).await.is_none(), "a standby sends nothing");
    assert_eq!(
        am.get_json("/api/v2/alerts").await,
        Some(json!([])),
        "nothing reached Alertmanager"
    );

    let first = router(LeaderGuard::always());
    let decision =
        first.evaluate(&integration, Timestamp::now()).expect("the threshold is crossed");
    assert_eq!(decision.action, Action::Fire);
    let outcome = first.notify(decision).await.expect("the leader sends");
    assert!(outcome.failed().is_empty(), "{outcome:?}\n{}", am.log());
    assert_eq!(outcome.state.state, "firing");
    integration.status.as_mut().unwrap().alert = Some(outcome.state.clone());

    let alerts = eventually("Alertmanager to hold the alert", WAIT, || async {
        am.get_json("/api/v2/alerts").await.filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["owner_team"], "sre");
    assert_eq!(labels["integration"], "orders");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["alertname"], "SwitchboardIntegrationFailing");
    assert_eq!(labels["on_call"], "sre-primary");
    assert_eq!(labels["severity"], "critical");
    assert!(alerts[0]["annotations"]["summary"].as_str().unwrap().contains("TargetUnavailable"));
    eventually("the receiver to be notified", WAIT, || async {
        (!hook.received().is_empty()).then_some(())
    })
    .await;

    // The same process evaluates again while the problem lasts: nothing to send.
    assert!(first.evaluate(&integration, Timestamp::now()).is_none());
    // A restarted operator knows only status.alert: it re-posts the firing alert to
    // Alertmanager (which drops alerts not refreshed) and fires nothing new.
    let restarted = router(LeaderGuard::always());
    let refresh = restarted.evaluate(&integration, Timestamp::now()).expect("a refresh is due");
    assert_eq!(refresh.action, Action::Refresh);
    let refreshed = restarted.notify(refresh).await.unwrap();
    assert_eq!(refreshed.state, outcome.state, "a refresh changes no state");
    let alerts = am.get_json("/api/v2/alerts").await.unwrap();
    assert_eq!(alerts.as_array().unwrap().len(), 1, "still one alert: {alerts}");

    // Healthy again: resolve once.
    set_health(&mut integration, true, Timestamp::now(), 0);
    let resolve = restarted.evaluate(&integration, Timestamp::now()).expect("resolve");
    assert_eq!(resolve.action, Action::Resolve);
    let resolved = restarted.notify(resolve).await.unwrap();
    assert!(resolved.failed().is_empty(), "{resolved:?}");
    assert_eq!(resolved.state.state, "resolved");
    integration.status.as_mut().unwrap().alert = Some(resolved.state);
    assert!(restarted.evaluate(&integration, Timestamp::now()).is_none(), "resolved once");

    eventually("Alertmanager to drop the resolved alert", WAIT, || async {
        am.get_json("/api/v2/alerts?active=true")
            .await
            .filter(|a| a.as_array().is_some_and(Vec::is_empty))
    })
    .await;
    eventually("the receiver to get the resolved notification", WAIT, || async {
        hook.received().iter().any(|r| r.json()["status"] == "resolved").then_some(())
    })
    .await;
    // Exactly one firing notification, then the resolved one: the refresh notified nobody.
    let got = notifications(&hook);
    let statuses: Vec<&str> = got.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{got:?}");
    for (_, count, labels) in &got {
        assert_eq!(*count, 1);
        assert_eq!(labels["owner_team"], "sre");
    }
}

/// The operator's metrics from objects as the caches hold them.
struct Objects {
    integrations: Vec<Unchecked<Integration>>,
    credentials: Vec<Unchecked<switchboard::api::Credential>>,
}

impl ConditionSource for Objects {
    fn conditions(&self) -> Vec<ObjectLabels> {
        Vec::new()
    }
    fn integration_conditions(&self) -> Vec<(IntegrationConditionLabels, bool)> {
        self.integrations.iter().flat_map(integration_conditions).collect()
    }
    fn certificate_expiries(&self) -> Vec<(CredentialLabels, i64)> {
        self.credentials.iter().filter_map(certificate_expiry).collect()
    }
}

fn unchecked<K>(value: Value) -> Unchecked<K> {
    serde_json::from_value(value).unwrap()
}

/// The chart's PrometheusRule groups, from the chart rendered by the Helm engine, as a rules
/// file.
fn promtool(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(debian_tool("promtool", "prometheus"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs")
}

const RULE_TESTS: &str = r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'switchboard_integration_condition{namespace="shop",integration="orders",owner_team="sre",condition="Healthy"}'
        values: '1 0x10'
      - series: 'switchboard_integration_condition{namespace="shop",integration="billing",owner_team="fin",condition="Healthy"}'
        values: '1x10'
      - series: 'switchboard_reconcile_total{kind="Integration",result="success"}'
        values: '0+1x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: SwitchboardIntegrationUnhealthy
        exp_alerts: []
      - eval_time: 7m
        alertname: SwitchboardIntegrationUnhealthy
        exp_alerts:
          - exp_labels: {severity: critical, namespace: shop, integration: orders, owner_team: sre, condition: Healthy}
            exp_annotations:
              summary: "Integration shop/orders (team sre) is failing"
              description: "Its runs or deliveries fail; see `kubectl -n shop describe integration orders` for the reason."
      - eval_time: 7m
        alertname: SwitchboardOperatorNotReconciling
        exp_alerts: []
  # Objects, but the reconcile counter stopped (or never started): the operator is stuck.
  - interval: 1m
    input_series:
      - series: 'switchboard_objects{kind="Integration",condition="Ready",status="True",owner_team="sre"}'
        values: '3x40'
      - series: 'switchboard_reconcile_total{kind="Integration",result="success"}'
        values: '0+1x5 5x35'
    alert_rule_test:
      - eval_time: 10m
        alertname: SwitchboardOperatorNotReconciling
        exp_alerts: []
      - eval_time: 40m
        alertname: SwitchboardOperatorNotReconciling
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "The Switchboard operator has not reconciled anything for 15 minutes"
              description: "No integration changes, rotations or failures are being acted on. Check the operator's pods and logs."
  # No Switchboard objects at all: nothing to reconcile, nothing to alert about.
  - interval: 1m
    input_series:
      - series: 'switchboard_reconcile_total{kind="Integration",result="success"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 40m
        alertname: SwitchboardOperatorNotReconciling
        exp_alerts: []
"#;

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_evaluates_the_charts_rules_over_the_operators_metrics() {
    let rules = chart_rules();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    let check = promtool(&["check", "rules", "rules.yml"], dir.path());
    assert!(
        check.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    std::fs::write(dir.path().join("tests.yml"), RULE_TESTS).unwrap();
    let test = promtool(&["test", "rules", "tests.yml"], dir.path());
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // The operator's metrics: one unhealthy integration, one healthy, and a client
    // certificate that expires in a week.
    let expiry = Timestamp::now() + Duration::from_secs(7 * 86400);
    let objects = Objects {
        integrations: vec![
            unchecked(json!({
                "metadata": {"name": "orders", "namespace": "shop"},
                "spec": {"owner": {"team": "sre"}},
                "status": {"conditions": [{"type": "Healthy", "status": "False"}, {"type": "Ready", "status": "True"}]},
            })),
            unchecked(json!({
                "metadata": {"name": "billing", "namespace": "shop"},
                "spec": {"owner": {"team": "fin"}},
                "status": {"conditions": [{"type": "Healthy", "status": "True"}, {"type": "Ready", "status": "True"}]},
            })),
        ],
        credentials: vec![unchecked(json!({
            "metadata": {"name": "erp-client-cert", "namespace": "shop"},
            "spec": {"type": "mtls", "owner": {"team": "sre"}},
            "status": {"certificateNotAfter": expiry.to_string()},
        }))],
    };
    let metrics = Arc::new(Metrics::default());
    metrics.set_condition_source(Box::new(objects));
    metrics.observe("Integration", 0.01, None);
    let served = metrics.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = served.encode();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let prom = prometheus(&rules, &target);
    prom.wait_ready("/-/ready").await;
    let active = |alerts: &Value, name: &str| -> Vec<Value> {
        alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name)
            .cloned()
            .collect()
    };
    let alerts = eventually("the unhealthy integration's alert to become active", WAIT, || async {
        let alerts = prom.get_json("/api/v1/alerts").await?;
        let found = active(&alerts, "SwitchboardIntegrationUnhealthy");
        let expiring = active(&alerts, "SwitchboardCredentialExpiringSoon");
        (!found.is_empty() && !expiring.is_empty()).then_some(alerts)
    })
    .await;
    let unhealthy = active(&alerts, "SwitchboardIntegrationUnhealthy");
    assert_eq!(unhealthy.len(), 1, "only the unhealthy integration: {unhealthy:?}");
    assert_eq!(unhealthy[0]["labels"]["integration"], "orders");
    assert_eq!(unhealthy[0]["labels"]["owner_team"], "sre");
    // `for: 5m`: pending now; promtool's simulated clock above shows it firing after 5m.
    assert_eq!(unhealthy[0]["state"], "pending");
    let expiring = active(&alerts, "SwitchboardCredentialExpiringSoon");
    assert_eq!(expiring[0]["labels"]["credential"], "erp-client-cert");
    assert_eq!(expiring[0]["state"], "firing", "no `for`: fires at once");

    // Every rule evaluated without error.
    let rules = prom.get_json("/api/v1/rules").await.unwrap();
    let all: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 5, "{rules}");
    for rule in all {
        assert_eq!(rule["health"], "ok", "{rule}\n{}", prom.log());
        assert!(rule["lastError"].as_str().unwrap_or_default().is_empty(), "{rule}");
    }
}
