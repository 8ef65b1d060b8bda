//! Credentials: loading mounted Secret files and turning them into request authentication.
//!
//! The operator mounts each Credential's Secret as a directory with one file per
//! [`SecretRole`] (`<directory>/<role file name>`); the worker config holds no secret value.
//! This module owns everything between those files and an outgoing request:
//!
//! ```text
//!  <directory>/username, password, token, apiKey, clientId, clientSecret,
//!              certificate, privateKey, caCertificate, secret
//!        │  SecretFile: stat on each use, re-read when the file changed (rotation, C3)
//!        ▼
//!  Credential ── basic / bearer / apiKey ──────────▶ Authorization (header, query, body, path)
//!             ── oauth2ClientCredentials ─ TokenCache (single-flight refresh, C1) ─▶ Bearer
//!             ── mtls ─ ClientCertificate (rustls ResolvesClientCert, C2) ─▶ TLS handshake
//!             ── hmac ─ Standard Webhooks / GitHub / Stripe / custom signing ─▶ headers
//! ```
//!
//! Values only ever live in `secrecy` types (redacted `Debug`, zeroized on drop, C4). Errors
//! name the credential, the role and the file path, never a value; a missing file is
//! [`CredentialError::Missing`].
//!
//! The inbound side (signature verification, inbound bearer/basic auth) reads the same
//! credentials through [`Credential::secret`], [`Credential::text`] and
//! [`Credential::hmac_key`], and can compute signatures with the functions of [`hmac`].

pub mod hmac;
pub mod mtls;
pub mod oauth2;
mod secret_file;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::config::{CredentialConfig, SecretRole};
use crate::outbound::http::HttpClients;
pub use hmac::HmacScheme;
pub use mtls::ClientCertificate;
pub use oauth2::{AccessToken, TokenCache};
use secret_file::SecretFile;

/// Why a credential could not be loaded or used. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The config names a credential that is not in [`crate::config::WorkerConfig::credentials`].
    #[error("credential {credential:?} is not configured for this worker")]
    Unknown {
        /// Credential name.
        credential: String,
    },
    /// The config of a credential is inconsistent (unknown type, missing block).
    #[error("credential {credential:?} is misconfigured: {reason}")]
    Config {
        /// Credential name.
        credential: String,
        /// What is wrong.
        reason: String,
    },
    /// A credential of the wrong type for its use.
    #[error("credential {credential:?} has type {found}, but {expected} is needed here")]
    WrongType {
        /// Credential name.
        credential: String,
        /// Its type.
        found: &'static str,
        /// What the use needs.
        expected: &'static str,
    },
    /// A mounted file is missing.
    #[error("credential {credential:?}: the {role} file is missing (expected at {path})")]
    Missing {
        /// Credential name.
        credential: String,
        /// Role file name.
        role: &'static str,
        /// Where it was looked for.
        path: String,
    },
    /// A mounted file could not be read.
    #[error("credential {credential:?}: the {role} file cannot be read ({reason})")]
    Unreadable {
        /// Credential name.
        credential: String,
        /// Role file name.
        role: &'static str,
        /// I/O error kind.
        reason: String,
    },
    /// A value is unusable (not UTF-8, holds a line break, not PEM, ...).
    #[error("credential {credential:?}: the {role} value is invalid: {reason}")]
    Invalid {
        /// Credential name.
        credential: String,
        /// Role file name.
        role: &'static str,
        /// What is wrong (never the value).
        reason: String,
    },
    /// The SSRF guard refused the OAuth2 token endpoint's address.
    #[error("credential {credential:?}: token endpoint refused: {reason}")]
    TokenEndpointRefused {
        /// Credential name.
        credential: String,
        /// The guard's reason.
        reason: String,
    },
    /// The OAuth2 token endpoint did not answer (connection refused or reset, DNS, TLS).
    #[error("credential {credential:?}: token endpoint unreachable: {reason}")]
    TokenEndpointUnreachable {
        /// Credential name.
        credential: String,
        /// What happened (no URL with credentials, no response body).
        reason: String,
    },
    /// The OAuth2 token endpoint did not issue a token.
    #[error("credential {credential:?}: token request failed: {reason}")]
    TokenRequest {
        /// Credential name.
        credential: String,
        /// HTTP status, when one was received.
        status: Option<u16>,
        /// What happened (the OAuth2 error code when the server gave one).
        reason: String,
    },
    /// The HTTP client for token requests cannot be built.
    #[error("{0}")]
    TokenClient(String),
}

