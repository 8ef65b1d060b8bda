//! Synthetic health checks of the external systems a worker talks to (`spec.healthChecks`).
//!
//! ```text
//!  every intervalMs (each check bounded by timeoutMs, all checks of a round at once):
//!   targets: true
//!     target:<name>           outboundMessage: HEAD base URL (OPTIONS when HEAD is refused
//!                             with 405/501), with the target's credentials and TLS;
//!                             a 5xx, timeout, TLS or connection failure is False, any
//!                             other status proves reachability
//!                             email: connect (implicit TLS / STARTTLS), EHLO, NOOP, QUIT
//!                             database: TCP connection
//!     source:imap             TCP + TLS handshake + IMAP greeting
//!     certificate:<host:port> server certificate of every HTTPS endpoint and TLS mail
//!                             server: False when expired, untrusted or within the
//!                             warning window; notAfter reported
//!   credentials: true
//!     token:<credential>      an OAuth2 token through the deliveries' own cache:
//!                             TokenEndpointUnreachable (no answer) or TokenRejected
//!     clientCertificate:<c>   expiry of an mTLS client certificate
//!   probes
//!     probe:<name>            the OutboundMessage call; True on its expected statuses
//!        │
//!        ▼
//!  results ──▶ /status `healthChecks` (status, reason, message, lastChecked,
//!              lastTransitionTime, consecutiveFailures, notAfter) and the metrics
//!              switchboard_worker_health_check{check} (1/0),
//!              switchboard_worker_certificate_expiry_timestamp_seconds{check}
//! ```
//!
//! Checks never change the delivery path: HTTP checks go through [`Outbound::probe`], which
//! bypasses the circuit breakers, delivery metrics and retries; the token check uses the same
//! token cache as deliveries (so it adds no token requests while a token is valid). Messages
//! are sanitized and never carry a secret; nothing here logs a URL with credentials or a
//! response body.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::{
    HealthChecksConfig, MethodConfig, OutboundCall, RetryConfig, SourceConfig, TargetKind,
    WorkerConfig,
};
use crate::credentials::CredentialError;
use crate::delivery::{AttemptOutcome, FailureKind, Outbound, TokenCheckError};
use crate::email::imap::ImapServer;
use crate::email::smtp::EmailTarget;
use crate::outbound::egress::EgressPolicy;
use crate::outbound::tcp::{ConnectError, certificate_not_after, connect, handshake, roots};
use crate::runtime::metrics::{CheckLabels, Metrics};
use crate::status::HealthCheckStatus;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// Whether it passed.
    pub healthy: bool,
    /// Short CamelCase reason.
    pub reason: &'static str,
    /// What was found.
    pub message: String,
    /// Expiry of the certificate looked at.
    pub not_after: Option<DateTime<Utc>>,
}

impl CheckResult {
    fn pass(reason: &'static str, message: impl Into<String>) -> CheckResult {
        CheckResult { healthy: true, reason, message: message.into(), not_after: None }
    }

    fn fail(reason: &'static str, message: impl Into<String>) -> CheckResult {
        CheckResult { healthy: false, reason, message: message.into(), not_after: None }
    }
}

/// Judge a certificate's expiry against the warning window.
pub fn expiry_result(
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
    warning: Duration,
) -> CheckResult {
    let date = not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let left = not_after - now;
    let mut result = if left <= chrono::Duration::zero() {
        CheckResult::fail("CertificateExpired", format!("the certificate expired at {date}"))
    } else if left.to_std().unwrap_or_default() <= warning {
        CheckResult::fail(
            "CertificateExpiringSoon",
            format!(
                "the certificate expires at {date}, in {} day(s): within the warning window of {} day(s)",
                left.num_days(),
                warning.as_secs() / 86_400
            ),
        )
    } else {
        CheckResult::pass(
            "CertificateValid",
            format!("the certificate is valid until {date} ({} day(s))", left.num_days()),
        )
    };
    result.not_after = Some(not_after);
    result
}

