//! `OutboundMessage`: a fixed external endpoint and the named calls that can be made to it.
//!
//! The endpoint's scheme and host are fixed in the spec and never templated; methods add a
//! path, query, headers and a body template whose `${var}` placeholders are filled from
//! declared variables. Integrations (as targets or pull sources), Schedules and health checks
//! invoke methods by name, the way outbound REST messages are used in enterprise platforms.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CircuitBreaker, Condition, CredentialRef, DNS_LABEL_PATTERN, DURATION_PATTERN, Owner,
    RetryPolicy, SecretKeyRef, VARIABLE_NAME_PATTERN,
};

/// An OutboundMessage: one external endpoint and the named methods that call it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "OutboundMessage",
    plural = "outboundmessages",
    shortname = "obm",
    category = "switchboard",
    namespaced,
    status = "OutboundMessageStatus",
    doc = "OutboundMessage declares an external endpoint (REST or SOAP), the Credential used to call it, its timeout, retry and TLS policy, and named methods with ${var} templates that integrations, schedules and health checks invoke.",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint","description":"Fixed scheme, host and base path"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol","priority":1}"#,
    printcolumn = r#"{"name":"Credential","type":"string","jsonPath":".spec.credentialRef.name","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.endpoint) && (self.endpoint.startsWith('https://') || (self.insecureAllowHttp && self.endpoint.startsWith('http://')))",
     "message": "endpoint must be an https:// URL (http:// only with insecureAllowHttp: true)",
     "fieldPath": ".endpoint"},
    {"rule": "!self.endpoint.contains('${') && !self.endpoint.contains('@') && !self.endpoint.contains('?') && !self.endpoint.contains('#')",
     "message": "endpoint is fixed: no ${...} templates, user info, query or fragment (put those in methods)",
     "fieldPath": ".endpoint"},
    {"rule": "self.protocol != 'soap' || self.methods.all(m, has(m.body))",
     "message": "every method of a SOAP OutboundMessage needs a body (the content of the SOAP Body)",
     "fieldPath": ".methods"},
    {"rule": "self.protocol == 'soap' || !has(self.soap)",
     "message": "the soap block is only valid with protocol soap", "fieldPath": ".soap"},
    {"rule": "self.methods.all(m, self.methods.exists_one(o, o.name == m.name))",
     "message": "method names must be unique", "fieldPath": ".methods"}
]))]
pub struct OutboundMessageSpec {
    /// Fixed scheme, host, optional port and base path, for example
    /// `https://api.example.com/v2`. Never templated: method paths are appended to it.
    #[schemars(length(min = 8, max = 2048))]
    pub endpoint: String,
    /// Allow an http:// endpoint. Meant for local development and tests; `switchboard lint`
    /// reports it, and integrations carrying `restricted` or `pii` data refuse it.
    #[serde(default)]
    #[schemars(default)]
    pub insecure_allow_http: bool,
    /// `rest` (JSON, form or text bodies) or `soap` (the body is wrapped in a SOAP envelope).
    #[serde(default = "default_protocol")]
    #[schemars(default = "default_protocol")]
    pub protocol: Protocol,
    /// SOAP settings, for protocol `soap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<SoapSettings>,
    /// Credential used to authenticate every call (basic, bearer, apiKey,
    /// oauth2ClientCredentials or mtls). Leave empty for unauthenticated endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<CredentialRef>,
    /// Timeout of one attempt, including connect and reading the response.
    #[serde(default = "default_timeout")]
    #[schemars(default = "default_timeout", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Retry policy of each call.
    #[serde(default)]
    #[schemars(default)]
    pub retry: RetryPolicy,
    /// Circuit breaker shared by every call to this endpoint.
    #[serde(default)]
    #[schemars(default)]
    pub circuit_breaker: CircuitBreaker,
    /// TLS settings: a private CA, or a server name to verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// Named calls to this endpoint.
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub methods: Vec<Method>,
    /// Who owns this definition (a shared connector may be owned by the platform team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

fn default_protocol() -> Protocol {
    Protocol::Rest
}
fn default_timeout() -> String {
    "30s".into()
}

/// Wire protocol of an OutboundMessage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// Plain HTTP requests, usually JSON.
    Rest,
    /// SOAP 1.1 or 1.2 envelopes over HTTP.
    Soap,
}

impl Protocol {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Soap => "soap",
        }
    }
}

/// SOAP settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoapSettings {
    /// SOAP version: `1.1` (text/xml with a SOAPAction header) or `1.2`
    /// (application/soap+xml with an action parameter).
    #[serde(default = "default_soap_version")]
    #[schemars(default = "default_soap_version")]
    pub version: SoapVersion,
}

fn default_soap_version() -> SoapVersion {
    SoapVersion::V1_1
}

/// SOAP protocol version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SoapVersion {
    /// SOAP 1.1.
    #[serde(rename = "1.1")]
    V1_1,
    /// SOAP 1.2.
    #[serde(rename = "1.2")]
    V1_2,
}

/// TLS settings of an OutboundMessage. Client certificates come from an `mtls` Credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    /// PEM bundle of CAs that may sign the server certificate, instead of the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Server name to verify and send in SNI, when it differs from the endpoint host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
    /// Client certificate for mutual TLS, when the call's main credential is another type
    /// (for example OAuth2 on top of mTLS). Must name an `mtls` Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<CredentialRef>,
}

