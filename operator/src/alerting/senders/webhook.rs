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

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

use super::{Sender, Transport, alert_json, notification_id};
use crate::alerting::http::SendError;
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

impl Sender for WebhookSender {
    fn kind(&self) -> RouteKind {
        RouteKind::Webhook
    }

    fn send<'a>(
        &'a self,
        alert: &'a Alert,
        transport: &'a Transport,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = payload(alert, Timestamp::now());
            transport.http.post_json(&self.target, "", body, &notification_id(alert)).await?;
            Ok(())
        })
    }
}
