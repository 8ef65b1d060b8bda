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

use super::http::{HttpTransport, SendError};
use super::model::Alert;
use super::routes::{ResolvedRoute, RouteKind, Target};

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
