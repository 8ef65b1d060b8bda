//! Types shared by the four kinds: ownership, data flow, references, durations and conditions.
//!
//! Every string and list here carries a bound (`maxLength`, `maxItems`) so that the CEL rules
//! that touch them stay inside the API server's cost budget.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Pattern of a Go-style duration as Kubernetes writes them: `30s`, `5m`, `1h30m`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Pattern of a long duration: a Go-style duration or a number of days such as `90d`.
pub const LONG_DURATION_PATTERN: &str = r"^([0-9]+d)?([0-9]+(\.[0-9]+)?(ms|s|m|h))*$";
/// Pattern of a DNS-1123 label, the form of Kubernetes object names and of team names.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Pattern of a DNS-1123 subdomain, the form of most Kubernetes object names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Pattern of a template variable name, as written in `${name}`.
pub const VARIABLE_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// Who owns an integration (or a credential, message or schedule): the team that answers for
/// it, how to reach them, and where their on-call is paged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": r"self.contact.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') || self.contact.startsWith('https://')",
     "message": "owner.contact must be an email address or an https:// URL",
     "fieldPath": ".contact"}
]))]
pub struct Owner {
    /// Team that owns this object, as a DNS label (for example `hr-platform`). It becomes the
    /// `switchboard.dev/owner-team` label on every child object and the `owner_team` label on
    /// metrics and alerts.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub team: String,
    /// How to reach the owning team: an email address or an https:// URL (a chat channel or a
    /// team page). Shown to auditors and carried by every alert.
    #[schemars(length(min = 3, max = 253))]
    pub contact: String,
    /// Name of the on-call rotation or escalation policy that is paged when this integration
    /// fails (for example a PagerDuty service name). Carried by alerts as a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub on_call: Option<String>,
}

/// Data classification, from least to most sensitive. It drives governance checks: `restricted`
/// and `pii` data must travel over TLS with a credential, and their integrations are flagged
/// in reports when they lack strong authentication.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Classification {
    /// Data that may be published.
    Public,
    /// Data for use inside the organisation.
    Internal,
    /// Business data whose disclosure would harm the organisation.
    Confidential,
    /// Data under legal or contractual restriction (payment, health, credentials).
    Restricted,
    /// Personally identifiable information.
    Pii,
}

impl Classification {
    /// Whether this classification demands encryption in transit and authentication.
    pub fn is_sensitive(self) -> bool {
        matches!(self, Classification::Restricted | Classification::Pii)
    }

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
            Classification::Pii => "pii",
        }
    }
}

/// Which way data moves between the source and the target system.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Data flows from the source system into the target system only.
    OneWay,
    /// Data flows both ways (for example a sync that also writes back identifiers).
    Bidirectional,
}

impl Direction {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::OneWay => "oneWay",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

/// The declared data flow of an integration: which system's data goes where, how sensitive it
/// is, and which fields travel. Auditors read it in `switchboard report`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFlow {
    /// Human name of the system the data comes from (for example `Workday` or `Datadog`).
    #[schemars(length(min = 1, max = 128))]
    pub source_system: String,
    /// Human name of the system the data goes to (for example `ServiceNow`).
    #[schemars(length(min = 1, max = 128))]
    pub target_system: String,
    /// Whether data flows one way (source to target) or both ways.
    #[serde(default = "default_direction")]
    #[schemars(default = "default_direction")]
    pub direction: Direction,
    /// Classification of the most sensitive data that flows: one of `public`, `internal`,
    /// `confidential`, `restricted`, `pii`.
    pub classification: Classification,
    /// Names of the fields (or field groups) that travel, for the data-flow inventory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub fields: Vec<String>,
    /// Why the data flows (the business purpose), for the record of processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub purpose: Option<String>,
}

fn default_direction() -> Direction {
    Direction::OneWay
}

/// A reference to a Credential in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRef {
    /// Name of the Credential, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// A reference to one named method of an OutboundMessage in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MethodRef {
    /// Name of the OutboundMessage, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Name of the method of that OutboundMessage to invoke.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub method: String,
}

