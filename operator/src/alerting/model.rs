//! The alert: what a person on call receives about a failing integration.
//!
//! ```text
//!   Integration (owner, dataFlow, alerting)  ─┐
//!   status (Healthy, lastFailure, dataFlow)  ─┼─▶ Alert { fingerprint, state, labels, annotations,
//!   state (firing | resolved) + times        ─┘          startsAt, endsAt }
//! ```
//!
//! Labels identify the alert and stay the same from firing to resolved, so that Alertmanager
//! (whose identity of an alert is its label set) and PagerDuty (`dedup_key` = fingerprint)
//! see one alert: `alertname`, `namespace`, `integration`, `owner_team`, `severity`,
//! `on_call` (when the owner names one) and `classification` (the data classification).
//! Everything that may change while the alert fires — the reason, the last error, the data
//! flow — is an annotation.
//!
//! The fingerprint is stable per integration and reason class. This module raises one class,
//! `SwitchboardIntegrationFailing` (the integration's `Healthy` condition is False past its
//! threshold), so the fingerprint is a hash of the alert name, namespace and integration name:
//! it survives operator restarts and changes of the failure reason while the alert fires.
//!
//! Free text that comes from failures (condition messages, last error) is reduced to one line,
//! bounded in length, stripped of URL credentials, queries and fragments, and has every known
//! secret value replaced before it leaves this module.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::api::{Integration, Severity, condition};

/// The name of the alert this module raises.
pub const ALERT_NAME: &str = "SwitchboardIntegrationFailing";
/// Longest reason or error text carried by an alert, in characters.
pub const MAX_TEXT_CHARS: usize = 512;

/// Whether an alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// The problem is ongoing.
    Firing,
    /// The problem is over.
    Resolved,
}

impl AlertStatus {
    /// The word stored in `status.alert.state` and sent to receivers.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert about one integration.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Stable identity: hex SHA-256 of the alert name, namespace and integration (first 32
    /// characters). PagerDuty's `dedup_key`, the webhook's message id prefix.
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identifying labels (stable for the life of the alert).
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations: `summary`, `description`, `reason`, `last_error`,
    /// `data_flow`, `endpoints`, `runbook_url`, `contact`.
    pub annotations: BTreeMap<String, String>,
    /// When the problem started (the `Healthy=False` transition).
    pub starts_at: Timestamp,
    /// When it ended (resolved alerts only).
    pub ends_at: Option<Timestamp>,
}

impl Alert {
    /// A label's value, or the empty string.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or_default()
    }

    /// An annotation's value, or the empty string.
    pub fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map(String::as_str).unwrap_or_default()
    }

    /// `namespace/integration`.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.label("namespace"), self.label("integration"))
    }

    /// A one-line title: `[FIRING] ns/name (team t) is failing: Reason`.
    pub fn title(&self) -> String {
        match self.status {
            AlertStatus::Firing => format!("[FIRING] {}", self.annotation("summary")),
            AlertStatus::Resolved => {
                format!(
                    "[RESOLVED] Integration {} (team {}) is healthy again",
                    self.subject(),
                    self.label("owner_team")
                )
            }
        }
    }

    /// The same alert, with every occurrence of `secrets` in its texts replaced.
    pub fn redacted(mut self, secrets: &[String]) -> Alert {
        if secrets.is_empty() {
            return self;
        }
        for value in self.annotations.values_mut().chain(self.labels.values_mut()) {
            for secret in secrets {
                if secret.len() >= 4 && value.contains(secret.as_str()) {
                    *value = value.replace(secret.as_str(), "[REDACTED]");
                }
            }
        }
        self
    }
}

/// The fingerprint of the failing-integration alert of `namespace/name`.
pub fn fingerprint(namespace: &str, name: &str) -> String {
    let mut hash = Sha256::new();
    for part in [ALERT_NAME, namespace, name] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex_prefix(&hash.finalize(), 32)
}

fn hex_prefix(bytes: &[u8], chars: usize) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..chars].to_string()
}

