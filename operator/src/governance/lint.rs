//! `switchboard lint`: the governance checks a platform team runs in CI before merge.
//!
//! ```text
//!   files ─▶ ObjectSet ─┬─▶ schema      CRD rules (what the API server would refuse)
//!                       ├─▶ references  render every object (what the operator would refuse)
//!                       └─▶ governance  inline secrets, rotation, alert routes, sensitive data
//!                                  ─▶ findings (error | warning) ─▶ human or JSON
//! ```
//!
//! Findings never quote a secret value: an inline credential is named by where it is, never by
//! what it is.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use kube::ResourceExt;
use regex::Regex;
use serde::Serialize;

use crate::api::{self, Integration, OutboundMessage, parse_duration};
use crate::cli::InputArgs;
use crate::manifest::{LoadError, ObjectSet, Origin};
use crate::render::{self, RenderSettings};

/// Arguments of `switchboard lint`.
#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// The resources to check.
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = LintFormat::Human)]
    pub output: LintFormat,
    /// Also exit non-zero when there are warnings.
    #[arg(long)]
    pub warnings_as_errors: bool,
}

/// Output formats of `lint`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintFormat {
    /// One line per finding, for people.
    Human,
    /// A JSON document, for machines.
    Json,
}

/// How serious a finding is.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks the merge: the object would be refused, or breaks a governance rule.
    Error,
    /// Worth fixing; does not fail the run unless `--warnings-as-errors`.
    Warning,
}

/// One problem found.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Rule id, for example `inline-secret`.
    pub rule: &'static str,
    /// File, line and document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `Kind namespace/name`, when the finding is about one object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Field path inside the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Every rule, with its severity and what it checks (for `--help` and docs).
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "unreadable",
        Severity::Error,
        "a file, document or object cannot be read (YAML, unknown kind, field types)",
    ),
    (
        "schema",
        Severity::Error,
        "the object breaks a rule of its CRD; the API server would refuse it",
    ),
    ("duplicate-name", Severity::Error, "two objects share kind, namespace and name"),
    (
        "missing-reference",
        Severity::Error,
        "a referenced Credential, OutboundMessage, method or Integration does not exist",
    ),
    (
        "wrong-credential-type",
        Severity::Error,
        "a referenced Credential has a type that cannot serve its use",
    ),
    ("invalid-template", Severity::Error, "a template is malformed or uses an undeclared variable"),
    (
        "missing-variable",
        Severity::Error,
        "a required variable is provided by nothing, or an undeclared one is set",
    ),
    ("invalid-value", Severity::Error, "a duration or other value cannot be used"),
    ("invalid-schedule", Severity::Error, "a cron expression or time zone is not valid"),
    ("invalid-expression", Severity::Error, "a CEL expression does not compile"),
    (
        "inline-secret",
        Severity::Error,
        "a header, query, body or variable holds what looks like a credential",
    ),
    (
        "sensitive-data-insecure",
        Severity::Error,
        "restricted or pii data travels over plaintext or without a credential",
    ),
    (
        "rotation-overdue",
        Severity::Error,
        "a Credential's Secret is older than its rotation policy allows",
    ),
    ("no-rotation-policy", Severity::Warning, "a Credential has no rotation policy"),
    ("no-alert-route", Severity::Warning, "an Integration routes its alerts nowhere of its own"),
    (
        "missing-secret",
        Severity::Warning,
        "a Credential's Secret is not among the files (it must exist in the cluster)",
    ),
    ("insecure-http", Severity::Warning, "an endpoint allows plain http"),
    (
        "unscheduled-pull",
        Severity::Warning,
        "an Integration with a pull source has no Schedule that runs it",
    ),
    ("credential-owner", Severity::Warning, "a Credential has no owner to answer for its rotation"),
    (
        "unused-delivery-retry",
        Severity::Warning,
        "spec.delivery.retry is set, but no target is a database or email target it applies to",
    ),
];

/// Annotation on a Secret recording when its content was last rotated (RFC 3339). Without it,
/// the Secret's `metadata.creationTimestamp` is used when present.
pub const ROTATED_AT_ANNOTATION: &str = "switchboard.dev/rotated-at";