/// A reference to a key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Retry policy for outbound calls. Timeouts, connection resets, 408, 429 and 5xx responses are
/// retried; other 4xx responses are not. `Retry-After` is honoured up to `maxBackoff`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.initialBackoff) <= duration(self.maxBackoff)",
     "message": "initialBackoff must not exceed maxBackoff", "fieldPath": ".initialBackoff"}
]))]
pub struct RetryPolicy {
    /// Total number of attempts, the first included. `1` disables retries.
    #[serde(default = "default_max_attempts")]
    #[schemars(default = "default_max_attempts", range(min = 1, max = 50))]
    pub max_attempts: u32,
    /// Delay before the first retry; later delays grow exponentially with full jitter.
    #[serde(default = "default_initial_backoff")]
    #[schemars(default = "default_initial_backoff", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub initial_backoff: String,
    /// Upper bound of a single delay, also the most a `Retry-After` header may ask for.
    #[serde(default = "default_max_backoff")]
    #[schemars(default = "default_max_backoff", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub max_backoff: String,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> String {
    "1s".into()
}
fn default_max_backoff() -> String {
    "5m".into()
}

/// Circuit breaker for one target: after `failureThreshold` consecutive failures the circuit
/// opens and calls fail fast for `openFor`; then one probe call decides whether it closes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Consecutive failed calls that open the circuit.
    #[serde(default = "default_failure_threshold")]
    #[schemars(default = "default_failure_threshold", range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    /// How long the circuit stays open before a half-open probe.
    #[serde(default = "default_open_for")]
    #[schemars(default = "default_open_for", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub open_for: String,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_for() -> String {
    "30s".into()
}

/// Status condition types used across the kinds.
pub mod condition {
    /// The object is fully reconciled and usable.
    pub const READY: &str = "Ready";
    /// The integration's runs succeed (runtime truth, from the workers).
    pub const HEALTHY: &str = "Healthy";
    /// Every Credential the integration uses is Ready.
    pub const CREDENTIALS_READY: &str = "CredentialsReady";
    /// The integration's workers are available.
    pub const WORKERS_AVAILABLE: &str = "WorkersAvailable";
}

/// Reasons of an Integration's `Healthy=False` condition when a synthetic health check
/// (`spec.healthChecks`) fails; the message names the check. Failed deliveries and runs take
/// precedence (their own reasons, such as `TargetUnavailable` or `RunFailed`).
pub mod health_check_reason {
    /// A server (`certificate:<host:port>`) or client (`clientCertificate:<credential>`)
    /// certificate expires within `certificateExpiryWarning`.
    pub const CERTIFICATE_EXPIRING_SOON: &str = "CertificateExpiringSoon";
    /// A checked certificate has expired.
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    /// A server certificate does not verify against the configured CA.
    pub const CERTIFICATE_UNTRUSTED: &str = "CertificateUntrusted";
    /// A certificate could not be read (no connection, nothing presented, unreadable file).
    pub const CERTIFICATE_UNAVAILABLE: &str = "CertificateUnavailable";
    /// An OAuth2 Credential's token endpoint does not answer (connection refused, timeout).
    pub const TOKEN_ENDPOINT_UNREACHABLE: &str = "TokenEndpointUnreachable";
    /// An OAuth2 Credential's token endpoint answers but issues no token.
    pub const TOKEN_REJECTED: &str = "TokenRejected";
    /// An OAuth2 Credential has no token for another reason (files, egress rules).
    pub const TOKEN_UNAVAILABLE: &str = "TokenUnavailable";
    /// A target does not answer its reachability check (the reason failed deliveries use).
    pub const TARGET_UNAVAILABLE: &str = "TargetUnavailable";
    /// The IMAP source does not answer.
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// A probe did not answer with one of its expected statuses.
    pub const PROBE_FAILED: &str = "ProbeFailed";
    /// A check of a kind this operator does not know failed.
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
}

/// Parse a duration written as in the API (`250ms`, `30s`, `5m`, `1h30m`, `90d`, `1.5h`).
///
/// Returns a message naming what is wrong; callers add the field path.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 1h30m or 90d");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(format!("{text:?} is longer than ten years"));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_the_api_writes_them() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("90d", Duration::from_secs(90 * 86400)),
            ("1d12h", Duration::from_secs(36 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_durations_are_named_in_the_error() {
        for text in ["", "5", "m", "5x", "1h-5m", "99999999d"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(&format!("{text:?}")), "{error}");
        }
    }
}
