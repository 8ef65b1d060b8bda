//! The operator/worker contract: the rendered worker configuration.
//!
//! The operator renders one [`WorkerConfig`] per Integration (and per Schedule that calls an
//! outbound method directly) into a ConfigMap; the worker reads it at start. Everything a
//! worker needs is resolved into it (endpoints, methods, credential mounts, durations in
//! milliseconds), so the worker never reads the Kubernetes API to do its job. It holds **no
//! secret values**: credentials are files mounted from Secrets, and the config only says where
//! they are (see [`CredentialConfig::directory`] and [`SecretRole::file_name`]).
//!
//! The contract is versioned by [`CONFIG_API_VERSION`]; a worker refuses a config of another
//! version with a clear error rather than guessing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this contract. Bump it (and keep reading the old one) on breaking changes.
pub const CONFIG_API_VERSION: &str = "worker.switchboard.dev/v1";
/// Kind written in every rendered config.
pub const CONFIG_KIND: &str = "WorkerConfig";
/// File name of the config inside its ConfigMap and mount.
pub const CONFIG_FILE_NAME: &str = "worker.yaml";
/// Directory where the config ConfigMap is mounted in worker pods.
pub const CONFIG_MOUNT_PATH: &str = "/etc/switchboard";
/// Directory under which each Credential's Secret is mounted, one sub-directory per Credential.
pub const CREDENTIALS_MOUNT_PATH: &str = "/var/run/switchboard/credentials";
/// Directory of the durable queue and dead-letter store.
pub const DATA_MOUNT_PATH: &str = "/var/lib/switchboard";
/// Port of inbound traffic (webhooks and API routes).
pub const INBOUND_PORT: u16 = 8080;
/// Port of `/livez`, `/readyz`, `/metrics`, `/status` and the dead-letter API.
pub const ADMIN_PORT: u16 = 9090;
/// Directory where the admin token Secret is mounted in worker pods.
pub const ADMIN_TOKEN_MOUNT_PATH: &str = "/var/run/switchboard/admin";
/// Key of the token in the admin token Secret, and its file name in the mount.
pub const ADMIN_TOKEN_KEY: &str = "token";

/// The whole configuration of one worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerConfig {
    /// Always [`CONFIG_API_VERSION`].
    pub api_version: String,
    /// Always [`CONFIG_KIND`].
    pub kind: String,
    /// The object this worker runs for.
    pub subject: Subject,
    /// Who owns it; carried as labels on metrics and in logs.
    pub owner: OwnerInfo,
    /// The declared data flow (for lineage events and logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_flow: Option<DataFlowInfo>,
    /// Where events come from. `None` for a Schedule that only calls an outbound method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceConfig>,
    /// Filter and field map.
    #[serde(default, skip_serializing_if = "TransformConfig::is_empty")]
    pub transform: TransformConfig,
    /// Where events go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetConfig>,
    /// Acknowledgement mode, retries and dead letters.
    pub delivery: DeliveryConfig,
    /// Credentials by Credential name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, CredentialConfig>,
    /// Address ranges allowed despite the SSRF guard.
    #[serde(default, skip_serializing_if = "EgressConfig::is_empty")]
    pub egress: EgressConfig,
    /// Synthetic health checks run by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<HealthChecksConfig>,
    /// For `run-once` of a Schedule that calls an outbound method: the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<OutboundCall>,
    /// Ports and directories.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where OpenLineage run events go; none are sent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageConfig>,
}

/// An OpenLineage endpoint (the operator's `--openlineage-url`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineageConfig {
    /// URL that receives run events by `POST` (for Marquez: `http://marquez:5000/api/v1/lineage`).
    pub url: String,
    /// OpenLineage job namespace (the operator's `--openlineage-namespace`; the Integration's
    /// namespace when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The object a worker runs for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `Integration` or `Schedule`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

