//! Issue 7's promise, end to end: on-call hears about a failure before the business does.
//!
//! devcluster runs the operator (under the chart's RBAC) and the example `order-invoicing`
//! integration's workers as real processes. Its SOAP target, the legacy billing system, is a
//! request sink behind a port this test can close. Next to the cluster: a real Alertmanager
//! (Debian's package) with a webhook receiver, PagerDuty- and Slack-shaped receivers, a real
//! SMTP server (aiosmtpd), and a real Prometheus scraping the operator and both workers and
//! evaluating the chart's rules.
//!
//! The billing system goes down while invoices keep coming: the Integration turns
//! `Healthy=False` with the reason, Alertmanager holds exactly one alert for it labelled with
//! the owner team, and every receiver is told once. The billing system comes back: the
//! condition returns to `True` and every receiver gets exactly one resolve. No secret value
//! of the applied objects appears in any notification, status, Event or operator log line.

mod alerting_support;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use alerting_support::{
    Receiver, SmtpSink, alertmanager, chart_rules, email_text, prometheus_scraping,
};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::cluster::{Env, eventually};
use switchboard::api::Integration;

const NS: &str = "acme-integrations";
const NAME: &str = "order-invoicing";
const WAIT: Duration = Duration::from_secs(120);
const SLACK_PATH: &str = "/T0001/B0001/SLACKcanary3d9e1f";
const SMTP_PASSWORD: &str = "SMTPcanary6a0c2b9d";
/// The example's (fake) API token of the web shop.
const SHOP_TOKEN: &str = "FAKE-webshop-token";

/// A port standing for the billing system: `stop` closes it and every open connection (the
/// system is down), `start` opens it again on the same address.
struct Switch {
    addr: SocketAddr,
    to: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Switch {
    async fn forwarding_to(to: SocketAddr) -> Switch {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut switch = Switch { addr: listener.local_addr().unwrap(), to, task: None };
        switch.serve(listener);
        switch
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let to = self.to;
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task when the switch stops: every connection ends with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// The objects of the given example files, in the order `switchboard dev` applies them.
fn example_objects(files: &[&str]) -> Vec<Value> {
    let paths: Vec<_> =
        files.iter().map(|f| support::workspace().join("examples").join(f)).collect();
    let (set, errors) = switchboard::manifest::ObjectSet::load(&paths, "default");
    assert!(errors.is_empty(), "{errors:?}");
    switchboard::dev::ordered(&set)
}

/// Every secret value in `objects` (Secrets' `stringData` and decoded `data`).
fn secret_values(objects: &[Value]) -> Vec<String> {
    let mut values = BTreeSet::new();
    for secret in objects.iter().filter(|o| o["kind"] == "Secret") {
        for (_, v) in secret["stringData"].as_object().into_iter().flatten() {
            values.insert(v.as_str().unwrap().to_string());
        }
        for (_, v) in secret["data"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap());
            values.insert(String::from_utf8(bytes.unwrap()).unwrap());
        }
    }
    // A PEM block is searched for by its longest line, which is as secret as the whole.
    values
        .into_iter()
        .map(|v| match v.lines().max_by_key(|l| l.len()) {
            Some(line) if v.contains("-----BEGIN") => line.to_string(),
            _ => v,
        })
        .filter(|v| v.len() >= 8)
        .collect()
}

fn assert_no_secret(secrets: &[String], place: &str, text: &str) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a secret value leaked into {place}:\n{text}");
    }
}

fn secret_yaml(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
           "stringData": data})
}