fn severity_of(rule: &str) -> Severity {
    RULES
        .iter()
        .find(|(id, _, _)| *id == rule)
        .map_or(Severity::Error, |(_, severity, _)| *severity)
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(
        &mut self,
        rule: &'static str,
        origin: Option<&Origin>,
        object: Option<String>,
        field: Option<String>,
        message: String,
    ) {
        self.0.push(Finding {
            severity: severity_of(rule),
            rule,
            file: origin.map(ToString::to_string),
            object,
            field,
            message,
        });
    }
}

fn object_id<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{} {}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

/// Run every check over a set of objects. `load_errors` are reported as `unreadable`.
pub fn lint(set: &ObjectSet, load_errors: &[LoadError], now: DateTime<Utc>) -> Vec<Finding> {
    let mut findings = Findings(Vec::new());
    for error in load_errors {
        findings.add("unreadable", None, None, None, error.to_string());
    }
    check_schema(set, &mut findings);
    for (what, origins) in set.duplicates() {
        let places: Vec<String> = origins.iter().map(ToString::to_string).collect();
        findings.add(
            "duplicate-name",
            origins.first(),
            Some(what),
            None,
            format!("defined more than once: {}", places.join(", ")),
        );
    }
    check_references(set, &mut findings);
    check_expressions(set, &mut findings);
    check_inline_secrets(set, &mut findings);
    check_credentials(set, now, &mut findings);
    check_integrations(set, &mut findings);
    findings
        .0
        .sort_by(|a, b| (a.severity, &a.file, &a.object).cmp(&(b.severity, &b.file, &b.object)));
    findings.0
}

/// What the API server would refuse: unknown fields and the CEL rules of the CRDs.
fn check_schema(set: &ObjectSet, findings: &mut Findings) {
    for v in set.schema_violations() {
        findings.add("schema", Some(&v.origin), Some(v.object), Some(v.field), v.message);
    }
}

/// Render every object: whatever the operator could not resolve is a finding here.
fn check_references(set: &ObjectSet, findings: &mut Findings) {
    let settings = RenderSettings::default();
    for namespace in set.namespaces() {
        let refs = set.references(&namespace);
        let in_ns = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());
        let mut add = |errors: render::RenderErrors, origin: &Origin| {
            for error in errors.0 {
                let rule = match error.reason {
                    render::RenderErrorReason::MissingReference => "missing-reference",
                    render::RenderErrorReason::WrongCredentialType => "wrong-credential-type",
                    render::RenderErrorReason::InvalidTemplate => "invalid-template",
                    render::RenderErrorReason::MissingVariable => "missing-variable",
                    render::RenderErrorReason::InvalidValue => "invalid-value",
                    render::RenderErrorReason::InvalidSchedule => "invalid-schedule",
                };
                findings.add(
                    rule,
                    Some(origin),
                    Some(error.object),
                    Some(error.field),
                    error.message,
                );
            }
        };
        for integration in set.integrations.iter().filter(|i| in_ns(i.object.namespace())) {
            if let Err(errors) = render::render_integration(&integration.object, &refs, &settings) {
                add(errors, &integration.origin);
            }
        }
        for schedule in set.schedules.iter().filter(|s| in_ns(s.object.namespace())) {
            if let Err(errors) = render::render_schedule(&schedule.object, &refs, &settings) {
                add(errors, &schedule.origin);
            }
        }
        for message in set.outbound_messages.iter().filter(|o| in_ns(o.object.namespace())) {
            for (i, method) in message.object.spec.methods.iter().enumerate() {
                if let Some(problem) =
                    render::method_problem(&message.object.name_any(), &message.object.spec, method)
                {
                    findings.add(
                        "invalid-template",
                        Some(&message.origin),
                        Some(object_id(&message.object)),
                        Some(format!("spec.methods[{i}]")),
                        problem,
                    );
                }
            }
        }
    }
}

