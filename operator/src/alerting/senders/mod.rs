//! One sender per kind of route, all behind [`Sender`].
//!
//! ```text
//!   ResolvedRoute ─▶ sender_for ─▶ Box<dyn Sender> ─▶ send(alert, transport)
//!                                   alertmanager │ pagerduty │ slack │ teams │ webhook ─▶ HttpTransport
//!                                   email ──────────────────────────────────────────────▶ SMTP (lettre)
//! ```
//!
//! Each module owns the payload of its receiver as a pure function of the [`Alert`] (tested
//! without a network) and hands it to the shared transport, which adds the credential,
//! the timeout, the egress rule and the retries.

pub mod alertmanager;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

use super::http::{HttpTransport, SendError};
use super::model::Alert;
use super::routes::{HttpTarget, ResolvedRoute, RouteKind, Target};

/// Settings the senders share.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// Base of `generatorURL` and links back to the integration, for example a console or
    /// Git web URL; `/namespaces/NS/integrations/NAME` is appended.
    pub generator_url: Option<String>,
    /// How long Alertmanager keeps a firing alert without a refresh (`endsAt` = now + this).
    pub alertmanager_hold: Duration,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings { generator_url: None, alertmanager_hold: Duration::from_secs(3600) }
    }
}

impl SenderSettings {
    /// The link to the integration, when a base is configured.
    pub fn link(&self, alert: &Alert) -> Option<String> {
        self.generator_url.as_ref().map(|base| {
            format!(
                "{}/namespaces/{}/integrations/{}",
                base.trim_end_matches('/'),
                alert.label("namespace"),
                alert.label("integration")
            )
        })
    }
}

/// What senders send with.
#[derive(Clone, Debug)]
pub struct Transport {
    /// HTTP delivery.
    pub http: HttpTransport,
    /// Shared settings.
    pub settings: SenderSettings,
}

/// Delivers alerts to one route.
pub trait Sender: Send + Sync {
    /// The kind of route.
    fn kind(&self) -> RouteKind;

    /// Deliver one firing or resolved alert.
    fn send<'a>(
        &'a self,
        alert: &'a Alert,
        transport: &'a Transport,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// A receiver that takes one JSON `POST` per notification (every kind but email). Each
/// implements the payload; the shared [`Sender`] implementation posts it.
pub trait JsonReceiver: Send + Sync {
    /// The kind of route.
    const KIND: RouteKind;
    /// Path below the route's URL that notifications go to.
    const PATH: &'static str = "";

    /// Where to post.
    fn target(&self) -> &HttpTarget;

    /// The JSON body for `alert` at `now`.
    fn body(&self, alert: &Alert, transport: &Transport, now: Timestamp) -> serde_json::Value;
}

impl<T: JsonReceiver> Sender for T {
    fn kind(&self) -> RouteKind {
        T::KIND
    }

    fn send<'a>(
        &'a self,
        alert: &'a Alert,
        transport: &'a Transport,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = self.body(alert, transport, Timestamp::now());
            let id = notification_id(alert);
            transport.http.post_json(self.target(), T::PATH, body, &id).await.map(|_| ())
        })
    }
}

/// The sender of a resolved route.
pub fn sender_for(route: ResolvedRoute) -> Box<dyn Sender> {
    match (route.kind, route.target) {
        (RouteKind::Email, Target::Email(target)) => Box::new(email::EmailSender { target }),
        (RouteKind::Alertmanager, Target::Http(target)) => {
            Box::new(alertmanager::AlertmanagerSender { target })
        }
        (RouteKind::Pagerduty, Target::Http(target)) => {
            Box::new(pagerduty::PagerDutySender { target })
        }
        (RouteKind::Slack, Target::Http(target)) => Box::new(slack::SlackSender { target }),
        (RouteKind::Teams, Target::Http(target)) => Box::new(teams::TeamsSender { target }),
        (RouteKind::Webhook, Target::Http(target)) => Box::new(webhook::WebhookSender { target }),
        (kind, _) => Box::new(Mismatch(kind)),
    }
}

/// A route whose kind and target disagree (cannot come out of `routes::resolve`).
struct Mismatch(RouteKind);

impl Sender for Mismatch {
    fn kind(&self) -> RouteKind {
        self.0
    }

    fn send<'a>(&'a self, _: &'a Alert, _: &'a Transport) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Err(SendError::Build("the route's kind and target disagree".into())) })
    }
}

/// The id of one notification: the alert, its state and the start of the problem. Stable
/// across retries (receivers deduplicate on it), distinct for firing and resolved.
pub fn notification_id(alert: &Alert) -> String {
    format!("{}-{}-{}", alert.fingerprint, alert.status.as_str(), alert.starts_at.as_second())
}

