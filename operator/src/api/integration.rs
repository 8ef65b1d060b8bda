//! `Integration`: one governed flow of data from a source system to one or more targets.
//!
//! ```text
//!   source ──▶ transform ──▶ targets          owner, dataFlow: who answers, what flows where
//!   webhook      filter        outboundMessage  delivery: retries, dead letter, durable queue
//!   api          fieldMap      database         alerting: threshold, routes to the owner
//!   rest/db/     coalesceKeys  email            healthChecks: synthetic probes of endpoints
//!   file/imap    rowRules                       workers: replicas, resources, placement
//!   (pulled by a Schedule)
//! ```
//!
//! `owner` and `dataFlow` are required: an integration nobody owns, or whose data flow is not
//! declared, is not admitted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, CredentialRef, DNS_LABEL_PATTERN, DURATION_PATTERN, DataFlow, LONG_DURATION_PATTERN,
    MethodRef, Owner, RetryPolicy, SecretKeyRef, VARIABLE_NAME_PATTERN,
};

/// An Integration: a governed flow from a source system, through a transform, to targets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Integration",
    plural = "integrations",
    shortname = "intg",
    category = "switchboard",
    namespaced,
    status = "IntegrationStatus",
    doc = "Integration declares a governed data flow: its owner, the declared data flow (systems, classification, fields), a source (webhook, inbound API, or a scheduled pull from REST, a database, a file or IMAP), a transform, targets, delivery guarantees, alert routing, health checks and the workers that run it.",
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.owner.team","description":"Owning team"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.dataFlow.sourceSystem","description":"System the data comes from"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.dataFlow.targetSystem","description":"System the data goes to"}"#,
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.dataFlow.classification","description":"Data classification"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Children applied and workers available"}"#,
    printcolumn = r#"{"name":"Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"Healthy\")].status","description":"Runs succeed"}"#,
    printcolumn = r#"{"name":"Contact","type":"string","jsonPath":".spec.owner.contact","priority":1}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".status.sourceKind","description":"Kind of source","priority":1}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.consecutiveFailures","description":"Consecutive failed runs","priority":1}"#,
    printcolumn = r#"{"name":"Last Failure","type":"string","jsonPath":".status.lastFailure.reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(self.dataFlow.classification in ['restricted', 'pii']) || !has(self.source.webhook) || self.source.webhook.auth.type != 'none'",
     "message": "restricted and pii data may not be received by an unauthenticated webhook",
     "fieldPath": ".source.webhook.auth"},
    {"rule": "!(self.dataFlow.classification in ['restricted', 'pii']) || !has(self.source.api) || self.source.api.routes.all(r, r.auth.type != 'none')",
     "message": "restricted and pii data may not be received by an unauthenticated API route",
     "fieldPath": ".source.api"},
    {"rule": "self.delivery.mode != 'synchronous' || has(self.source.webhook) || has(self.source.api)",
     "message": "synchronous delivery only applies to webhook and api sources",
     "fieldPath": ".delivery.mode"},
    {"rule": "!has(self.transform) || !has(self.transform.coalesceKeys) || (has(self.transform.fieldMap) && self.transform.coalesceKeys.all(k, k in self.transform.fieldMap))",
     "message": "every coalesce key must be a field of transform.fieldMap",
     "fieldPath": ".transform.coalesceKeys"},
    {"rule": "!has(self.source.imap) || !has(self.source.imap.actions) || self.source.imap.actions.all(a, !has(a.targets) || a.targets.all(t, self.targets.exists(x, x.name == t)))",
     "message": "an email action names a target that is not declared in targets",
     "fieldPath": ".source.imap.actions"},
    {"rule": "!has(self.source.api) || self.source.api.routes.all(r, !has(r.targets) || r.targets.all(t, self.targets.exists(x, x.name == t)))",
     "message": "an API route names a target that is not declared in targets",
     "fieldPath": ".source.api.routes"}
]))]
pub struct IntegrationSpec {
    /// Who owns this integration: required. Alerts go to the owner's routes and on-call.
    pub owner: Owner,
    /// The declared data flow: required. Reports and audits read it.
    pub data_flow: DataFlow,
    /// What the integration does, in a sentence, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Where events or records come from: exactly one of webhook, api, rest, database, file,
    /// imap. Pull sources (rest, database, file, imap) run when a Schedule names this
    /// integration.
    pub source: Source,
    /// How events are filtered and mapped to the targets' variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// Where the data goes; each target receives every event that passes the filter (and its
    /// own `when`).
    #[schemars(length(min = 1, max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub targets: Vec<Target>,
    /// Delivery guarantees: durable queue or synchronous, retries, dead letter.
    #[serde(default)]
    #[schemars(default)]
    pub delivery: Delivery,
    /// When and where failures are reported to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<Alerting>,
    /// Synthetic probes of the external systems this integration depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<HealthChecks>,
    /// The worker pods that run this integration.
    #[serde(default)]
    #[schemars(default)]
    pub workers: Workers,
    /// Private addresses the workers may call. Loopback, private, link-local and unique-local
    /// addresses are refused unless listed here (a guard against server-side request forgery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
}

