//! HTTP delivery of notifications: the egress rule, authentication, timeouts and retries.
//!
//! ```text
//!   JSON payload ─▶ prepare (credential: header, query, body field, secret path, signature)
//!                ─▶ egress check of IP literals ─▶ reqwest (guarded resolver, no redirects,
//!                   no proxy, per-attempt timeout) ─▶ classify: 2xx sent │ 408/429/5xx,
//!                   timeout, reset, connect: retry with jittered backoff or Retry-After │
//!                   anything else: failed
//! ```
//!
//! **The egress rule for alert routes.** Route URLs are user input, and the operator runs
//! inside the cluster with credentials of its own, so the addresses a notification may reach
//! are limited (RELIABILITY O1, adapted to alerting):
//!
//! - private (RFC 1918), carrier-grade NAT and unique-local addresses are allowed: an
//!   in-cluster Alertmanager or an internal relay is the common case;
//! - loopback is refused unless the route sets `insecureAllowHttp: true` (local development
//!   against `switchboard dev`, tests);
//! - link-local (including the cloud metadata address 169.254.169.254), unspecified,
//!   multicast, broadcast, reserved and documentation ranges, and IPv6 forms embedding them,
//!   are always refused: no alert receiver lives there;
//! - names are resolved by the guarded resolver, which drops refused addresses before the
//!   connection, so DNS cannot point a route somewhere else between check and connect;
//! - redirects are never followed; the response body is never read into anything a user
//!   can see (only the status code is reported).
//!
//! Errors never carry the URL (an incoming webhook's path is its secret); they name the
//! host, the category and the HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret;
use switchboard_worker::config::{EgressConfig, RetryConfig};
use switchboard_worker::credentials::hmac::signature_headers;
use switchboard_worker::delivery::{backoff_delay, parse_retry_after};
use switchboard_worker::outbound::egress::{EgressError, EgressPolicy};
use switchboard_worker::outbound::http::describe_reqwest_error;

use super::routes::{HttpAuth, HttpTarget};
use crate::api::ApiKeyLocation;

/// Address ranges alert routes may reach although the worker's guard refuses them.
const PRIVATE_RANGES: &[&str] =
    &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"];
/// Loopback, reachable only with `insecureAllowHttp`.
const LOOPBACK_RANGES: &[&str] = &["127.0.0.0/8", "::1/128"];

/// Why a notification was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The egress rule refused the address.
    #[error("refused by the egress rule: {0}")]
    Egress(String),
    /// The host name does not resolve.
    #[error("{0}")]
    Dns(String),
    /// No response in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// TLS failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The receiver answered with an unexpected status.
    #[error("HTTP {status} from {host}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Host that answered.
        host: String,
    },
    /// The receiver redirected (never followed).
    #[error("HTTP {status} from {host}: redirects are never followed")]
    Redirect {
        /// HTTP status.
        status: u16,
        /// Host that answered.
        host: String,
    },
    /// The notification could not be built (bad address, header, credential placement).
    #[error("cannot build the notification: {0}")]
    Build(String),
    /// The SMTP server refused the message or the session failed.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The route did not finish within its time budget.
    #[error("no result within {0:?}")]
    Deadline(Duration),
}

impl SendError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            SendError::Egress(_) => "egress",
            SendError::Dns(_) => "dns",
            SendError::Timeout(_) => "timeout",
            SendError::Connect(_) => "connect",
            SendError::Tls(_) => "tls",
            SendError::Status { .. } => "status",
            SendError::Redirect { .. } => "redirect",
            SendError::Build(_) => "invalid-notification",
            SendError::Smtp(_) => "smtp",
            SendError::Deadline(_) => "deadline",
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Dns(_) | SendError::Timeout(_) | SendError::Connect(_) => true,
            SendError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            _ => false,
        }
    }

    /// The reason for a person: category and, for HTTP, the status.
    pub fn short(&self) -> String {
        match self {
            SendError::Status { status, .. } | SendError::Redirect { status, .. } => {
                format!("{} (HTTP {status})", self.category())
            }
            _ => self.category().to_string(),
        }
    }
}

/// Timeouts and retries of one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Timeout of one attempt (connect, send, response head).
    pub attempt_timeout: Duration,
    /// Attempts, the first included.
    pub max_attempts: u32,
    /// Ceiling of the first backoff; doubles per retry.
    pub initial_backoff: Duration,
    /// Largest backoff, also the most a `Retry-After` may ask.
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl RetrySettings {
    /// The worker's retry configuration with these numbers (for its backoff helper).
    pub fn config(&self) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts,
            initial_backoff_ms: self.initial_backoff.as_millis() as u64,
            max_backoff_ms: self.max_backoff.as_millis() as u64,
        }
    }
}