/// The facts every human-readable message shows, in order.
pub fn facts(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut facts =
        vec![("Integration", alert.subject()), ("Team", alert.label("owner_team").to_string())];
    if !alert.label("on_call").is_empty() {
        facts.push(("On call", alert.label("on_call").to_string()));
    }
    facts.push(("Severity", alert.label("severity").to_string()));
    facts.push(("Data flow", alert.annotation("data_flow").to_string()));
    facts.push(("Reason", alert.annotation("reason").to_string()));
    if !alert.annotation("last_error").is_empty() {
        facts.push(("Last error", alert.annotation("last_error").to_string()));
    }
    if !alert.annotation("endpoints").is_empty() {
        facts.push(("Endpoints", alert.annotation("endpoints").to_string()));
    }
    facts.push(("Contact", alert.annotation("contact").to_string()));
    if !alert.annotation("runbook_url").is_empty() {
        facts.push(("Runbook", alert.annotation("runbook_url").to_string()));
    }
    facts.push(("Started", alert.starts_at.to_string()));
    if let Some(ended) = alert.ends_at {
        facts.push(("Resolved", ended.to_string()));
    }
    facts
}

/// The alert as JSON (the generic webhook's `data`).
pub fn alert_json(alert: &Alert) -> serde_json::Value {
    serde_json::json!({
        "fingerprint": alert.fingerprint,
        "status": alert.status.as_str(),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at.to_string(),
        "endsAt": alert.ends_at.map(|t| t.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::http::RetrySettings;
    use crate::alerting::model::{AlertStatus, build_alert};
    use crate::api::Integration;

    fn alert(status: AlertStatus, message: &str) -> Alert {
        let mut integration: Integration = yaml_serde::from_str(
            r#"
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {name: orders, namespace: shop}
spec:
  owner: {team: sre, contact: sre@example.com}
  dataFlow: {sourceSystem: Shop, targetSystem: ERP, classification: internal}
  source: {webhook: {auth: {type: none}}}
  targets: [{name: t, outboundMessage: {name: m, method: post}}]
"#,
        )
        .unwrap();
        integration.status = Some(
            serde_json::from_value(serde_json::json!({
                "lastFailure": {"time": "2027-01-01T00:00:00Z", "reason": "TargetUnavailable", "message": message},
            }))
            .unwrap(),
        );
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let end = (status == AlertStatus::Resolved).then(|| start + Duration::from_secs(600));
        build_alert(&integration, status, start, end)
    }

    fn transport() -> Transport {
        Transport {
            http: HttpTransport::new(RetrySettings::default()),
            settings: SenderSettings {
                generator_url: Some("https://console.example.com/".into()),
                ..SenderSettings::default()
            },
        }
    }

    #[test]
    fn slack_text_cannot_forge_links_or_mentions() {
        let hostile =
            alert(AlertStatus::Firing, "<!channel> <https://evil.example.com|click> & more");
        let text = slack::payload(&hostile, &transport()).to_string();
        assert!(!text.contains("<!channel>") && !text.contains("<https://evil"), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
    }

    #[test]
    fn alertmanager_holds_firing_alerts_and_ends_resolved_ones() {
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let firing = alertmanager::payload(&alert(AlertStatus::Firing, "x"), &transport(), now);
        assert_eq!(firing[0]["endsAt"], "2027-01-15T09:01:40Z", "now + 1h");
        assert_eq!(firing[0]["startsAt"], "2027-01-15T08:00:00Z");
        assert_eq!(
            firing[0]["generatorURL"],
            "https://console.example.com/namespaces/shop/integrations/orders"
        );
        let resolved = alertmanager::payload(&alert(AlertStatus::Resolved, "x"), &transport(), now);
        assert_eq!(resolved[0]["endsAt"], "2027-01-15T08:10:00Z", "when it became healthy");
        assert_eq!(resolved[0]["labels"], firing[0]["labels"], "one identity");
    }

    #[test]
    fn pagerduty_resolves_by_dedup_key_only() {
        let firing = pagerduty::payload(&alert(AlertStatus::Firing, "x"), &transport());
        let resolved = pagerduty::payload(&alert(AlertStatus::Resolved, "x"), &transport());
        assert_eq!(firing["dedup_key"], resolved["dedup_key"]);
        assert_eq!(
            resolved,
            serde_json::json!({"event_action": "resolve", "dedup_key": firing["dedup_key"]})
        );
        assert_eq!(firing["payload"]["source"], "switchboard/shop/orders");
    }

    #[test]
    fn notification_ids_differ_for_firing_and_resolved() {
        let firing = notification_id(&alert(AlertStatus::Firing, "x"));
        assert_ne!(firing, notification_id(&alert(AlertStatus::Resolved, "x")));
        assert_eq!(firing, notification_id(&alert(AlertStatus::Firing, "other reason")));
    }
}