/// Owner of the integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerInfo {
    /// Owning team.
    pub team: String,
    /// Contact (email or URL).
    pub contact: String,
    /// On-call rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_call: Option<String>,
}

/// The declared data flow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataFlowInfo {
    /// Source system name.
    pub source_system: String,
    /// Target system name.
    pub target_system: String,
    /// Classification (`public` ... `pii`).
    pub classification: String,
    /// Fields that travel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Where events come from, tagged by `type`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SourceConfig {
    /// A webhook receiver on [`INBOUND_PORT`].
    Webhook(WebhookConfig),
    /// A versioned inbound API on [`INBOUND_PORT`].
    Api(ApiConfig),
    /// A paginated REST pull.
    Rest(RestPullConfig),
    /// An incremental database pull.
    Database(DatabasePullConfig),
    /// A file import.
    File(FileImportConfig),
    /// An IMAP mailbox.
    Imap(ImapConfig),
}

impl SourceConfig {
    /// Kind name, as in the Integration spec.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Webhook(_) => "webhook",
            SourceConfig::Api(_) => "api",
            SourceConfig::Rest(_) => "rest",
            SourceConfig::Database(_) => "database",
            SourceConfig::File(_) => "file",
            SourceConfig::Imap(_) => "imap",
        }
    }
}

/// How inbound requests are authenticated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundAuthConfig {
    /// `signature`, `bearer`, `basic`, `mtls` or `none`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Name of the Credential (a key of [`WorkerConfig::credentials`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Accepted clock difference for timestamped signatures.
    pub tolerance_seconds: u32,
}

/// A webhook receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// Path served.
    pub path: String,
    /// Authentication.
    pub auth: InboundAuthConfig,
    /// Body size limit.
    pub max_body_bytes: u32,
    /// Extra header carrying event ids for deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_header: Option<String>,
}

/// A versioned inbound API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiConfig {
    /// Routes.
    pub routes: Vec<ApiRouteConfig>,
    /// Body size limit.
    pub max_body_bytes: u32,
}

/// One API route, served at `/{version}{path}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiRouteConfig {
    /// Route name.
    pub name: String,
    /// Version prefix (`v1`).
    pub version: String,
    /// HTTP method.
    pub method: String,
    /// Path after the version; `{name}` segments are parameters.
    pub path: String,
    /// Authentication.
    pub auth: InboundAuthConfig,
    /// Targets fed (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// A paginated REST pull.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestPullConfig {
    /// The request for one page.
    pub request: OutboundCall,
    /// JSON Pointer to the records array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_pointer: Option<String>,
    /// Pagination.
    pub pagination: PaginationConfig,
}

/// Pagination of a REST pull.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaginationConfig {
    /// `none`, `page`, `offset`, `cursor` or `link`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Parameter carrying the page, offset or cursor.
    pub param: String,
    /// Parameter carrying the page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_param: Option<String>,
    /// Records per page.
    pub page_size: u32,
    /// JSON Pointer to the next cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_pointer: Option<String>,
    /// Page limit per run.
    pub max_pages: u32,
}

/// A database connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConnectionConfig {
    /// `postgres` or `mysql`.
    pub driver: String,
    /// `driver://host:port/database`, without credentials.
    pub endpoint: String,
    /// Name of a basic Credential.
    pub credential: String,
    /// `disable`, `require` or `verifyFull`.
    pub tls: String,
    /// File with a PEM CA bundle that verifies the server (`verifyFull` with a private CA),
    /// mounted from the connection's `caSecretRef`; the public roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// An incremental database pull.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabasePullConfig {
    /// Connection.
    pub connection: DatabaseConnectionConfig,
    /// The SELECT, with `:watermark`.
    pub query: String,
    /// Watermark column and initial value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkConfig>,
    /// Rows per batch.
    pub batch_size: u32,
}

/// A watermark.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarkConfig {
    /// Column.
    pub column: String,
    /// First value.
    pub initial: String,
}