/// Every CEL expression of an Integration compiles.
fn check_expressions(set: &ObjectSet, findings: &mut Findings) {
    for located in &set.integrations {
        let spec = &located.object.spec;
        let mut expressions: Vec<(String, &str)> = Vec::new();
        if let Some(t) = &spec.transform {
            expressions
                .extend(t.filter.iter().map(|e| ("spec.transform.filter".to_string(), e.as_str())));
            expressions.extend(
                t.field_map
                    .iter()
                    .flatten()
                    .map(|(k, e)| (format!("spec.transform.fieldMap[{k}]"), e.as_str())),
            );
            expressions.extend(
                t.row_rules
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, r)| (format!("spec.transform.rowRules[{i}].rule"), r.rule.as_str())),
            );
        }
        expressions.extend(spec.targets.iter().enumerate().filter_map(|(i, t)| {
            t.when.as_deref().map(|e| (format!("spec.targets[{i}].when"), e))
        }));
        for (i, action) in
            spec.source.imap.iter().flat_map(|m| m.actions.iter().flatten()).enumerate()
        {
            expressions.extend(
                action
                    .when
                    .iter()
                    .map(|e| (format!("spec.source.imap.actions[{i}].when"), e.as_str())),
            );
            expressions.extend(action.variables.iter().flatten().map(|(k, e)| {
                (format!("spec.source.imap.actions[{i}].variables[{k}]"), e.as_str())
            }));
        }
        for (field, expression) in expressions {
            if let Err(error) = cel::Program::compile(expression) {
                let first_line = error.to_string().lines().next().unwrap_or_default().to_string();
                findings.add(
                    "invalid-expression",
                    Some(&located.origin),
                    Some(object_id(&located.object)),
                    Some(field),
                    format!("CEL expression does not compile: {first_line}"),
                );
            }
        }
    }
}

/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "cookie",
    "x-functions-key",
    "ocp-apim-subscription-key",
    "private-token",
    "x-vault-token",
    "x-amz-security-token",
];

/// Query parameter names whose values are credentials.
const SECRET_PARAMETERS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "auth",
    "secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "client_secret",
];

/// Patterns of well-known credential formats, and of literal credentials in JSON or XML bodies.
fn secret_patterns() -> &'static [Regex] {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\bxox[abprs]-[0-9A-Za-z-]{10,}",
            r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
            r"\b[sr]k_live_[0-9A-Za-z]{10,}",
            r"\bwhsec_[A-Za-z0-9+/=]{16,}",
            r"\bAIza[0-9A-Za-z_-]{35}\b",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.",
            r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{12,}",
            r#"(?i)"(password|passwd|secret|client_secret|api_?key|token|access_token|private_key)"\s*:\s*"[^"$]+""#,
            r"(?i)<([a-z]+:)?(password|passwd|secret|apikey|api_key|token)>[^<$]+</",
        ]
        .iter()
        .map(|p| Regex::new(p).expect("secret patterns are valid"))
        .collect()
    })
}

/// Whether a template holds literal text that looks like a credential.
fn looks_like_secret(template: &str) -> bool {
    secret_patterns().iter().any(|p| p.is_match(template))
}