/// The egress policies of alert routes: without and with `insecureAllowHttp`.
#[derive(Clone, Debug)]
pub struct AlertEgress {
    strict: Arc<EgressPolicy>,
    local: Arc<EgressPolicy>,
}

impl Default for AlertEgress {
    fn default() -> Self {
        let policy = |ranges: Vec<&str>| {
            Arc::new(
                EgressPolicy::new(&EgressConfig {
                    allow_cidrs: ranges.into_iter().map(String::from).collect(),
                })
                .expect("the built-in ranges parse"),
            )
        };
        AlertEgress {
            strict: policy(PRIVATE_RANGES.to_vec()),
            local: policy(PRIVATE_RANGES.iter().chain(LOOPBACK_RANGES).copied().collect()),
        }
    }
}

impl AlertEgress {
    /// The policy for a route.
    pub fn policy(&self, insecure_allow_http: bool) -> &Arc<EgressPolicy> {
        if insecure_allow_http { &self.local } else { &self.strict }
    }

    /// The addresses `host:port` may be reached at under the route's policy (resolving names).
    pub async fn addresses(
        &self,
        host: &str,
        port: u16,
        insecure: bool,
    ) -> Result<Vec<SocketAddr>, SendError> {
        let policy = self.policy(insecure);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            policy.check(host, ip).map_err(egress_error)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = tokio::net::lookup_host((bare, port)).await.map_err(|e| {
            egress_error(EgressError::Resolve { host: host.into(), reason: e.to_string() })
        })?;
        policy.filter(host, found).map_err(egress_error)
    }
}

fn egress_error(error: EgressError) -> SendError {
    match error {
        EgressError::Resolve { host, .. } => SendError::Dns(format!("could not resolve {host}")),
        other => SendError::Egress(other.to_string()),
    }
}

/// Resolves names for the HTTP clients, dropping addresses the policy refuses.
struct GuardedResolver(Arc<EgressPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| EgressError::Resolve { host: host.clone(), reason: e.to_string() })?;
            let addrs: reqwest::dns::Addrs = Box::new(policy.filter(&host, found)?.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP side of the router: one client per egress policy.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    egress: AlertEgress,
    strict: reqwest::Client,
    local: reqwest::Client,
    retry: RetrySettings,
}

impl HttpTransport {
    /// Clients for alert routes, with `retry` per route.
    pub fn new(retry: RetrySettings) -> HttpTransport {
        switchboard_worker::outbound::http::install_crypto_provider();
        let egress = AlertEgress::default();
        let client = |policy: &Arc<EgressPolicy>| {
            reqwest::Client::builder()
                .dns_resolver(GuardedResolver(policy.clone()))
                .redirect(reqwest::redirect::Policy::none())
                .retry(reqwest::retry::never())
                .no_proxy()
                .referer(false)
                .connect_timeout(retry.attempt_timeout)
                .timeout(retry.attempt_timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .user_agent(concat!("switchboard-operator/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a client without custom TLS settings builds")
        };
        HttpTransport {
            strict: client(egress.policy(false)),
            local: client(egress.policy(true)),
            egress,
            retry,
        }
    }

    /// The egress policies.
    pub fn egress(&self) -> &AlertEgress {
        &self.egress
    }

    /// The retry settings.
    pub fn retry(&self) -> &RetrySettings {
        &self.retry
    }

    /// POST `payload` (JSON) to `target` joined with `path`, authenticated per its
    /// credential, retrying transient failures. `message_id` identifies the notification
    /// (stable across retries: the Standard Webhooks `webhook-id`). Returns the HTTP status.
    pub async fn post_json(
        &self,
        target: &HttpTarget,
        path: &str,
        payload: serde_json::Value,
        message_id: &str,
    ) -> Result<u16, SendError> {
        let prepared = prepare(target, path, payload)?;
        let host = prepared.url.host_str().unwrap_or_default().to_string();
        if let Some(checked) =
            self.egress.policy(target.insecure_allow_http).check_literal(&prepared.url)
        {
            checked.map_err(egress_error)?;
        }
        let client = if target.insecure_allow_http { &self.local } else { &self.strict };
        let config = self.retry.config();
        let mut attempt = 1;
        loop {
            let mut request = client
                .post(prepared.url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(prepared.body.clone());
            for (name, value) in &prepared.headers {
                request = request.header(name, value);
            }
            if let HttpAuth::Hmac { scheme, key } = &target.auth {
                let headers = signature_headers(
                    scheme,
                    key.expose_secret(),
                    message_id,
                    Utc::now().timestamp(),
                    &prepared.body,
                )
                .map_err(SendError::Build)?;
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
            let (error, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(status);
                    }
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Utc::now()));
                    let host = host.clone();
                    if (300..400).contains(&status) {
                        (SendError::Redirect { status, host }, None)
                    } else {
                        (SendError::Status { status, host }, retry_after)
                    }
                }
                Err(error) => (transport_error(&error, &host), None),
            };
            if !error.is_transient() || attempt >= self.retry.max_attempts {
                return Err(error);
            }
            tokio::time::sleep(backoff_delay(&config, attempt, retry_after)).await;
            attempt += 1;
        }
    }
}

