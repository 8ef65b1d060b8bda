//! Delivering one event to one target: attempts, retries, backoff, circuit breaking.
//!
//! [`Outbound`] is the whole outbound side of a worker behind two calls:
//!
//! - [`Outbound::deliver`] renders the call once, then attempts it until it is delivered, fails
//!   permanently, exhausts `endpoint.retry.maxAttempts`, or meets an open circuit; it sleeps
//!   between attempts on tokio's clock ([`backoff_delay`]);
//! - [`Outbound::attempt`] makes exactly one attempt and says whether and when to retry, for a
//!   durable queue that schedules retries itself (then use [`backoff_delay`] for the delay).
//!
//! ```text
//!  deliver(call, vars, delivery_id)
//!    prepare (templates) ── error ──────────────────────────────▶ Failed (no attempt)
//!    loop attempt n:
//!      egress check of IP hosts ─ credential (token, key, cert) ─ breaker permit ─ send
//!      with timeout (D6), Idempotency-Key (D7), signature ─ read bounded response
//!      classify (D2):  expected status ──────────────────────────▶ Delivered (captures)
//!                      3xx, other 4xx, sender SOAP fault, refused ▶ Failed
//!                      timeout, reset, connect, 408, 429, 5xx ─── ▶ retry after
//!                          backoff or Retry-After (D3), or ───────▶ Exhausted (history)
//!                      breaker open (D5) ─────────────────────────▶ CircuitOpen
//! ```
//!
//! Every outcome carries the attempt history (time, result, delay). Failure messages and body
//! excerpts are bounded, single-line and have the credential's values redacted, so a hostile
//! error body (CRLF, HTML, megabytes) can be stored in a dead letter and shown as it is.
//! Nothing here logs a URL (an API key may be in it), a body, or a credential value.

pub mod backoff;
pub mod breaker;
mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret;
use sha2::Digest;
use tokio::time::Instant;

pub use backoff::{backoff_ceiling, backoff_delay, parse_retry_after};
pub use breaker::CircuitState;
use breaker::{Breakers, Verdict};
pub use metrics::Series;
use metrics::{CallSeries, DeliveryMetrics, breaker_key};

use crate::config::{EgressConfig, OutboundCall, WorkerConfig};
use crate::credentials::{Authorization, CredentialError, CredentialStore, hmac};
use crate::outbound::egress::{EgressError, EgressPolicy};
use crate::outbound::http::{
    DeliveryClient, HttpClients, TlsProfile, USER_AGENT, describe_chain, describe_client_error,
    find_source, read_limited, redaction_forms, sanitize_excerpt,
};
pub use crate::outbound::request::CompiledCall;

/// A target's call as a worker delivers it for every event: parsed once ([`CompiledCall`]),
/// with its circuit-breaker key and the metric series of its successful deliveries kept.
pub struct TargetCall {
    compiled: CompiledCall,
    series: CallSeries,
}

impl TargetCall {
    /// Parse and check `call`.
    pub fn compile(call: &OutboundCall) -> Result<TargetCall, RequestError> {
        Ok(TargetCall { compiled: CompiledCall::compile(call)?, series: CallSeries::new(call) })
    }
}
use crate::outbound::request::{BodyKind, PreparedRequest, RequestError, check_call, prepare};
use crate::outbound::{soap, xml::XmlLimits};

/// Header carrying the idempotency key of a delivery.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest error-body excerpt kept, in characters.
pub const EXCERPT_CHARS: usize = 512;
/// Most bytes of an error body read (the excerpt is cut from these).
const ERROR_BODY_BYTES: usize = 64 * 1024;
/// Most bytes of a successful JSON response read for captures.
const CAPTURE_BODY_BYTES: usize = 1024 * 1024;
/// Longest captured value, in characters.
const CAPTURE_CHARS: usize = 1024;

/// Why the outbound side could not be set up from a worker config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A credential is misconfigured.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The egress allow-list is invalid.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// A configured call is invalid.
    #[error("outbound call {call}: {source}")]
    Call {
        /// Which call (`target NAME`, `run`, `probe NAME`, `source`).
        call: String,
        /// What is wrong.
        source: RequestError,
    },
}

impl SetupError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            SetupError::Credential(e) => e.category(),
            SetupError::Egress(e) => e.category(),
            SetupError::Call { source, .. } => source.category(),
        }
    }
}

/// What kind of failure an attempt met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// No complete response within the endpoint timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke (reset, closed before the response).
    Reset,
    /// Another transport error.
    Transport,
    /// TLS handshake or certificate failure.
    Tls,
    /// An unexpected HTTP status.
    Status,
    /// A redirect, which is never followed.
    Redirect,
    /// A SOAP fault.
    SoapFault,
    /// A response that could not be read (bad or unsafe XML, oversized SOAP).
    InvalidResponse,
    /// The SSRF guard refused the address.
    Egress,
    /// The host name does not resolve.
    Dns,
    /// A template did not render.
    Template,
    /// The call or TLS config is invalid.
    Config,
    /// A credential file is missing or invalid.
    Credential,
    /// The OAuth2 token endpoint did not issue a token.
    TokenRequest,
}