fn failure_reason(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Timeout => "Timeout",
        FailureKind::Tls => "TlsFailed",
        FailureKind::Dns => "DnsFailed",
        FailureKind::Egress => "EgressRefused",
        FailureKind::Credential | FailureKind::Config | FailureKind::Template => "Misconfigured",
        FailureKind::TokenRequest => "TokenUnavailable",
        _ => "Unreachable",
    }
}

fn connect_reason(error: &ConnectError) -> &'static str {
    match error.category() {
        "timeout" => "Timeout",
        "tls" => "TlsFailed",
        "dns" => "DnsFailed",
        "egress" => "EgressRefused",
        "config" => "Misconfigured",
        _ => "Unreachable",
    }
}

/// A server whose TLS certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TlsEndpoint {
    host: String,
    port: u16,
    ca_file: Option<String>,
    server_name: Option<String>,
}

impl TlsEndpoint {
    fn check_name(&self) -> String {
        format!("certificate:{}", crate::outbound::tcp::authority(&self.host, self.port))
    }
}

enum Check {
    HttpTarget(OutboundCall),
    EmailTarget(Box<EmailTarget>),
    Tcp { host: String, port: u16 },
    Imap { server: ImapServer, ca_file: Option<String> },
    Token(String),
    ClientCertificate(String),
    ServerCertificate(TlsEndpoint),
    Probe(OutboundCall),
}

/// The health checks of one worker and their latest results.
pub struct HealthChecker {
    checks: Vec<(String, Check)>,
    outbound: Outbound,
    egress: Arc<EgressPolicy>,
    interval: Duration,
    timeout: Duration,
    warning: Duration,
    results: Mutex<BTreeMap<String, HealthCheckStatus>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker").field("checks", &self.check_names()).finish_non_exhaustive()
    }
}

fn https_endpoint(call: &OutboundCall) -> Option<TlsEndpoint> {
    let url = url::Url::parse(&call.endpoint.url).ok()?;
    if url.scheme() != "https" {
        return None;
    }
    Some(TlsEndpoint {
        host: url.host_str()?.trim_matches(['[', ']']).to_string(),
        port: url.port_or_known_default()?,
        ca_file: call.endpoint.ca_file.clone(),
        server_name: call.endpoint.server_name.clone(),
    })
}

/// The request a reachability check sends: `method` on the endpoint's base URL, nothing
/// templated, one attempt within `timeout`.
fn reachability_call(call: &OutboundCall, method: &str, timeout: Duration) -> OutboundCall {
    let mut probe = call.clone();
    probe.endpoint.protocol = "rest".into();
    probe.endpoint.soap_version = None;
    probe.endpoint.timeout_ms = timeout.as_millis().max(1) as u64;
    probe.endpoint.retry =
        RetryConfig { max_attempts: 1, initial_backoff_ms: 0, max_backoff_ms: 0 };
    probe.method = MethodConfig {
        name: "health-check".into(),
        http_method: method.into(),
        path: "/".into(),
        query: BTreeMap::new(),
        headers: BTreeMap::new(),
        body: None,
        content_type: None,
        soap_action: None,
        variables: vec![],
        expected_statuses: vec![],
        capture: BTreeMap::new(),
    };
    probe.variables = BTreeMap::new();
    probe
}

impl HealthChecker {
    /// The checks `config.healthChecks` asks for; `None` when it asks for none. `outbound`
    /// should be the deliveries' own (shared credentials and token caches).
    pub fn new(config: &WorkerConfig, outbound: Outbound) -> Result<Option<HealthChecker>, String> {
        let Some(settings) = &config.health_checks else { return Ok(None) };
        let egress = Arc::new(EgressPolicy::new(&config.egress).map_err(|e| e.to_string())?);
        let checks = Self::plan(config, settings, &outbound, &egress)?;
        Ok(Some(HealthChecker {
            checks,
            outbound,
            egress,
            interval: Duration::from_millis(settings.interval_ms.max(100)),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            warning: Duration::from_secs(settings.certificate_expiry_warning_seconds),
            results: Mutex::new(BTreeMap::new()),
            metrics: None,
        }))
    }