fn transport_error(error: &reqwest::Error, host: &str) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = source {
        if let Some(egress) = inner.downcast_ref::<EgressError>() {
            return egress_error(egress.clone());
        }
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return SendError::Tls(describe_reqwest_error(error));
        }
        source = match inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => inner.source(),
        };
    }
    if error.is_timeout() {
        SendError::Timeout(format!("{host} did not answer in time"))
    } else {
        SendError::Connect(format!("{host}: {}", describe_reqwest_error(error)))
    }
}

/// A notification ready to send: the full URL (with any secret path or query), extra
/// headers and the body bytes.
pub struct Prepared {
    /// Full URL.
    pub url: url::Url,
    /// Authentication headers.
    pub headers: Vec<(reqwest::header::HeaderName, HeaderValue)>,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Place the credential of `target` on a POST of `payload` to `target.url` + `path`
/// (signatures are added per attempt). Pure.
pub fn prepare(
    target: &HttpTarget,
    path: &str,
    mut payload: serde_json::Value,
) -> Result<Prepared, SendError> {
    let mut url = join_path(&target.url, path)?;
    let mut headers = Vec::new();
    let header_value = |text: String| {
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| SendError::Build("the credential is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok::<_, SendError>(value)
    };
    match &target.auth {
        HttpAuth::None | HttpAuth::Hmac { .. } => {}
        HttpAuth::Basic { username, password } => {
            use base64::Engine as _;
            let pair = format!("{}:{}", username.expose_secret(), password.expose_secret());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers
                .push((reqwest::header::AUTHORIZATION, header_value(format!("Basic {encoded}"))?));
        }
        HttpAuth::Bearer(token) => {
            headers.push((
                reqwest::header::AUTHORIZATION,
                header_value(format!("Bearer {}", token.expose_secret()))?,
            ));
        }
        HttpAuth::ApiKey { location, name, key } => {
            let key = key.expose_secret();
            let name = name.clone().unwrap_or_default();
            match location {
                ApiKeyLocation::Header => {
                    let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| SendError::Build("apiKey.name is not a header name".into()))?;
                    headers.push((header, header_value(key.to_string())?));
                }
                ApiKeyLocation::Query => {
                    url.query_pairs_mut().append_pair(&name, key);
                }
                ApiKeyLocation::Body => {
                    let object = payload.as_object_mut().ok_or_else(|| {
                        SendError::Build("this route's payload has no field for the key".into())
                    })?;
                    object.insert(name, serde_json::Value::String(key.to_string()));
                }
                ApiKeyLocation::Path => {
                    url = append_secret_path(&url, key)?;
                }
            }
        }
    }
    let body = serde_json::to_vec(&payload).expect("JSON values serialize");
    Ok(Prepared { url, headers, body })
}

/// `base` with `path` appended to its path (`path` empty: `base` itself).
fn join_path(base: &url::Url, path: &str) -> Result<url::Url, SendError> {
    if path.is_empty() {
        return Ok(base.clone());
    }
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    Ok(url)
}

/// The incoming-webhook URL: the declared prefix with the secret rest appended (the secret
/// may hold a path and a query, as Teams Workflows URLs do).
fn append_secret_path(base: &url::Url, secret: &str) -> Result<url::Url, SendError> {
    let prefix = base.as_str().trim_end_matches('/');
    let rest = secret.trim().trim_start_matches('/');
    url::Url::parse(&format!("{prefix}/{rest}"))
        .ok()
        .filter(|joined| joined.host_str() == base.host_str() && joined.port() == base.port())
        .ok_or_else(|| {
            SendError::Build("the secret path does not form a URL on the route's host".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn target(url: &str, auth: HttpAuth) -> HttpTarget {
        HttpTarget { url: url::Url::parse(url).unwrap(), insecure_allow_http: false, auth }
    }

    #[test]
    fn api_keys_go_where_the_credential_says() {
        let key = || SecretString::from("s3cr3t-KEY".to_string());
        let json = serde_json::json!({"event_action": "trigger"});
        let body = prepare(
            &target(
                "https://events.example.com/v2/enqueue",
                HttpAuth::ApiKey {
                    location: ApiKeyLocation::Body,
                    name: Some("routing_key".into()),
                    key: key(),
                },
            ),
            "",
            json.clone(),
        )
        .unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&body.body).unwrap();
        assert_eq!(sent["routing_key"], "s3cr3t-KEY");
        assert_eq!(body.url.as_str(), "https://events.example.com/v2/enqueue");

        let path = prepare(
            &target(
                "https://hooks.example.com/services/",
                HttpAuth::ApiKey {
                    location: ApiKeyLocation::Path,
                    name: None,
                    key: SecretString::from("/T0/B0/XYZ".to_string()),
                },
            ),
            "",
            json.clone(),
        )
        .unwrap();
        assert_eq!(path.url.as_str(), "https://hooks.example.com/services/T0/B0/XYZ");

        let query = prepare(
            &target(
                "https://flows.example.com/workflows/1/triggers/manual/paths/invoke?api-version=1",
                HttpAuth::ApiKey {
                    location: ApiKeyLocation::Query,
                    name: Some("sig".into()),
                    key: key(),
                },
            ),
            "",
            json.clone(),
        )
        .unwrap();
        assert_eq!(query.url.query(), Some("api-version=1&sig=s3cr3t-KEY"));

        for hostile in ["@evil.example.com/x", "/../../admin", "//evil.example.com/x", "%2F%2Fevil"]
        {
            let prepared = prepare(
                &target(
                    "https://hooks.example.com/services",
                    HttpAuth::ApiKey {
                        location: ApiKeyLocation::Path,
                        name: None,
                        key: SecretString::from(hostile.to_string()),
                    },
                ),
                "",
                json.clone(),
            );
            if let Ok(prepared) = prepared {
                assert_eq!(prepared.url.host_str(), Some("hooks.example.com"), "{hostile}");
            }
        }
    }

    #[test]
    fn alertmanager_paths_join_below_a_prefix() {
        let t = target("https://mon.example.com/alertmanager/", HttpAuth::None);
        assert_eq!(
            prepare(&t, "/api/v2/alerts", serde_json::json!([])).unwrap().url.as_str(),
            "https://mon.example.com/alertmanager/api/v2/alerts"
        );
    }

    #[test]
    fn authorization_headers_are_marked_sensitive() {
        let t = target(
            "https://am.example.com",
            HttpAuth::Bearer(SecretString::from("tok-123456".to_string())),
        );
        let prepared = prepare(&t, "", serde_json::json!({})).unwrap();
        assert!(prepared.headers[0].1.is_sensitive());
        assert_eq!(format!("{:?}", prepared.headers[0].1), "Sensitive");
    }

    #[tokio::test]
    async fn the_egress_rule_refuses_metadata_always_and_loopback_without_insecure() {
        let egress = AlertEgress::default();
        for insecure in [false, true] {
            let error = egress.addresses("169.254.169.254", 80, insecure).await.unwrap_err();
            assert_eq!(error.category(), "egress", "{error}");
            let error =
                egress.addresses("[::ffff:169.254.169.254]", 80, insecure).await.unwrap_err();
            assert_eq!(error.category(), "egress", "{error}");
        }
        assert_eq!(
            egress.addresses("127.0.0.1", 80, false).await.unwrap_err().category(),
            "egress"
        );
        assert!(egress.addresses("127.0.0.1", 80, true).await.is_ok());
        assert!(egress.addresses("10.96.0.10", 9093, false).await.is_ok(), "in-cluster services");
        assert!(egress.addresses("93.184.215.14", 443, false).await.is_ok());
    }

    #[tokio::test]
    async fn refused_addresses_are_never_contacted() {
        let transport = HttpTransport::new(RetrySettings::default());
        let t = HttpTarget {
            url: url::Url::parse("http://169.254.169.254/latest/meta-data/").unwrap(),
            insecure_allow_http: true,
            auth: HttpAuth::None,
        };
        let error = transport.post_json(&t, "", serde_json::json!({}), "id").await.unwrap_err();
        assert_eq!(error.category(), "egress");
        // Loopback by name goes through the guarded resolver.
        let t = HttpTarget {
            url: url::Url::parse("https://localhost:1/").unwrap(),
            insecure_allow_http: false,
            auth: HttpAuth::None,
        };
        let error = transport.post_json(&t, "", serde_json::json!({}), "id").await.unwrap_err();
        assert_eq!(error.category(), "egress", "{error}");
    }
}