/// What is left of a value once placeholders and authentication scheme words are removed.
fn literal_part(value: &str) -> String {
    static PLACEHOLDER: OnceLock<Regex> = OnceLock::new();
    let placeholder = PLACEHOLDER.get_or_init(|| Regex::new(r"\$\{[^}]*\}").expect("valid"));
    let without = placeholder.replace_all(value, "");
    without
        .split_whitespace()
        .filter(|w| {
            !matches!(
                w.to_ascii_lowercase().as_str(),
                "bearer" | "basic" | "token" | "apikey" | "digest"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_outbound_secrets(message: &OutboundMessage, origin: &Origin, findings: &mut Findings) {
    let id = object_id(message);
    let advice = "move the value into a Secret, describe it with a Credential and reference it with credentialRef";
    for (i, method) in message.spec.methods.iter().enumerate() {
        let at = |part: &str| Some(format!("spec.methods[{i}].{part}"));
        for (name, value) in method.headers.iter().flatten() {
            let sensitive = SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str());
            if (sensitive && !literal_part(value).is_empty()) || looks_like_secret(value) {
                findings.add(
                    "inline-secret",
                    Some(origin),
                    Some(id.clone()),
                    at(&format!("headers[{name}]")),
                    format!(
                        "header {name:?} of method {:?} holds a literal credential; {advice}",
                        method.name
                    ),
                );
            } else if sensitive {
                findings.add("inline-secret", Some(origin), Some(id.clone()), at(&format!("headers[{name}]")),
                    format!("header {name:?} of method {:?} is filled from a variable; credentials must not travel through event data: {advice}", method.name));
            }
        }
        for (name, value) in method.query.iter().flatten() {
            let sensitive = SECRET_PARAMETERS.contains(&name.to_ascii_lowercase().as_str());
            if (sensitive && !literal_part(value).is_empty()) || looks_like_secret(value) {
                findings.add("inline-secret", Some(origin), Some(id.clone()), at(&format!("query[{name}]")),
                    format!("query parameter {name:?} of method {:?} holds a literal credential; {advice}", method.name));
            }
        }
        if method.body.as_deref().is_some_and(looks_like_secret) {
            findings.add(
                "inline-secret",
                Some(origin),
                Some(id.clone()),
                at("body"),
                format!(
                    "the body template of method {:?} holds a literal credential; {advice}",
                    method.name
                ),
            );
        }
        for (j, variable) in method.variables().iter().enumerate() {
            if variable.default.as_deref().is_some_and(looks_like_secret) {
                findings.add(
                    "inline-secret",
                    Some(origin),
                    Some(id.clone()),
                    at(&format!("variables[{j}].default")),
                    format!(
                        "the default of variable {:?} looks like a credential; {advice}",
                        variable.name
                    ),
                );
            }
        }
    }
}

fn check_inline_secrets(set: &ObjectSet, findings: &mut Findings) {
    for message in &set.outbound_messages {
        check_outbound_secrets(&message.object, &message.origin, findings);
    }
    let advice = "fixed variables are visible to anyone who reads the resource; use a Credential";
    for located in &set.integrations {
        let id = object_id(&located.object);
        let spec = &located.object.spec;
        let mut values: Vec<(String, &str)> = Vec::new();
        for (i, target) in spec.targets.iter().enumerate() {
            if let Some(om) = &target.outbound_message {
                values.extend(om.variables.iter().flatten().map(|(k, v)| {
                    (format!("spec.targets[{i}].outboundMessage.variables[{k}]"), v.as_str())
                }));
            }
        }
        if let Some(rest) = &spec.source.rest {
            values.extend(
                rest.variables
                    .iter()
                    .flatten()
                    .map(|(k, v)| (format!("spec.source.rest.variables[{k}]"), v.as_str())),
            );
        }
        for (field, value) in values {
            if looks_like_secret(value) {
                findings.add(
                    "inline-secret",
                    Some(&located.origin),
                    Some(id.clone()),
                    Some(field),
                    format!("a fixed variable looks like a credential; {advice}"),
                );
            }
        }
    }
    for located in &set.schedules {
        for (key, value) in located.object.spec.run.variables.iter().flatten() {
            if looks_like_secret(value) {
                findings.add(
                    "inline-secret",
                    Some(&located.origin),
                    Some(object_id(&located.object)),
                    Some(format!("spec.run.variables[{key}]")),
                    format!("a fixed variable looks like a credential; {advice}"),
                );
            }
        }
    }
}

fn check_credentials(set: &ObjectSet, now: DateTime<Utc>, findings: &mut Findings) {
    for located in &set.credentials {
        let credential = &located.object;
        let id = object_id(credential);
        let origin = Some(&located.origin);
        let spec = &credential.spec;
        if spec.owner.is_none() {
            findings.add(
                "credential-owner",
                origin,
                Some(id.clone()),
                Some("spec.owner".into()),
                "no owner: say which team answers for rotating this credential".into(),
            );
        }
        let secret = set.secrets.iter().find(|s| {
            s.object.namespace() == credential.namespace()
                && s.object.name_any() == spec.secret_ref.name
        });
        match (&spec.rotation, secret) {
            (None, _) => findings.add("no-rotation-policy", origin, Some(id.clone()), Some("spec.rotation".into()),
                "no rotation policy: set rotation.maxAge (for example 90d) so overdue rotations are reported".into()),
            (Some(rotation), Some(secret)) => {
                let rotated = secret
                    .object
                    .annotations()
                    .get(ROTATED_AT_ANNOTATION)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)))
                    .or_else(|| {
                        let created = secret.object.metadata.creation_timestamp.as_ref()?.0;
                        DateTime::from_timestamp(created.as_second(), 0)
                    });
                if let (Some(rotated), Ok(max_age)) = (rotated, parse_duration(&rotation.max_age)) {
                    let age = now.signed_duration_since(rotated);
                    if age.to_std().is_ok_and(|age| age > max_age) {
                        findings.add("rotation-overdue", origin, Some(id.clone()), Some("spec.rotation.maxAge".into()),
                            format!("Secret {:?} was last rotated {} days ago, longer than rotation.maxAge {}",
                                spec.secret_ref.name, age.num_days(), rotation.max_age));
                    }
                }
            }
            (Some(_), None) => {}
        }
        if secret.is_none() {
            findings.add("missing-secret", origin, Some(id.clone()), Some("spec.secretRef.name".into()),
                format!("Secret {:?} is not among the linted files; make sure it exists in the cluster (for example through a sealed or external secret)", spec.secret_ref.name));
        }
    }
}