impl FailureKind {
    /// Short category for metrics, Events and dead letters.
    pub fn category(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::Transport => "transport",
            FailureKind::Tls => "tls",
            FailureKind::Status => "status",
            FailureKind::Redirect => "redirect",
            FailureKind::SoapFault => "soap_fault",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::Egress => "egress",
            FailureKind::Dns => "dns",
            FailureKind::Template => "template",
            FailureKind::Config => "config",
            FailureKind::Credential => "credential",
            FailureKind::TokenRequest => "token_request",
        }
    }
}

/// Why [`Outbound::check_token`] found no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenCheckError {
    /// The credential is unusable, or its token request failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// No token within the check's timeout.
    #[error("credential {credential:?}: no token within {millis} ms")]
    Timeout {
        /// Credential name.
        credential: String,
        /// The timeout.
        millis: u128,
    },
}

/// One failed attempt: safe to log, store and show (bounded, single-line, redacted).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What happened.
    pub message: String,
    /// The start of the response body, sanitized.
    pub excerpt: Option<String>,
    /// How long the peer asked us to wait (`Retry-After`), uncapped.
    #[serde(rename = "retryAfterMs", serialize_with = "optional_millis")]
    pub retry_after: Option<Duration>,
}

impl AttemptFailure {
    fn new(kind: FailureKind, message: impl Into<String>) -> AttemptFailure {
        AttemptFailure {
            kind,
            status: None,
            message: message.into(),
            excerpt: None,
            retry_after: None,
        }
    }
}

impl std::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.category(), self.message)
    }
}

/// A successful call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// HTTP status.
    pub status: u16,
    /// Captured response values by capture name (JSON Pointers that matched).
    pub captures: BTreeMap<String, String>,
    /// The response body as read (at most 1 MiB, or the limit the caller asked for), for
    /// callers that consume responses (a REST pull reads its records from it). Never
    /// serialized: it may hold personal data.
    #[serde(skip)]
    pub body: bytes::Bytes,
    /// The response's `Link` header values, joined by `, ` (RFC 8288 pagination).
    #[serde(skip)]
    pub link: Option<String>,
}

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AttemptOutcome {
    /// The target accepted the call.
    Delivered(Delivered),
    /// The attempt failed in a way a later attempt may not (D2).
    Retryable(AttemptFailure),
    /// The attempt failed in a way every attempt will.
    Permanent(AttemptFailure),
    /// The endpoint's circuit is open; nothing was sent.
    CircuitOpen {
        /// When a probe will be let through.
        #[serde(rename = "retryInMs", serialize_with = "millis")]
        retry_in: Duration,
    },
}

/// What one attempt of a delivery ended with, for the history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AttemptResult {
    /// A response with this status arrived.
    Status(u16),
    /// No (usable) response: the failure category.
    Error(&'static str),
    /// The circuit was open.
    CircuitOpen,
}

/// One attempt in a delivery's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub number: u32,
    /// Wall-clock start.
    pub at: DateTime<Utc>,
    /// Start, relative to the start of the delivery (tokio clock).
    #[serde(rename = "offsetMs", serialize_with = "millis")]
    pub offset: Duration,
    /// What it ended with.
    pub result: AttemptResult,
    /// The wait before the next attempt, if there was one.
    #[serde(rename = "delayMs", serialize_with = "optional_millis")]
    pub delay: Option<Duration>,
}

/// The final outcome of [`Outbound::deliver`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryOutcome {
    /// Delivered.
    Delivered {
        /// HTTP status.
        status: u16,
        /// Captured response values.
        captures: BTreeMap<String, String>,
        /// The response body as read (at most 1 MiB, or the caller's limit); never serialized.
        #[serde(skip)]
        body: bytes::Bytes,
        /// The response's `Link` header values (RFC 8288), joined by `, `.
        #[serde(skip)]
        link: Option<String>,
        /// Attempt history.
        attempts: Vec<AttemptRecord>,
    },
    /// A permanent failure (including a call that could not be rendered: no attempts).
    Failed {
        /// Why.
        failure: AttemptFailure,
        /// Attempt history.
        attempts: Vec<AttemptRecord>,
    },
    /// Every attempt failed in a retryable way.
    Exhausted {
        /// The last failure.
        last: AttemptFailure,
        /// Attempt history.
        attempts: Vec<AttemptRecord>,
    },
    /// The endpoint's circuit is open.
    CircuitOpen {
        /// When a probe will be let through.
        #[serde(rename = "retryInMs", serialize_with = "millis")]
        retry_in: Duration,
        /// Attempt history (the last entry is the refused one).
        attempts: Vec<AttemptRecord>,
    },
}

impl DeliveryOutcome {
    /// The attempt history.
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            DeliveryOutcome::Delivered { attempts, .. }
            | DeliveryOutcome::Failed { attempts, .. }
            | DeliveryOutcome::Exhausted { attempts, .. }
            | DeliveryOutcome::CircuitOpen { attempts, .. } => attempts,
        }
    }

    /// Whether the event was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }

    /// Short name of the outcome, for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered { .. } => "delivered",
            DeliveryOutcome::Failed { .. } => "failed",
            DeliveryOutcome::Exhausted { .. } => "exhausted",
            DeliveryOutcome::CircuitOpen { .. } => "circuit_open",
        }
    }

    /// The failure that ended the delivery, if it was not delivered.
    pub fn failure(&self) -> Option<&AttemptFailure> {
        match self {
            DeliveryOutcome::Failed { failure, .. } => Some(failure),
            DeliveryOutcome::Exhausted { last, .. } => Some(last),
            _ => None,
        }
    }
}