    fn plan(
        config: &WorkerConfig,
        settings: &HealthChecksConfig,
        outbound: &Outbound,
        egress: &Arc<EgressPolicy>,
    ) -> Result<Vec<(String, Check)>, String> {
        let mut checks = Vec::new();
        let mut certificates = BTreeSet::new();
        if settings.targets {
            for target in &config.targets {
                let name = format!("target:{}", target.name);
                match &target.kind {
                    TargetKind::OutboundMessage(call) => {
                        certificates.extend(https_endpoint(call));
                        checks.push((name, Check::HttpTarget(call.clone())));
                    }
                    TargetKind::Email(email) => {
                        let sender = EmailTarget::new(
                            &target.name,
                            email,
                            outbound.clone(),
                            egress.clone(),
                            config.delivery.retry.clone(),
                        )
                        .map_err(|e| format!("target {:?}: {e}", target.name))?;
                        checks.push((name, Check::EmailTarget(Box::new(sender))));
                    }
                    TargetKind::Database(db) => {
                        let url = url::Url::parse(&db.connection.endpoint)
                            .map_err(|e| format!("target {:?}: endpoint: {e}", target.name))?;
                        let port = url.port().unwrap_or(match db.connection.driver.as_str() {
                            "mysql" => 3306,
                            _ => 5432,
                        });
                        let host = url.host_str().unwrap_or_default().to_string();
                        checks.push((name, Check::Tcp { host, port }));
                    }
                }
            }
            if let Some(SourceConfig::Imap(imap)) = &config.source {
                let server = ImapServer::parse(&imap.server).map_err(|e| e.to_string())?;
                checks.push((
                    "source:imap".into(),
                    Check::Imap { server, ca_file: imap.ca_file.clone() },
                ));
            }
            for probe in &settings.probes {
                certificates.extend(https_endpoint(&probe.call));
            }
            let mut named = BTreeSet::new();
            for endpoint in certificates {
                if named.insert(endpoint.check_name()) {
                    checks.push((endpoint.check_name(), Check::ServerCertificate(endpoint)));
                }
            }
        }
        if settings.credentials {
            for (name, credential) in &config.credentials {
                match credential.type_.as_str() {
                    "oauth2ClientCredentials" => {
                        checks.push((format!("token:{name}"), Check::Token(name.clone())))
                    }
                    "mtls" => checks.push((
                        format!("clientCertificate:{name}"),
                        Check::ClientCertificate(name.clone()),
                    )),
                    _ => {}
                }
            }
        }
        for probe in &settings.probes {
            checks.push((format!("probe:{}", probe.name), Check::Probe(probe.call.clone())));
        }
        Ok(checks)
    }

