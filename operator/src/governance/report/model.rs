//! The report model: everything the auditor's view says, built once from an [`ObjectSet`] and
//! rendered by every format.
//!
//! ```text
//!   ObjectSet (files, or objects listed from a cluster) ──┬─▶ inventory   integrations, credentials,
//!                                                        │               endpoints, schedules
//!   lint(set) ─▶ declared findings ──┐                   ├─▶ findings    lint rules + runtime rules
//!   statuses  ─▶ runtime findings  ──┴───────────────────┤
//!                                                        └─▶ diagram     systems → integrations → systems
//! ```
//!
//! The model holds names, types, endpoints (with any user info removed), ages and statuses; it
//! never holds a Secret value, so no renderer can print one. Time enters only through
//! [`BuildOptions::now`], so a report is a pure function of its input.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use schemars::{JsonSchema, SchemaGenerator, json_schema};
use serde::Serialize;

use super::diagram::{Graph, build_graph};
use super::findings::{Basis, ReportFinding, Severity, findings};
use crate::api::{
    Classification, Credential, CredentialType, Direction, Integration, OutboundMessage, Owner,
    Schedule, condition,
};
use crate::governance::lint::ROTATED_AT_ANNOTATION;
use crate::manifest::{LoadError, ObjectSet};

/// `apiVersion` of the report document.
pub const REPORT_API_VERSION: &str = "report.switchboard.dev/v1";

/// The report's `apiVersion`: one value, so that readers can tell versions apart.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportApiVersion {
    /// Version 1 of the report document.
    #[serde(rename = "report.switchboard.dev/v1")]
    V1,
}

/// The report's `kind`.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// The auditor's view of Switchboard resources.
    Report,
}

/// A point in time, written as RFC 3339 in UTC (`2026-11-28T09:30:00Z`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Timestamp(pub String);

impl Timestamp {
    /// The RFC 3339 text of a UTC time, to the second.
    pub fn of(time: DateTime<Utc>) -> Self {
        Timestamp(time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "description": "A point in time, RFC 3339 in UTC.",
            "type": "string",
            "format": "date-time"
        })
    }
}

/// The auditor's view of a set of Switchboard resources: `switchboard report -o json`.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Switchboard report")]
pub struct ReportModel {
    /// Always `report.switchboard.dev/v1`.
    pub api_version: ReportApiVersion,
    /// Always `Report`.
    pub kind: ReportKind,
    /// When the report was made; ages and runtime findings are relative to it.
    pub generated_at: Timestamp,
    /// Where the objects were read from.
    pub source: ReportSource,
    /// Counts.
    pub summary: Summary,
    /// One entry per Integration: owner, data flow, credentials, schedule, health.
    pub integrations: Vec<IntegrationEntry>,
    /// One entry per Credential: type, rotation, consumers.
    pub credentials: Vec<CredentialEntry>,
    /// One entry per OutboundMessage: the external endpoints data is sent to or read from.
    pub endpoints: Vec<EndpointEntry>,
    /// One entry per Schedule.
    pub schedules: Vec<ScheduleEntry>,
    /// The lint rules' findings plus the report's own (runtime) findings.
    pub findings: Vec<ReportFinding>,
    /// The data-flow diagram: systems and integrations as nodes, flows as edges.
    pub diagram: Graph,
}

/// Whether the report was made from files or from a cluster.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// From files (a GitOps directory); objects carry no status unless the files do.
    Offline,
    /// From a cluster's API server.
    Live,
}

/// Where the objects were read from.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportSource {
    /// `offline` (files) or `live` (a cluster).
    pub mode: Mode,
    /// The files and directories read (offline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The kubeconfig context (live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace listed (live); absent when every namespace was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Counts of what the report holds.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    /// Integrations.
    pub integrations: usize,
    /// Credentials.
    pub credentials: usize,
    /// OutboundMessages.
    pub endpoints: usize,
    /// Schedules.
    pub schedules: usize,
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Integrations whose `Healthy` condition is `False`.
    pub unhealthy: usize,
    /// Integrations per data classification.
    pub classifications: BTreeMap<String, usize>,
}

/// An owner: team, contact and on-call rotation.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerEntry {
    /// Owning team.
    pub team: String,
    /// Email address or https:// URL of the team.
    pub contact: String,
    /// On-call rotation paged on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_call: Option<String>,
}

