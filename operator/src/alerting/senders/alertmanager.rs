//! Prometheus Alertmanager, API v2: `POST {url}/api/v2/alerts` with a list of one alert.
//!
//! Alertmanager identifies an alert by its label set, so firing and resolved carry the same
//! labels. A firing alert gets `endsAt` = now + `alertmanagerHold`: Alertmanager resolves
//! alerts that are not refreshed by then, so the router re-posts firing alerts periodically
//! (a re-post is not a new notification: Alertmanager deduplicates it). Resolving sets
//! `endsAt` to when the integration became healthy.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{JsonReceiver, Transport};
use crate::alerting::model::{Alert, AlertStatus};
use crate::alerting::routes::{HttpTarget, RouteKind};

/// Path of the alerts endpoint below the route's URL.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// Sends to an Alertmanager.
pub struct AlertmanagerSender {
    /// The Alertmanager.
    pub target: HttpTarget,
}

/// The request body for `alert` at `now`. Pure.
pub fn payload(alert: &Alert, transport: &Transport, now: Timestamp) -> serde_json::Value {
    let ends_at = match alert.status {
        AlertStatus::Resolved => alert.ends_at.unwrap_or(now),
        AlertStatus::Firing => {
            let hold = SignedDuration::try_from(transport.settings.alertmanager_hold)
                .unwrap_or(SignedDuration::from_hours(1));
            now.checked_add(hold).unwrap_or(now)
        }
    };
    let mut item = serde_json::json!({
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at.to_string(),
        "endsAt": ends_at.to_string(),
    });
    if let Some(link) = transport.settings.link(alert) {
        item["generatorURL"] = link.into();
    }
    serde_json::json!([item])
}

impl JsonReceiver for AlertmanagerSender {
    const KIND: RouteKind = RouteKind::Alertmanager;
    const PATH: &'static str = ALERTS_PATH;

    fn target(&self) -> &HttpTarget {
        &self.target
    }

    fn body(&self, alert: &Alert, transport: &Transport, now: Timestamp) -> serde_json::Value {
        payload(alert, transport, now)
    }
}