impl CredentialError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            CredentialError::TokenRequest { .. }
            | CredentialError::TokenEndpointUnreachable { .. } => "token_request",
            CredentialError::TokenEndpointRefused { .. } => "egress",
            _ => "credential",
        }
    }

    /// Whether trying again later may succeed without a config change (token endpoint
    /// unavailable or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            CredentialError::TokenRequest { status: None, .. }
            | CredentialError::TokenEndpointUnreachable { .. } => true,
            CredentialError::TokenRequest { status: Some(s), .. } => {
                *s == 408 || *s == 429 || *s >= 500
            }
            _ => false,
        }
    }
}

/// Where an API key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeyPlacement {
    /// In this request header.
    Header(HeaderName),
    /// In this query parameter.
    Query(String),
    /// In this top-level field of a JSON body.
    Body(String),
    /// Appended to the endpoint URL (path and optional query of an incoming-webhook URL).
    Path,
}

enum Kind {
    Basic { username: SecretFile, password: SecretFile },
    Bearer { token: SecretFile },
    ApiKey { key: SecretFile, placement: ApiKeyPlacement },
    OAuth2(Arc<TokenCache>),
    Mtls(Arc<ClientCertificate>),
    Hmac { secret: SecretFile, scheme: HmacScheme },
}

/// One configured credential.
pub struct Credential {
    name: String,
    kind: Kind,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("type", &self.type_name())
            .finish_non_exhaustive()
    }
}

/// What a credential adds to one request.
#[derive(Debug)]
pub enum Authorization {
    /// A header (`Authorization: Basic|Bearer ...` or an API key header), marked sensitive.
    Header {
        /// Header name.
        name: HeaderName,
        /// Header value.
        value: HeaderValue,
    },
    /// An OAuth2 access token, sent as `Authorization: Bearer`; kept so that a 401 can
    /// invalidate exactly this token.
    Token(Arc<AccessToken>),
    /// A query parameter.
    Query {
        /// Parameter name.
        name: String,
        /// The key.
        value: SecretString,
    },
    /// A top-level JSON body field.
    BodyField {
        /// Field name.
        name: String,
        /// The key.
        value: SecretString,
    },
    /// The secret rest of the URL (path and optional query).
    UrlRest(SecretString),
    /// Sign the body with this key and scheme.
    Signature {
        /// The HMAC key.
        key: SecretSlice<u8>,
        /// The scheme.
        scheme: HmacScheme,
    },
    /// Authentication happens in the TLS handshake (mtls).
    TlsOnly,
}

impl Authorization {
    /// The secret text this authorization puts on the wire, for redaction of echoes.
    pub fn secret_text(&self) -> Option<String> {
        match self {
            Authorization::Header { value, .. } => value.to_str().ok().map(str::to_string),
            Authorization::Token(token) => Some(token.value().expose_secret().to_string()),
            Authorization::Query { value, .. }
            | Authorization::BodyField { value, .. }
            | Authorization::UrlRest(value) => Some(value.expose_secret().to_string()),
            Authorization::Signature { .. } | Authorization::TlsOnly => None,
        }
    }
}