/// Where an integration's data comes from: exactly one kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.webhook), has(self.api), has(self.rest), has(self.database), has(self.file), has(self.imap)].exists_one(x, x)",
     "message": "source needs exactly one of webhook, api, rest, database, file or imap"}
]))]
pub struct Source {
    /// Receive webhooks (push): the worker serves an HTTP endpoint and verifies each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSource>,
    /// Serve a versioned inbound API (`/v1/...`), each route with its own authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSource>,
    /// Pull records from a REST API through an OutboundMessage method, with pagination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestSource>,
    /// Pull rows from a database with an incremental watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSource>,
    /// Import a file (CSV, JSON, JSON Lines, XML) downloaded through an OutboundMessage method:
    /// staged, validated row by row, then mapped and coalesced into the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    /// Read email from an IMAP mailbox and apply inbound email actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<ImapSource>,
}

impl Source {
    /// The kind of source, as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Source { webhook: Some(_), .. } => "webhook",
            Source { api: Some(_), .. } => "api",
            Source { rest: Some(_), .. } => "rest",
            Source { database: Some(_), .. } => "database",
            Source { file: Some(_), .. } => "file",
            Source { imap: Some(_), .. } => "imap",
            _ => "none",
        }
    }

    /// Whether the source receives requests (and so needs a Service).
    pub fn is_inbound(&self) -> bool {
        self.webhook.is_some() || self.api.is_some()
    }
}

/// Authentication of inbound requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'none' || has(self.credentialRef)",
     "message": "credentialRef is required unless type is none", "fieldPath": ".credentialRef"},
    {"rule": "self.type != 'none' || !has(self.credentialRef)",
     "message": "type none takes no credentialRef", "fieldPath": ".credentialRef"}
]))]
pub struct InboundAuth {
    /// `signature` (an HMAC Credential: Standard Webhooks, GitHub, Stripe or a custom header),
    /// `bearer`, `basic`, `mtls` (client certificates signed by the Credential's CA) or `none`.
    #[serde(rename = "type")]
    pub type_: InboundAuthType,
    /// Credential holding the shared secret, token, password or CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<CredentialRef>,
    /// Largest accepted clock difference for signed, timestamped requests; older or newer
    /// requests are refused as replays.
    #[serde(default = "default_tolerance")]
    #[schemars(default = "default_tolerance", range(min = 1, max = 3600))]
    pub tolerance_seconds: u32,
}

fn default_tolerance() -> u32 {
    300
}

/// How inbound requests prove who sent them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum InboundAuthType {
    /// An HMAC signature over the raw body, in the scheme of the hmac Credential.
    Signature,
    /// `Authorization: Bearer <token>` matching a bearer Credential.
    Bearer,
    /// HTTP basic authentication matching a basic Credential.
    Basic,
    /// A TLS client certificate signed by the CA of an mtls Credential.
    Mtls,
    /// No authentication (refused for restricted and pii data).
    None,
}

impl InboundAuthType {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundAuthType::Signature => "signature",
            InboundAuthType::Bearer => "bearer",
            InboundAuthType::Basic => "basic",
            InboundAuthType::Mtls => "mtls",
            InboundAuthType::None => "none",
        }
    }
}

/// A webhook receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    /// Path the worker serves, for example `/alerts`.
    #[serde(default = "default_webhook_path")]
    #[schemars(
        default = "default_webhook_path",
        length(min = 1, max = 256),
        regex(pattern = r"^/[A-Za-z0-9._~/-]*$")
    )]
    pub path: String,
    /// How senders are authenticated.
    pub auth: InboundAuth,
    /// Largest accepted body, in bytes; larger requests get 413.
    #[serde(default = "default_max_body")]
    #[schemars(default = "default_max_body", range(min = 1024, max = 33554432))]
    pub max_body_bytes: u32,
    /// Header naming each event's id, used to drop duplicates. `webhook-id` (Standard
    /// Webhooks) and CloudEvents `ce-id` are always understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub id_header: Option<String>,
}

fn default_webhook_path() -> String {
    "/webhook".into()
}
fn default_max_body() -> u32 {
    1024 * 1024
}

/// A versioned inbound API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.routes.all(r, self.routes.exists_one(o, o.version == r.version && o.method == r.method && o.path == r.path))",
     "message": "two routes share the same version, method and path", "fieldPath": ".routes"}
]))]
pub struct ApiSource {
    /// Routes, each served at `/{version}{path}`.
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub routes: Vec<ApiRoute>,
    /// Largest accepted body, in bytes; larger requests get 413.
    #[serde(default = "default_max_body")]
    #[schemars(default = "default_max_body", range(min = 1024, max = 33554432))]
    pub max_body_bytes: u32,
}

