//! `Credential`: how a worker authenticates to (or verifies) an external system.
//!
//! A Credential names a Secret and the keys inside it; it never holds a value itself. The
//! operator mounts the Secret into the workers that use the Credential and records a content
//! hash (never the content) in the status, so that a rotation rolls exactly those workers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use switchboard_worker::config::SecretRole;

use super::common::{Condition, DNS_SUBDOMAIN_PATTERN, LONG_DURATION_PATTERN, Owner};

/// A Credential: the authentication material an integration uses, by reference to a Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Credential",
    plural = "credentials",
    shortname = "cred",
    category = "switchboard",
    namespaced,
    status = "CredentialStatus",
    doc = "Credential describes how workers authenticate to an external system (basic, bearer, API key, OAuth2 client credentials, mTLS) or verify and sign webhooks (HMAC). It references a Secret; it never holds a secret value.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type","description":"Kind of authentication"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.secretRef.name","description":"Secret holding the values","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Whether the Secret and its keys exist"}"#,
    printcolumn = r#"{"name":"Last Rotated","type":"date","jsonPath":".status.lastRotated","description":"When the Secret content last changed"}"#,
    printcolumn = r#"{"name":"Max Age","type":"string","jsonPath":".spec.rotation.maxAge","description":"Rotation policy","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'apiKey' || has(self.apiKey)",
     "message": "type apiKey needs the apiKey block (where the key goes: header or query, and its name)",
     "fieldPath": ".apiKey"},
    {"rule": "!has(self.apiKey) || self.type == 'apiKey'",
     "message": "the apiKey block is only valid with type apiKey", "fieldPath": ".apiKey"},
    {"rule": "self.type != 'oauth2ClientCredentials' || has(self.oauth2)",
     "message": "type oauth2ClientCredentials needs the oauth2 block (at least tokenUrl)",
     "fieldPath": ".oauth2"},
    {"rule": "!has(self.oauth2) || self.type == 'oauth2ClientCredentials'",
     "message": "the oauth2 block is only valid with type oauth2ClientCredentials", "fieldPath": ".oauth2"},
    {"rule": "!has(self.hmac) || self.type == 'hmac'",
     "message": "the hmac block is only valid with type hmac", "fieldPath": ".hmac"}
]))]
pub struct CredentialSpec {
    /// Kind of authentication: `basic`, `bearer`, `apiKey`, `oauth2ClientCredentials`, `mtls`
    /// or `hmac`. It decides which Secret keys are read (see `secretRef.keys`).
    #[serde(rename = "type")]
    pub type_: CredentialType,
    /// The Secret, in the same namespace, that holds the values.
    pub secret_ref: CredentialSecretRef,
    /// Where an API key is sent. Required when `type` is `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySettings>,
    /// OAuth 2.0 client-credentials settings. Required when `type` is `oauth2ClientCredentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Settings>,
    /// HMAC signature scheme, for verifying inbound webhooks and signing outbound ones.
    /// Optional when `type` is `hmac`; defaults to the Standard Webhooks scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacSettings>,
    /// Rotation policy. Without one, `switchboard lint` and reports flag the Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationPolicy>,
    /// Who owns this Credential and answers for its rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The kinds of authentication a Credential can describe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CredentialType {
    /// HTTP basic authentication (keys `username`, `password`). Also the user and password of
    /// database, SMTP and IMAP connections.
    Basic,
    /// A static bearer token sent as `Authorization: Bearer` (key `token`).
    Bearer,
    /// An API key sent in a header or query parameter (key `apiKey`).
    ApiKey,
    /// OAuth 2.0 client credentials grant (keys `clientId`, `clientSecret`); tokens are cached
    /// until shortly before they expire.
    #[serde(rename = "oauth2ClientCredentials")]
    OAuth2ClientCredentials,
    /// A TLS client certificate (keys `tls.crt`, `tls.key`, optionally `ca.crt`).
    Mtls,
    /// A shared HMAC secret that signs or verifies webhooks (key `secret`).
    Hmac,
}

