//! OAuth 2.0 client-credentials tokens (RFC 6749 §4.4), cached with single-flight refresh.
//!
//! ```text
//!   token() ──▶ lock ──▶ cached and not within `refreshSkewSeconds` of expiry? ──▶ use it
//!                 │                                   │ no
//!                 │                                   ▼
//!   (other callers wait on the lock)        POST tokenUrl, cache, use it
//! ```
//!
//! The lock is held across the token request, so any number of concurrent callers at expiry
//! cause exactly one request; the ones that waited find the fresh token (RELIABILITY C1).
//! Each token carries a generation number; [`TokenCache::invalidate`] drops the cached token
//! only if it is the one a resource server rejected, so a late 401 for an old token never
//! throws away a newer one. Expiry is measured on tokio's clock, so tests can step over it.
//!
//! The client id and secret are re-read from their files on each token request, so a
//! rotated client secret is used from the next refresh on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{CredentialError, secret_file::SecretFile, secret_text};
use crate::config::{OAuth2Config, SecretRole};
use crate::outbound::egress::EgressPolicy;

/// Lifetime assumed when the token response has no `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Timeout of one token request.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// An access token from the cache.
pub struct AccessToken {
    value: SecretString,
    refresh_at: Instant,
    generation: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[REDACTED]")
            .field("generation", &self.generation)
            .finish()
    }
}

impl AccessToken {
    /// The token.
    pub fn value(&self) -> &SecretString {
        &self.value
    }