/// The `Idempotency-Key` of a delivery: the delivery id itself when it is a short token of
/// visible ASCII, otherwise `sha256:` and its hex digest. Stable for a given id.
pub fn idempotency_key(delivery_id: &str) -> String {
    let usable = !delivery_id.is_empty()
        && delivery_id.len() <= 200
        && delivery_id.bytes().all(|b| b.is_ascii_graphic());
    if usable {
        delivery_id.to_string()
    } else {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(delivery_id.as_bytes())))
    }
}

struct Inner {
    credentials: CredentialStore,
    http: HttpClients,
    breakers: Arc<Breakers>,
    metrics: DeliveryMetrics,
}

/// The outbound side of a worker. Cheap to clone; share one per worker.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Set up from a worker config: credentials, egress policy, and a check of every
    /// configured call (targets, `run`, probes, REST and file sources).
    pub fn new(config: &WorkerConfig) -> Result<Outbound, SetupError> {
        let outbound = Outbound::from_parts(&config.credentials, &config.egress)?;
        let mut calls: Vec<(String, &OutboundCall)> = Vec::new();
        for target in &config.targets {
            if let crate::config::TargetKind::OutboundMessage(call) = &target.kind {
                calls.push((format!("target {}", target.name), call));
            }
        }
        if let Some(call) = &config.run {
            calls.push(("run".into(), call));
        }
        if let Some(checks) = &config.health_checks {
            for probe in &checks.probes {
                calls.push((format!("probe {}", probe.name), &probe.call));
            }
        }
        match &config.source {
            Some(crate::config::SourceConfig::Rest(rest)) => {
                calls.push(("source".into(), &rest.request))
            }
            Some(crate::config::SourceConfig::File(file)) => {
                calls.push(("source".into(), &file.fetch))
            }
            _ => {}
        }
        for (name, call) in calls {
            outbound.check(call).map_err(|source| SetupError::Call { call: name, source })?;
        }
        Ok(outbound)
    }

    /// Set up from the credentials and egress allow-list alone.
    pub fn from_parts(
        credentials: &BTreeMap<String, crate::config::CredentialConfig>,
        egress: &EgressConfig,
    ) -> Result<Outbound, SetupError> {
        crate::outbound::http::install_crypto_provider();
        let policy = Arc::new(EgressPolicy::new(egress)?);
        Ok(Outbound {
            inner: Arc::new(Inner {
                credentials: CredentialStore::new(credentials)?,
                http: HttpClients::new(policy),
                breakers: Arc::new(Breakers::default()),
                metrics: DeliveryMetrics::default(),
            }),
        })
    }

    /// Check a call's templates and that the credentials it names exist.
    pub fn check(&self, call: &OutboundCall) -> Result<(), RequestError> {
        check_call(call)?;
        let credential_error =
            |e: CredentialError| RequestError::Endpoint { reason: e.to_string() };
        if let Some(name) = &call.endpoint.credential {
            self.inner.credentials.get(name).map_err(credential_error)?;
        }
        if let Some(name) = &call.endpoint.client_certificate {
            let credential = self.inner.credentials.get(name).map_err(credential_error)?;
            if credential.client_certificate().is_none() {
                return Err(credential_error(CredentialError::WrongType {
                    credential: name.clone(),
                    found: credential.type_name(),
                    expected: "mtls",
                }));
            }
        }
        Ok(())
    }

    /// Whether the SSRF guard lets calls reach `url`'s host (resolving a name, without
    /// connecting): the same check every attempt makes.
    pub async fn check_egress(&self, url: &str) -> Result<(), EgressError> {
        let url = url::Url::parse(url).map_err(|e| EgressError::Resolve {
            host: String::new(),
            reason: format!("not a URL: {e}"),
        })?;
        self.inner.http.policy().check_url(&url).await
    }

    /// The credentials of this worker (for the inbound side's verification).
    pub fn credentials(&self) -> &CredentialStore {
        &self.inner.credentials
    }

    /// The circuit state of a call's endpoint.
    pub fn circuit_state(&self, call: &OutboundCall) -> CircuitState {
        self.inner.breakers.state(&breaker_key(call))
    }

    /// Register the delivery metrics (see [`metrics`](self#metrics)) into `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry, &self.inner.credentials);
    }

    /// Deliver one event to one target, retrying per `call.endpoint.retry`.
    pub async fn deliver(
        &self,
        call: &OutboundCall,
        vars: &BTreeMap<String, String>,
        delivery_id: &str,
    ) -> DeliveryOutcome {
        self.deliver_with_limit(call, vars, delivery_id, None).await
    }

    /// [`Outbound::deliver`] for callers that consume the response body (a file import):
    /// with `Some(limit)`, a successful response is read up to `limit` bytes, and a larger one
    /// is a permanent `invalid_response` failure rather than a truncated body.
    pub async fn deliver_with_limit(
        &self,
        call: &OutboundCall,
        vars: &BTreeMap<String, String>,
        delivery_id: &str,
        response_limit: Option<usize>,
    ) -> DeliveryOutcome {
        let series = CallSeries::new(call);
        self.deliver_rendered(call, &series, prepare(call, vars), delivery_id, response_limit).await
    }

    /// [`Outbound::deliver`] of a target's call parsed beforehand ([`TargetCall::compile`]
    /// of the same `call`), as a worker does for each of its targets.
    pub async fn deliver_compiled(
        &self,
        call: &OutboundCall,
        target: &TargetCall,
        vars: &BTreeMap<String, String>,
        delivery_id: &str,
    ) -> DeliveryOutcome {
        let rendered = target.compiled.render(call, vars);
        self.deliver_rendered(call, &target.series, rendered, delivery_id, None).await
    }

    async fn deliver_rendered(
        &self,
        call: &OutboundCall,
        series: &CallSeries,
        rendered: Result<PreparedRequest, RequestError>,
        delivery_id: &str,
        response_limit: Option<usize>,
    ) -> DeliveryOutcome {
        let started = Instant::now();
        let key = idempotency_key(delivery_id);
        let policy = &call.endpoint.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempts = Vec::new();
        let outcome = match rendered {
            Err(error) => DeliveryOutcome::Failed { failure: request_failure(&error), attempts },
            Ok(prepared) => loop {
                let number = attempts.len() as u32 + 1;
                let mut record = AttemptRecord {
                    number,
                    at: Utc::now(),
                    offset: started.elapsed(),
                    result: AttemptResult::CircuitOpen,
                    delay: None,
                };
                let outcome = self
                    .attempt_prepared(call, series, &prepared, &key, number, response_limit)
                    .await;
                record.result = attempt_result(&outcome);
                match outcome {
                    AttemptOutcome::Delivered(Delivered { status, captures, body, link }) => {
                        attempts.push(record);
                        break DeliveryOutcome::Delivered {
                            status,
                            captures,
                            body,
                            link,
                            attempts,
                        };
                    }
                    AttemptOutcome::Permanent(failure) => {
                        attempts.push(record);
                        break DeliveryOutcome::Failed { failure, attempts };
                    }
                    AttemptOutcome::CircuitOpen { retry_in } => {
                        attempts.push(record);
                        break DeliveryOutcome::CircuitOpen { retry_in, attempts };
                    }
                    AttemptOutcome::Retryable(failure) if number >= max_attempts => {
                        attempts.push(record);
                        break DeliveryOutcome::Exhausted { last: failure, attempts };
                    }
                    AttemptOutcome::Retryable(failure) => {
                        let delay = backoff_delay(policy, number, failure.retry_after);
                        tracing::info!(endpoint = %call.endpoint.name, method = %call.method.name,
                            attempt = number, error = %failure, delay_ms = delay.as_millis() as u64,
                            "outbound attempt failed; retrying");
                        record.delay = Some(delay);
                        attempts.push(record);
                        tokio::time::sleep(delay).await;
                    }
                }
            },
        };
        let metrics = &self.inner.metrics;
        match &outcome {
            DeliveryOutcome::Delivered { .. } => series.deliveries_delivered(metrics).inc(),
            _ => metrics.deliveries.get_or_create(&series.outcome_labels(outcome.outcome())).inc(),
        };
        match outcome.failure() {
            Some(failure) => {
                tracing::warn!(endpoint = %call.endpoint.name, method = %call.method.name,
                outcome = outcome.outcome(), attempts = outcome.attempts().len(), error = %failure,
                "outbound delivery not delivered")
            }
            None => tracing::debug!(endpoint = %call.endpoint.name, method = %call.method.name,
                outcome = outcome.outcome(), attempts = outcome.attempts().len(), "outbound delivery finished"),
        }
        outcome
    }

    /// Make one attempt (`attempt` is its 1-based number within the delivery, for metrics).
    pub async fn attempt(
        &self,
        call: &OutboundCall,
        vars: &BTreeMap<String, String>,
        delivery_id: &str,
        attempt: u32,
    ) -> AttemptOutcome {
        let series = CallSeries::new(call);
        match prepare(call, vars) {
            Ok(prepared) => {
                let key = idempotency_key(delivery_id);
                self.attempt_prepared(call, &series, &prepared, &key, attempt, None).await
            }
            Err(error) => AttemptOutcome::Permanent(request_failure(&error)),
        }
    }

    async fn attempt_prepared(
        &self,
        call: &OutboundCall,
        series: &CallSeries,
        prepared: &PreparedRequest,
        key: &str,
        number: u32,
        response_limit: Option<usize>,
    ) -> AttemptOutcome {
        let metrics = &self.inner.metrics;
        if number > 1 {
            metrics.retries.get_or_create(&series.method_labels()).inc();
        }
        let started = Instant::now();
        let breaker = Some(series.breaker_key.as_str());
        let (outcome, sent) = self.run_attempt(call, prepared, key, response_limit, breaker).await;
        if sent {
            series.duration(metrics).observe(started.elapsed().as_secs_f64());
        }
        let (result, category) = match &outcome {
            AttemptOutcome::Delivered(_) => ("delivered", ""),
            AttemptOutcome::Retryable(f) => ("retryable", f.kind.category()),
            AttemptOutcome::Permanent(f) => ("permanent", f.kind.category()),
            AttemptOutcome::CircuitOpen { .. } => ("circuit_open", ""),
        };
        match result {
            "delivered" => series.attempts_delivered(metrics).inc(),
            _ => metrics.attempts.get_or_create(&series.attempt_labels(result, category)).inc(),
        };
        let state = self.inner.breakers.state(&series.breaker_key);
        series.circuit_state(metrics).set(state.gauge_value());
        outcome
    }

    /// One request outside the delivery path, for synthetic health checks: the call's
    /// credentials, TLS and SSRF guard apply, but its circuit breaker is neither consulted nor
    /// told, no metric is counted and nothing is retried, so a check can never change how
    /// deliveries behave. The timeout is the call's `endpoint.timeoutMs`.
    pub async fn probe(
        &self,
        call: &OutboundCall,
        vars: &BTreeMap<String, String>,
        probe_id: &str,
    ) -> AttemptOutcome {
        match prepare(call, vars) {
            Ok(prepared) => {
                self.run_attempt(call, &prepared, &idempotency_key(probe_id), None, None).await.0
            }
            Err(error) => AttemptOutcome::Permanent(request_failure(&error)),
        }
    }

    /// Whether OAuth2 credential `name` can get a token now: through its cache, as a
    /// delivery would (a cached, unexpired token is used; otherwise one is requested).
    pub async fn check_token(&self, name: &str, timeout: Duration) -> Result<(), TokenCheckError> {
        let credential = self.inner.credentials.get(name)?;
        match tokio::time::timeout(timeout, credential.authorize(&self.inner.http)).await {
            Ok(result) => result.map(|_| ()).map_err(TokenCheckError::from),
            Err(_) => Err(TokenCheckError::Timeout {
                credential: name.to_string(),
                millis: timeout.as_millis(),
            }),
        }
    }

    /// One attempt; the flag says whether a request went out. `breaker` is the key of the
    /// endpoint's circuit breaker to consult and tell; `None` leaves it alone (health checks).
    async fn run_attempt(
        &self,
        call: &OutboundCall,
        prepared: &PreparedRequest,
        key: &str,
        response_limit: Option<usize>,
        breaker: Option<&str>,
    ) -> (AttemptOutcome, bool) {
        let endpoint = &call.endpoint;
        let timeout = Duration::from_millis(endpoint.timeout_ms.max(1));
        let permanent = |kind, message: String| {
            (AttemptOutcome::Permanent(AttemptFailure::new(kind, message)), false)
        };

        // The SSRF guard for IP-literal hosts (names are checked by the resolver).
        if let Some(Err(error)) = self.inner.http.policy().check_literal(&prepared.endpoint) {
            return permanent(FailureKind::Egress, error.to_string());
        }

        let credential = match &endpoint.credential {
            Some(name) => match self.inner.credentials.get(name) {
                Ok(c) => Some(c.clone()),
                Err(e) => return permanent(FailureKind::Config, e.to_string()),
            },
            None => None,
        };
        let client_certificate = endpoint.client_certificate.clone().or_else(|| {
            credential
                .as_ref()
                .filter(|c| c.client_certificate().is_some())
                .map(|c| c.name().to_string())
        });
        let profile = TlsProfile {
            ca_file: endpoint.ca_file.clone(),
            client_certificate,
            server_name: endpoint.server_name.clone(),
        };
        let client = match self.inner.http.delivery(&profile, &self.inner.credentials) {
            Ok(client) => client,
            Err(e) => return permanent(FailureKind::Config, e.to_string()),
        };
        if let Some(name) = &profile.client_certificate {
            let checked = self.inner.credentials.get(name).and_then(|c| {
                c.client_certificate().map(|cert| cert.current().map(|_| ())).unwrap_or(Ok(()))
            });
            if let Err(e) = checked {
                return permanent(FailureKind::Credential, e.to_string());
            }
        }

        let mut authorization = match &credential {
            Some(credential) => match self.authorize(credential, timeout).await {
                Ok(a) => Some(a),
                Err(failure) => return failure,
            },
            None => None,
        };

        let permit = match breaker {
            Some(key) => match self.inner.breakers.acquire(key, &endpoint.circuit_breaker) {
                Ok(permit) => Some(permit),
                Err(retry_in) => return (AttemptOutcome::CircuitOpen { retry_in }, false),
            },
            None => None,
        };

        let mut reauthorized = false;
        loop {
            let redact: Vec<String> = authorization
                .as_ref()
                .and_then(Authorization::secret_text)
                .map(|s| redaction_forms(&s))
                .unwrap_or_default();
            let request = match build_request(prepared, authorization.as_ref(), key) {
                Ok(request) => request,
                Err(failure) => {
                    drop(permit);
                    return (AttemptOutcome::Permanent(failure), false);
                }
            };
            let outcome = match tokio::time::timeout(
                timeout,
                send(&client, request, call, &redact, response_limit),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => AttemptOutcome::Retryable(AttemptFailure::new(
                    FailureKind::Timeout,
                    format!("no complete response within {} ms", timeout.as_millis()),
                )),
            };
            // A 401 with an OAuth2 token: drop exactly that token and try once more with a
            // fresh one (C1). Other credentials cannot get better by themselves.
            if let (AttemptOutcome::Permanent(failure), Some(Authorization::Token(token)), false) =
                (&outcome, &authorization, reauthorized)
                && failure.status == Some(401)
                && let Some(cache) = credential.as_ref().and_then(|c| c.oauth2())
            {
                cache.invalidate(token).await;
                reauthorized = true;
                match self.authorize(credential.as_ref().expect("oauth2 credential"), timeout).await
                {
                    Ok(fresh) => {
                        authorization = Some(fresh);
                        continue;
                    }
                    Err((outcome, _)) => {
                        if let Some(permit) = permit {
                            permit.record(Verdict::Success);
                        }
                        return (outcome, true);
                    }
                }
            }
            if let Some(permit) = permit {
                permit.record(verdict(&outcome));
            }
            return (outcome, true);
        }
    }

    /// What `credential` adds to an attempt.
    async fn authorize(
        &self,
        credential: &crate::credentials::Credential,
        timeout: Duration,
    ) -> Result<Authorization, (AttemptOutcome, bool)> {
        match tokio::time::timeout(timeout, credential.authorize(&self.inner.http)).await {
            Ok(Ok(authorization)) => Ok(authorization),
            Ok(Err(error)) => {
                let kind = match error {
                    CredentialError::TokenRequest { .. }
                    | CredentialError::TokenEndpointUnreachable { .. } => FailureKind::TokenRequest,
                    CredentialError::TokenEndpointRefused { .. } => FailureKind::Egress,
                    CredentialError::TokenClient(_) => FailureKind::Config,
                    _ => FailureKind::Credential,
                };
                let failure = AttemptFailure::new(kind, error.to_string());
                Err(if error.is_transient() {
                    (AttemptOutcome::Retryable(failure), false)
                } else {
                    (AttemptOutcome::Permanent(failure), false)
                })
            }
            Err(_) => Err((
                AttemptOutcome::Retryable(AttemptFailure::new(
                    FailureKind::Timeout,
                    format!(
                        "credential {:?}: no token within {} ms",
                        credential.name(),
                        timeout.as_millis()
                    ),
                )),
                false,
            )),
        }
    }
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis().min(u64::MAX as u128) as u64)
}

