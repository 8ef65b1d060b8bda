//! PagerDuty Events API v2: `trigger` when the alert fires, `resolve` when it resolves, both
//! with `dedup_key` = the alert's fingerprint, so PagerDuty keeps one incident per failing
//! integration and a repeated trigger (after an operator restart) adds nothing.
//!
//! The `routing_key` (the integration key of a PagerDuty service) is never in the route: it
//! is an apiKey Credential with `in: body, name: routing_key`, placed by the transport.

use k8s_openapi::jiff::Timestamp;

use super::{JsonReceiver, Transport};
use crate::alerting::model::{Alert, AlertStatus};
use crate::alerting::routes::{HttpTarget, RouteKind};

/// Sends to PagerDuty.
pub struct PagerDutySender {
    /// The Events API endpoint (`https://events.pagerduty.com/v2/enqueue`).
    pub target: HttpTarget,
}

/// The event for `alert` (without `routing_key`, which the credential adds). Pure.
pub fn payload(alert: &Alert, transport: &Transport) -> serde_json::Value {
    if alert.status == AlertStatus::Resolved {
        return serde_json::json!({
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        });
    }
    let summary: String = alert.annotation("summary").chars().take(1024).collect();
    let mut details = serde_json::Map::new();
    for (key, value) in alert.labels.iter().chain(alert.annotations.iter()) {
        details.insert(key.clone(), value.clone().into());
    }
    let mut event = serde_json::json!({
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": summary,
            "source": format!("switchboard/{}", alert.subject()),
            "severity": alert.label("severity"),
            "timestamp": alert.starts_at.to_string(),
            "component": alert.label("integration"),
            "group": alert.label("owner_team"),
            "class": alert.annotation("reason"),
            "custom_details": details,
        },
        "client": "Switchboard",
    });
    let mut links = Vec::new();
    if !alert.annotation("runbook_url").is_empty() {
        links.push(serde_json::json!({"href": alert.annotation("runbook_url"), "text": "Runbook"}));
    }
    if let Some(link) = transport.settings.link(alert) {
        event["client_url"] = link.clone().into();
        links.push(serde_json::json!({"href": link, "text": "Integration"}));
    }
    if !links.is_empty() {
        event["links"] = links.into();
    }
    event
}

impl JsonReceiver for PagerDutySender {
    const KIND: RouteKind = RouteKind::Pagerduty;

    fn target(&self) -> &HttpTarget {
        &self.target
    }

    fn body(&self, alert: &Alert, transport: &Transport, _now: Timestamp) -> serde_json::Value {
        payload(alert, transport)
    }
}