impl CredentialType {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::Basic => "basic",
            CredentialType::Bearer => "bearer",
            CredentialType::ApiKey => "apiKey",
            CredentialType::OAuth2ClientCredentials => "oauth2ClientCredentials",
            CredentialType::Mtls => "mtls",
            CredentialType::Hmac => "hmac",
        }
    }

    /// The roles this type reads from its Secret, each with the default key name, and whether
    /// the role is required.
    pub fn secret_roles(self) -> &'static [(SecretRole, &'static str, bool)] {
        use SecretRole::*;
        match self {
            CredentialType::Basic => &[(Username, "username", true), (Password, "password", true)],
            CredentialType::Bearer => &[(Token, "token", true)],
            CredentialType::ApiKey => &[(ApiKey, "apiKey", true)],
            CredentialType::OAuth2ClientCredentials => {
                &[(ClientId, "clientId", true), (ClientSecret, "clientSecret", true)]
            }
            CredentialType::Mtls => &[
                (Certificate, "tls.crt", true),
                (PrivateKey, "tls.key", true),
                (CaCertificate, "ca.crt", false),
            ],
            CredentialType::Hmac => &[(Secret, "secret", true)],
        }
    }
}

/// The Secret that holds a Credential's values, and which of its keys play which role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSecretRef {
    /// Name of the Secret, in the same namespace as the Credential.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key names inside the Secret, when they differ from the defaults of the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<SecretKeys>,
}

/// Secret key names per role. Only the roles of the Credential's type are read; the defaults
/// are `username`/`password` (basic), `token` (bearer), `apiKey` (apiKey),
/// `clientId`/`clientSecret` (oauth2ClientCredentials), `tls.crt`/`tls.key`/`ca.crt` (mtls) and
/// `secret` (hmac).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    /// Key holding the user name (basic). Default `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub username: Option<String>,
    /// Key holding the password (basic). Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password: Option<String>,
    /// Key holding the bearer token. Default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub token: Option<String>,
    /// Key holding the API key. Default `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub api_key: Option<String>,
    /// Key holding the OAuth2 client id. Default `clientId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id: Option<String>,
    /// Key holding the OAuth2 client secret. Default `clientSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret: Option<String>,
    /// Key holding the PEM client certificate (mtls). Default `tls.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub certificate: Option<String>,
    /// Key holding the PEM private key (mtls). Default `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub private_key: Option<String>,
    /// Key holding a PEM CA bundle to verify the peer (mtls, optional). Default `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_certificate: Option<String>,
    /// Key holding the HMAC secret. Default `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret: Option<String>,
}

impl SecretKeys {
    /// The configured key name for a role, if one was given.
    pub fn get(&self, role: SecretRole) -> Option<&str> {
        let key = match role {
            SecretRole::Username => &self.username,
            SecretRole::Password => &self.password,
            SecretRole::Token => &self.token,
            SecretRole::ApiKey => &self.api_key,
            SecretRole::ClientId => &self.client_id,
            SecretRole::ClientSecret => &self.client_secret,
            SecretRole::Certificate => &self.certificate,
            SecretRole::PrivateKey => &self.private_key,
            SecretRole::CaCertificate => &self.ca_certificate,
            SecretRole::Secret => &self.secret,
        };
        key.as_deref()
    }
}

impl CredentialSpec {
    /// The Secret keys this Credential reads: role, key name inside the Secret, required.
    pub fn secret_keys(&self) -> Vec<(SecretRole, String, bool)> {
        let configured = self.secret_ref.keys.clone().unwrap_or_default();
        self.type_
            .secret_roles()
            .iter()
            .map(|(role, default, required)| {
                let key = configured.get(*role).unwrap_or(default).to_string();
                (*role, key, *required)
            })
            .collect()
    }
}

/// Where an API key is placed on outbound requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.__in__ == 'path' || has(self.name)",
     "message": "name is required: the header, query parameter or body field that carries the key",
     "fieldPath": ".name"}
]))]
pub struct ApiKeySettings {
    /// `header`, `query`, `body` or `path`.
    #[serde(rename = "in")]
    pub in_: ApiKeyLocation,
    /// Header, query parameter or body field name, for example `X-API-Key`, `api_key` or
    /// `routing_key`. Not used with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub name: Option<String>,
}

/// Where an API key goes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApiKeyLocation {
    /// In the request header `name`.
    Header,
    /// In the query parameter `name` (avoid where the target supports headers: URLs end up
    /// in logs).
    Query,
    /// In the top-level field `name` of a JSON request body (PagerDuty's `routing_key`).
    Body,
    /// Appended to the endpoint as the rest of its URL: the secret path (and query) of an
    /// incoming-webhook URL such as Slack's or Microsoft Teams'. `name` is ignored.
    Path,
}