/// A file import.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileImportConfig {
    /// The download request.
    pub fetch: OutboundCall,
    /// `csv`, `json`, `jsonLines` or `xml`.
    pub format: String,
    /// CSV delimiter (one character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_delimiter: Option<String>,
    /// Whether a CSV file has a header row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_header: Option<bool>,
    /// JSON Pointer to the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_pointer: Option<String>,
    /// XML record element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_element: Option<String>,
    /// Size limit.
    pub max_bytes: u64,
    /// Rejection threshold in percent.
    pub max_rejected_percent: u32,
}

/// An IMAP source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImapConfig {
    /// `imaps://host:993` (or `imap://` when plaintext is allowed).
    pub server: String,
    /// Name of a basic Credential.
    pub credential: String,
    /// Mailbox.
    pub mailbox: String,
    /// Inbound email actions, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<EmailActionConfig>,
    /// `markSeen`, `move` or `delete`.
    pub after_processing: String,
    /// Folder for `move`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to: Option<String>,
    /// Messages per run.
    pub max_messages: u32,
    /// File with a PEM CA bundle that verifies the server, instead of the system roots (a
    /// mail server with a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// An inbound email action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailActionConfig {
    /// Name.
    pub name: String,
    /// CEL condition over `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Variables as CEL expressions over `email`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Targets fed (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// Filter and field map, as CEL expressions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformConfig {
    /// Events for which this is false are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Target variable name to CEL expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_map: BTreeMap<String, String>,
    /// Upsert keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coalesce_keys: Vec<String>,
    /// Row rules of imports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_rules: Vec<RowRuleConfig>,
}

impl TransformConfig {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self == &TransformConfig::default()
    }
}

/// A row rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RowRuleConfig {
    /// CEL condition over `record`.
    pub rule: String,
    /// Rejection message.
    pub message: String,
}

/// A target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetConfig {
    /// Target name.
    pub name: String,
    /// CEL condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// What the target is, tagged by `type` beside the name.
    #[serde(flatten)]
    pub kind: TargetKind,
}

/// The kinds of target, tagged by `type`.
// Targets are few and built once per config; boxing the large variant would only make the
// contract clumsier to write.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TargetKind {
    /// An outbound HTTP call.
    OutboundMessage(OutboundCall),
    /// A database table.
    Database(DatabaseTargetConfig),
    /// An email.
    Email(EmailTargetConfig),
}

/// A database target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseTargetConfig {
    /// Connection.
    pub connection: DatabaseConnectionConfig,
    /// Table.
    pub table: String,
}

/// An email target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailTargetConfig {
    /// SMTP server.
    pub smtp: SmtpConfig,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject template.
    pub subject: String,
    /// Body template.
    pub body: String,
}

/// An SMTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtps://host:465` or `smtp://host:587`.
    pub server: String,
    /// Name of a basic Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Allow plaintext.
    #[serde(default)]
    pub insecure_allow_plaintext: bool,
    /// File with a PEM CA bundle that verifies the server, instead of the system roots (a
    /// relay with a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// One call of an OutboundMessage method, fully resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundCall {
    /// The endpoint and its policies.
    pub endpoint: EndpointConfig,
    /// The method.
    pub method: MethodConfig,
    /// Fixed variable values, under the mapped ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// An OutboundMessage endpoint with its policies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointConfig {
    /// Name of the OutboundMessage (for metrics and the circuit breaker).
    pub name: String,
    /// Fixed scheme, host, port and base path.
    pub url: String,
    /// `rest` or `soap`.
    pub protocol: String,
    /// `1.1` or `1.2` for SOAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_version: Option<String>,
    /// Name of the Credential that authenticates calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Name of an mtls Credential presenting a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// File with a PEM CA bundle (mounted from the OutboundMessage's `tls.caSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Server name to verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Timeout of one attempt.
    pub timeout_ms: u64,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
}