/// Severity as written in YAML.
pub fn severity_str(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// Build the alert of `integration` in state `status`.
///
/// `starts_at` is when the problem started; `ends_at` is set for resolved alerts.
pub fn build_alert(
    integration: &Integration,
    status: AlertStatus,
    starts_at: Timestamp,
    ends_at: Option<Timestamp>,
) -> Alert {
    let namespace = integration.namespace().unwrap_or_default();
    let name = integration.name_any();
    let spec = &integration.spec;
    let severity = spec.alerting.as_ref().map(|a| a.severity).unwrap_or(Severity::Critical);
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), ALERT_NAME.to_string()),
        ("namespace".to_string(), namespace.clone()),
        ("integration".to_string(), name.clone()),
        ("owner_team".to_string(), spec.owner.team.clone()),
        ("severity".to_string(), severity_str(severity).to_string()),
        ("classification".to_string(), spec.data_flow.classification.as_str().to_string()),
    ]);
    if let Some(on_call) = &spec.owner.on_call {
        labels.insert("on_call".into(), one_line(on_call, 128));
    }

    let item_status = integration.status.as_ref();
    let healthy = item_status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::HEALTHY).cloned());
    let last_failure = item_status.and_then(|s| s.last_failure.as_ref());
    let reason = healthy
        .as_ref()
        .filter(|c| c.status == "False")
        .map(|c| c.reason.clone())
        .or_else(|| last_failure.map(|f| f.reason.clone()))
        .unwrap_or_else(|| "Unknown".into());
    let reason = one_line(&reason, 128);
    // The last failure explains the alert only when it is what made `Healthy` False: a
    // failing health check or a worker that is not ready has its own words in the condition.
    let explains = |f: &&crate::api::Failure| {
        healthy.as_ref().is_none_or(|c| c.status != "False" || c.reason == f.reason)
    };
    let last_error = last_failure
        .filter(explains)
        .map(|f| sanitize_text(&f.message, MAX_TEXT_CHARS))
        .or_else(|| healthy.as_ref().map(|c| sanitize_text(&c.message, MAX_TEXT_CHARS)))
        .unwrap_or_default();
    let failures = super::evaluate::Health::of(integration).consecutive_failures;

    let flow = &spec.data_flow;
    let data_flow = format!(
        "{} → {} ({}, {})",
        one_line(&flow.source_system, 128),
        one_line(&flow.target_system, 128),
        flow.direction.as_str(),
        flow.classification.as_str()
    );
    let resolved_flow = item_status.and_then(|s| s.data_flow.as_ref());
    let mut endpoints = Vec::new();
    if let Some(source) = resolved_flow.and_then(|f| f.source_endpoint.as_ref()) {
        endpoints.push(format!("source {}", sanitize_text(source, 256)));
    }
    for target in resolved_flow.map(|f| f.targets.as_slice()).unwrap_or_default() {
        endpoints.push(format!(
            "target {} ({}) {}",
            one_line(&target.name, 63),
            one_line(&target.kind, 32),
            sanitize_text(&target.endpoint, 256)
        ));
    }

    let team = &spec.owner.team;
    let summary = format!("Integration {namespace}/{name} (team {team}) is failing: {reason}");
    let mut description =
        format!("{data_flow}. {failures} consecutive failures. Reason: {reason}.");
    if !last_error.is_empty() {
        description.push_str(&format!(" Last error: {last_error}"));
    }
    let mut annotations = BTreeMap::from([
        ("summary".to_string(), summary),
        ("description".to_string(), description),
        ("reason".to_string(), reason),
        ("data_flow".to_string(), data_flow),
        ("contact".to_string(), one_line(&spec.owner.contact, 253)),
        ("consecutive_failures".to_string(), failures.to_string()),
    ]);
    if !last_error.is_empty() {
        annotations.insert("last_error".into(), last_error);
    }
    if !endpoints.is_empty() {
        annotations.insert("endpoints".into(), endpoints.join("; "));
    }
    if let Some(runbook) = spec.alerting.as_ref().and_then(|a| a.runbook_url.as_ref()) {
        annotations.insert("runbook_url".into(), sanitize_text(runbook, 2048));
    }

    Alert {
        fingerprint: fingerprint(&namespace, &name),
        status,
        labels,
        annotations,
        starts_at,
        ends_at,
    }
}

/// One line of at most `max` characters, control characters removed.
pub fn one_line(text: &str, max: usize) -> String {
    switchboard_worker::outbound::http::sanitize_excerpt(text.as_bytes(), max, &[])
}

/// Make free failure text safe to carry: one line, bounded, and every URL in it reduced to
/// scheme, host, port and path (user info, query and fragment can hold keys and tokens).
pub fn sanitize_text(text: &str, max: usize) -> String {
    let line = switchboard_worker::outbound::http::sanitize_excerpt(text.as_bytes(), 4 * max, &[]);
    let words: Vec<String> = line.split(' ').map(strip_url_secrets).collect();
    one_line(&words.join(" "), max)
}

fn strip_url_secrets(word: &str) -> String {
    // Punctuation that closes a sentence or a bracket is not part of the URL.
    let trimmed = word.trim_end_matches([')', ']', '}', ',', '.', ';', ':', '"', '\'']);
    let (word, tail) = word.split_at(trimmed.len());
    let Some(start) = word.find("://") else { return format!("{word}{tail}") };
    let scheme_start =
        word[..start].rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+').map_or(0, |i| i + 1);
    let (prefix, candidate) = word.split_at(scheme_start);
    match url::Url::parse(candidate) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            format!("{prefix}{url}{tail}")
        }
        _ => {
            // Not a URL the parser understands: keep only what precedes any `?` or `@`.
            let cut = candidate.find(['?', '#']).unwrap_or(candidate.len());
            let kept = &candidate[..cut];
            let kept = match kept.find('@') {
                Some(at) => format!("{}://{}", &kept[..start - scheme_start], &kept[at + 1..]),
                None => kept.to_string(),
            };
            format!("{prefix}{kept}{tail}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_queries_and_fragments() {
        let text =
            "POST (https://user:pa55@api.example.com/v1/x?api_key=SECRET#frag) failed\r\nX-Evil: 1";
        let clean = sanitize_text(text, 200);
        assert_eq!(clean, "POST (https://api.example.com/v1/x) failed X-Evil: 1");
        assert!(!clean.contains("SECRET") && !clean.contains("pa55"));
        let weird = sanitize_text("see http://[bad@host/?token=SECRET", 200);
        assert!(!weird.contains("SECRET"), "{weird}");
    }

    #[test]
    fn text_is_bounded_to_one_line() {
        let clean = sanitize_text(&"x\n".repeat(5000), MAX_TEXT_CHARS);
        assert!(clean.chars().count() <= MAX_TEXT_CHARS + 1 && !clean.contains('\n'));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        assert_eq!(fingerprint("a", "b"), fingerprint("a", "b"));
        assert_ne!(fingerprint("a", "b"), fingerprint("a", "c"));
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
        assert_eq!(fingerprint("a", "b").len(), 32);
    }
}