impl From<&Owner> for OwnerEntry {
    fn from(owner: &Owner) -> Self {
        OwnerEntry {
            team: owner.team.clone(),
            contact: owner.contact.clone(),
            on_call: owner.on_call.clone(),
        }
    }
}

/// One Integration in the inventory.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What the integration does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who owns it.
    pub owner: OwnerEntry,
    /// The declared data flow.
    pub data_flow: FlowEntry,
    /// Where data comes from.
    pub source: SourceEntry,
    /// Where data goes.
    pub targets: Vec<TargetEntry>,
    /// The Credentials it uses, with their type, use and age.
    pub credentials: Vec<CredentialUse>,
    /// The Schedules that run it.
    pub schedules: Vec<ScheduleRef>,
    /// Runtime health, from the status.
    pub health: Health,
    /// The last failure, from the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureEntry>,
    /// Failed runs or deliveries since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u64>,
    /// Dead letters waiting for replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters_pending: Option<u64>,
    /// Findings about this integration, by severity.
    pub finding_counts: FindingCounts,
}

/// The declared data flow of an integration.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowEntry {
    /// System the data comes from.
    pub source_system: String,
    /// System the data goes to.
    pub target_system: String,
    /// One way or both ways.
    pub direction: Direction,
    /// Classification of the most sensitive data that flows.
    pub classification: Classification,
    /// Fields that travel.
    pub fields: Vec<String>,
    /// Business purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// The source of an integration.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceEntry {
    /// `webhook`, `api`, `rest`, `database`, `file` or `imap`.
    pub kind: String,
    /// The inbound path, or the address pulled from (never user info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// One target of an integration.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetEntry {
    /// Target name.
    pub name: String,
    /// `outboundMessage`, `database` or `email`.
    pub kind: String,
    /// Where the data goes (never user info); absent when a reference does not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A Credential as one integration uses it.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialUse {
    /// Credential name (same namespace as the integration).
    pub name: String,
    /// Its type; absent when the Credential does not exist.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<CredentialType>,
    /// What it is used for: `source`, `target NAME`, `alerting`, `health checks`.
    pub used_for: Vec<String>,
    /// Days since its Secret was last rotated, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_days: Option<i64>,
}

/// A Schedule that runs an integration.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRef {
    /// Schedule name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// Time zone of the cron expression.
    pub time_zone: String,
    /// Whether new runs are suspended.
    pub suspend: bool,
}

/// Runtime health of an integration.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum HealthState {
    /// `Healthy` is `True`.
    Healthy,
    /// `Healthy` is `False`.
    Unhealthy,
    /// No status (offline, or not reported yet), or `Healthy` is `Unknown`.
    Unknown,
}

impl HealthState {
    /// The name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unknown => "unknown",
        }
    }
}

/// Health of an integration, from its `Healthy` and `Ready` conditions.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// Healthy, unhealthy or unknown.
    pub state: HealthState,
    /// For people: `healthy`, `unhealthy for 4 days (TargetUnavailable)`, `unknown (offline)`.
    pub summary: String,
    /// Since when the state holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Reason of the `Healthy` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message of the `Healthy` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Status of the `Ready` condition (`True`, `False`, `Unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
}

/// A failure recorded in the status.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureEntry {
    /// When it happened.
    pub time: Timestamp,
    /// Machine-readable reason.
    pub reason: String,
    /// What happened.
    pub message: String,
}

/// Findings about one object, by severity.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindingCounts {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
}

/// A condition, shortened.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionEntry {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One Credential.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Kind of authentication.
    #[serde(rename = "type")]
    pub type_: CredentialType,
    /// Name of the Secret holding the values (never the values).
    pub secret_name: String,
    /// Who answers for its rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerEntry>,
    /// Rotation policy, for example `90d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_max_age: Option<String>,
    /// When the Secret content last changed (status `lastRotated`, or offline the Secret's
    /// `switchboard.dev/rotated-at` annotation or creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<Timestamp>,
    /// Days since the last rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_days: Option<i64>,
    /// When the rotation policy requires the next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_due: Option<Timestamp>,
    /// Expiry of the client certificate (mtls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Timestamp>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ConditionEntry>,
    /// Objects that use it, as `Kind name`.
    pub consumers: Vec<String>,
}