/// A method of an OutboundMessage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodConfig {
    /// Method name.
    pub name: String,
    /// HTTP method.
    pub http_method: String,
    /// Path template.
    pub path: String,
    /// Query templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Header templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// SOAP action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<String>,
    /// Declared variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<VariableConfig>,
    /// Statuses that count as success (empty: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u16>,
    /// Response captures: name to JSON Pointer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, String>,
}

/// A declared variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariableConfig {
    /// Name.
    pub name: String,
    /// Default value (none: required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Longest accepted value.
    pub max_length: u32,
}

/// Retry policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts, the first included.
    pub max_attempts: u32,
    /// First delay.
    pub initial_backoff_ms: u64,
    /// Delay cap (and `Retry-After` cap).
    pub max_backoff_ms: u64,
}

/// Circuit breaker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// How long it stays open.
    pub open_for_ms: u64,
}

/// Delivery settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `durable` or `synchronous`.
    pub mode: String,
    /// Retry policy of each delivery.
    pub retry: RetryConfig,
    /// Dead-letter retention.
    pub dead_letter_retention_seconds: u64,
    /// Dead-letter capacity.
    pub dead_letter_max_entries: u32,
    /// Deliveries in flight.
    pub concurrency: u32,
}

/// A Credential as mounted in the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialConfig {
    /// `basic`, `bearer`, `apiKey`, `oauth2ClientCredentials`, `mtls` or `hmac`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Directory holding one file per [`SecretRole`], named by [`SecretRole::file_name`].
    pub directory: String,
    /// API key placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyConfig>,
    /// OAuth2 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// HMAC settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacConfig>,
}

/// API key placement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// `header`, `query`, `body` or `path`.
    #[serde(rename = "in")]
    pub in_: String,
    /// Header, parameter or field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// OAuth2 client-credentials settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Config {
    /// Token endpoint.
    pub token_url: String,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `basic` or `body`.
    pub auth_style: String,
    /// Refresh this many seconds before expiry.
    pub refresh_skew_seconds: u32,
}

/// HMAC settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HmacConfig {
    /// `standardWebhooks`, `github`, `stripe` or `custom`.
    pub scheme: String,
    /// Signature header for `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// What a Secret key is used for; each role is mounted as a file of its own name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SecretRole {
    /// User name of basic authentication.
    Username,
    /// Password of basic authentication.
    Password,
    /// Bearer token.
    Token,
    /// API key.
    ApiKey,
    /// OAuth2 client id.
    ClientId,
    /// OAuth2 client secret.
    ClientSecret,
    /// PEM client certificate (chain).
    Certificate,
    /// PEM private key of the client certificate.
    PrivateKey,
    /// PEM CA bundle that verifies the peer.
    CaCertificate,
    /// HMAC signing secret.
    Secret,
}

impl SecretRole {
    /// File name of this role inside a credential directory (also its field name in the
    /// Credential's `secretRef.keys`).
    pub fn file_name(self) -> &'static str {
        match self {
            SecretRole::Username => "username",
            SecretRole::Password => "password",
            SecretRole::Token => "token",
            SecretRole::ApiKey => "apiKey",
            SecretRole::ClientId => "clientId",
            SecretRole::ClientSecret => "clientSecret",
            SecretRole::Certificate => "certificate",
            SecretRole::PrivateKey => "privateKey",
            SecretRole::CaCertificate => "caCertificate",
            SecretRole::Secret => "secret",
        }
    }
}

/// Address ranges allowed despite the SSRF guard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressConfig {
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<String>,
}

impl EgressConfig {
    /// Whether nothing is allowed beyond the default.
    pub fn is_empty(&self) -> bool {
        self.allow_cidrs.is_empty()
    }
}

/// Health checks run by the worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthChecksConfig {
    /// Interval.
    pub interval_ms: u64,
    /// Timeout of each check.
    pub timeout_ms: u64,
    /// Probe every target endpoint.
    pub targets: bool,
    /// Check OAuth2 token endpoints and client certificate expiry.
    pub credentials: bool,
    /// Certificate expiry warning window.
    pub certificate_expiry_warning_seconds: u64,
    /// Extra probes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeConfig>,
}