fn credential(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// The example, its billing endpoint moved to `billing`, its alerts routed to the receivers.
fn manifests(
    billing: SocketAddr,
    sink: &devcluster::sink::RequestSink,
    alertmanager: &str,
    pagerduty: &Receiver,
    slack: &Receiver,
    smtp: &SmtpSink,
) -> Vec<Value> {
    let mut objects = example_objects(&["00-namespace.yaml", "40-legacy-billing-soap.yaml"]);
    objects.extend([
        secret_yaml("slack-finance", json!({"apiKey": SLACK_PATH})),
        credential(
            "slack-finance",
            json!({"type": "apiKey", "secretRef": {"name": "slack-finance"}, "apiKey": {"in": "path"},
                   "owner": {"team": "finance-systems", "contact": "finance-systems@acme.example"}}),
        ),
        secret_yaml("smtp-alerts", json!({"username": "alerts", "password": SMTP_PASSWORD})),
        credential(
            "smtp-alerts",
            json!({"type": "basic", "secretRef": {"name": "smtp-alerts"},
                   "owner": {"team": "finance-systems", "contact": "finance-systems@acme.example"}}),
        ),
    ]);
    for object in &mut objects {
        // What `switchboard dev` does: the billing endpoint (and egress) point at the sink.
        let (_, rules) = switchboard::dev::sink::point_at_sink(object, billing);
        for rule in rules {
            sink.add_rule(rule);
        }
        if object["kind"] == "Integration" && object["metadata"]["name"] == NAME {
            object["spec"]["alerting"]["routes"] = json!([
                {"name": "finance-alertmanager", "alertmanager": {"url": alertmanager, "insecureAllowHttp": true}},
                {"name": "finance-pager", "pagerduty": {"url": pagerduty.url("/v2/enqueue"), "insecureAllowHttp": true,
                                                         "credentialRef": {"name": "pagerduty-finance"}}},
                {"name": "finance-chat", "slack": {"url": slack.url("/services"), "insecureAllowHttp": true,
                                                    "credentialRef": {"name": "slack-finance"}}},
                {"name": "finance-mail", "email": {
                    "smtp": {"server": format!("smtp://127.0.0.1:{}", smtp.port), "insecureAllowPlaintext": true,
                             "credentialRef": {"name": "smtp-alerts"}},
                    "from": "switchboard@acme.example", "to": ["finance-systems-oncall@acme.example"]}},
            ]);
        }
    }
    objects
}

fn write_manifests(dir: &Path, objects: &[Value]) -> String {
    let path = dir.join("order-invoicing.yaml");
    let text: Vec<String> = objects.iter().map(|o| yaml_serde::to_string(o).unwrap()).collect();
    std::fs::write(&path, text.join("---\n")).unwrap();
    path.to_str().unwrap().to_string()
}

async fn status(client: &kube::Client) -> Option<Value> {
    let integration: Integration = Api::namespaced(client.clone(), NS).get(NAME).await.ok()?;
    serde_json::to_value(integration.status?).ok()
}

fn condition(status: &Value, kind: &str) -> Option<(String, String, String)> {
    let c = status["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?;
    let text = |f: &str| c[f].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// POST one invoice to the worker through its Service; the HTTP status.
async fn post_invoice(http: &reqwest::Client, url: &str, number: usize) -> Option<u16> {
    let invoice = json!({"orderNumber": format!("o-{number}"), "customer": {"number": "c-9"},
                         "total": {"amount": 12.5, "currency": "EUR"}});
    let response = http.post(url).bearer_auth(SHOP_TOKEN).json(&invoice).send().await.ok()?;
    Some(response.status().as_u16())
}

/// Post invoices until one is delivered and the Integration reads `Healthy=True`.
async fn deliver_until_healthy(
    http: &reqwest::Client,
    inbound: &str,
    client: &kube::Client,
    number: &mut usize,
) {
    eventually("an invoice delivered and Healthy=True", WAIT, || {
        *number += 1;
        let number = *number;
        async move {
            post_invoice(http, inbound, number).await.filter(|s| *s == 200)?;
            let status = status(client).await?;
            (condition(&status, "Healthy")?.0 == "True").then_some(())
        }
    })
    .await;
}

/// Alertmanager's alerts for the integration (active or not yet garbage-collected).
async fn alertmanager_alerts(port: u16) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{port}/api/v2/alerts?filter=integration%3D%22{NAME}%22");
    let alerts: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    alerts.as_array().cloned().unwrap_or_default()
}

/// Alertmanager's webhook notifications, by status (`firing`, `resolved`).
fn notifications(receiver: &Receiver, state: &str) -> Vec<Value> {
    receiver.received().iter().map(|r| r.json()).filter(|b| b["status"] == state).collect()
}

async fn prometheus_query(port: u16, query: &str) -> Vec<Value> {
    let query: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={query}");
    let response: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    response["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_target_alerts_its_owner_once_everywhere_and_its_return_resolves() {
    let env = Env::start_with_workers().await;
    let client = env.admin.clone();

    // The billing system and the people who hear about it.
    let sink = devcluster::sink::RequestSink::start(devcluster::sink::SinkConfig::default())
        .await
        .unwrap();
    let mut billing = Switch::forwarding_to(sink.addr()).await;
    let hook = Receiver::start(200).await;
    let am = alertmanager(&hook.url("/alertmanager"));
    let pagerduty = Receiver::start(202).await;
    let slack = Receiver::start(200).await;
    let smtp = SmtpSink::start("alerts", SMTP_PASSWORD);
    am.wait_ready("/-/ready").await;

    let am_url = format!("http://127.0.0.1:{}", am.port);
    let objects = manifests(billing.addr, &sink, &am_url, &pagerduty, &slack, &smtp);
    let secrets = secret_values(&objects);
    assert!(secrets.iter().any(|s| s == SHOP_TOKEN), "{secrets:?}");
    let operator = env.operator_with("operator-0", false, &["--status-interval=1s"]);
    env.kubectl_ok(&["apply", "--server-side", "-f", &write_manifests(env.scratch(), &objects)]);

    // Both workers run and are ready; the Service has a local address.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let worker_ips = eventually("two ready order-invoicing workers", WAIT, || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.name.as_deref().unwrap_or("").starts_with("order-invoicing-worker-")
                })
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                .collect();
            (ready.len() == 2).then_some(ready)
        }
    })
    .await;
    let inbound = eventually("the order-invoicing Service on loopback", WAIT, || async {
        let ports = env.cluster.service_addresses(NS, NAME);
        ports.first().map(|p| format!("http://{}/v1/invoices", p.address))
    })
    .await;

    // Prometheus scrapes the operator and both workers and evaluates the chart's rules.
    let workers: Vec<String> = worker_ips.iter().map(|ip| format!("'{ip}:9090'")).collect();
    let scrape = format!(
        "  - job_name: switchboard-operator\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n\
         \x20 - job_name: switchboard-worker\n    static_configs:\n      - targets: [{}]\n        \
         labels: {{namespace: {NS}, integration: {NAME}, owner_team: finance-systems}}\n",
        operator.port,
        workers.join(", ")
    );
    let prometheus = prometheus_scraping(&chart_rules(), &scrape);
    prometheus.wait_ready("/-/ready").await;

    // Business as usual: an invoice reaches the billing system, the integration is healthy.
    let http = reqwest::Client::new();
    let mut number = 0;
    deliver_until_healthy(&http, &inbound, &client, &mut number).await;
    assert!(!sink.records().is_empty(), "the billing system got the invoice");

    // The billing system goes down; invoices keep coming (and are refused, not lost silently).
    billing.stop();
    let (reason, message) = eventually("Healthy=False after 3 consecutive failures", WAIT, || {
        number += 1;
        let (http, inbound, client, number) = (&http, &inbound, &client, number);
        async move {
            let code = post_invoice(http, inbound, number).await;
            assert_ne!(code, Some(200), "an invoice cannot be delivered to a stopped system");
            let status = status(client).await?;
            let (healthy, reason, message) = condition(&status, "Healthy")?;
            (healthy == "False" && status["consecutiveFailures"].as_u64()? >= 3)
                .then_some((reason, message))
        }
    })
    .await;
    assert_eq!(reason, "TargetUnavailable", "{message}");
    assert!(message.contains("billing"), "the message names the failing target: {message}");

    // One alert in Alertmanager, labelled with the owner team; each receiver told once.
    let alerts = eventually("the alert in Alertmanager", WAIT, || async {
        let alerts = alertmanager_alerts(am.port).await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["owner_team"], "finance-systems", "{labels}");
    assert_eq!(labels["namespace"], NS);
    assert_eq!(labels["alertname"], "SwitchboardIntegrationFailing");
    assert_eq!(alerts[0]["annotations"]["reason"], "TargetUnavailable");
    eventually("Alertmanager's webhook notification", WAIT, || async {
        (!notifications(&hook, "firing").is_empty()).then_some(())
    })
    .await;
    eventually("PagerDuty, Slack and email told", WAIT, || async {
        (!pagerduty.received().is_empty()
            && !slack.received().is_empty()
            && !smtp.messages().is_empty())
        .then_some(())
    })
    .await;
    eventually("status.alert firing", WAIT, || async {
        (status(&client).await?["alert"]["state"] == "firing").then_some(())
    })
    .await;

    // The chart's rules see it too, over the operator's metrics; the workers are scraped.
    eventually("the chart's SwitchboardIntegrationUnhealthy rule pending", WAIT, || async {
        let query = format!(
            "ALERTS{{alertname=\"SwitchboardIntegrationUnhealthy\",integration=\"{NAME}\"}}"
        );
        (!prometheus_query(prometheus.port, &query).await.is_empty()).then_some(())
    })
    .await;
    eventually("the operator and both workers scraped", WAIT, || async {
        (prometheus_query(prometheus.port, "up == 1").await.len() == 3).then_some(())
    })
    .await;

    // More failures and more status passes add no notification.
    for _ in 0..3 {
        number += 1;
        post_invoice(&http, &inbound, number).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(alertmanager_alerts(am.port).await.len(), 1);
    assert_eq!(notifications(&hook, "firing").len(), 1, "{:#?}", hook.received());
    assert_eq!(pagerduty.received().len(), 1);
    assert_eq!(slack.received().len(), 1);
    assert_eq!(smtp.messages().len(), 1);
    let page = pagerduty.received()[0].json();
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["payload"]["custom_details"]["owner_team"], "finance-systems", "{page}");

    // The billing system comes back: the next invoice goes through and everything resolves.
    billing.start().await;
    deliver_until_healthy(&http, &inbound, &client, &mut number).await;
    eventually("every receiver told of the resolve", WAIT, || async {
        (notifications(&hook, "resolved").len() == 1
            && pagerduty.received().len() == 2
            && slack.received().len() == 2
            && smtp.messages().len() == 2)
            .then_some(())
    })
    .await;
    let resolved = eventually("status.alert resolved", WAIT, || async {
        let status = status(&client).await?;
        (status["alert"]["state"] == "resolved").then_some(status)
    })
    .await;
    let alerts = alertmanager_alerts(am.port).await;
    assert!(
        alerts.iter().all(|a| a["status"]["state"] != "active"),
        "Alertmanager holds no active alert: {alerts:#?}"
    );
    assert_eq!(pagerduty.received()[1].json()["event_action"], "resolve");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(notifications(&hook, "firing").len(), 1);
    assert_eq!(notifications(&hook, "resolved").len(), 1);
    assert_eq!((pagerduty.received().len(), slack.received().len()), (2, 2));
    assert_eq!(smtp.messages().len(), 2);

    // The chart's rules evaluated without error throughout.
    let rules: Value = prometheus.get_json("/api/v1/rules").await.unwrap();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule:#}");
        }
    }

    // No secret anywhere: notifications (PagerDuty's routing key belongs in its body, the
    // Slack path in the URL), the status, Events and the operator's log.
    for received in hook.received().iter().chain(slack.received().iter()) {
        assert_no_secret(&secrets, "a webhook notification", &received.text_without_url());
    }
    for received in pagerduty.received() {
        let text =
            received.text_without_url().replacen("FAKE-pagerduty-finance-routing-key", "", 1);
        assert_no_secret(&secrets, "a PagerDuty event", &text);
    }
    for mail in smtp.messages() {
        assert_no_secret(&secrets, "an email", &email_text(mail["data"].as_str().unwrap()));
    }
    assert_no_secret(&secrets, "the status", &resolved.to_string());
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    for event in events.list(&ListParams::default()).await.unwrap() {
        assert_no_secret(&secrets, "an Event", &serde_json::to_string(&event).unwrap());
    }
    assert_no_secret(&secrets, "the operator's log", &operator.log_text());
    drop(prometheus);
}