/// Transport of one hop of an integration, for the sensitive-data rule.
struct Hop {
    field: String,
    plaintext: Option<String>,
    credential: bool,
}

fn outbound_hop(
    set: &ObjectSet,
    namespace: Option<String>,
    field: String,
    name: &str,
) -> Option<Hop> {
    let message = set
        .outbound_messages
        .iter()
        .find(|m| m.object.namespace() == namespace && m.object.name_any() == name)?;
    let spec = &message.object.spec;
    Some(Hop {
        field,
        plaintext: spec
            .endpoint
            .starts_with("http://")
            .then(|| format!("OutboundMessage {name:?} uses plain http ({})", spec.endpoint)),
        credential: spec.credential_ref.is_some()
            || spec.tls.as_ref().is_some_and(|t| t.client_certificate_ref.is_some()),
    })
}

fn hops(set: &ObjectSet, integration: &Integration) -> Vec<Hop> {
    let namespace = integration.namespace();
    let spec = &integration.spec;
    let mut hops = Vec::new();
    let database = |field: String, connection: &api::DatabaseConnection| Hop {
        field,
        plaintext: (connection.tls == api::DatabaseTls::Disable)
            .then(|| "the database connection disables TLS".to_string()),
        credential: true,
    };
    if let Some(rest) = &spec.source.rest {
        hops.extend(outbound_hop(
            set,
            namespace.clone(),
            "spec.source.rest.request".into(),
            &rest.request.name,
        ));
    }
    if let Some(file) = &spec.source.file {
        hops.extend(outbound_hop(
            set,
            namespace.clone(),
            "spec.source.file.fetch".into(),
            &file.fetch.name,
        ));
    }
    if let Some(db) = &spec.source.database {
        hops.push(database("spec.source.database.connection".into(), &db.connection));
    }
    if let Some(imap) = &spec.source.imap {
        hops.push(Hop {
            field: "spec.source.imap.server".into(),
            plaintext: imap
                .server
                .starts_with("imap://")
                .then(|| "the IMAP connection is plaintext".to_string()),
            credential: true,
        });
    }
    for (i, target) in spec.targets.iter().enumerate() {
        let field = format!("spec.targets[{i}]");
        if let Some(om) = &target.outbound_message {
            hops.extend(outbound_hop(set, namespace.clone(), field, &om.name));
        } else if let Some(db) = &target.database {
            hops.push(database(field, &db.connection));
        } else if let Some(email) = &target.email {
            hops.push(Hop {
                field,
                plaintext: email
                    .smtp
                    .insecure_allow_plaintext
                    .then(|| "SMTP without TLS is allowed".to_string()),
                credential: email.smtp.credential_ref.is_some(),
            });
        }
    }
    hops
}