/// An extra probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probe name.
    pub name: String,
    /// The call.
    pub call: OutboundCall,
}

/// Ports and directories of the worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// Inbound port.
    pub inbound_port: u16,
    /// Admin port.
    pub admin_port: u16,
    /// Queue and dead-letter directory.
    pub data_dir: String,
    /// Log level.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            inbound_port: INBOUND_PORT,
            admin_port: ADMIN_PORT,
            data_dir: DATA_MOUNT_PATH.into(),
            log_level: "info".into(),
        }
    }
}

/// Why a config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not a valid config.
    #[error("worker config is not valid YAML for {CONFIG_API_VERSION}: {0}")]
    Parse(String),
    /// Another contract version.
    #[error("worker config has apiVersion {found:?}, this worker reads {CONFIG_API_VERSION:?}")]
    Version {
        /// The version found.
        found: String,
    },
}

impl WorkerConfig {
    /// Moves every absolute file path of the config below `root`: credential directories,
    /// CA files of endpoints, mail servers and database connections, and the data directory.
    /// This is for running a worker outside its container, where the pod's mounts appear
    /// below a directory (`switchboard dev`); paths already below `root` are kept.
    pub fn rebase(&mut self, root: &std::path::Path) {
        for credential in self.credentials.values_mut() {
            rebase_path(&mut credential.directory, root);
        }
        rebase_path(&mut self.server.data_dir, root);
        let mut calls: Vec<&mut OutboundCall> = Vec::new();
        match &mut self.source {
            Some(SourceConfig::Rest(rest)) => calls.push(&mut rest.request),
            Some(SourceConfig::File(file)) => calls.push(&mut file.fetch),
            Some(SourceConfig::Imap(imap)) => rebase_optional_path(&mut imap.ca_file, root),
            Some(SourceConfig::Database(pull)) => {
                rebase_optional_path(&mut pull.connection.ca_file, root)
            }
            _ => {}
        }
        for target in &mut self.targets {
            match &mut target.kind {
                TargetKind::OutboundMessage(call) => calls.push(call),
                TargetKind::Email(email) => rebase_optional_path(&mut email.smtp.ca_file, root),
                TargetKind::Database(database) => {
                    rebase_optional_path(&mut database.connection.ca_file, root)
                }
            }
        }
        if let Some(run) = &mut self.run {
            calls.push(run);
        }
        if let Some(checks) = &mut self.health_checks {
            calls.extend(checks.probes.iter_mut().map(|p| &mut p.call));
        }
        for call in calls {
            rebase_optional_path(&mut call.endpoint.ca_file, root);
        }
    }

    /// Parse a rendered config and check its version.
    pub fn from_yaml(text: &str) -> Result<WorkerConfig, ConfigError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header {
            api_version: Option<String>,
        }
        let header: Header =
            yaml_serde::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let found = header.api_version.unwrap_or_default();
        if found != CONFIG_API_VERSION {
            return Err(ConfigError::Version { found });
        }
        yaml_serde::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Render as YAML, the form stored in the ConfigMap.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("a WorkerConfig always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_of_another_version_are_refused_by_name() {
        let error =
            WorkerConfig::from_yaml("apiVersion: worker.switchboard.dev/v0\nkind: WorkerConfig\n")
                .unwrap_err();
        assert!(error.to_string().contains("worker.switchboard.dev/v0"), "{error}");
    }

