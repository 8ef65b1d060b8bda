//! The live view of `switchboard dev`: integrations (owner, source → target, Ready,
//! Healthy, last failure), where inbound integrations can be called, workers that are not
//! ready and why, and what the request sink received.
//!
//! On a terminal the view is redrawn in place every second; otherwise (a pipe, a log, a
//! test) each changed view is printed once, after a `---` line.

use std::fmt::Write as _;

use devcluster::DevCluster;
use devcluster::sink::RequestSink;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use super::child::OperatorProcess;

/// Everything the view shows.
pub struct View<'a> {
    /// The cluster (for Service addresses).
    pub cluster: &'a DevCluster,
    /// An admin client.
    pub client: &'a kube::Client,
    /// The sink, unless `--no-sink`.
    pub sink: Option<&'a RequestSink>,
    /// The operator, unless `--no-operator`.
    pub operator: Option<&'a mut OperatorProcess>,
}

fn integrations_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(crate::api::GROUP, crate::api::VERSION, "Integration");
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "integrations"))
}

fn text<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn condition<'v>(v: &'v Value, kind: &str) -> Option<&'v Value> {
    v.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == kind)
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Renders the view once.
pub async fn render(view: &mut View<'_>) -> String {
    let mut out = String::new();
    let items: Vec<Value> = match integrations_api(view.client).list(&ListParams::default()).await {
        Ok(list) => list.items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect(),
        Err(e) => {
            let _ = writeln!(out, "cannot list integrations: {e}");
            Vec::new()
        }
    };
    let reconciled = items.iter().filter(|i| condition(i, "Ready").is_some()).count();
    let ready = items
        .iter()
        .filter(|i| condition(i, "Ready").is_some_and(|c| c["status"] == "True"))
        .count();
    let operator = match view.operator.as_deref_mut() {
        None => "not started (--no-operator): no controller is running".to_string(),
        Some(op) => match op.exited() {
            None => format!("running (pid {})", op.pid()),
            Some(status) => format!("EXITED ({status}); see {}", op.log.display()),
        },
    };
    let _ = writeln!(
        out,
        "{} integrations, {reconciled} reconciled, {ready} ready · operator {operator}",
        items.len()
    );
    let _ = writeln!(out);
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            let ready = match condition(i, "Ready") {
                None => "-".to_string(),
                Some(c) if c["status"] == "True" => "True".to_string(),
                Some(c) => format!("{} ({})", text(c, "/status"), text(c, "/reason")),
            };
            let healthy = condition(i, "Healthy")
                .map(|c| text(c, "/status").to_string())
                .unwrap_or_else(|| "-".into());
            let failure = match i.pointer("/status/lastFailure") {
                Some(f) => cut(&format!("{}: {}", text(f, "/reason"), text(f, "/message")), 60),
                None => "-".into(),
            };
            [
                format!("{}/{}", text(i, "/metadata/namespace"), text(i, "/metadata/name")),
                text(i, "/spec/owner/team").to_string(),
                cut(
                    &format!(
                        "{} → {}",
                        text(i, "/spec/dataFlow/sourceSystem"),
                        text(i, "/spec/dataFlow/targetSystem")
                    ),
                    48,
                ),
                ready,
                healthy,
                failure,
            ]
        })
        .collect();
    let header = ["INTEGRATION", "OWNER", "SOURCE → TARGET", "READY", "HEALTHY", "LAST FAILURE"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }

    // Inbound integrations: the Service, reachable on loopback.
    let mut inbound = Vec::new();
    for i in &items {
        let url = text(i, "/status/inboundUrl");
        let Some(rest) = url.strip_prefix("http://") else { continue };
        let (host, path) =
            rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut parts = host.split('.');
        let (Some(svc), Some(ns)) = (parts.next(), parts.next()) else { continue };
        match view.cluster.service_addresses(ns, svc).first() {
            Some(port) => inbound.push(format!(
                "  {ns}/{}  http://{}{path}   (in the cluster: {url})",
                text(i, "/metadata/name"),
                port.address
            )),
            None => inbound.push(format!(
                "  {ns}/{}  (Service {svc} not reachable yet)   (in the cluster: {url})",
                text(i, "/metadata/name")
            )),
        }
    }
    if !inbound.is_empty() {
        let _ = writeln!(out, "\nInbound endpoints on this machine:");
        for l in inbound {
            let _ = writeln!(out, "{l}");
        }
    }

    // Workers that are not ready, and why.
    let pods: Api<Pod> = Api::all(view.client.clone());
    let selector = ListParams::default().labels("app.kubernetes.io/part-of=switchboard");
    if let Ok(list) = pods.list(&selector).await {
        let mut lines = Vec::new();
        for p in &list.items {
            let status = p.status.clone().unwrap_or_default();
            let phase = status.phase.clone().unwrap_or_default();
            if phase == "Succeeded" {
                continue;
            }
            let ready = status
                .conditions
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                continue;
            }
            let mut why = status
                .container_statuses
                .as_ref()
                .and_then(|c| c.first())
                .map(|c| {
                    let waiting = c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone());
                    let last = c
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .map(|t| format!("last exit {}", t.exit_code));
                    [waiting, last, Some(format!("restarts {}", c.restart_count))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let running = status
                .container_statuses
                .as_ref()
                .and_then(|c| c.first())
                .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            if running
                && let Some(ip) = &status.pod_ip
                && let Some(reason) = worker_not_ready_reason(ip).await
            {
                why = format!("{why}; /readyz: {}", cut(&reason, 110));
            }
            lines.push(format!(
                "  {}/{}  {phase}  {why}",
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default()
            ));
        }
        if !lines.is_empty() {
            lines.sort();
            let _ = writeln!(
                out,
                "\nWorker pods not ready ({}; `kubectl logs -n <ns> <pod>` tells why):",
                lines.len()
            );
            for l in lines.iter().take(12) {
                let _ = writeln!(out, "{l}");
            }
        }
    }

    if let Some(sink) = view.sink {
        let records = sink.records();
        let _ = writeln!(
            out,
            "\nRequest sink {} (a local stand-in for external systems): {} request(s)",
            sink.url(),
            records.len()
        );
        for r in records.iter().rev().take(8).rev() {
            let time = r.time.get(11..19).unwrap_or(&r.time);
            let _ = writeln!(
                out,
                "  {time}  {:<6} {}  → {} ({})",
                r.method,
                cut(&r.path, 70),
                r.status,
                r.answer
            );
        }
    }
    out
}

/// What a running worker says on its admin port's `/readyz` when it is not ready.
async fn worker_not_ready_reason(ip: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(800))
        .no_proxy()
        .build()
        .ok()?;
    let url = format!("http://{ip}:{}/readyz", switchboard_worker::config::ADMIN_PORT);
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body.get("reason").and_then(Value::as_str).map(str::to_string)
}