/// One OutboundMessage: an external endpoint.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Fixed scheme, host and base path (never user info).
    pub endpoint: String,
    /// `rest` or `soap`.
    pub protocol: String,
    /// Credential used for every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// mtls Credential presenting a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Owning team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_team: Option<String>,
    /// Methods, as `NAME (HTTP-METHOD PATH)`.
    pub methods: Vec<String>,
    /// Objects that invoke it, as `Kind name`.
    pub used_by: Vec<String>,
}

/// One Schedule.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// Time zone.
    pub time_zone: String,
    /// Whether new runs are suspended.
    pub suspend: bool,
    /// What it runs: `Integration NAME` or `OutboundMessage NAME method METHOD`.
    pub runs: String,
    /// Owning team (its own, or the integration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_team: Option<String>,
    /// When it runs next (status, or computed from the cron expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Timestamp>,
    /// When it last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Timestamp>,
    /// Result of the last finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
}

/// What a report is built with besides the objects.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The time ages and runtime findings are measured against.
    pub now: DateTime<Utc>,
    /// Days an integration may stay unhealthy before it is a finding.
    pub unhealthy_days: u32,
    /// Draw Credentials in the diagram.
    pub diagram_credentials: bool,
    /// Where the objects came from.
    pub source: ReportSource,
}

/// Build the report of a set of objects. `load_errors` become `unreadable` findings.
pub fn build(set: &ObjectSet, load_errors: &[LoadError], options: &BuildOptions) -> ReportModel {
    let now = options.now;
    let mode = options.source.mode;
    let findings = findings(set, load_errors, options);
    let counts = |kind: &str, namespace: &str, name: &str| {
        let id = format!("{kind} {namespace}/{name}");
        let mut counts = FindingCounts::default();
        for finding in findings.iter().filter(|f| f.object.as_deref() == Some(id.as_str())) {
            match finding.severity {
                Severity::Error => counts.errors += 1,
                Severity::Warning => counts.warnings += 1,
            }
        }
        counts
    };

    let mut integrations: Vec<IntegrationEntry> = set
        .integrations
        .iter()
        .map(|located| {
            let integration = &located.object;
            let namespace = integration.namespace().unwrap_or_default();
            let name = integration.name_any();
            integration_entry(set, integration, mode, now, counts("Integration", &namespace, &name))
        })
        .collect();
    integrations.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut credentials: Vec<CredentialEntry> =
        set.credentials.iter().map(|c| credential_entry(set, &c.object, now)).collect();
    credentials.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut endpoints: Vec<EndpointEntry> =
        set.outbound_messages.iter().map(|m| endpoint_entry(set, &m.object)).collect();
    endpoints.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut schedules: Vec<ScheduleEntry> =
        set.schedules.iter().map(|s| schedule_entry(set, &s.object, now)).collect();
    schedules.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut classifications = BTreeMap::new();
    for entry in &integrations {
        *classifications.entry(entry.data_flow.classification.as_str().to_string()).or_insert(0) +=
            1;
    }
    let summary = Summary {
        integrations: integrations.len(),
        credentials: credentials.len(),
        endpoints: endpoints.len(),
        schedules: schedules.len(),
        errors: findings.iter().filter(|f| f.severity == Severity::Error).count(),
        warnings: findings.iter().filter(|f| f.severity == Severity::Warning).count(),
        unhealthy: integrations.iter().filter(|i| i.health.state == HealthState::Unhealthy).count(),
        classifications,
    };
    let diagram = build_graph(&integrations, options.diagram_credentials);
    ReportModel {
        api_version: ReportApiVersion::V1,
        kind: ReportKind::Report,
        generated_at: Timestamp::of(now),
        source: options.source.clone(),
        summary,
        integrations,
        credentials,
        endpoints,
        schedules,
        findings,
        diagram,
    }
}

/// A Kubernetes time as a UTC time.
pub fn utc(time: &Time) -> DateTime<Utc> {
    let ts = time.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whole days from `then` to `now` (negative when `then` is in the future).
pub fn days_between(then: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    now.signed_duration_since(then).num_days()
}

/// Remove user info (`user:password@`) from a URL-like text, so no report prints a credential
/// someone wrote into an address.
pub fn without_userinfo(address: &str) -> String {
    let Some(scheme_end) = address.find("://") else {
        return address.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &address[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &address[..authority_start], &rest[at + 1..]),
        None => address.to_string(),
    }
}

/// The condition of a type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn in_namespace<K: ResourceExt>(object: &K, namespace: &str) -> bool {
    object.namespace().as_deref() == Some(namespace)
}