    #[test]
    fn sources_and_targets_are_tagged_by_type() {
        let target = TargetConfig {
            name: "mail".into(),
            when: None,
            kind: TargetKind::Email(EmailTargetConfig {
                smtp: SmtpConfig {
                    server: "smtps://smtp.example:465".into(),
                    credential: None,
                    insecure_allow_plaintext: false,
                    ca_file: None,
                },
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                subject: "s".into(),
                body: "b".into(),
            }),
        };
        let yaml = yaml_serde::to_string(&target).unwrap();
        assert!(yaml.starts_with("name: mail\ntype: email\n"), "{yaml}");
        assert_eq!(yaml_serde::from_str::<TargetConfig>(&yaml).unwrap(), target);
    }
}

/// `path` below `root` when it is absolute and not there already.
pub fn rebase_path(path: &mut String, root: &std::path::Path) {
    let p = std::path::Path::new(path.as_str());
    if p.is_absolute() && !p.starts_with(root) {
        *path = root.join(p.strip_prefix("/").unwrap_or(p)).to_string_lossy().into_owned();
    }
}

fn rebase_optional_path(path: &mut Option<String>, root: &std::path::Path) {
    if let Some(path) = path {
        rebase_path(path, root);
    }
}

#[cfg(test)]
mod rebase_tests {
    use super::*;

    const CONFIG: &str = r#"apiVersion: worker.switchboard.dev/v1
kind: WorkerConfig
subject:
  kind: Integration
  namespace: acme-integrations
  name: order-invoicing
owner:
  team: finance-systems
  contact: finance-systems@acme.example
  onCall: finance-systems-oncall
dataFlow:
  sourceSystem: Web shop
  targetSystem: Legacy billing (SOAP)
  classification: confidential
  fields:
  - order number
  - customer number
  - amount
  - currency
source:
  type: api
  routes:
  - name: create-invoice
    version: v1
    method: POST
    path: /invoices
    auth:
      type: bearer
      credential: webshop-api-token
      toleranceSeconds: 300
  maxBodyBytes: 1048576
transform:
  fieldMap:
    amount: string(body.total.amount)
    currency: body.total.currency
    customer_number: body.customer.number
    order_number: body.orderNumber
targets:
- name: billing
  type: outboundMessage
  endpoint:
    name: legacy-billing
    url: https://billing.dc1.acme.example:8443/services/InvoiceService
    protocol: soap
    soapVersion: '1.1'
    credential: billing-client-cert
    caFile: /var/run/switchboard/ca/legacy-billing/ca.crt
    timeoutMs: 45000
    retry:
      maxAttempts: 3
      initialBackoffMs: 2000
      maxBackoffMs: 30000
    circuitBreaker:
      failureThreshold: 5
      openForMs: 60000
  method:
    name: create-invoice
    httpMethod: POST
    path: /
    body: |
      <inv:CreateInvoice xmlns:inv="urn:acme:billing">
        <inv:OrderNumber>${order_number}</inv:OrderNumber>
        <inv:CustomerNumber>${customer_number}</inv:CustomerNumber>
        <inv:Amount currency="${currency}">${amount}</inv:Amount>
      </inv:CreateInvoice>
    soapAction: urn:acme:billing:CreateInvoice
    variables:
    - name: order_number
      maxLength: 4096
    - name: customer_number
      maxLength: 4096
    - name: currency
      default: EUR
      maxLength: 4096
    - name: amount
      maxLength: 4096
delivery:
  mode: synchronous
  retry:
    maxAttempts: 5
    initialBackoffMs: 1000
    maxBackoffMs: 300000
  deadLetterRetentionSeconds: 1209600
  deadLetterMaxEntries: 100000
  concurrency: 16
credentials:
  billing-client-cert:
    type: mtls
    directory: /var/run/switchboard/credentials/billing-client-cert
  webshop-api-token:
    type: bearer
    directory: /var/run/switchboard/credentials/webshop-api-token
egress:
  allowCidrs:
  - 10.20.0.0/16
server:
  inboundPort: 8080
  adminPort: 9090
  dataDir: /var/lib/switchboard
  logLevel: info

"#;

