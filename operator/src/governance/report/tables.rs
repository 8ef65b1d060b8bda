//! The report's tables, defined once and written by the Markdown, CSV and HTML renderers.
//!
//! A [`Table`] is rows of plain-text cells; each renderer escapes them for its format. Columns
//! marked `compact` make the narrower Markdown tables; CSV and HTML carry every column.

use super::findings::ReportFinding;
use super::model::{
    CredentialEntry, EndpointEntry, IntegrationEntry, ReportModel, ScheduleEntry, basis_name,
    severity_name,
};

/// One column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header text.
    pub title: &'static str,
    /// Shown in compact (Markdown) tables too.
    pub compact: bool,
}

fn optional(text: Option<&str>) -> String {
    text.unwrap_or_default().to_string()
}

fn number<N: ToString>(value: Option<N>) -> String {
    value.map(|n| n.to_string()).unwrap_or_default()
}

/// A table of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Id, also the `--table` name of the CSV and the HTML element id.
    pub id: &'static str,
    /// Heading.
    pub title: &'static str,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, each with one plain-text (not yet escaped) cell per column.
    pub rows: Vec<Vec<String>>,
}

/// Names of the tables, in the order the documents show them.
pub const TABLE_NAMES: &[&str] =
    &["findings", "inventory", "credentials", "endpoints", "schedules"];