/// One route of an inbound API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiRoute {
    /// Route name, for metrics and logs.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// API version prefix, for example `v1`.
    #[schemars(length(min = 2, max = 16), regex(pattern = r"^v[0-9]+((alpha|beta)[0-9]+)?$"))]
    pub version: String,
    /// HTTP method served.
    #[serde(default = "default_route_method")]
    #[schemars(
        default = "default_route_method",
        length(max = 8),
        regex(pattern = r"^(GET|POST|PUT|PATCH|DELETE)$")
    )]
    pub method: String,
    /// Path after the version, for example `/incidents`. `{name}` segments become variables
    /// available to the transform as `params.name`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[A-Za-z0-9._~/{}-]*$"))]
    pub path: String,
    /// How callers of this route are authenticated.
    pub auth: InboundAuth,
    /// Names of the targets this route feeds. Default: all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 63)))]
    pub targets: Option<Vec<String>>,
}

fn default_route_method() -> String {
    "POST".into()
}

/// A scheduled pull from a REST API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestSource {
    /// The OutboundMessage method that fetches one page.
    pub request: MethodRef,
    /// Variable values for the request (literal text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32), inner(length(max = 4096)))]
    pub variables: Option<BTreeMap<String, String>>,
    /// JSON Pointer to the array of records in each response, for example `/result`. Default:
    /// the response itself is the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^(/[^/]*)*$"))]
    pub records_pointer: Option<String>,
    /// How further pages are requested.
    #[serde(default)]
    #[schemars(default)]
    pub pagination: Pagination,
}

/// Pagination of a REST pull.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'cursor' || has(self.cursorPointer)",
     "message": "cursor pagination needs cursorPointer (where the next cursor is in the response)",
     "fieldPath": ".cursorPointer"}
]))]
pub struct Pagination {
    /// `none`, `page` (page number), `offset` (offset and limit), `cursor` (a cursor from
    /// the response) or `link` (RFC 8288 `Link: <...>; rel="next"`, same host only).
    #[serde(rename = "type", default = "default_pagination_type")]
    #[schemars(default = "default_pagination_type")]
    pub type_: PaginationType,
    /// Query parameter carrying the page number, offset or cursor.
    #[serde(default = "default_page_param")]
    #[schemars(default = "default_page_param", length(min = 1, max = 64))]
    pub param: String,
    /// Query parameter carrying the page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub size_param: Option<String>,
    /// Records per page.
    #[serde(default = "default_page_size")]
    #[schemars(default = "default_page_size", range(min = 1, max = 10000))]
    pub page_size: u32,
    /// JSON Pointer to the next cursor in a response (cursor pagination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^(/[^/]*)*$"))]
    pub cursor_pointer: Option<String>,
    /// Most pages fetched in one run, a guard against endless pagination.
    #[serde(default = "default_max_pages")]
    #[schemars(default = "default_max_pages", range(min = 1, max = 100000))]
    pub max_pages: u32,
}

impl Default for Pagination {
    fn default() -> Self {
        Pagination {
            type_: default_pagination_type(),
            param: default_page_param(),
            size_param: None,
            page_size: default_page_size(),
            cursor_pointer: None,
            max_pages: default_max_pages(),
        }
    }
}

fn default_pagination_type() -> PaginationType {
    PaginationType::None
}
fn default_page_param() -> String {
    "page".into()
}
fn default_page_size() -> u32 {
    100
}
fn default_max_pages() -> u32 {
    1000
}

/// Pagination styles.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PaginationType {
    /// One request, one page.
    None,
    /// Page numbers starting at 1.
    Page,
    /// Offset and limit.
    Offset,
    /// An opaque cursor from each response.
    Cursor,
    /// RFC 8288 Link headers.
    Link,
}

/// Database engines.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DatabaseDriver {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl DatabaseDriver {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseDriver::Postgres => "postgres",
            DatabaseDriver::Mysql => "mysql",
        }
    }
}

/// A database connection: where, as whom, and how securely.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.endpoint) && self.endpoint.startsWith(self.driver + '://') && !self.endpoint.contains('@')",
     "message": "endpoint must be driver://host:port/database, with the driver's scheme and no user or password in it",
     "fieldPath": ".endpoint"}
]))]
pub struct DatabaseConnection {
    /// `postgres` or `mysql`.
    pub driver: DatabaseDriver,
    /// `postgres://host:5432/database` or `mysql://host:3306/database`, without credentials.
    #[schemars(length(min = 8, max = 1024))]
    pub endpoint: String,
    /// A basic Credential with the database user and password.
    pub credential_ref: CredentialRef,
    /// TLS to the database: `require` (encrypt), `verifyFull` (encrypt and verify the server
    /// certificate and host) or `disable` (local development only).
    #[serde(default = "default_tls_mode")]
    #[schemars(default = "default_tls_mode")]
    pub tls: DatabaseTls,
    /// PEM bundle of CAs that may sign the database's certificate (a private CA), instead of
    /// the public roots; used with `verifyFull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn default_tls_mode() -> DatabaseTls {
    DatabaseTls::VerifyFull
}