    /// Also set the `switchboard_worker_health_check` and certificate expiry gauges.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> HealthChecker {
        self.metrics = Some(metrics);
        self
    }

    /// Names of the checks (certificate results of mail servers are added when seen).
    pub fn check_names(&self) -> Vec<String> {
        self.checks.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The interval between rounds.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The latest results, by name.
    pub fn statuses(&self) -> Vec<HealthCheckStatus> {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Run every check once (concurrently, each within the timeout) and record the results.
    pub async fn run_round(&self) -> Vec<HealthCheckStatus> {
        let rounds = self.checks.iter().map(|(name, check)| async move {
            let limit = self.timeout + Duration::from_millis(500);
            match tokio::time::timeout(limit, self.run_check(name, check)).await {
                Ok(results) => (name, results),
                Err(_) => (
                    name,
                    vec![(
                        name.clone(),
                        CheckResult::fail(
                            "Timeout",
                            format!("no result within {} ms", self.timeout.as_millis()),
                        ),
                    )],
                ),
            }
        });
        let now = Utc::now();
        for (_, results) in futures_util::future::join_all(rounds).await {
            for (name, result) in results {
                self.record(&name, result, now);
            }
        }
        self.statuses()
    }

    /// Run rounds every interval until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    tokio::select! {
                        _ = self.run_round() => {}
                        _ = shutdown.changed() => return,
                    }
                }
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    fn record(&self, name: &str, result: CheckResult, now: DateTime<Utc>) {
        let status = if result.healthy { "True" } else { "False" };
        let message = crate::queue::sanitize_message(&result.message);
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let consecutive_failures = match results.get(name) {
            _ if result.healthy => 0,
            Some(previous) => previous.consecutive_failures + 1,
            None => 1,
        };
        let last_transition_time = match results.get(name) {
            Some(previous) if previous.status == status => previous.last_transition_time,
            previous => {
                if previous.is_some() || !result.healthy {
                    if result.healthy {
                        tracing::info!(check = %name, reason = result.reason, "health check passes");
                    } else {
                        tracing::warn!(check = %name, reason = result.reason, message = %message,
                            "health check fails");
                    }
                }
                now
            }
        };
        if let Some(metrics) = &self.metrics {
            let labels = CheckLabels { check: name.to_string() };
            metrics.health_check.get_or_create(&labels).set(i64::from(result.healthy));
            if let Some(not_after) = result.not_after {
                metrics.certificate_expiry.get_or_create(&labels).set(not_after.timestamp());
            }
        }
        results.insert(
            name.to_string(),
            HealthCheckStatus {
                name: name.to_string(),
                status: status.into(),
                reason: result.reason.into(),
                message,
                last_checked: now,
                last_transition_time,
                consecutive_failures,
                not_after: result.not_after,
            },
        );
    }

    async fn run_check(&self, name: &str, check: &Check) -> Vec<(String, CheckResult)> {
        let name = name.to_string();
        match check {
            Check::HttpTarget(call) => vec![(name, self.http_reachability(call).await)],
            Check::Probe(call) => vec![(name, self.probe(call).await)],
            Check::Token(credential) => vec![(name, self.token(credential).await)],
            Check::ClientCertificate(credential) => {
                vec![(name, self.client_certificate(credential))]
            }
            Check::ServerCertificate(endpoint) => {
                vec![(name, self.server_certificate(endpoint).await)]
            }
            Check::Tcp { host, port } => {
                let result = match connect(&self.egress, host, *port, self.timeout).await {
                    Ok(_) => CheckResult::pass(
                        "Reachable",
                        format!(
                            "TCP connection to {host}:{port} made (TLS is not checked for databases)"
                        ),
                    ),
                    Err(e) => CheckResult::fail(connect_reason(&e), e.to_string()),
                };
                vec![(name, result)]
            }
            Check::Imap { server, ca_file } => {
                match crate::email::imap::open(
                    server,
                    ca_file.as_deref(),
                    &self.egress,
                    self.timeout,
                )
                .await
                {
                    Ok((_client, presented)) => {
                        let mut results = vec![(
                            name,
                            CheckResult::pass(
                                "Reachable",
                                format!("{} answered with an IMAP greeting", server.authority()),
                            ),
                        )];
                        if let Some(not_after) = presented.and_then(|p| p.not_after()) {
                            results.push((
                                format!("certificate:{}", server.authority()),
                                expiry_result(not_after, Utc::now(), self.warning),
                            ));
                        }
                        results
                    }
                    Err(e) => {
                        let reason = match &e {
                            crate::email::imap::ImapError::Connect(c) => connect_reason(c),
                            crate::email::imap::ImapError::Timeout { .. } => "Timeout",
                            _ => "ServerError",
                        };
                        vec![(name, CheckResult::fail(reason, e.to_string()))]
                    }
                }
            }
            Check::EmailTarget(target) => match target.check().await {
                Ok(certificate) => {
                    let mut results = vec![(
                        name,
                        CheckResult::pass(
                            "Reachable",
                            format!("{} answered EHLO and NOOP", target.server().authority()),
                        ),
                    )];
                    if let Some(not_after) = certificate.as_deref().and_then(certificate_not_after)
                    {
                        results.push((
                            format!("certificate:{}", target.server().authority()),
                            expiry_result(not_after, Utc::now(), self.warning),
                        ));
                    }
                    results
                }
                Err(failure) => {
                    let reason = match failure.reason.as_str() {
                        "timeout" => "Timeout",
                        "tls" => "TlsFailed",
                        "starttls_missing" | "smtp_client" => "StartTlsMissing",
                        "egress" => "EgressRefused",
                        "dns" => "DnsFailed",
                        r if r.starts_with("smtp_") => "ServerError",
                        _ => "Unreachable",
                    };
                    vec![(name, CheckResult::fail(reason, failure.to_string()))]
                }
            },
        }
    }

    async fn http_reachability(&self, call: &OutboundCall) -> CheckResult {
        for method in ["HEAD", "OPTIONS"] {
            let probe = reachability_call(call, method, self.timeout);
            match self.outbound.probe(&probe, &BTreeMap::new(), "health-check").await {
                AttemptOutcome::Delivered(d) => {
                    return CheckResult::pass(
                        "Reachable",
                        format!("{method} answered HTTP {}", d.status),
                    );
                }
                AttemptOutcome::Retryable(f) | AttemptOutcome::Permanent(f) => match f.status {
                    Some(405 | 501) if method == "HEAD" => continue,
                    Some(status) if status >= 500 => {
                        return CheckResult::fail(
                            "ServerError",
                            format!("{method} answered HTTP {status}"),
                        );
                    }
                    Some(status) => {
                        return CheckResult::pass(
                            "Reachable",
                            format!("{method} answered HTTP {status}"),
                        );
                    }
                    None => return CheckResult::fail(failure_reason(f.kind), f.to_string()),
                },
                AttemptOutcome::CircuitOpen { .. } => {
                    return CheckResult::fail("Unreachable", "the endpoint's circuit is open");
                }
            }
        }
        CheckResult::fail("ServerError", "neither HEAD nor OPTIONS is served")
    }

    async fn probe(&self, call: &OutboundCall) -> CheckResult {
        let mut call = call.clone();
        call.endpoint.timeout_ms = self.timeout.as_millis().max(1) as u64;
        match self.outbound.probe(&call, &BTreeMap::new(), "health-probe").await {
            AttemptOutcome::Delivered(d) => CheckResult::pass(
                "ProbeSucceeded",
                format!("{}.{} answered HTTP {}", call.endpoint.name, call.method.name, d.status),
            ),
            AttemptOutcome::Retryable(f) | AttemptOutcome::Permanent(f) => CheckResult::fail(
                "ProbeFailed",
                format!("{}.{}: {f}", call.endpoint.name, call.method.name),
            ),
            AttemptOutcome::CircuitOpen { .. } => {
                CheckResult::fail("ProbeFailed", "the endpoint's circuit is open")
            }
        }
    }

    async fn token(&self, credential: &str) -> CheckResult {
        let error = match self.outbound.check_token(credential, self.timeout).await {
            Ok(()) => {
                return CheckResult::pass(
                    "TokenIssued",
                    "an access token is available (cached, or issued by the token endpoint)",
                );
            }
            Err(error) => error,
        };
        let reason = match &error {
            TokenCheckError::Timeout { .. }
            | TokenCheckError::Credential(CredentialError::TokenEndpointUnreachable { .. }) => {
                "TokenEndpointUnreachable"
            }
            TokenCheckError::Credential(CredentialError::TokenRequest { .. }) => "TokenRejected",
            TokenCheckError::Credential(CredentialError::TokenEndpointRefused { .. }) => {
                "EgressRefused"
            }
            TokenCheckError::Credential(_) => "Misconfigured",
        };
        CheckResult::fail(reason, error.to_string())
    }

    fn client_certificate(&self, credential: &str) -> CheckResult {
        let loaded = self.outbound.credentials().get(credential).and_then(|c| {
            c.client_certificate()
                .ok_or_else(|| crate::credentials::CredentialError::WrongType {
                    credential: credential.to_string(),
                    found: c.type_name(),
                    expected: "mtls",
                })?
                .current()
        });
        match loaded {
            Ok(key) => match key.end_entity_cert().ok().and_then(|c| certificate_not_after(c)) {
                Some(not_after) => expiry_result(not_after, Utc::now(), self.warning),
                None => {
                    CheckResult::fail("CertificateUnavailable", "the certificate cannot be read")
                }
            },
            Err(e) => CheckResult::fail("CertificateUnavailable", e.to_string()),
        }
    }

    async fn server_certificate(&self, endpoint: &TlsEndpoint) -> CheckResult {
        let stream = match connect(&self.egress, &endpoint.host, endpoint.port, self.timeout).await
        {
            Ok(stream) => stream,
            Err(e) => return CheckResult::fail(connect_reason(&e), e.to_string()),
        };
        let roots = match roots(endpoint.ca_file.as_deref()) {
            Ok(roots) => roots,
            Err(e) => return CheckResult::fail("Misconfigured", e.to_string()),
        };
        let name = endpoint.server_name.as_deref().unwrap_or(&endpoint.host);
        let (result, presented) =
            handshake(stream, roots, name, endpoint.port, &[b"h2", b"http/1.1"]).await;
        let Some(presented) = presented else {
            return match result {
                Err(e) => CheckResult::fail(connect_reason(&e), e.to_string()),
                Ok(_) => {
                    CheckResult::fail("CertificateUnavailable", "no certificate was presented")
                }
            };
        };
        let Some(not_after) = presented.not_after() else {
            return CheckResult::fail("CertificateUnavailable", "the certificate cannot be parsed");
        };
        let now = Utc::now();
        match &presented.verification_error {
            Some(_) if not_after <= now => expiry_result(not_after, now, self.warning),
            Some(error) => {
                let mut result = CheckResult::fail(
                    "CertificateUntrusted",
                    format!("the certificate does not verify: {error}"),
                );
                result.not_after = Some(not_after);
                result
            }
            None => expiry_result(not_after, now, self.warning),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_windows() {
        let now = Utc::now();
        let day = chrono::Duration::days(1);
        let warning = Duration::from_secs(21 * 86_400);
        let valid = expiry_result(now + day * 90, now, warning);
        assert!(valid.healthy && valid.reason == "CertificateValid", "{valid:?}");
        let soon = expiry_result(now + day * 3, now, warning);
        assert!(!soon.healthy && soon.reason == "CertificateExpiringSoon", "{soon:?}");
        assert!(soon.message.contains("21 day(s)"), "{}", soon.message);
        let gone = expiry_result(now - day, now, warning);
        assert!(!gone.healthy && gone.reason == "CertificateExpired", "{gone:?}");
        assert_eq!(gone.not_after, Some(now - day));
    }

    #[test]
    fn reachability_requests_are_untemplated_single_attempts() {
        let call = OutboundCall {
            endpoint: crate::config::EndpointConfig {
                name: "svc".into(),
                url: "https://api.example.com/v1".into(),
                protocol: "soap".into(),
                soap_version: Some("1.1".into()),
                credential: None,
                client_certificate: None,
                ca_file: None,
                server_name: None,
                timeout_ms: 30_000,
                retry: RetryConfig {
                    max_attempts: 5,
                    initial_backoff_ms: 100,
                    max_backoff_ms: 1000,
                },
                circuit_breaker: crate::config::CircuitBreakerConfig {
                    failure_threshold: 3,
                    open_for_ms: 1000,
                },
            },
            method: MethodConfig {
                name: "create".into(),
                http_method: "POST".into(),
                path: "/items/${id}".into(),
                query: BTreeMap::new(),
                headers: BTreeMap::new(),
                body: Some("<x>${id}</x>".into()),
                content_type: None,
                soap_action: None,
                variables: vec![],
                expected_statuses: vec![],
                capture: BTreeMap::new(),
            },
            variables: BTreeMap::new(),
        };
        let probe = reachability_call(&call, "HEAD", Duration::from_secs(2));
        assert_eq!(probe.method.http_method, "HEAD");
        assert_eq!(probe.method.path, "/");
        assert_eq!(probe.endpoint.timeout_ms, 2000);
        assert_eq!(probe.endpoint.retry.max_attempts, 1);
        assert_eq!(probe.endpoint.protocol, "rest");
        crate::outbound::check_call(&probe).unwrap();
        let endpoint = https_endpoint(&call).unwrap();
        assert_eq!(endpoint.check_name(), "certificate:api.example.com:443");
    }
}