fn find_credential<'a>(set: &'a ObjectSet, namespace: &str, name: &str) -> Option<&'a Credential> {
    set.credentials
        .iter()
        .map(|c| &c.object)
        .find(|c| in_namespace(*c, namespace) && c.name_any() == name)
}

fn find_message<'a>(
    set: &'a ObjectSet,
    namespace: &str,
    name: &str,
) -> Option<&'a OutboundMessage> {
    set.outbound_messages
        .iter()
        .map(|m| &m.object)
        .find(|m| in_namespace(*m, namespace) && m.name_any() == name)
}

/// When a Credential's Secret was last rotated: its status, or offline the Secret's
/// `switchboard.dev/rotated-at` annotation or creation time (never its data).
pub fn last_rotated(set: &ObjectSet, credential: &Credential) -> Option<DateTime<Utc>> {
    if let Some(time) = credential.status.as_ref().and_then(|s| s.last_rotated.as_ref()) {
        return Some(utc(time));
    }
    let secret = set.secrets.iter().map(|s| &s.object).find(|s| {
        s.namespace() == credential.namespace() && s.name_any() == credential.spec.secret_ref.name
    })?;
    secret
        .annotations()
        .get(ROTATED_AT_ANNOTATION)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)))
        .or_else(|| secret.metadata.creation_timestamp.as_ref().map(utc))
}