/// TLS mode of a database connection.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DatabaseTls {
    /// No TLS.
    Disable,
    /// TLS without verifying the server.
    Require,
    /// TLS verifying the server certificate and host name.
    VerifyFull,
}

/// A scheduled, incremental pull from a database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.watermark) || self.query.contains(':watermark')",
     "message": "a query with a watermark must use the :watermark parameter (for example WHERE updated_at > :watermark)",
     "fieldPath": ".query"}
]))]
pub struct DatabaseSource {
    /// The connection.
    pub connection: DatabaseConnection,
    /// The SELECT to run; `:watermark` is bound to the last seen watermark value.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// Incremental watermark: the column whose greatest value is remembered between runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermark>,
    /// Rows fetched per batch.
    #[serde(default = "default_batch_size")]
    #[schemars(default = "default_batch_size", range(min = 1, max = 100000))]
    pub batch_size: u32,
}

fn default_batch_size() -> u32 {
    500
}

/// An incremental watermark.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    /// Column of the query result that only grows (a timestamp or sequence).
    #[schemars(length(min = 1, max = 63), regex(pattern = VARIABLE_NAME_PATTERN))]
    pub column: String,
    /// Value used on the first run.
    #[schemars(length(min = 1, max = 64))]
    pub initial: String,
}

/// File formats an import understands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileFormat {
    /// Comma (or other delimiter) separated values.
    Csv,
    /// A JSON array of records (or an array inside a document, see `recordsPointer`).
    Json,
    /// One JSON record per line.
    JsonLines,
    /// XML records (see `recordElement`).
    Xml,
}

/// A file import (import set): fetch, parse, validate each row, map, coalesce.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.format != 'xml' || has(self.recordElement)",
     "message": "xml imports need recordElement (the element that holds one record)",
     "fieldPath": ".recordElement"},
    {"rule": "!has(self.csv) || self.format == 'csv'",
     "message": "csv settings only apply to format csv", "fieldPath": ".csv"}
]))]
pub struct FileSource {
    /// The OutboundMessage method that downloads the file.
    pub fetch: MethodRef,
    /// `csv`, `json`, `jsonLines` or `xml`.
    pub format: FileFormat,
    /// CSV settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvSettings>,
    /// JSON Pointer to the records in a JSON file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^(/[^/]*)*$"))]
    pub records_pointer: Option<String>,
    /// Name of the XML element holding one record; its child elements become fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub record_element: Option<String>,
    /// Largest file accepted, in bytes.
    #[serde(default = "default_max_file")]
    #[schemars(default = "default_max_file", range(min = 1024, max = 1073741824))]
    pub max_bytes: u64,
    /// Share of rejected rows, in percent, above which the whole run fails and nothing is
    /// written (the staged rows are discarded).
    #[serde(default = "default_reject_threshold")]
    #[schemars(default = "default_reject_threshold", range(min = 0, max = 100))]
    pub max_rejected_percent: u32,
}

fn default_max_file() -> u64 {
    64 * 1024 * 1024
}
fn default_reject_threshold() -> u32 {
    10
}

/// CSV settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsvSettings {
    /// Field delimiter, one character.
    #[serde(default = "default_delimiter")]
    #[schemars(default = "default_delimiter", length(min = 1, max = 1))]
    pub delimiter: String,
    /// Whether the first row names the columns. Without it, columns are `c0`, `c1`, ...
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub header: bool,
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_true() -> bool {
    true
}

/// An IMAP mailbox read on a schedule, with inbound email actions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.server) && (self.server.startsWith('imaps://') || (self.insecureAllowPlaintext && self.server.startsWith('imap://')))",
     "message": "server must be imaps://host:993 (imap:// only with insecureAllowPlaintext: true)",
     "fieldPath": ".server"},
    {"rule": "self.afterProcessing != 'move' || has(self.moveTo)",
     "message": "afterProcessing move needs moveTo", "fieldPath": ".moveTo"}
]))]
pub struct ImapSource {
    /// `imaps://host:993`.
    #[schemars(length(min = 8, max = 1024))]
    pub server: String,
    /// Allow `imap://` without TLS (local development only).
    #[serde(default)]
    #[schemars(default)]
    pub insecure_allow_plaintext: bool,
    /// A basic Credential with the mailbox user and password.
    pub credential_ref: CredentialRef,
    /// Mailbox to read.
    #[serde(default = "default_mailbox")]
    #[schemars(default = "default_mailbox", length(min = 1, max = 256))]
    pub mailbox: String,
    /// Inbound email actions, tried in order; the first whose `when` holds is applied.
    /// Without actions every message goes through the transform to all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub actions: Option<Vec<EmailAction>>,
    /// What happens to a processed message: `markSeen`, `move` or `delete`.
    #[serde(default = "default_after")]
    #[schemars(default = "default_after")]
    pub after_processing: AfterProcessing,
    /// Folder for `afterProcessing: move`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub move_to: Option<String>,
    /// Most messages handled in one run.
    #[serde(default = "default_max_messages")]
    #[schemars(default = "default_max_messages", range(min = 1, max = 10000))]
    pub max_messages: u32,
}

fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_after() -> AfterProcessing {
    AfterProcessing::MarkSeen
}
fn default_max_messages() -> u32 {
    100
}

/// What to do with a processed email.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AfterProcessing {
    /// Set the \Seen flag.
    MarkSeen,
    /// Move to `moveTo`.
    Move,
    /// Delete the message.
    Delete,
}

/// An inbound email action: a condition and the variables it produces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailAction {
    /// Action name, for logs and metrics.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// CEL condition over `email` (`from`, `to`, `subject`, `text`, `headers`), for example
    /// `email.subject.matches('^INC[0-9]+')`. Default: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub when: Option<String>,
    /// Target variables as CEL expressions over `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64), inner(length(min = 1, max = 4096)))]
    pub variables: Option<BTreeMap<String, String>>,
    /// Names of the targets this action feeds. Default: all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 63)))]
    pub targets: Option<Vec<String>>,
}

/// Filtering and mapping of events (or records) to target variables. Expressions are CEL over
/// `body` (the parsed JSON, XML or form body, or the record of an import), `headers`, `query`,
/// `params` (API route parameters), `event` (CloudEvents attributes) and `email`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// CEL condition; events for which it is false are acknowledged and dropped (counted as
    /// `filtered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,
    /// Target variables as CEL expressions, for example `short_description:
    /// "body.alert.title"`. A variable that fails to evaluate rejects (or dead-letters) the
    /// event with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64), inner(length(min = 1, max = 4096)))]
    pub field_map: Option<BTreeMap<String, String>>,
    /// Fields of `fieldMap` that identify a record: an existing record with the same values is
    /// updated rather than duplicated (upsert). Imports report created and updated rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 63), regex(pattern = VARIABLE_NAME_PATTERN)))]
    pub coalesce_keys: Option<Vec<String>>,
    /// Row rules of an import: CEL conditions over `record`; a row that breaks one is
    /// rejected with the message and listed in the run report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub row_rules: Option<Vec<RowRule>>,
}

/// A row validation rule of an import.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowRule {
    /// CEL condition that must hold, for example `record.email.contains('@')`.
    #[schemars(length(min = 1, max = 4096))]
    pub rule: String,
    /// Why a row breaking the rule is rejected.
    #[schemars(length(min = 1, max = 256))]
    pub message: String,
}

/// Where data goes: exactly one of outboundMessage, database or email.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.outboundMessage), has(self.database), has(self.email)].exists_one(x, x)",
     "message": "a target needs exactly one of outboundMessage, database or email"}
]))]
pub struct Target {
    /// Target name, unique within the integration.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// CEL condition; the target only receives events for which it holds. Default: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub when: Option<String>,
    /// Invoke an OutboundMessage method with the mapped variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_message: Option<OutboundTarget>,
    /// Write rows into a database table (insert, or upsert on the coalesce keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseTarget>,
    /// Send an email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTarget>,
}

impl Target {
    /// The kind of target, as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Target { outbound_message: Some(_), .. } => "outboundMessage",
            Target { database: Some(_), .. } => "database",
            Target { email: Some(_), .. } => "email",
            _ => "none",
        }
    }
}

/// An OutboundMessage method as a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTarget {
    /// Name of the OutboundMessage, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Method to invoke.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub method: String,
    /// Fixed variable values (literal text), merged under the mapped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32), inner(length(max = 4096)))]
    pub variables: Option<BTreeMap<String, String>>,
}

/// A database table as a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseTarget {
    /// The connection.
    pub connection: DatabaseConnection,
    /// Table to write, optionally schema-qualified.
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    )]
    pub table: String,
}

/// An email as a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailTarget {
    /// The SMTP server.
    pub smtp: SmtpServer,
    /// Sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipients.
    #[schemars(length(min = 1, max = 50), inner(length(min = 3, max = 254)))]
    pub to: Vec<String>,
    /// Subject template with `${var}` placeholders.
    #[schemars(length(min = 1, max = 998))]
    pub subject: String,
    /// Plain-text body template with `${var}` placeholders.
    #[schemars(length(min = 1, max = 65536))]
    pub body: String,
}

/// An SMTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.server) && (self.server.startsWith('smtps://') || self.server.startsWith('smtp://'))",
     "message": "server must be smtps://host:465 (implicit TLS) or smtp://host:587 (STARTTLS)",
     "fieldPath": ".server"}
]))]
pub struct SmtpServer {
    /// `smtps://host:465` (implicit TLS) or `smtp://host:587` (STARTTLS, required unless
    /// `insecureAllowPlaintext`).
    #[schemars(length(min = 8, max = 1024))]
    pub server: String,
    /// A basic Credential with the SMTP user and password. Optional for relays that do not
    /// authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<CredentialRef>,
    /// Allow plaintext SMTP without STARTTLS (local development only).
    #[serde(default)]
    #[schemars(default)]
    pub insecure_allow_plaintext: bool,
}