impl Credential {
    fn from_config(name: &str, config: &CredentialConfig) -> Result<Credential, CredentialError> {
        let dir = Path::new(&config.directory);
        let file = |role| SecretFile::new(name, role, dir);
        let misconfigured = |reason: &str| CredentialError::Config {
            credential: name.into(),
            reason: reason.into(),
        };
        let kind = match config.type_.as_str() {
            "basic" => Kind::Basic {
                username: file(SecretRole::Username),
                password: file(SecretRole::Password),
            },
            "bearer" => Kind::Bearer { token: file(SecretRole::Token) },
            "apiKey" => {
                let settings =
                    config.api_key.as_ref().ok_or_else(|| misconfigured("apiKey block missing"))?;
                let field =
                    || {
                        settings.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
                            misconfigured("apiKey.name is required for this placement")
                        })
                    };
                let placement = match settings.in_.as_str() {
                    "header" => ApiKeyPlacement::Header(
                        HeaderName::from_bytes(field()?.as_bytes())
                            .map_err(|_| misconfigured("apiKey.name is not a header name"))?,
                    ),
                    "query" => ApiKeyPlacement::Query(field()?),
                    "body" => ApiKeyPlacement::Body(field()?),
                    "path" => ApiKeyPlacement::Path,
                    _ => {
                        return Err(misconfigured("apiKey.in must be header, query, body or path"));
                    }
                };
                Kind::ApiKey { key: file(SecretRole::ApiKey), placement }
            }
            "oauth2ClientCredentials" => {
                let settings =
                    config.oauth2.as_ref().ok_or_else(|| misconfigured("oauth2 block missing"))?;
                Kind::OAuth2(Arc::new(TokenCache::new(
                    name,
                    settings,
                    file(SecretRole::ClientId),
                    file(SecretRole::ClientSecret),
                )?))
            }
            "mtls" => Kind::Mtls(Arc::new(ClientCertificate::new(
                name,
                file(SecretRole::Certificate),
                file(SecretRole::PrivateKey),
                file(SecretRole::CaCertificate),
            ))),
            "hmac" => {
                let scheme = match config.hmac.as_ref() {
                    None => HmacScheme::StandardWebhooks,
                    Some(h) => HmacScheme::from_config(&h.scheme, h.header.as_deref())
                        .map_err(|reason| misconfigured(&reason))?,
                };
                Kind::Hmac { secret: file(SecretRole::Secret), scheme }
            }
            other => {
                return Err(misconfigured(&format!("unknown type {other:?}")));
            }
        };
        Ok(Credential { name: name.to_string(), kind })
    }

    /// Credential name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Type as written in the Credential spec.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Basic { .. } => "basic",
            Kind::Bearer { .. } => "bearer",
            Kind::ApiKey { .. } => "apiKey",
            Kind::OAuth2(_) => "oauth2ClientCredentials",
            Kind::Mtls(_) => "mtls",
            Kind::Hmac { .. } => "hmac",
        }
    }

    fn role_file(&self, role: SecretRole) -> Option<&SecretFile> {
        match (&self.kind, role) {
            (Kind::Basic { username, .. }, SecretRole::Username) => Some(username),
            (Kind::Basic { password, .. }, SecretRole::Password) => Some(password),
            (Kind::Bearer { token }, SecretRole::Token) => Some(token),
            (Kind::ApiKey { key, .. }, SecretRole::ApiKey) => Some(key),
            (Kind::OAuth2(cache), SecretRole::ClientId | SecretRole::ClientSecret) => {
                cache.role_file(role)
            }
            (Kind::Mtls(cert), SecretRole::Certificate | SecretRole::PrivateKey) => {
                cert.role_file(role)
            }
            (Kind::Mtls(cert), SecretRole::CaCertificate) => cert.role_file(role),
            (Kind::Hmac { secret, .. }, SecretRole::Secret) => Some(secret),
            _ => None,
        }
    }

    /// The raw bytes of one role's file, re-read if it changed.
    pub fn secret(&self, role: SecretRole) -> Result<Arc<SecretSlice<u8>>, CredentialError> {
        let file = self.role_file(role).ok_or_else(|| CredentialError::Config {
            credential: self.name.clone(),
            reason: format!("type {} has no {} value", self.type_name(), role.file_name()),
        })?;
        Ok(file.read()?.0)
    }

    /// One role's value as text: UTF-8, trailing line break removed, no other line break.
    pub fn text(&self, role: SecretRole) -> Result<SecretString, CredentialError> {
        let bytes = self.secret(role)?;
        secret_text(&self.name, role, bytes.expose_secret())
    }

    /// The HMAC key of an `hmac` credential (for Standard Webhooks, the base64 key after an
    /// optional `whsec_` prefix, decoded).
    pub fn hmac_key(&self) -> Result<SecretSlice<u8>, CredentialError> {
        match &self.kind {
            Kind::Hmac { secret, scheme } => {
                let (bytes, _) = secret.read()?;
                hmac::signing_key(scheme, bytes.expose_secret()).map_err(|reason| {
                    CredentialError::Invalid {
                        credential: self.name.clone(),
                        role: SecretRole::Secret.file_name(),
                        reason,
                    }
                })
            }
            _ => Err(self.wrong_type("hmac")),
        }
    }

    /// The HMAC scheme of an `hmac` credential.
    pub fn hmac_scheme(&self) -> Option<&HmacScheme> {
        match &self.kind {
            Kind::Hmac { scheme, .. } => Some(scheme),
            _ => None,
        }
    }

    /// The token cache of an `oauth2ClientCredentials` credential.
    pub fn oauth2(&self) -> Option<&Arc<TokenCache>> {
        match &self.kind {
            Kind::OAuth2(cache) => Some(cache),
            _ => None,
        }
    }

    /// The client certificate of an `mtls` credential.
    pub fn client_certificate(&self) -> Option<&Arc<ClientCertificate>> {
        match &self.kind {
            Kind::Mtls(cert) => Some(cert),
            _ => None,
        }
    }

    /// Read every required file once, to report a missing or invalid one early.
    pub fn check(&self) -> Result<(), CredentialError> {
        match &self.kind {
            Kind::Basic { .. } => {
                self.text(SecretRole::Username)?;
                self.text(SecretRole::Password)?;
            }
            Kind::Bearer { .. } => {
                self.text(SecretRole::Token)?;
            }
            Kind::ApiKey { .. } => {
                self.text(SecretRole::ApiKey)?;
            }
            Kind::OAuth2(cache) => cache.check_files()?,
            Kind::Mtls(cert) => {
                cert.current()?;
            }
            Kind::Hmac { .. } => {
                self.hmac_key()?;
            }
        }
        Ok(())
    }

    /// What this credential adds to the next request. For OAuth2 this may request a token
    /// through `http`'s token client (single-flight, cached); no other kind needs a client.
    pub async fn authorize(&self, http: &HttpClients) -> Result<Authorization, CredentialError> {
        match &self.kind {
            Kind::Basic { .. } => {
                use base64::Engine as _;
                let user = self.text(SecretRole::Username)?;
                let password = self.text(SecretRole::Password)?;
                if user.expose_secret().contains(':') {
                    return Err(CredentialError::Invalid {
                        credential: self.name.clone(),
                        role: SecretRole::Username.file_name(),
                        reason: "a basic user name may not contain ':'".into(),
                    });
                }
                let joined = SecretString::from(format!(
                    "{}:{}",
                    user.expose_secret(),
                    password.expose_secret()
                ));
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(joined.expose_secret().as_bytes());
                Ok(Authorization::Header {
                    name: reqwest::header::AUTHORIZATION,
                    value: self
                        .sensitive_header(SecretRole::Password, format!("Basic {encoded}"))?,
                })
            }
            Kind::Bearer { .. } => {
                let token = self.text(SecretRole::Token)?;
                Ok(Authorization::Header {
                    name: reqwest::header::AUTHORIZATION,
                    value: self.sensitive_header(
                        SecretRole::Token,
                        format!("Bearer {}", token.expose_secret()),
                    )?,
                })
            }
            Kind::ApiKey { placement, .. } => {
                let key = self.text(SecretRole::ApiKey)?;
                Ok(match placement {
                    ApiKeyPlacement::Header(name) => Authorization::Header {
                        name: name.clone(),
                        value: self.sensitive_header(
                            SecretRole::ApiKey,
                            key.expose_secret().to_string(),
                        )?,
                    },
                    ApiKeyPlacement::Query(name) => {
                        Authorization::Query { name: name.clone(), value: key }
                    }
                    ApiKeyPlacement::Body(name) => {
                        Authorization::BodyField { name: name.clone(), value: key }
                    }
                    ApiKeyPlacement::Path => Authorization::UrlRest(key),
                })
            }
            Kind::OAuth2(cache) => {
                let client =
                    http.token_client().map_err(|e| CredentialError::TokenClient(e.to_string()))?;
                Ok(Authorization::Token(cache.token(&client, http.policy()).await?))
            }
            Kind::Mtls(cert) => {
                cert.current()?;
                Ok(Authorization::TlsOnly)
            }
            Kind::Hmac { scheme, .. } => {
                Ok(Authorization::Signature { key: self.hmac_key()?, scheme: scheme.clone() })
            }
        }
    }

    fn sensitive_header(
        &self,
        role: SecretRole,
        text: String,
    ) -> Result<HeaderValue, CredentialError> {
        let text = SecretString::from(text);
        let mut value =
            HeaderValue::from_str(text.expose_secret()).map_err(|_| CredentialError::Invalid {
                credential: self.name.clone(),
                role: role.file_name(),
                reason: "not usable in an HTTP header".into(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn wrong_type(&self, expected: &'static str) -> CredentialError {
        CredentialError::WrongType {
            credential: self.name.clone(),
            found: self.type_name(),
            expected,
        }
    }
}

/// Interpret a credential file as one line of text.
pub(crate) fn secret_text(
    credential: &str,
    role: SecretRole,
    bytes: &[u8],
) -> Result<SecretString, CredentialError> {
    let invalid = |reason: &str| CredentialError::Invalid {
        credential: credential.to_string(),
        role: role.file_name(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(invalid("contains a line break or control character"));
    }
    Ok(SecretString::from(text))
}

/// Every credential of a worker, by name.
#[derive(Debug, Default)]
pub struct CredentialStore {
    credentials: BTreeMap<String, Arc<Credential>>,
}

impl CredentialStore {
    /// Build from the worker config. Files are not read here (they are read on use); the
    /// types and their settings are checked.
    pub fn new(
        configs: &BTreeMap<String, CredentialConfig>,
    ) -> Result<CredentialStore, CredentialError> {
        let credentials = configs
            .iter()
            .map(|(name, config)| {
                Ok((name.clone(), Arc::new(Credential::from_config(name, config)?)))
            })
            .collect::<Result<_, CredentialError>>()?;
        Ok(CredentialStore { credentials })
    }

    /// The credential of this name.
    pub fn get(&self, name: &str) -> Result<&Arc<Credential>, CredentialError> {
        self.credentials
            .get(name)
            .ok_or_else(|| CredentialError::Unknown { credential: name.to_string() })
    }

    /// Every credential.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.credentials.values()
    }
}
