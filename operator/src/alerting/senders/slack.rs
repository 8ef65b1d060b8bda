//! Slack incoming webhooks: a Block Kit message when the alert fires, and a follow-up
//! message when it resolves (incoming webhooks cannot edit or thread).
//!
//! The route's `url` is the public prefix (`https://hooks.slack.com/services`); the secret
//! rest (`/T…/B…/…`) is an apiKey Credential with `in: path`. Text from the alert is escaped
//! for Slack's mrkdwn (`&`, `<`, `>`), so a failure message cannot forge a link or mention.

use k8s_openapi::jiff::Timestamp;

use super::{JsonReceiver, Transport, facts};
use crate::alerting::model::{Alert, AlertStatus};
use crate::alerting::routes::{HttpTarget, RouteKind};

/// Sends to a Slack incoming webhook.
pub struct SlackSender {
    /// The webhook prefix.
    pub target: HttpTarget,
}

/// Escape text for Slack mrkdwn.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The message for `alert`. Pure.
pub fn payload(alert: &Alert, transport: &Transport) -> serde_json::Value {
    let title: String = alert.title().chars().take(150).collect();
    let mut blocks = vec![serde_json::json!({
        "type": "header",
        "text": {"type": "plain_text", "text": title},
    })];
    let lead = match alert.status {
        AlertStatus::Firing => {
            format!(":rotating_light: {}", escape(alert.annotation("description")))
        }
        AlertStatus::Resolved => format!(
            ":white_check_mark: {} is healthy again; the alert that fired at {} is resolved.",
            escape(&alert.subject()),
            alert.starts_at
        ),
    };
    blocks.push(serde_json::json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": lead.chars().take(3000).collect::<String>()},
    }));
    let fields: Vec<serde_json::Value> = facts(alert)
        .into_iter()
        .take(10)
        .map(|(name, value)| {
            let text: String = format!("*{name}*\n{}", escape(&value)).chars().take(2000).collect();
            serde_json::json!({"type": "mrkdwn", "text": text})
        })
        .collect();
    blocks.push(serde_json::json!({"type": "section", "fields": fields}));
    let mut context = format!("fingerprint `{}`", alert.fingerprint);
    if let Some(link) = transport.settings.link(alert) {
        context.push_str(&format!(" · <{}|integration>", escape(&link)));
    }
    blocks.push(serde_json::json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context}],
    }));
    serde_json::json!({"text": alert.title(), "blocks": blocks})
}

impl JsonReceiver for SlackSender {
    const KIND: RouteKind = RouteKind::Slack;

    fn target(&self) -> &HttpTarget {
        &self.target
    }

    fn body(&self, alert: &Alert, transport: &Transport, _now: Timestamp) -> serde_json::Value {
        payload(alert, transport)
    }
}