/// One named call of an OutboundMessage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.path.startsWith('/') && !self.path.startsWith('//') && !self.path.contains('://') && !self.path.contains('?') && !self.path.contains('#')",
     "message": "path must start with a single / and hold no scheme, query or fragment (use query for parameters)",
     "fieldPath": ".path"},
    {"rule": r"self.path.findAll('\\$\\{[^}]*\\}').all(v, has(self.variables) && self.variables.exists(d, v == '${' + d.name + '}'))",
     "message": "path uses a ${variable} that is not declared in variables", "fieldPath": ".path"},
    {"rule": r"!has(self.query) || self.query.all(k, self.query[k].findAll('\\$\\{[^}]*\\}').all(v, has(self.variables) && self.variables.exists(d, v == '${' + d.name + '}')))",
     "message": "a query parameter uses a ${variable} that is not declared in variables", "fieldPath": ".query"},
    {"rule": "!has(self.variables) || self.variables.all(v, self.variables.exists_one(o, o.name == v.name))",
     "message": "variable names must be unique", "fieldPath": ".variables"},
    {"rule": "!has(self.headers) || self.headers.all(h, !(h.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection']))",
     "message": "headers may not set Host, Content-Length, Transfer-Encoding or Connection", "fieldPath": ".headers"}
]))]
pub struct Method {
    /// Name the method is invoked by, for example `create-incident`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// What the method does, for reports and `kubectl explain`-style browsing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// HTTP method. SOAP calls use POST.
    #[serde(default = "default_http_method")]
    #[schemars(default = "default_http_method")]
    pub http_method: HttpMethod,
    /// Path appended to the endpoint's base path; may contain `${var}` placeholders, whose
    /// values are percent-encoded as one path segment each.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// Query parameters; values may contain `${var}` placeholders (percent-encoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16), inner(length(max = 512)))]
    pub query: Option<BTreeMap<String, String>>,
    /// Request headers; values may contain `${var}` placeholders (CR and LF are refused). Do
    /// not put credentials here: use the OutboundMessage's `credentialRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16), inner(length(max = 1024)))]
    pub headers: Option<BTreeMap<String, String>>,
    /// Body template. For REST calls with a JSON content type, `${var}` values are encoded as
    /// JSON string content; for SOAP (the content of the SOAP Body) and XML, as XML text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// Content type of the body. Default `application/json` for REST; SOAP sets its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub content_type: Option<String>,
    /// SOAPAction (SOAP 1.1 header, SOAP 1.2 `action` parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub soap_action: Option<String>,
    /// Variables the templates may use. Undeclared placeholders are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub variables: Option<Vec<Variable>>,
    /// Response statuses that count as success. Default: any 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(range(min = 100, max = 599)))]
    pub expected_statuses: Option<Vec<u16>>,
    /// Response fields to capture into the integration's status and logs, by name, as JSON
    /// Pointers into a JSON response (for example `/result/number`). Never capture secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 8), inner(length(min = 1, max = 256), regex(pattern = r"^(/[^/]*)*$")))]
    pub capture: Option<BTreeMap<String, String>>,
}

fn default_http_method() -> HttpMethod {
    HttpMethod::Post
}

impl Method {
    /// Declared variables, or none.
    pub fn variables(&self) -> &[Variable] {
        self.variables.as_deref().unwrap_or_default()
    }
}

/// HTTP methods an OutboundMessage may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HttpMethod {
    /// GET.
    #[serde(rename = "GET")]
    Get,
    /// POST.
    #[serde(rename = "POST")]
    Post,
    /// PUT.
    #[serde(rename = "PUT")]
    Put,
    /// PATCH.
    #[serde(rename = "PATCH")]
    Patch,
    /// DELETE.
    #[serde(rename = "DELETE")]
    Delete,
    /// HEAD.
    #[serde(rename = "HEAD")]
    Head,
}

impl HttpMethod {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Head => "HEAD",
        }
    }
}

/// A template variable of a method.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    /// Name, as used in `${name}`.
    #[schemars(length(min = 1, max = 63), regex(pattern = VARIABLE_NAME_PATTERN))]
    pub name: String,
    /// What the variable carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// Value used when the caller supplies none. A variable without a default is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub default: Option<String>,
    /// Maximum length of a supplied value, in characters.
    #[serde(default = "default_max_value_length")]
    #[schemars(default = "default_max_value_length", range(min = 1, max = 1048576))]
    pub max_length: u32,
}

fn default_max_value_length() -> u32 {
    4096
}

/// Observed state of an OutboundMessage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMessageStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the templates are consistent and the Credential is Ready (reasons
    /// `UndeclaredVariable`, `CredentialNotFound`, `CredentialNotReady`, `WrongCredentialType`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Names of the methods, as `NAME (HTTP-METHOD PATH)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Objects that invoke this OutboundMessage, sorted by kind and name; at most 100 are
    /// listed (`consumerCount` has them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<super::credential::Consumer>,
    /// How many objects invoke this OutboundMessage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_count: Option<i64>,
}