fn columns(spec: &[(&'static str, bool)]) -> Vec<Column> {
    spec.iter().map(|(title, compact)| Column { title, compact: *compact }).collect()
}

/// Every table, in document order.
pub fn tables(model: &ReportModel) -> Vec<Table> {
    vec![
        findings(&model.findings),
        inventory(&model.integrations),
        credentials(&model.credentials),
        endpoints(&model.endpoints),
        schedules(&model.schedules),
    ]
}

/// The table of a name in [`TABLE_NAMES`].
pub fn table(model: &ReportModel, id: &str) -> Option<Table> {
    tables(model).into_iter().find(|t| t.id == id)
}

fn findings(findings: &[ReportFinding]) -> Table {
    Table {
        id: "findings",
        title: "Findings",
        columns: columns(&[
            ("Severity", true),
            ("Rule", true),
            ("Basis", true),
            ("Object", true),
            ("Field", false),
            ("File", false),
            ("Message", true),
        ]),
        rows: findings
            .iter()
            .map(|f| {
                vec![
                    severity_name(f.severity).to_string(),
                    f.rule.clone(),
                    basis_name(f.basis).to_string(),
                    optional(f.object.as_deref()),
                    optional(f.field.as_deref()),
                    optional(f.file.as_deref()),
                    f.message.clone(),
                ]
            })
            .collect(),
    }
}

fn inventory(integrations: &[IntegrationEntry]) -> Table {
    Table {
        id: "inventory",
        title: "Integrations",
        columns: columns(&[
            ("Namespace", false),
            ("Integration", true),
            ("Description", false),
            ("Owner", true),
            ("Contact", true),
            ("On-call", false),
            ("Source system", true),
            ("Target system", true),
            ("Classification", true),
            ("Direction", false),
            ("Fields", false),
            ("Purpose", false),
            ("Source", false),
            ("Targets", false),
            ("Credentials (type, age in days)", true),
            ("Schedule", true),
            ("Health", true),
            ("Healthy since / unhealthy since", false),
            ("Last failure", true),
            ("Consecutive failures", false),
            ("Dead letters pending", false),
            ("Errors", false),
            ("Warnings", false),
        ]),
        rows: integrations
            .iter()
            .map(|i| {
                let flow = &i.data_flow;
                let source = match &i.source.endpoint {
                    Some(endpoint) => format!("{}: {endpoint}", i.source.kind),
                    None => i.source.kind.clone(),
                };
                let targets: Vec<String> = i
                    .targets
                    .iter()
                    .map(|t| match &t.endpoint {
                        Some(endpoint) => format!("{} ({}): {endpoint}", t.name, t.kind),
                        None => format!("{} ({})", t.name, t.kind),
                    })
                    .collect();
                let credentials: Vec<String> = i
                    .credentials
                    .iter()
                    .map(|c| {
                        let type_ = c.type_.map_or("not found", |t| t.as_str());
                        let age = c.age_days.map(|d| format!(", {d} d")).unwrap_or_default();
                        format!("{} ({type_}{age}; {})", c.name, c.used_for.join(", "))
                    })
                    .collect();
                let schedules: Vec<String> = i
                    .schedules
                    .iter()
                    .map(|s| {
                        let suspended = if s.suspend { ", suspended" } else { "" };
                        format!("{}: {} {}{suspended}", s.name, s.cron, s.time_zone)
                    })
                    .collect();
                let last_failure = i
                    .last_failure
                    .as_ref()
                    .map(|f| format!("{} {}: {}", f.time.as_str(), f.reason, f.message))
                    .unwrap_or_default();
                vec![
                    i.namespace.clone(),
                    i.name.clone(),
                    optional(i.description.as_deref()),
                    i.owner.team.clone(),
                    i.owner.contact.clone(),
                    optional(i.owner.on_call.as_deref()),
                    flow.source_system.clone(),
                    flow.target_system.clone(),
                    flow.classification.as_str().to_string(),
                    flow.direction.as_str().to_string(),
                    flow.fields.join(", "),
                    optional(flow.purpose.as_deref()),
                    source,
                    targets.join("; "),
                    credentials.join("; "),
                    schedules.join("; "),
                    i.health.summary.clone(),
                    optional(i.health.since.as_ref().map(|t| t.as_str())),
                    last_failure,
                    number(i.consecutive_failures),
                    number(i.dead_letters_pending),
                    i.finding_counts.errors.to_string(),
                    i.finding_counts.warnings.to_string(),
                ]
            })
            .collect(),
    }
}

fn credentials(credentials: &[CredentialEntry]) -> Table {
    Table {
        id: "credentials",
        title: "Credentials",
        columns: columns(&[
            ("Namespace", false),
            ("Credential", true),
            ("Type", true),
            ("Secret", false),
            ("Owner", true),
            ("Rotation max age", true),
            ("Last rotated", false),
            ("Age (days)", true),
            ("Rotation due", true),
            ("Certificate expires", false),
            ("Ready", true),
            ("Consumers", true),
        ]),
        rows: credentials
            .iter()
            .map(|c| {
                let ready = c
                    .ready
                    .as_ref()
                    .map(|r| match &r.reason {
                        Some(reason) => format!("{} ({reason})", r.status),
                        None => r.status.clone(),
                    })
                    .unwrap_or_default();
                vec![
                    c.namespace.clone(),
                    c.name.clone(),
                    c.type_.as_str().to_string(),
                    c.secret_name.clone(),
                    optional(c.owner.as_ref().map(|o| o.team.as_str())),
                    optional(c.rotation_max_age.as_deref()),
                    optional(c.last_rotated.as_ref().map(|t| t.as_str())),
                    number(c.age_days),
                    optional(c.rotation_due.as_ref().map(|t| t.as_str())),
                    optional(c.certificate_not_after.as_ref().map(|t| t.as_str())),
                    ready,
                    c.consumers.join(", "),
                ]
            })
            .collect(),
    }
}

fn endpoints(endpoints: &[EndpointEntry]) -> Table {
    Table {
        id: "endpoints",
        title: "External endpoints",
        columns: columns(&[
            ("Namespace", false),
            ("OutboundMessage", true),
            ("Endpoint", true),
            ("Protocol", true),
            ("Credential", true),
            ("Client certificate", false),
            ("Owner", true),
            ("Methods", false),
            ("Used by", true),
        ]),
        rows: endpoints
            .iter()
            .map(|e| {
                vec![
                    e.namespace.clone(),
                    e.name.clone(),
                    e.endpoint.clone(),
                    e.protocol.clone(),
                    optional(e.credential.as_deref()),
                    optional(e.client_certificate.as_deref()),
                    optional(e.owner_team.as_deref()),
                    e.methods.join("; "),
                    e.used_by.join(", "),
                ]
            })
            .collect(),
    }
}

fn schedules(schedules: &[ScheduleEntry]) -> Table {
    Table {
        id: "schedules",
        title: "Schedules",
        columns: columns(&[
            ("Namespace", false),
            ("Schedule", true),
            ("Cron", true),
            ("Time zone", true),
            ("Suspended", true),
            ("Runs", true),
            ("Owner", true),
            ("Next run", true),
            ("Last run", false),
            ("Last result", true),
        ]),
        rows: schedules
            .iter()
            .map(|s| {
                vec![
                    s.namespace.clone(),
                    s.name.clone(),
                    s.cron.clone(),
                    s.time_zone.clone(),
                    if s.suspend { "yes" } else { "no" }.to_string(),
                    s.runs.clone(),
                    optional(s.owner_team.as_deref()),
                    optional(s.next_run.as_ref().map(|t| t.as_str())),
                    optional(s.last_run.as_ref().map(|t| t.as_str())),
                    optional(s.last_result.as_deref()),
                ]
            })
            .collect(),
    }
}