fn optional_millis<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => millis(duration, serializer),
        None => serializer.serialize_none(),
    }
}

fn request_failure(error: &RequestError) -> AttemptFailure {
    let kind = match error {
        RequestError::Template { .. } => FailureKind::Template,
        RequestError::Xml(_) => FailureKind::Template,
        RequestError::Endpoint { .. } | RequestError::Method { .. } => FailureKind::Config,
    };
    AttemptFailure::new(kind, error.to_string())
}

fn attempt_result(outcome: &AttemptOutcome) -> AttemptResult {
    match outcome {
        AttemptOutcome::Delivered(d) => AttemptResult::Status(d.status),
        AttemptOutcome::Retryable(f) | AttemptOutcome::Permanent(f) => match f.status {
            Some(status) => AttemptResult::Status(status),
            None => AttemptResult::Error(f.kind.category()),
        },
        AttemptOutcome::CircuitOpen { .. } => AttemptResult::CircuitOpen,
    }
}

/// What an attempt's outcome tells the circuit breaker.
fn verdict(outcome: &AttemptOutcome) -> Verdict {
    match outcome {
        AttemptOutcome::Delivered(_) => Verdict::Success,
        AttemptOutcome::Retryable(_) => Verdict::Failure,
        AttemptOutcome::Permanent(f) => match f.kind {
            FailureKind::Tls => Verdict::Failure,
            FailureKind::Egress
            | FailureKind::Dns
            | FailureKind::Template
            | FailureKind::Config
            | FailureKind::Credential
            | FailureKind::TokenRequest => Verdict::Neutral,
            _ => Verdict::Success,
        },
        AttemptOutcome::CircuitOpen { .. } => Verdict::Neutral,
    }
}