    /// Which token of this cache it is (1 for the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the cache stops handing it out.
    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }

    /// `Bearer <token>`, marked sensitive.
    pub fn authorization_header(&self) -> Result<HeaderValue, CredentialError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.value.expose_secret()))
            .map_err(|_| CredentialError::TokenRequest {
                credential: String::new(),
                status: None,
                reason: "the access token is not usable in an HTTP header".into(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The token cache of one `oauth2ClientCredentials` credential.
pub struct TokenCache {
    credential: String,
    token_url: url::Url,
    scopes: Vec<String>,
    audience: Option<String>,
    basic_auth: bool,
    skew: Duration,
    client_id: SecretFile,
    client_secret: SecretFile,
    current: Mutex<Option<Arc<AccessToken>>>,
    generations: AtomicU64,
    requests: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("credential", &self.credential)
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub(crate) fn new(
        credential: &str,
        config: &OAuth2Config,
        client_id: SecretFile,
        client_secret: SecretFile,
    ) -> Result<TokenCache, CredentialError> {
        let misconfigured =
            |reason: String| CredentialError::Config { credential: credential.to_string(), reason };
        let token_url = url::Url::parse(&config.token_url)
            .map_err(|e| misconfigured(format!("tokenUrl is not a URL: {e}")))?;
        if !matches!(token_url.scheme(), "https" | "http") || token_url.host().is_none() {
            return Err(misconfigured("tokenUrl must be an http(s) URL with a host".into()));
        }
        let basic_auth = match config.auth_style.as_str() {
            "basic" => true,
            "body" => false,
            other => return Err(misconfigured(format!("unknown oauth2 authStyle {other:?}"))),
        };
        Ok(TokenCache {
            credential: credential.to_string(),
            token_url,
            scopes: config.scopes.clone(),
            audience: config.audience.clone(),
            basic_auth,
            skew: Duration::from_secs(config.refresh_skew_seconds.into()),
            client_id,
            client_secret,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    pub(crate) fn role_file(&self, role: SecretRole) -> Option<&SecretFile> {
        match role {
            SecretRole::ClientId => Some(&self.client_id),
            SecretRole::ClientSecret => Some(&self.client_secret),
            _ => None,
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &url::Url {
        &self.token_url
    }

    /// Token requests sent so far (successful or not).
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn check_files(&self) -> Result<(), CredentialError> {
        self.read(SecretRole::ClientId)?;
        self.read(SecretRole::ClientSecret)?;
        Ok(())
    }

    fn read(&self, role: SecretRole) -> Result<SecretString, CredentialError> {
        let file = self.role_file(role).expect("client id and secret roles");
        let (bytes, _) = file.read()?;
        secret_text(&self.credential, role, bytes.expose_secret())
    }

    /// A token that is not within the skew of its expiry, requesting one if needed. Concurrent
    /// callers share one request.
    /// The token endpoint is checked against `egress` like any other call (an IP-literal
    /// host here; names by `http`'s guarded resolver).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        egress: &EgressPolicy,
    ) -> Result<Arc<AccessToken>, CredentialError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.clone());
        }
        *current = None;
        if let Some(Err(refused)) = egress.check_literal(&self.token_url) {
            return Err(CredentialError::TokenEndpointRefused {
                credential: self.credential.clone(),
                reason: refused.to_string(),
            });
        }
        let token = Arc::new(self.request(http).await?);
        *current = Some(token.clone());
        Ok(token)
    }

    /// Forget `rejected` if it is still the cached token. Returns whether it was.
    pub async fn invalidate(&self, rejected: &AccessToken) -> bool {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.generation == rejected.generation) {
            *current = None;
            tracing::info!(credential = %self.credential, generation = rejected.generation,
                "access token rejected by the resource server; it will be refreshed");
            true
        } else {
            false
        }
    }

    async fn request(&self, http: &reqwest::Client) -> Result<AccessToken, CredentialError> {
        let failed = |status: Option<u16>, reason: String| CredentialError::TokenRequest {
            credential: self.credential.clone(),
            status,
            reason,
        };
        let client_id = self.read(SecretRole::ClientId)?;
        let client_secret = self.read(SecretRole::ClientSecret)?;

        // Built in one expression: the serializer is not Send and must not live across an await.
        let form_pairs = |with_client: bool| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            if let Some(audience) = &self.audience {
                form.append_pair("audience", audience);
            }
            if with_client {
                form.append_pair("client_id", client_id.expose_secret());
                form.append_pair("client_secret", client_secret.expose_secret());
            }
            SecretString::from(form.finish())
        };
        let mut request = http
            .post(self.token_url.clone())
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if self.basic_auth {
            // RFC 6749 §2.3.1: id and secret are form-encoded before being joined.
            use base64::Engine as _;
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let joined = SecretString::from(format!(
                "{}:{}",
                encode(client_id.expose_secret()),
                encode(client_secret.expose_secret())
            ));
            let mut value = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(joined.expose_secret())
            ))
            .map_err(|_| failed(None, "client credentials not usable in a header".into()))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let body = form_pairs(!self.basic_auth);
        let request = request.body(body.expose_secret().to_string());

        let started = Instant::now();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response =
            request.send().await.map_err(|e| {
                match crate::outbound::http::find_source::<crate::outbound::egress::EgressError>(&e)
                {
                    Some(refused @ crate::outbound::egress::EgressError::Refused { .. })
                    | Some(
                        refused @ crate::outbound::egress::EgressError::NoAllowedAddress { .. },
                    ) => CredentialError::TokenEndpointRefused {
                        credential: self.credential.clone(),
                        reason: refused.to_string(),
                    },
                    _ => CredentialError::TokenEndpointUnreachable {
                        credential: self.credential.clone(),
                        reason: crate::outbound::http::describe_reqwest_error(&e),
                    },
                }
            })?;
        let status = response.status();
        let bytes = crate::outbound::http::read_limited(
            hyper::Response::from(response).into_body(),
            MAX_TOKEN_RESPONSE_BYTES,
        )
        .await
        .map_err(|e| {
            failed(Some(status.as_u16()), crate::outbound::http::describe_reqwest_error(&e))
        })?
        .0;
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if !status.is_success() {
            let code = parsed
                .get("error")
                .and_then(|e| e.as_str())
                .map(|e| {
                    e.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .take(64)
                        .collect::<String>()
                })
                .unwrap_or_else(|| "no OAuth2 error code".into());
            return Err(failed(Some(status.as_u16()), format!("HTTP {}: {code}", status.as_u16())));
        }
        let value = parsed
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
            failed(Some(status.as_u16()), "response has no access_token".into())
        })?;
        let value = SecretString::from(value);
        if let Some(kind) = parsed.get("token_type").and_then(|t| t.as_str())
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(failed(Some(status.as_u16()), "token_type is not Bearer".into()));
        }
        let lifetime = match parsed.get("expires_in") {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Refresh `skew` before expiry, but keep a token for at least half its lifetime so a
        // skew larger than the lifetime does not turn every call into a token request.
        let usable = lifetime.saturating_sub(self.skew).max(lifetime / 2);
        tracing::debug!(credential = %self.credential, generation, lifetime_s = lifetime.as_secs(),
            "access token issued");
        Ok(AccessToken { value, refresh_at: started + usable, generation })
    }
}