    #[test]
    fn rebasing_moves_every_absolute_path_below_the_root_once() {
        let mut config = WorkerConfig::from_yaml(CONFIG).unwrap();
        let root = std::path::Path::new("/tmp/pods/p/root");
        config.rebase(root);
        config.rebase(root);
        assert_eq!(
            config.credentials["billing-client-cert"].directory,
            "/tmp/pods/p/root/var/run/switchboard/credentials/billing-client-cert"
        );
        assert_eq!(config.server.data_dir, "/tmp/pods/p/root/var/lib/switchboard");
        let TargetKind::OutboundMessage(call) = &config.targets[0].kind else { panic!("a call") };
        assert_eq!(
            call.endpoint.ca_file.as_deref(),
            Some("/tmp/pods/p/root/var/run/switchboard/ca/legacy-billing/ca.crt")
        );
        let mut relative = "relative/path".to_string();
        rebase_path(&mut relative, root);
        assert_eq!(relative, "relative/path");
    }

    #[test]
    fn rebasing_moves_the_ca_files_of_database_connections() {
        let connection = |ca: &str| DatabaseConnectionConfig {
            driver: "postgres".into(),
            endpoint: "postgres://db:5432/app".into(),
            credential: "db".into(),
            tls: "verifyFull".into(),
            ca_file: Some(ca.into()),
        };
        let mut config = WorkerConfig::from_yaml(CONFIG).unwrap();
        config.source = Some(SourceConfig::Database(DatabasePullConfig {
            connection: connection("/var/run/switchboard/ca/source/ca.crt"),
            query: "SELECT 1".into(),
            watermark: None,
            batch_size: 10,
        }));
        config.targets[0].kind = TargetKind::Database(DatabaseTargetConfig {
            connection: connection("/var/run/switchboard/ca/target/ca.crt"),
            table: "t".into(),
        });
        config.rebase(std::path::Path::new("/tmp/pods/p/root"));
        let Some(SourceConfig::Database(pull)) = &config.source else { panic!("a pull") };
        assert_eq!(
            pull.connection.ca_file.as_deref(),
            Some("/tmp/pods/p/root/var/run/switchboard/ca/source/ca.crt")
        );
        let TargetKind::Database(target) = &config.targets[0].kind else { panic!("a table") };
        assert_eq!(
            target.connection.ca_file.as_deref(),
            Some("/tmp/pods/p/root/var/run/switchboard/ca/target/ca.crt")
        );
    }

    #[test]
    fn rebasing_moves_the_mail_servers_ca_files() {
        let mut config = WorkerConfig::from_yaml(CONFIG).unwrap();
        config.source = Some(SourceConfig::Imap(ImapConfig {
            server: "imaps://mail.acme.example:993".into(),
            credential: "mailbox".into(),
            mailbox: "INBOX".into(),
            actions: vec![],
            after_processing: "markSeen".into(),
            move_to: None,
            max_messages: 10,
            ca_file: Some("/var/run/switchboard/ca/mail/ca.crt".into()),
        }));
        config.targets[0].kind = TargetKind::Email(EmailTargetConfig {
            smtp: SmtpConfig {
                server: "smtps://smtp.acme.example:465".into(),
                credential: None,
                insecure_allow_plaintext: false,
                ca_file: Some("/var/run/switchboard/ca/smtp/ca.crt".into()),
            },
            from: "a@acme.example".into(),
            to: vec!["b@acme.example".into()],
            subject: "s".into(),
            body: "b".into(),
        });
        config.rebase(std::path::Path::new("/pods/p"));
        let Some(SourceConfig::Imap(imap)) = &config.source else { panic!("an IMAP source") };
        assert_eq!(imap.ca_file.as_deref(), Some("/pods/p/var/run/switchboard/ca/mail/ca.crt"));
        let TargetKind::Email(email) = &config.targets[0].kind else { panic!("an email target") };
        assert_eq!(
            email.smtp.ca_file.as_deref(),
            Some("/pods/p/var/run/switchboard/ca/smtp/ca.crt")
        );
    }
}