/// OAuth 2.0 client-credentials settings (RFC 6749 §4.4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.tokenUrl) && (self.tokenUrl.startsWith('https://') || (self.insecureAllowHttp && self.tokenUrl.startsWith('http://')))",
     "message": "tokenUrl must be an https:// URL (http:// only with insecureAllowHttp: true)",
     "fieldPath": ".tokenUrl"}
]))]
pub struct OAuth2Settings {
    /// Token endpoint, for example `https://login.example.com/oauth2/token`.
    #[schemars(length(min = 8, max = 2048))]
    pub token_url: String,
    /// Scopes to request, joined with spaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 256)))]
    pub scopes: Vec<String>,
    /// Audience (or resource) parameter some providers require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP basic, the RFC's
    /// recommendation) or `body` (client_id and client_secret in the form body).
    #[serde(default = "default_auth_style")]
    #[schemars(default = "default_auth_style")]
    pub auth_style: OAuth2AuthStyle,
    /// Seconds before expiry at which a cached token is refreshed.
    #[serde(default = "default_refresh_skew")]
    #[schemars(default = "default_refresh_skew", range(min = 0, max = 3600))]
    pub refresh_skew_seconds: u32,
    /// Allow an http:// token endpoint (only for local development and tests).
    #[serde(default)]
    #[schemars(default)]
    pub insecure_allow_http: bool,
}

fn default_auth_style() -> OAuth2AuthStyle {
    OAuth2AuthStyle::Basic
}
fn default_refresh_skew() -> u32 {
    60
}

/// How OAuth2 client credentials are presented to the token endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OAuth2AuthStyle {
    /// `Authorization: Basic` with the client id and secret (client_secret_basic).
    Basic,
    /// `client_id` and `client_secret` form parameters (client_secret_post).
    Body,
}

/// HMAC signature scheme settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.scheme != 'custom' || has(self.header)",
     "message": "scheme custom needs the header that carries the hex signature", "fieldPath": ".header"}
]))]
pub struct HmacSettings {
    /// `standardWebhooks` (webhook-id, webhook-timestamp, webhook-signature), `github`
    /// (X-Hub-Signature-256), `stripe` (Stripe-Signature) or `custom` (hex HMAC-SHA256 of the
    /// raw body in `header`).
    #[serde(default = "default_hmac_scheme")]
    #[schemars(default = "default_hmac_scheme")]
    pub scheme: HmacScheme,
    /// Header carrying the signature, for scheme `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub header: Option<String>,
}

fn default_hmac_scheme() -> HmacScheme {
    HmacScheme::StandardWebhooks
}

/// Supported HMAC webhook signature schemes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HmacScheme {
    /// Standard Webhooks: HMAC-SHA256 over `{id}.{timestamp}.{body}`, base64, `v1,` prefix.
    StandardWebhooks,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>` over `{t}.{body}`.
    Stripe,
    /// Hex HMAC-SHA256 of the raw body in a header of your choice.
    Custom,
}

/// Rotation policy of a Credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicy {
    /// Longest time the Secret content may stay unchanged, for example `90d` or `720h`.
    /// Older content is reported by `switchboard lint`, reports and the Credential status.
    #[schemars(length(min = 2, max = 32), regex(pattern = LONG_DURATION_PATTERN))]
    pub max_age: String,
}

/// Observed state of a Credential.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the Secret exists and holds every required key. True with reason `Valid`, or
    /// with a warning reason `CertificateExpiringSoon` or `RotationOverdue`; False with
    /// `SecretNotFound`, `KeyMissing`, `InvalidSpec`, `InvalidCertificate` or
    /// `CertificateExpired`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SHA-256 over the keys this Credential reads (never the content itself). It changes
    /// when the Secret is rotated and rolls the workers that use the Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// When the content hash last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<Time>,
    /// Expiry of the client certificate (mtls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Time>,
    /// Integrations, OutboundMessages and Schedules that use this Credential, sorted by kind
    /// and name; at most 100 are listed (`consumerCount` has them all), so that a Credential
    /// shared by thousands of Integrations stays a small object. `switchboard report` lists
    /// every consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// How many objects use this Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_count: Option<i64>,
}

/// At most this many consumers are listed in a status.
pub const MAX_LISTED_CONSUMERS: usize = 100;

/// An object that uses a Credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// Kind of the consumer (`Integration`, `OutboundMessage`, `Schedule`).
    pub kind: String,
    /// Name of the consumer, in the same namespace.
    pub name: String,
}