/// Delivery guarantees.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `durable`: an inbound event is acknowledged once it is stored in the worker's queue,
    /// then delivered with retries. `synchronous`: acknowledged only after every target
    /// accepted it (the sender's own retries take over on failure).
    #[serde(default = "default_delivery_mode")]
    #[schemars(default = "default_delivery_mode")]
    pub mode: DeliveryMode,
    /// Retries of deliveries to database and email targets, which have no policy of their
    /// own. Outbound-message targets retry as their OutboundMessage's `spec.retry` says.
    #[serde(default)]
    #[schemars(default)]
    pub retry: RetryPolicy,
    /// Dead-letter store for events whose retries are exhausted.
    #[serde(default)]
    #[schemars(default)]
    pub dead_letter: DeadLetter,
    /// Deliveries in flight at once per worker.
    #[serde(default = "default_concurrency")]
    #[schemars(default = "default_concurrency", range(min = 1, max = 1024))]
    pub concurrency: u32,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            mode: default_delivery_mode(),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetter::default(),
            concurrency: default_concurrency(),
        }
    }
}

fn default_delivery_mode() -> DeliveryMode {
    DeliveryMode::Durable
}
fn default_concurrency() -> u32 {
    16
}

/// How inbound events are acknowledged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryMode {
    /// Acknowledge after a durable write to the local queue.
    Durable,
    /// Acknowledge after delivery.
    Synchronous,
}

/// Dead-letter settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// How long dead letters are kept for inspection and replay.
    #[serde(default = "default_dead_letter_retention")]
    #[schemars(default = "default_dead_letter_retention", length(max = 32), regex(pattern = LONG_DURATION_PATTERN))]
    pub retention: String,
    /// Most dead letters kept; the oldest are dropped (and counted) beyond it.
    #[serde(default = "default_dead_letter_max")]
    #[schemars(default = "default_dead_letter_max", range(min = 1, max = 10000000))]
    pub max_entries: u32,
}

impl Default for DeadLetter {
    fn default() -> Self {
        DeadLetter {
            retention: default_dead_letter_retention(),
            max_entries: default_dead_letter_max(),
        }
    }
}

fn default_dead_letter_retention() -> String {
    "14d".into()
}
fn default_dead_letter_max() -> u32 {
    100_000
}

/// Alerting: when a failing integration pages a person, and where.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.runbookUrl) || self.runbookUrl.startsWith('https://')",
     "message": "runbookUrl must be an https:// URL", "fieldPath": ".runbookUrl"}
]))]
pub struct Alerting {
    /// When an alert fires.
    #[serde(default)]
    #[schemars(default)]
    pub threshold: AlertThreshold,
    /// Severity carried by the alert.
    #[serde(default = "default_severity")]
    #[schemars(default = "default_severity")]
    pub severity: Severity,
    /// Runbook link carried by the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub runbook_url: Option<String>,
    /// Routes notified when the alert fires and when it resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub routes: Option<Vec<AlertRoute>>,
    /// Also notify the namespace's and the cluster's default routes.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub use_default_routes: bool,
}

fn default_severity() -> Severity {
    Severity::Critical
}

/// Alert severities.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Page now.
    Critical,
    /// Look soon.
    Warning,
    /// For the record.
    Info,
}

/// When an alert fires.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertThreshold {
    /// Consecutive failed runs or deliveries that fire the alert.
    #[serde(default = "default_consecutive")]
    #[schemars(default = "default_consecutive", range(min = 1, max = 10000))]
    pub consecutive_failures: u32,
    /// Alternatively, fire once the integration has been failing this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub failing_for: Option<String>,
}

impl Default for AlertThreshold {
    fn default() -> Self {
        AlertThreshold { consecutive_failures: default_consecutive(), failing_for: None }
    }
}

fn default_consecutive() -> u32 {
    3
}

/// One alert route: exactly one of alertmanager, pagerduty, slack, teams, email, webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.alertmanager), has(self.pagerduty), has(self.slack), has(self.teams), has(self.email), has(self.webhook)].exists_one(x, x)",
     "message": "an alert route needs exactly one of alertmanager, pagerduty, slack, teams, email or webhook"},
    {"rule": "!has(self.pagerduty) || has(self.pagerduty.credentialRef)",
     "message": "a pagerduty route needs credentialRef (an apiKey Credential holding the routing key)",
     "fieldPath": ".pagerduty.credentialRef"},
    {"rule": "!has(self.slack) || has(self.slack.credentialRef)",
     "message": "a slack route needs credentialRef (an apiKey Credential with in: path holding the webhook's secret path)",
     "fieldPath": ".slack.credentialRef"},
    {"rule": "!has(self.teams) || has(self.teams.credentialRef)",
     "message": "a teams route needs credentialRef (an apiKey Credential holding the webhook's secret part)",
     "fieldPath": ".teams.credentialRef"}
]))]
pub struct AlertRoute {
    /// Route name, unique within the integration.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Prometheus Alertmanager (API v2), for example `http://alertmanager.monitoring:9093`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<HttpRoute>,
    /// PagerDuty Events API v2, for example `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<HttpRoute>,
    /// Slack incoming webhook, for example `https://hooks.slack.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<HttpRoute>,
    /// Microsoft Teams incoming webhook (Workflows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<HttpRoute>,
    /// Email over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailRoute>,
    /// A generic webhook, signed with Standard Webhooks when credentialRef names an hmac
    /// Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<HttpRoute>,
}