fn build_request(
    prepared: &PreparedRequest,
    authorization: Option<&Authorization>,
    key: &str,
) -> Result<hyper::Request<http_body_util::Full<bytes::Bytes>>, AttemptFailure> {
    let config_failure = |message: String| AttemptFailure::new(FailureKind::Config, message);
    let (rest, extra) = match authorization {
        Some(Authorization::UrlRest(rest)) => (Some(rest.expose_secret()), None),
        Some(Authorization::Query { name, value }) => {
            (None, Some((name.as_str(), value.expose_secret())))
        }
        _ => (None, None),
    };
    let url = prepared.url(rest, extra).map_err(|e| config_failure(e.to_string()))?;
    let uri: hyper::Uri = url
        .as_str()
        .parse()
        .map_err(|_| config_failure("the URL is not a valid request target".into()))?;

    let mut headers: HeaderMap = prepared.headers.clone();
    if !headers.contains_key(IDEMPOTENCY_KEY_HEADER) {
        headers.insert(
            HeaderName::from_static(IDEMPOTENCY_KEY_HEADER),
            HeaderValue::from_str(key).map_err(|_| config_failure("idempotency key".into()))?,
        );
    }
    let mut body = prepared.body.clone();
    match authorization {
        Some(Authorization::Header { name, value }) => {
            headers.insert(name.clone(), value.clone());
        }
        Some(Authorization::Token(token)) => {
            let value = token
                .authorization_header()
                .map_err(|e| AttemptFailure::new(FailureKind::TokenRequest, e.to_string()))?;
            headers.insert(AUTHORIZATION, value);
        }
        Some(Authorization::BodyField { name, value }) => {
            let mut object = match body.as_deref() {
                None => serde_json::Map::new(),
                Some(bytes) if prepared.body_kind == Some(BodyKind::Json) => {
                    match serde_json::from_slice::<serde_json::Value>(bytes) {
                        Ok(serde_json::Value::Object(map)) => map,
                        _ => {
                            return Err(config_failure(
                                "an API key in the body needs a JSON object body".into(),
                            ));
                        }
                    }
                }
                Some(_) => {
                    return Err(config_failure("an API key in the body needs a JSON body".into()));
                }
            };
            object
                .insert(name.clone(), serde_json::Value::String(value.expose_secret().to_string()));
            body = Some(serde_json::to_vec(&object).expect("a JSON object serializes"));
            if prepared.body.is_none() {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
        }
        Some(Authorization::Signature { key: secret, scheme }) => {
            let signed = hmac::signature_headers(
                scheme,
                secret.expose_secret(),
                key,
                Utc::now().timestamp(),
                body.as_deref().unwrap_or_default(),
            )
            .map_err(config_failure)?;
            for (name, value) in signed {
                headers.insert(name, value);
            }
        }
        _ => {}
    }
    // What reqwest sent by default before deliveries left it; a method's headers win.
    if !headers.contains_key(reqwest::header::USER_AGENT) {
        headers.insert(reqwest::header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if !headers.contains_key(reqwest::header::ACCEPT) {
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    let mut request = hyper::Request::new(http_body_util::Full::new(
        body.map(bytes::Bytes::from).unwrap_or_default(),
    ));
    *request.method_mut() = prepared.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Send and classify (D2).
async fn send(
    client: &DeliveryClient,
    request: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    call: &OutboundCall,
    redact: &[String],
    response_limit: Option<usize>,
) -> AttemptOutcome {
    match client.request(request).await {
        Ok(response) => classify_response(response, call, redact, response_limit).await,
        Err(error) => classify_transport(&error, error.is_connect(), describe_client_error(&error)),
    }
}

/// Classify a failure below HTTP: `connect` says whether no connection was made, `message`
/// is the error's sanitized description.
fn classify_transport(
    error: &(dyn std::error::Error + 'static),
    connect: bool,
    message: String,
) -> AttemptOutcome {
    if let Some(egress) = find_source::<EgressError>(error) {
        let kind = match egress {
            EgressError::Resolve { .. } => FailureKind::Dns,
            _ => FailureKind::Egress,
        };
        let failure = AttemptFailure::new(kind, egress.to_string());
        return match kind {
            FailureKind::Dns => AttemptOutcome::Retryable(failure),
            _ => AttemptOutcome::Permanent(failure),
        };
    }
    if find_source::<rustls::Error>(error).is_some() {
        return AttemptOutcome::Permanent(AttemptFailure::new(FailureKind::Tls, message));
    }
    let reset = find_source::<std::io::Error>(error).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    }) || find_source::<hyper::Error>(error)
        .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled());
    if connect && !reset {
        return AttemptOutcome::Retryable(AttemptFailure::new(FailureKind::Connect, message));
    }
    if reset {
        return AttemptOutcome::Retryable(AttemptFailure::new(FailureKind::Reset, message));
    }
    AttemptOutcome::Retryable(AttemptFailure::new(FailureKind::Transport, message))
}

async fn classify_response(
    response: hyper::Response<hyper::body::Incoming>,
    call: &OutboundCall,
    redact: &[String],
    response_limit: Option<usize>,
) -> AttemptOutcome {
    let status = response.status().as_u16();
    let method = &call.method;
    let expected = if method.expected_statuses.is_empty() {
        (200..300).contains(&status)
    } else {
        method.expected_statuses.contains(&status)
    };
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let location_host = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    let link = {
        let values: Vec<&str> = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let is_soap = call.endpoint.protocol == "soap";
    let limits = XmlLimits::default();
    let limit = if is_soap {
        limits.max_bytes + 1
    } else if expected {
        response_limit.map(|l| l.saturating_add(1)).unwrap_or(CAPTURE_BODY_BYTES)
    } else {
        ERROR_BODY_BYTES
    };
    let body = match read_limited(response.into_body(), limit).await {
        Ok((body, _)) => body,
        Err(error) => {
            // hyper's own message names no URL, unlike reqwest's: it is kept.
            let message = describe_chain(&format!("response body error: {error}"), &error);
            let mut outcome = classify_transport(&error, false, message);
            if let AttemptOutcome::Retryable(f) | AttemptOutcome::Permanent(f) = &mut outcome {
                f.status = Some(status);
            }
            return outcome;
        }
    };
    let failure = |kind: FailureKind, message: String| AttemptFailure {
        kind,
        status: Some(status),
        message,
        excerpt: Some(sanitize_excerpt(
            &body[..body.len().min(ERROR_BODY_BYTES)],
            EXCERPT_CHARS,
            redact,
        ))
        .filter(|e| !e.is_empty()),
        retry_after,
    };

    if is_soap && !body.is_empty() {
        match soap::parse_response(&body, &limits) {
            Ok(Some(fault)) => {
                let message = sanitize_excerpt(fault.to_string().as_bytes(), EXCERPT_CHARS, redact);
                let failure = failure(FailureKind::SoapFault, message);
                return if fault.is_sender_fault() {
                    AttemptOutcome::Permanent(failure)
                } else {
                    AttemptOutcome::Retryable(failure)
                };
            }
            Ok(None) => {}
            Err(error) if expected => {
                return AttemptOutcome::Permanent(failure(
                    FailureKind::InvalidResponse,
                    format!("SOAP response refused: {error}"),
                ));
            }
            Err(_) => {}
        }
    }
    if expected {
        if let Some(max) = response_limit.filter(|max| body.len() > *max && !is_soap) {
            return AttemptOutcome::Permanent(AttemptFailure {
                excerpt: None,
                ..failure(
                    FailureKind::InvalidResponse,
                    format!("response body larger than the limit of {max} bytes"),
                )
            });
        }
        return AttemptOutcome::Delivered(Delivered {
            status,
            captures: captures(method, &body, redact),
            body: bytes::Bytes::from(body),
            link,
        });
    }
    if (300..400).contains(&status) {
        let to = location_host.map(|h| format!(" to host {h}")).unwrap_or_default();
        return AttemptOutcome::Permanent(failure(
            FailureKind::Redirect,
            format!("HTTP {status}: redirect{to} refused (redirects are never followed)"),
        ));
    }
    let retryable = status == 408 || status == 429 || (500..600).contains(&status);
    let message = format!("HTTP {status} from {}", call.endpoint.name);
    if retryable {
        AttemptOutcome::Retryable(failure(FailureKind::Status, message))
    } else {
        AttemptOutcome::Permanent(failure(FailureKind::Status, message))
    }
}

fn captures(
    method: &crate::config::MethodConfig,
    body: &[u8],
    redact: &[String],
) -> BTreeMap<String, String> {
    if method.capture.is_empty() {
        return BTreeMap::new();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return BTreeMap::new();
    };
    method
        .capture
        .iter()
        .filter_map(|(name, pointer)| {
            let value = json.pointer(pointer)?;
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((name.clone(), sanitize_excerpt(text.as_bytes(), CAPTURE_CHARS, redact)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Compile-time checks: deliveries run on a multi-threaded runtime and are spawned.
    #[allow(dead_code)]
    fn deliver_is_send<'a>(
        outbound: &'a Outbound,
        call: &'a OutboundCall,
        vars: &'a BTreeMap<String, String>,
    ) -> impl Send + 'a {
        outbound.deliver(call, vars, "id")
    }

    #[allow(dead_code)]
    fn attempt_is_send<'a>(
        outbound: &'a Outbound,
        call: &'a OutboundCall,
        vars: &'a BTreeMap<String, String>,
    ) -> impl Send + 'a {
        outbound.attempt(call, vars, "id", 1)
    }

    #[test]
    fn outcomes_serialize_for_dead_letters() {
        let outcome = DeliveryOutcome::Exhausted {
            last: AttemptFailure {
                kind: FailureKind::Status,
                status: Some(503),
                message: "HTTP 503 from sink".into(),
                excerpt: Some("busy".into()),
                retry_after: Some(Duration::from_secs(2)),
            },
            attempts: vec![AttemptRecord {
                number: 1,
                at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                    .unwrap()
                    .with_timezone(&Utc),
                offset: Duration::ZERO,
                result: AttemptResult::Status(503),
                delay: Some(Duration::from_millis(1500)),
            }],
        };
        assert_eq!(
            serde_json::to_value(&outcome).unwrap(),
            serde_json::json!({"exhausted": {
                "last": {"kind": "status", "status": 503, "message": "HTTP 503 from sink",
                         "excerpt": "busy", "retryAfterMs": 2000},
                "attempts": [{"number": 1, "at": "2026-01-02T03:04:05Z", "offsetMs": 0,
                              "result": {"status": 503}, "delayMs": 1500}]
            }})
        );
    }

    #[test]
    fn idempotency_keys_are_stable_header_tokens() {
        assert_eq!(idempotency_key("evt-1/target"), "evt-1/target");
        let hashed = idempotency_key("with space");
        assert_eq!(hashed, idempotency_key("with space"));
        assert_ne!(hashed, idempotency_key("with  space"));
        assert!(hashed.starts_with("sha256:") && hashed.len() == 71);
        assert!(idempotency_key("").starts_with("sha256:"));
        let outbound = Outbound::from_parts(&BTreeMap::new(), &EgressConfig::default()).unwrap();
        fn shareable<T: Send + Sync + Clone>(_: &T) {}
        shareable(&outbound);
    }
}
