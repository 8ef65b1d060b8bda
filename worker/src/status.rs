//! The worker's status document: what `GET /status` on the admin port returns, and what the
//! operator reads to fill an Integration's (or Schedule's) status.
//!
//! Part of the operator/worker contract, like [`crate::config`]: additive changes only, and
//! [`STATUS_API_VERSION`] changes on breaking ones. It never holds a secret value or an event
//! body; messages are sanitized (no control characters) and bounded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the status document.
pub const STATUS_API_VERSION: &str = "worker.switchboard.dev/v1";
/// Path of the document on the admin port.
pub const STATUS_PATH: &str = "/status";

/// The status document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// Always [`STATUS_API_VERSION`].
    pub api_version: String,
    /// `Integration` or `Schedule`.
    pub subject_kind: String,
    /// Namespace of the subject.
    pub namespace: String,
    /// Name of the subject.
    pub name: String,
    /// When this worker process started.
    pub started_at: DateTime<Utc>,
    /// Whether the worker is ready to take traffic.
    pub ready: bool,
    /// Why it is not ready (config error, missing credential file, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// `durable` or `synchronous`.
    pub delivery_mode: String,
    /// Counters. `accepted`, `filtered`, `delivered`, `retried`, `deadLettered` and the
    /// gauges are exact over the life of the worker's volume; `received`, `rejected` and
    /// `duplicates` may miss the last moments before a crash.
    pub counters: StatusCounters,
    /// When an event or run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<DateTime<Utc>>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureInfo>,
    /// Failed deliveries or runs since the last success.
    pub consecutive_failures: u64,
    /// Circuit breaker of each target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circuits: Vec<CircuitInfo>,
    /// Synthetic health checks of external endpoints (`spec.healthChecks`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckStatus>,
}

/// The latest result of one synthetic health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckStatus {
    /// `target:<name>`, `source:imap`, `token:<credential>`, `certificate:<host:port>`,
    /// `clientCertificate:<credential>` or `probe:<name>`.
    pub name: String,
    /// `True` when the check passed, `False` otherwise (condition style).
    pub status: String,
    /// Short CamelCase reason (`Reachable`, `ServerError`, `Unreachable`, `TlsFailed`,
    /// `CertificateValid`, `CertificateExpiringSoon`, `CertificateExpired`, `TokenIssued`,
    /// `TokenEndpointUnreachable`, `TokenRejected`, `ProbeSucceeded`, `ProbeFailed`, ...).
    pub reason: String,
    /// What was found, for a person (sanitized, bounded, never a secret value).
    pub message: String,
    /// When the check last ran.
    pub last_checked: DateTime<Utc>,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// Rounds in a row this check has failed (0 while it passes).
    #[serde(default)]
    pub consecutive_failures: u64,
    /// Expiry of the certificate a certificate check looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
}

/// Event counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounters {
    /// Requests or records received.
    pub received: u64,
    /// Refused (authentication, validation, size).
    pub rejected: u64,
    /// Duplicates acknowledged without processing.
    pub duplicates: u64,
    /// Accepted (stored in the queue, or delivered synchronously).
    pub accepted: u64,
    /// Dropped by the filter.
    pub filtered: u64,
    /// Delivered to every target.
    pub delivered: u64,
    /// Retries made.
    pub retried: u64,
    /// Moved to the dead-letter store.
    pub dead_lettered: u64,
    /// Dead letters waiting for replay.
    pub dead_letters_pending: u64,
    /// Dead letters dropped by the size or age limit.
    pub dead_letters_dropped: u64,
    /// Dead letters replayed.
    pub replayed: u64,
    /// Events waiting in the queue.
    pub queue_depth: u64,
}

/// A failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailureInfo {
    /// When it happened.
    pub time: DateTime<Utc>,
    /// Short machine-readable reason, for example `TargetUnavailable` or `MappingFailed`.
    pub reason: String,
    /// What happened, for a person (sanitized, bounded, never a secret value).
    pub message: String,
}

/// State of one target's circuit breaker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitInfo {
    /// Target name.
    pub target: String,
    /// `closed`, `halfOpen` or `open`.
    pub state: String,
}