/// An HTTP alert destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "isURL(self.url) && (self.url.startsWith('https://') || (self.insecureAllowHttp && self.url.startsWith('http://')))",
     "message": "url must be an https:// URL (http:// only with insecureAllowHttp: true)",
     "fieldPath": ".url"}
]))]
pub struct HttpRoute {
    /// Fixed URL (for incoming webhooks, the part before the secret path).
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// Credential to authenticate or sign notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<CredentialRef>,
    /// Allow an http:// URL (an in-cluster Alertmanager, local development).
    #[serde(default)]
    #[schemars(default)]
    pub insecure_allow_http: bool,
}

/// An email alert destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailRoute {
    /// The SMTP server.
    pub smtp: SmtpServer,
    /// Sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipients.
    #[schemars(length(min = 1, max = 20), inner(length(min = 3, max = 254)))]
    pub to: Vec<String>,
}

/// Synthetic health checks of the systems an integration depends on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.interval) >= duration('10s')",
     "message": "interval must be at least 10s", "fieldPath": ".interval"},
    {"rule": "duration(self.timeout) < duration(self.interval)",
     "message": "timeout must be shorter than interval", "fieldPath": ".timeout"}
]))]
pub struct HealthChecks {
    /// How often the checks run.
    #[serde(default = "default_check_interval")]
    #[schemars(default = "default_check_interval", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Timeout of each check.
    #[serde(default = "default_check_timeout")]
    #[schemars(default = "default_check_timeout", length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Probe reachability of every target endpoint (a HEAD or OPTIONS request with the
    /// target's credentials, or a connection for databases and SMTP).
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub targets: bool,
    /// Check the token endpoints of OAuth2 credentials and the expiry of client certificates.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub credentials: bool,
    /// Warn when a server or client certificate expires within this time.
    #[serde(default = "default_expiry_warning")]
    #[schemars(default = "default_expiry_warning", length(max = 32), regex(pattern = LONG_DURATION_PATTERN))]
    pub certificate_expiry_warning: String,
    /// Extra probes: OutboundMessage methods to call (for example a status endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub probes: Option<Vec<Probe>>,
}

fn default_check_interval() -> String {
    "60s".into()
}
fn default_check_timeout() -> String {
    "10s".into()
}
fn default_expiry_warning() -> String {
    "21d".into()
}

/// A synthetic probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Probe name.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// The OutboundMessage method to call; success is its expected statuses.
    pub call: MethodRef,
    /// Variable values (literal text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16), inner(length(max = 1024)))]
    pub variables: Option<BTreeMap<String, String>>,
}

/// The worker pods of an integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workers {
    /// Number of worker pods (inbound sources). Pull sources run as Jobs of their Schedule and
    /// keep one worker for health checks and the dead-letter store. A PodDisruptionBudget is
    /// created when this is above 1.
    #[serde(default = "default_replicas")]
    #[schemars(default = "default_replicas", range(min = 0, max = 50))]
    pub replicas: i32,
    /// CPU and memory requests and limits. Default: requests 50m/64Mi, limits 500m/256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// The durable queue and dead-letter store.
    #[serde(default)]
    #[schemars(default)]
    pub queue: QueueStorage,
    /// Log level of the workers (`error`, `warn`, `info`, `debug`, `trace`).
    #[serde(default = "default_log_level")]
    #[schemars(
        default = "default_log_level",
        length(max = 8),
        regex(pattern = r"^(error|warn|info|debug|trace)$")
    )]
    pub log_level: String,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            replicas: default_replicas(),
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            priority_class_name: None,
            queue: QueueStorage::default(),
            log_level: default_log_level(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}
fn default_log_level() -> String {
    "info".into()
}