/// The Credentials an integration uses, each with what it is used for, in name order.
pub fn credential_uses(
    set: &ObjectSet,
    integration: &Integration,
) -> BTreeMap<String, Vec<String>> {
    let namespace = integration.namespace().unwrap_or_default();
    let spec = &integration.spec;
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |name: &str, use_: &str| {
        let entry = uses.entry(name.to_string()).or_default();
        if !entry.iter().any(|u| u == use_) {
            entry.push(use_.to_string());
        }
    };
    let message_credentials = |name: &str| -> Vec<String> {
        find_message(set, &namespace, name)
            .map(|m| {
                m.spec
                    .credential_ref
                    .iter()
                    .chain(m.spec.tls.iter().filter_map(|t| t.client_certificate_ref.as_ref()))
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let source = &spec.source;
    let mut source_credentials: Vec<String> = Vec::new();
    if let Some(webhook) = &source.webhook {
        source_credentials.extend(webhook.auth.credential_ref.iter().map(|c| c.name.clone()));
    }
    if let Some(api) = &source.api {
        source_credentials.extend(
            api.routes
                .iter()
                .filter_map(|r| r.auth.credential_ref.as_ref().map(|c| c.name.clone())),
        );
    }
    if let Some(rest) = &source.rest {
        source_credentials.extend(message_credentials(&rest.request.name));
    }
    if let Some(file) = &source.file {
        source_credentials.extend(message_credentials(&file.fetch.name));
    }
    if let Some(database) = &source.database {
        source_credentials.push(database.connection.credential_ref.name.clone());
    }
    if let Some(imap) = &source.imap {
        source_credentials.push(imap.credential_ref.name.clone());
    }
    for name in &source_credentials {
        note(name, "source");
    }
    for target in &spec.targets {
        let use_ = format!("target {}", target.name);
        let mut names = Vec::new();
        if let Some(om) = &target.outbound_message {
            names.extend(message_credentials(&om.name));
        }
        if let Some(db) = &target.database {
            names.push(db.connection.credential_ref.name.clone());
        }
        if let Some(email) = &target.email {
            names.extend(email.smtp.credential_ref.iter().map(|c| c.name.clone()));
        }
        for name in &names {
            note(name, &use_);
        }
    }
    for route in spec.alerting.iter().flat_map(|a| a.routes.iter().flatten()) {
        let http =
            [&route.alertmanager, &route.pagerduty, &route.slack, &route.teams, &route.webhook];
        for reference in http.into_iter().flatten().filter_map(|h| h.credential_ref.as_ref()) {
            note(&reference.name, "alerting");
        }
        if let Some(reference) = route.email.as_ref().and_then(|e| e.smtp.credential_ref.as_ref()) {
            note(&reference.name, "alerting");
        }
    }
    for probe in spec.health_checks.iter().flat_map(|h| h.probes.iter().flatten()) {
        for name in message_credentials(&probe.call.name) {
            note(&name, "health checks");
        }
    }
    uses
}

fn method_address(set: &ObjectSet, namespace: &str, message: &str, method: &str) -> Option<String> {
    let om = find_message(set, namespace, message)?;
    let method = om.spec.methods.iter().find(|m| m.name == method)?;
    Some(format!(
        "{} {}{}",
        method.http_method.as_str(),
        without_userinfo(&om.spec.endpoint),
        method.path
    ))
}

fn source_entry(set: &ObjectSet, integration: &Integration) -> SourceEntry {
    let namespace = integration.namespace().unwrap_or_default();
    let source = &integration.spec.source;
    let endpoint = if let Some(webhook) = &source.webhook {
        Some(format!("inbound webhook {}", webhook.path))
    } else if let Some(api) = &source.api {
        let routes: Vec<String> =
            api.routes.iter().map(|r| format!("{} /{}{}", r.method, r.version, r.path)).collect();
        Some(format!("inbound API {}", routes.join(", ")))
    } else if let Some(rest) = &source.rest {
        method_address(set, &namespace, &rest.request.name, &rest.request.method)
    } else if let Some(file) = &source.file {
        method_address(set, &namespace, &file.fetch.name, &file.fetch.method)
    } else if let Some(database) = &source.database {
        Some(without_userinfo(&database.connection.endpoint))
    } else {
        source
            .imap
            .as_ref()
            .map(|imap| format!("{}/{}", without_userinfo(&imap.server), imap.mailbox))
    };
    SourceEntry { kind: source.kind().to_string(), endpoint }
}

fn health(conditions: &[Condition], has_status: bool, mode: Mode, now: DateTime<Utc>) -> Health {
    let ready = find_condition(conditions, condition::READY).map(|c| c.status.clone());
    let Some(healthy) = find_condition(conditions, condition::HEALTHY) else {
        let summary = match (mode, has_status) {
            (Mode::Offline, false) => "unknown (offline)",
            _ => "unknown (not reported yet)",
        };
        return Health {
            state: HealthState::Unknown,
            summary: summary.into(),
            since: None,
            reason: None,
            message: None,
            ready,
        };
    };
    let since = utc(&healthy.last_transition_time);
    let reason = Some(healthy.reason.clone()).filter(|r| !r.is_empty());
    let (state, summary) = match healthy.status.as_str() {
        "True" => (HealthState::Healthy, "healthy".to_string()),
        "False" => {
            let hours = now.signed_duration_since(since).num_hours().max(0);
            let for_ = if hours >= 48 {
                format!("{} days", hours / 24)
            } else if hours == 1 {
                "1 hour".to_string()
            } else {
                format!("{hours} hours")
            };
            let why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            (HealthState::Unhealthy, format!("unhealthy for {for_}{why}"))
        }
        _ => (
            HealthState::Unknown,
            format!("unknown ({})", reason.as_deref().unwrap_or("no reason given")),
        ),
    };
    Health {
        state,
        summary,
        since: Some(Timestamp::of(since)),
        reason,
        message: Some(healthy.message.clone()).filter(|m| !m.is_empty()),
        ready,
    }
}

fn integration_entry(
    set: &ObjectSet,
    integration: &Integration,
    mode: Mode,
    now: DateTime<Utc>,
    finding_counts: FindingCounts,
) -> IntegrationEntry {
    let namespace = integration.namespace().unwrap_or_default();
    let name = integration.name_any();
    let spec = &integration.spec;
    let flow = &spec.data_flow;
    let targets = spec
        .targets
        .iter()
        .map(|t| {
            let endpoint = if let Some(om) = &t.outbound_message {
                method_address(set, &namespace, &om.name, &om.method)
            } else if let Some(db) = &t.database {
                Some(format!("{}#{}", without_userinfo(&db.connection.endpoint), db.table))
            } else {
                t.email
                    .as_ref()
                    .map(|e| format!("{} to {}", without_userinfo(&e.smtp.server), e.to.join(", ")))
            };
            TargetEntry { name: t.name.clone(), kind: t.kind().to_string(), endpoint }
        })
        .collect();
    let credentials = credential_uses(set, integration)
        .into_iter()
        .map(|(credential, used_for)| {
            let found = find_credential(set, &namespace, &credential);
            CredentialUse {
                type_: found.map(|c| c.spec.type_),
                age_days: found
                    .and_then(|c| last_rotated(set, c))
                    .map(|rotated| days_between(rotated, now)),
                name: credential,
                used_for,
            }
        })
        .collect();
    let schedules = set
        .schedules
        .iter()
        .map(|s| &s.object)
        .filter(|s| {
            in_namespace(*s, &namespace)
                && s.spec.run.integration.as_ref().is_some_and(|i| i.name == name)
        })
        .map(|s| ScheduleRef {
            name: s.name_any(),
            cron: s.spec.cron.clone(),
            time_zone: s.spec.time_zone.clone(),
            suspend: s.spec.suspend,
        })
        .collect();
    let status = integration.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    IntegrationEntry {
        namespace,
        name,
        description: spec.description.clone(),
        owner: OwnerEntry::from(&spec.owner),
        data_flow: FlowEntry {
            source_system: flow.source_system.clone(),
            target_system: flow.target_system.clone(),
            direction: flow.direction,
            classification: flow.classification,
            fields: flow.fields.clone(),
            purpose: flow.purpose.clone(),
        },
        source: source_entry(set, integration),
        targets,
        credentials,
        schedules,
        health: health(conditions, status.is_some(), mode, now),
        last_failure: status.and_then(|s| s.last_failure.as_ref()).map(|f| FailureEntry {
            time: Timestamp::of(utc(&f.time)),
            reason: f.reason.clone(),
            message: f.message.clone(),
        }),
        consecutive_failures: status.and_then(|s| s.consecutive_failures),
        dead_letters_pending: status
            .and_then(|s| s.counters.as_ref())
            .map(|c| c.dead_letters_pending),
        finding_counts,
    }
}

fn credential_entry(
    set: &ObjectSet,
    credential: &Credential,
    now: DateTime<Utc>,
) -> CredentialEntry {
    let namespace = credential.namespace().unwrap_or_default();
    let name = credential.name_any();
    let spec = &credential.spec;
    let rotated = last_rotated(set, credential);
    let max_age = spec.rotation.as_ref().map(|r| r.max_age.clone());
    let rotation_due = match (rotated, max_age.as_deref().map(crate::api::parse_duration)) {
        (Some(rotated), Some(Ok(max_age))) => chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|d| rotated.checked_add_signed(d))
            .map(Timestamp::of),
        _ => None,
    };
    let status = credential.status.as_ref();
    let mut consumers: BTreeSet<String> = status
        .map(|s| s.consumers.iter().map(|c| format!("{} {}", c.kind, c.name)).collect())
        .unwrap_or_default();
    for integration in set.integrations.iter().map(|i| &i.object) {
        if in_namespace(integration, &namespace)
            && credential_uses(set, integration).contains_key(&name)
        {
            consumers.insert(format!("Integration {}", integration.name_any()));
        }
    }
    for message in set.outbound_messages.iter().map(|m| &m.object) {
        let uses = message.spec.credential_ref.iter().any(|c| c.name == name)
            || message
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.client_certificate_ref.as_ref())
                .is_some_and(|c| c.name == name);
        if in_namespace(message, &namespace) && uses {
            consumers.insert(format!("OutboundMessage {}", message.name_any()));
        }
    }
    CredentialEntry {
        namespace,
        name,
        type_: spec.type_,
        secret_name: spec.secret_ref.name.clone(),
        owner: spec.owner.as_ref().map(OwnerEntry::from),
        rotation_max_age: max_age,
        last_rotated: rotated.map(Timestamp::of),
        age_days: rotated.map(|r| days_between(r, now)),
        rotation_due,
        certificate_not_after: status
            .and_then(|s| s.certificate_not_after.as_ref())
            .map(|t| Timestamp::of(utc(t))),
        ready: status.and_then(|s| find_condition(&s.conditions, condition::READY)).map(|c| {
            ConditionEntry {
                status: c.status.clone(),
                reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(c.message.clone()).filter(|m| !m.is_empty()),
            }
        }),
        consumers: consumers.into_iter().collect(),
    }
}

fn endpoint_entry(set: &ObjectSet, message: &OutboundMessage) -> EndpointEntry {
    let namespace = message.namespace().unwrap_or_default();
    let name = message.name_any();
    let spec = &message.spec;
    let mut used_by = BTreeSet::new();
    for integration in set.integrations.iter().map(|i| &i.object) {
        if !in_namespace(integration, &namespace) {
            continue;
        }
        let s = &integration.spec;
        let uses = s.source.rest.as_ref().is_some_and(|r| r.request.name == name)
            || s.source.file.as_ref().is_some_and(|f| f.fetch.name == name)
            || s.targets
                .iter()
                .any(|t| t.outbound_message.as_ref().is_some_and(|o| o.name == name))
            || s.health_checks
                .iter()
                .flat_map(|h| h.probes.iter().flatten())
                .any(|p| p.call.name == name);
        if uses {
            used_by.insert(format!("Integration {}", integration.name_any()));
        }
    }
    for schedule in set.schedules.iter().map(|s| &s.object) {
        if in_namespace(schedule, &namespace)
            && schedule.spec.run.outbound_message.as_ref().is_some_and(|o| o.name == name)
        {
            used_by.insert(format!("Schedule {}", schedule.name_any()));
        }
    }
    EndpointEntry {
        namespace,
        name,
        endpoint: without_userinfo(&spec.endpoint),
        protocol: spec.protocol.as_str().to_string(),
        credential: spec.credential_ref.as_ref().map(|c| c.name.clone()),
        client_certificate: spec
            .tls
            .as_ref()
            .and_then(|t| t.client_certificate_ref.as_ref())
            .map(|c| c.name.clone()),
        owner_team: spec.owner.as_ref().map(|o| o.team.clone()),
        methods: spec
            .methods
            .iter()
            .map(|m| format!("{} ({} {})", m.name, m.http_method.as_str(), m.path))
            .collect(),
        used_by: used_by.into_iter().collect(),
    }
}

fn schedule_entry(set: &ObjectSet, schedule: &Schedule, now: DateTime<Utc>) -> ScheduleEntry {
    let namespace = schedule.namespace().unwrap_or_default();
    let spec = &schedule.spec;
    let run = &spec.run;
    let runs = match (&run.integration, &run.outbound_message) {
        (Some(integration), _) => format!("Integration {}", integration.name),
        (None, Some(method)) => format!("OutboundMessage {} method {}", method.name, method.method),
        (None, None) => "nothing".to_string(),
    };
    let integration_owner = run.integration.as_ref().and_then(|i| {
        set.integrations
            .iter()
            .map(|l| &l.object)
            .find(|o| in_namespace(*o, &namespace) && o.name_any() == i.name)
            .map(|o| o.spec.owner.team.clone())
    });
    let status = schedule.status.as_ref();
    let next_run = status
        .and_then(|s| s.next_schedule_time.as_ref())
        .map(utc)
        .or_else(|| (!spec.suspend).then(|| spec.next_run(now).ok()).flatten());
    ScheduleEntry {
        namespace,
        name: schedule.name_any(),
        cron: spec.cron.clone(),
        time_zone: spec.time_zone.clone(),
        suspend: spec.suspend,
        runs,
        owner_team: spec.owner.as_ref().map(|o| o.team.clone()).or(integration_owner),
        next_run: next_run.map(Timestamp::of),
        last_run: status.and_then(|s| s.last_schedule_time.as_ref()).map(|t| Timestamp::of(utc(t))),
        last_result: status.and_then(|s| s.last_run_result.clone()),
    }
}

/// Severity and basis names, for renderers.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Basis names, for renderers.
pub fn basis_name(basis: Basis) -> &'static str {
    match basis {
        Basis::Declared => "declared",
        Basis::Observed => "observed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_removed_from_addresses() {
        assert_eq!(
            without_userinfo("imaps://bob:hunter2@mail.example:993/x@y"),
            "imaps://mail.example:993/x@y"
        );
        assert_eq!(without_userinfo("https://api.example.com/v1"), "https://api.example.com/v1");
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn days_count_whole_days() {
        let then = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let now = DateTime::parse_from_rfc3339("2026-01-03T23:00:00Z").unwrap().to_utc();
        assert_eq!(days_between(then, now), 2);
    }
}
