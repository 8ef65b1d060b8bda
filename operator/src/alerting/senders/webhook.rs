//! A generic webhook: a JSON event, signed with Standard Webhooks when the route's Credential
//! is an hmac Credential (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`,
//! the signing done by the worker crate's helper).
//!
//! ```json
//! {"type": "switchboard.alert.firing", "timestamp": "…",
//!  "data": {"fingerprint": "…", "status": "firing", "labels": {…}, "annotations": {…},
//!           "startsAt": "…", "endsAt": null}}
//! ```
//!
//! `webhook-id` is the notification id (fingerprint, state, start): the same on every retry
//! of one notification, so receivers can drop duplicates.

use k8s_openapi::jiff::Timestamp;

use super::{JsonReceiver, Transport, alert_json};
use crate::alerting::model::Alert;
use crate::alerting::routes::{HttpTarget, RouteKind};

/// Sends to a generic webhook.
pub struct WebhookSender {
    /// The receiver.
    pub target: HttpTarget,
}

/// The event for `alert` at `now`. Pure.
pub fn payload(alert: &Alert, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "type": format!("switchboard.alert.{}", alert.status.as_str()),
        "timestamp": now.to_string(),
        "data": alert_json(alert),
    })
}

impl JsonReceiver for WebhookSender {
    const KIND: RouteKind = RouteKind::Webhook;

    fn target(&self) -> &HttpTarget {
        &self.target
    }

    fn body(&self, alert: &Alert, _transport: &Transport, now: Timestamp) -> serde_json::Value {
        payload(alert, now)
    }
}