/// Storage of a worker's durable queue.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.storage == 'persistentVolume' || !has(self.storageClassName)",
     "message": "storageClassName only applies to storage persistentVolume", "fieldPath": ".storageClassName"}
]))]
pub struct QueueStorage {
    /// `emptyDir` (survives container restarts, not pod deletion; a Deployment) or
    /// `persistentVolume` (survives rescheduling; a StatefulSet with a volume per pod).
    #[serde(default = "default_storage")]
    #[schemars(default = "default_storage")]
    pub storage: QueueStorageKind,
    /// Size of the volume.
    #[serde(default = "default_queue_size")]
    #[schemars(
        default = "default_queue_size",
        length(max = 16),
        regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti)$")
    )]
    pub size: String,
    /// Storage class of the volume (persistentVolume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for QueueStorage {
    fn default() -> Self {
        QueueStorage {
            storage: default_storage(),
            size: default_queue_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage() -> QueueStorageKind {
    QueueStorageKind::EmptyDir
}
fn default_queue_size() -> String {
    "1Gi".into()
}

/// Kinds of queue storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum QueueStorageKind {
    /// A pod-local volume.
    EmptyDir,
    /// A PersistentVolumeClaim per pod.
    PersistentVolume,
}

/// Private networks the workers may reach.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.allowCidrs) || self.allowCidrs.all(c, isCIDR(c))",
     "message": "allowCidrs holds CIDRs such as 10.20.0.0/16 or 127.0.0.1/32", "fieldPath": ".allowCidrs"}
]))]
pub struct Egress {
    /// Address ranges that may be called although they are loopback, private, link-local or
    /// unique-local, for example an internal SOAP service at `10.20.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 64)))]
    pub allow_cidrs: Option<Vec<String>>,
}

/// Observed state of an Integration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Healthy`, `CredentialsReady`, `WorkersAvailable`, each with a reason and a
    /// message a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Kind of the source (`webhook`, `api`, `rest`, `database`, `file`, `imap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    /// The data flow as resolved from the referenced objects: endpoints and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_flow: Option<ResolvedDataFlow>,
    /// Worker pods: desired, ready and available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerCounts>,
    /// URL of the inbound endpoint inside the cluster (webhook and api sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_url: Option<String>,
    /// When an event or run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Failed runs or deliveries since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u64>,
    /// Event counters, summed over the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// Report of the last import run (file, database, REST pulls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunReport>,
    /// The watermark of a database pull: the greatest value of the watermark column among the
    /// rows delivered so far, written by the worker after each batch; the next run starts
    /// after it. Only moves forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Results of the synthetic health checks (`spec.healthChecks`), by name; a failing
    /// one turns `Healthy` False unless deliveries or runs fail too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckResult>,
    /// State of the integration's alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertState>,
}

/// The resolved data flow of an integration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedDataFlow {
    /// Declared source system.
    pub source_system: String,
    /// Declared target system.
    pub target_system: String,
    /// Declared classification.
    pub classification: String,
    /// The source endpoint (inbound path, or the URL pulled from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_endpoint: Option<String>,
    /// Each target: name, kind and endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ResolvedTarget>,
    /// Credentials used, with their type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<ResolvedCredential>,
}

/// A resolved target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTarget {
    /// Target name.
    pub name: String,
    /// `outboundMessage`, `database` or `email`.
    pub kind: String,
    /// Endpoint the data goes to (scheme, host and path; never credentials).
    pub endpoint: String,
}

/// A credential an integration uses.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedCredential {
    /// Credential name.
    pub name: String,
    /// Credential type.
    #[serde(rename = "type")]
    pub type_: String,
    /// What it is used for (`source`, a target name, an alert route, a health check).
    pub used_for: String,
}

/// Worker pod counts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCounts {
    /// Desired pods.
    pub desired: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
}

/// A failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// When it happened.
    pub time: Time,
    /// Short machine-readable reason, for example `TargetUnavailable` or `MappingFailed`.
    pub reason: String,
    /// What happened, for a person (never a secret value).
    pub message: String,
}

/// Event counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Requests or records received.
    pub received: u64,
    /// Received but refused (authentication, validation, size).
    pub rejected: u64,
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
}

/// Report of one import run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// When the run started.
    pub start_time: Time,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `Succeeded` or `Failed`.
    pub result: String,
    /// Rows or records read.
    pub read: u64,
    /// Rows created in the target.
    pub created: u64,
    /// Rows updated in the target (coalesced).
    pub updated: u64,
    /// Rows rejected by validation or mapping.
    pub rejected: u64,
    /// The first rejections, with the row number and reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

/// A rejected row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Row number in the source (1-based, header excluded).
    pub row: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// Result of one synthetic health check, over the integration's workers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    /// Check name (`target:<name>`, `source:imap`, `token:<credential>`,
    /// `certificate:<host:port>`, `clientCertificate:<credential>`, `probe:<name>`).
    pub name: String,
    /// `True` when the check passed on every worker, `False` when it failed on any.
    pub status: String,
    /// The worker's reason (`Reachable`, `CertificateExpiringSoon`,
    /// `TokenEndpointUnreachable`, `TokenRejected`, `ProbeFailed`, ...).
    #[serde(default)]
    pub reason: String,
    /// What was found (never a secret value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the check last ran, as of the last status write (a result that does not change
    /// is not rewritten every round).
    pub last_checked: Time,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Rounds in a row the check has failed; the alert threshold's `consecutiveFailures`
    /// counts these too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u64>,
    /// Expiry of the certificate a certificate check read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
}

/// State of an integration's alert.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertState {
    /// `firing` or `resolved`.
    pub state: String,
    /// Since when.
    pub since: Time,
    /// Routes that failed to take the last notification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_routes: Vec<String>,
}