fn check_integrations(set: &ObjectSet, findings: &mut Findings) {
    let scheduled: BTreeSet<(Option<String>, String)> = set
        .schedules
        .iter()
        .filter_map(|s| {
            s.object.spec.run.integration.as_ref().map(|i| (s.object.namespace(), i.name.clone()))
        })
        .collect();
    for located in &set.integrations {
        let integration = &located.object;
        let id = object_id(integration);
        let origin = Some(&located.origin);
        let spec = &integration.spec;
        let classification = spec.data_flow.classification;
        if classification.is_sensitive() {
            for hop in hops(set, integration) {
                if let Some(why) = hop.plaintext {
                    findings.add(
                        "sensitive-data-insecure",
                        origin,
                        Some(id.clone()),
                        Some(hop.field.clone()),
                        format!(
                            "{} data must be encrypted in transit, but {why}",
                            classification.as_str()
                        ),
                    );
                }
                if !hop.credential {
                    findings.add("sensitive-data-insecure", origin, Some(id.clone()), Some(hop.field),
                        format!("{} data must go to an authenticated endpoint, but this hop uses no credential", classification.as_str()));
                }
            }
        }
        let routes =
            spec.alerting.as_ref().and_then(|a| a.routes.as_ref()).is_some_and(|r| !r.is_empty());
        if !routes {
            findings.add("no-alert-route", origin, Some(id.clone()), Some("spec.alerting.routes".into()),
                format!("no alert route: when this integration fails, only a namespace or cluster default route (if any) hears of it; add a route to team {}'s on-call", spec.owner.team));
        }
        let retried = spec.targets.iter().any(|t| t.database.is_some() || t.email.is_some());
        if !retried && spec.delivery.retry != crate::api::RetryPolicy::default() {
            findings.add(
                "unused-delivery-retry",
                origin,
                Some(id.clone()),
                Some("spec.delivery.retry".into()),
                "spec.delivery.retry applies to database and email targets only; outbound-message \
                 targets retry as their OutboundMessage's spec.retry says, so this setting changes nothing"
                    .into(),
            );
        }
        let pull = !spec.source.is_inbound();
        if pull && !scheduled.contains(&(integration.namespace(), integration.name_any())) {
            findings.add(
                "unscheduled-pull",
                origin,
                Some(id.clone()),
                Some("spec.source".into()),
                format!(
                    "the {} source only runs when a Schedule names this integration, and none does",
                    spec.source.kind()
                ),
            );
        }
    }
    for located in &set.outbound_messages {
        if located.object.spec.insecure_allow_http {
            findings.add(
                "insecure-http",
                Some(&located.origin),
                Some(object_id(&located.object)),
                Some("spec.insecureAllowHttp".into()),
                "plain http is allowed; keep it to local development".into(),
            );
        }
    }
}

/// The JSON document of `lint --output json`.
#[derive(Serialize)]
struct Report<'a> {
    findings: &'a [Finding],
    errors: usize,
    warnings: usize,
}

