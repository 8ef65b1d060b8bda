//! Microsoft Teams incoming webhooks (Workflows): a message with one Adaptive Card.
//!
//! The route's `url` is the public part of the workflow URL; its secret is an apiKey
//! Credential, `in: query` (the `sig` parameter of a Workflows URL) or `in: path`.

use k8s_openapi::jiff::Timestamp;

use super::{JsonReceiver, Transport, facts};
use crate::alerting::model::{Alert, AlertStatus};
use crate::alerting::routes::{HttpTarget, RouteKind};

/// Sends to a Teams workflow.
pub struct TeamsSender {
    /// The workflow URL without its secret.
    pub target: HttpTarget,
}

/// The message for `alert`. Pure.
pub fn payload(alert: &Alert, transport: &Transport) -> serde_json::Value {
    let (color, lead) = match alert.status {
        AlertStatus::Firing => ("Attention", alert.annotation("description").to_string()),
        AlertStatus::Resolved => {
            ("Good", format!("{} is healthy again; the alert is resolved.", alert.subject()))
        }
    };
    let facts: Vec<serde_json::Value> = facts(alert)
        .into_iter()
        .map(|(title, value)| serde_json::json!({"title": title, "value": value}))
        .collect();
    let mut actions = Vec::new();
    if !alert.annotation("runbook_url").is_empty() {
        actions.push(serde_json::json!({
            "type": "Action.OpenUrl", "title": "Runbook", "url": alert.annotation("runbook_url"),
        }));
    }
    if let Some(link) = transport.settings.link(alert) {
        actions.push(
            serde_json::json!({"type": "Action.OpenUrl", "title": "Integration", "url": link}),
        );
    }
    let mut card = serde_json::json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": alert.title(), "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": true},
            {"type": "TextBlock", "text": lead, "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": format!("fingerprint {}", alert.fingerprint),
             "isSubtle": true, "size": "Small", "wrap": true},
        ],
    });
    if !actions.is_empty() {
        card["actions"] = actions.into();
    }
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

impl JsonReceiver for TeamsSender {
    const KIND: RouteKind = RouteKind::Teams;

    fn target(&self) -> &HttpTarget {
        &self.target
    }

    fn body(&self, alert: &Alert, transport: &Transport, _now: Timestamp) -> serde_json::Value {
        payload(alert, transport)
    }
}