/// Run `switchboard lint`.
pub fn run(args: LintArgs) -> ExitCode {
    let (set, load_errors) = ObjectSet::load(&args.input.paths, &args.input.namespace);
    let findings = lint(&set, &load_errors, Utc::now());
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    let text = match args.output {
        LintFormat::Json => {
            let report = Report { findings: &findings, errors, warnings };
            serde_json::to_string_pretty(&report).expect("findings serialize") + "\n"
        }
        LintFormat::Human => {
            let mut text = String::new();
            for f in &findings {
                let severity = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                text.push_str(&format!("{severity}[{}]", f.rule));
                for part in [&f.file, &f.object, &f.field].into_iter().flatten() {
                    text.push_str(&format!(" {part}:"));
                }
                text.push_str(&format!(" {}\n", f.message));
            }
            let objects = set.integrations.len()
                + set.credentials.len()
                + set.outbound_messages.len()
                + set.schedules.len();
            text.push_str(&format!(
                "{errors} error(s), {warnings} warning(s) in {objects} Switchboard object(s)\n"
            ));
            text
        }
    };
    if crate::cli::write_stdout(&text) != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    let failed = errors > 0 || (args.warnings_as_errors && warnings > 0);
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_text(yaml: &str, now: &str) -> Vec<Finding> {
        let mut set = ObjectSet::default();
        let mut errors = Vec::new();
        set.add_text(std::path::Path::new("test.yaml"), yaml, "default", &mut errors);
        lint(&set, &errors, DateTime::parse_from_rfc3339(now).unwrap().with_timezone(&Utc))
    }

    fn rules(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn well_known_credential_formats_are_recognised() {
        for secret in [
            "-----BEGIN RSA PRIVATE KEY-----",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-123456789012-abcdefghij",
            "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "Bearer abcdefghijklmnop1234",
            r#"{"password": "hunter2"}"#,
            "<wsse:Password>hunter2</wsse:Password>",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
        ] {
            assert!(looks_like_secret(secret), "{secret}");
        }
        for fine in [
            r#"{"password": "${password}"}"#,
            "Bearer ${token}",
            "<Password>${p}</Password>",
            "plain text",
            "/v1/users",
        ] {
            assert!(!looks_like_secret(fine), "{fine}");
        }
    }

    #[test]
    fn literal_parts_ignore_placeholders_and_scheme_words() {
        assert_eq!(literal_part("Bearer ${token}"), "");
        assert_eq!(literal_part("Basic dXNlcjpwYXNz"), "dXNlcjpwYXNz");
    }

    const CREDENTIAL: &str = "
apiVersion: switchboard.dev/v1alpha1
kind: Credential
metadata: {name: c}
spec:
  type: bearer
  secretRef: {name: s}
  rotation: {maxAge: 30d}
  owner: {team: a, contact: a@example.com}
---
apiVersion: v1
kind: Secret
metadata:
  name: s
  annotations: {switchboard.dev/rotated-at: '2026-01-01T00:00:00Z'}
stringData: {token: not-real}
";

    #[test]
    fn rotation_is_overdue_only_past_the_policy() {
        assert_eq!(rules(&lint_text(CREDENTIAL, "2026-01-20T00:00:00Z")), Vec::<&str>::new());
        let findings = lint_text(CREDENTIAL, "2026-03-01T00:00:00Z");
        assert_eq!(rules(&findings), vec!["rotation-overdue"]);
        assert!(
            findings[0]
                .message
                .contains("last rotated 59 days ago, longer than rotation.maxAge 30d"),
            "{findings:?}"
        );
    }

    #[test]
    fn pull_sources_without_schedules_and_alert_routes_are_warned_about() {
        let yaml = format!(
            "{CREDENTIAL}---
apiVersion: switchboard.dev/v1alpha1
kind: OutboundMessage
metadata: {{name: api}}
spec:
  endpoint: https://api.example.com
  credentialRef: {{name: c}}
  methods: [{{name: list, httpMethod: GET, path: /items}}]
---
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {{name: pull}}
spec:
  owner: {{team: a, contact: a@example.com}}
  dataFlow: {{sourceSystem: A, targetSystem: B, classification: internal}}
  source: {{rest: {{request: {{name: api, method: list}}}}}}
  targets: [{{name: t, outboundMessage: {{name: api, method: list}}}}]
"
        );
        let findings = lint_text(&yaml, "2026-01-02T00:00:00Z");
        assert_eq!(rules(&findings), vec!["no-alert-route", "unscheduled-pull"]);
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));

        // A retry policy the only (outbound-message) target ignores is called out.
        let retry = yaml.replace(
            "  targets: [{name: t, outboundMessage: {name: api, method: list}}]",
            "  targets: [{name: t, outboundMessage: {name: api, method: list}}]\n  delivery: {retry: {maxAttempts: 9}}",
        );
        assert_ne!(retry, yaml);
        let findings = lint_text(&retry, "2026-01-02T00:00:00Z");
        assert_eq!(
            rules(&findings),
            vec!["no-alert-route", "unused-delivery-retry", "unscheduled-pull"]
        );
    }
}
