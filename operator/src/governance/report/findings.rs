//! The report's findings: every lint rule (from [`crate::governance::lint::lint`], not
//! repeated here) plus the rules only a report can check, most of them on the status the
//! operator and the workers wrote.
//!
//! ```text
//!   lint(set)  ─▶ declared findings (what the specs say)      ─┐
//!   specs      ─▶ sensitive-data-weak-auth                    ─┼─▶ sorted findings
//!   statuses   ─▶ unhealthy, rotation-overdue, dead letters,   ─┘
//!                 credential and certificate state, alert routes
//! ```
//!
//! In live mode the lint rules that read Secrets from files (`missing-secret`) do not apply:
//! the report never lists Secrets; the Credential's status says whether its Secret is usable.

use chrono::{DateTime, Duration, Utc};
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::Serialize;

use super::model::{BuildOptions, Mode, credential_uses, find_condition, utc};
use crate::api::{Credential, CredentialType, Integration, condition, parse_duration};
use crate::governance::lint;
use crate::manifest::{LoadError, ObjectSet};

/// How serious a finding is.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Must be fixed.
    Error,
    /// Worth fixing.
    Warning,
}

/// What a finding is based on.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The specs, as declared in Git or stored in the cluster.
    Declared,
    /// The status written by the operator and the workers at runtime.
    Observed,
}

/// One finding of the report.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportFinding {
    /// Error or warning.
    pub severity: Severity,
    /// Rule id: a lint rule (see `switchboard lint`) or a report rule.
    pub rule: String,
    /// Whether it comes from the specs or from the runtime status.
    pub basis: Basis,
    /// `Kind namespace/name`, when it is about one object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Field path inside the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// File, line and document (offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// The rules the report adds to lint's: id, severity, basis and what each checks.
pub const RULES: &[(&str, Severity, Basis, &str)] = &[
    (
        "unhealthy",
        Severity::Error,
        Basis::Observed,
        "an Integration's Healthy condition has been False for longer than --unhealthy-days",
    ),
    (
        "rotation-overdue",
        Severity::Error,
        Basis::Observed,
        "a Credential's status lastRotated is older than its rotation.maxAge",
    ),
    (
        "sensitive-data-weak-auth",
        Severity::Warning,
        Basis::Declared,
        "restricted or pii data travels over a (non-database) hop authenticated by neither mtls nor oauth2ClientCredentials",
    ),
    (
        "dead-letters-pending",
        Severity::Warning,
        Basis::Observed,
        "an Integration has dead letters waiting for replay",
    ),
    (
        "credential-not-ready",
        Severity::Error,
        Basis::Observed,
        "a Credential's Ready condition is False (Secret missing, key missing, invalid certificate)",
    ),
    (
        "certificate-expired",
        Severity::Error,
        Basis::Observed,
        "an mtls client certificate has expired",
    ),
    (
        "certificate-expiring",
        Severity::Warning,
        Basis::Observed,
        "an mtls client certificate expires within 21 days",
    ),
    (
        "alert-route-failing",
        Severity::Error,
        Basis::Observed,
        "an alert route failed to take the integration's last notification",
    ),
];

/// Certificates expiring within this many days are reported.
pub const CERTIFICATE_WARNING_DAYS: i64 = 21;

fn rule(id: &str) -> (&'static str, Severity, Basis) {
    RULES
        .iter()
        .find(|(rule, _, _, _)| *rule == id)
        .map(|(rule, severity, basis, _)| (*rule, *severity, *basis))
        .expect("report rules are declared in RULES")
}

struct Found(Vec<ReportFinding>);

impl Found {
    fn add(&mut self, id: &str, object: String, field: &str, message: String) {
        let (rule, severity, basis) = rule(id);
        self.0.push(ReportFinding {
            severity,
            rule: rule.to_string(),
            basis,
            object: Some(object),
            field: Some(field.to_string()),
            file: None,
            message,
        });
    }
}

fn object_id<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{} {}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

/// Every finding: lint's rules over the set, then the report's own, sorted by severity and
/// object.
pub fn findings(
    set: &ObjectSet,
    load_errors: &[LoadError],
    options: &BuildOptions,
) -> Vec<ReportFinding> {
    let live = options.source.mode == Mode::Live;
    let mut found = Found(
        lint::lint(set, load_errors, options.now)
            .into_iter()
            .filter(|f| !(live && f.rule == "missing-secret"))
            .map(|f| ReportFinding {
                severity: match f.severity {
                    lint::Severity::Error => Severity::Error,
                    lint::Severity::Warning => Severity::Warning,
                },
                rule: f.rule.to_string(),
                basis: Basis::Declared,
                object: f.object,
                field: f.field,
                file: if live { None } else { f.file },
                message: f.message,
            })
            .collect(),
    );
    for integration in set.integrations.iter().map(|i| &i.object) {
        check_integration(set, integration, options, &mut found);
    }
    for credential in set.credentials.iter().map(|c| &c.object) {
        check_credential(credential, options.now, &mut found);
    }
    let mut all = found.0;
    all.sort_by(|a, b| {
        (a.severity, &a.object, &a.rule, &a.field).cmp(&(b.severity, &b.object, &b.rule, &b.field))
    });
    all
}

fn check_integration(
    set: &ObjectSet,
    integration: &Integration,
    options: &BuildOptions,
    found: &mut Found,
) {
    let id = object_id(integration);
    let namespace = integration.namespace().unwrap_or_default();
    let classification = integration.spec.data_flow.classification;
    if classification.is_sensitive() {
        let mut hops: Vec<(String, Vec<(String, CredentialType)>)> = Vec::new();
        for (name, uses) in credential_uses(set, integration) {
            let Some(credential) = set.credentials.iter().map(|c| &c.object).find(|c| {
                c.namespace().as_deref() == Some(namespace.as_str()) && c.name_any() == name
            }) else {
                continue;
            };
            for use_ in uses.iter().filter(|u| *u == "source" || u.starts_with("target ")) {
                match hops.iter_mut().find(|(hop, _)| hop == use_) {
                    Some((_, credentials)) => {
                        credentials.push((name.clone(), credential.spec.type_))
                    }
                    None => hops.push((use_.clone(), vec![(name.clone(), credential.spec.type_)])),
                }
            }
        }
        // Database connections can only authenticate with a password (over TLS, which
        // `sensitive-data-insecure` checks); flagging them would be a finding nobody can fix.
        let is_database = |hop: &str| match hop.strip_prefix("target ") {
            None => integration.spec.source.database.is_some(),
            Some(name) => {
                integration.spec.targets.iter().any(|t| t.name == name && t.database.is_some())
            }
        };
        for (hop, credentials) in hops.into_iter().filter(|(hop, _)| !is_database(hop)) {
            let strong = credentials.iter().any(|(_, t)| {
                matches!(t, CredentialType::Mtls | CredentialType::OAuth2ClientCredentials)
            });
            if !strong {
                let used: Vec<String> =
                    credentials.iter().map(|(n, t)| format!("{n} ({})", t.as_str())).collect();
                let field = if hop == "source" { "spec.source" } else { "spec.targets" };
                found.add(
                    "sensitive-data-weak-auth",
                    id.clone(),
                    field,
                    format!(
                        "{} data on the {hop} hop is authenticated only by {}; use an mtls or oauth2ClientCredentials Credential (or add a client certificate)",
                        classification.as_str(),
                        used.join(", ")
                    ),
                );
            }
        }
    }
    let Some(status) = integration.status.as_ref() else {
        return;
    };
    if let Some(healthy) = find_condition(&status.conditions, condition::HEALTHY)
        && healthy.status == "False"
    {
        let since = utc(&healthy.last_transition_time);
        let days = options.now.signed_duration_since(since).num_days();
        if options.now.signed_duration_since(since) > Duration::days(options.unhealthy_days.into())
        {
            let mut message = format!(
                "unhealthy for {days} days (since {}), longer than {} days",
                super::model::Timestamp::of(since).as_str(),
                options.unhealthy_days
            );
            if !healthy.reason.is_empty() {
                message.push_str(&format!("; {}", healthy.reason));
            }
            if !healthy.message.is_empty() {
                message.push_str(&format!(": {}", healthy.message));
            }
            message.push_str(&format!("; owner {}", integration.spec.owner.team));
            found.add("unhealthy", id.clone(), "status.conditions[Healthy]", message);
        }
    }
    if let Some(pending) =
        status.counters.as_ref().map(|c| c.dead_letters_pending).filter(|n| *n > 0)
    {
        found.add(
            "dead-letters-pending",
            id.clone(),
            "status.counters.deadLettersPending",
            format!(
                "{pending} dead letter(s) wait for replay: inspect them and replay or discard them before their retention ({}) ends",
                integration.spec.delivery.dead_letter.retention
            ),
        );
    }
    if let Some(alert) = status.alert.as_ref().filter(|a| !a.failed_routes.is_empty()) {
        found.add(
            "alert-route-failing",
            id,
            "status.alert.failedRoutes",
            format!(
                "alert route(s) {} failed to take the last notification ({}): the owner may not have heard of failures",
                alert.failed_routes.join(", "),
                alert.state
            ),
        );
    }
}

/// Status-based credential rules. Offline ages come from Secret annotations, which lint's own
/// `rotation-overdue` reads; a status-based one is added only when lint found none.
fn check_credential(credential: &Credential, now: DateTime<Utc>, found: &mut Found) {
    let Some(status) = credential.status.as_ref() else {
        return;
    };
    let id = object_id(credential);
    if let (Some(rotation), Some(rotated)) =
        (credential.spec.rotation.as_ref(), status.last_rotated.as_ref())
        && let Ok(max_age) = parse_duration(&rotation.max_age)
    {
        let age = now.signed_duration_since(utc(rotated));
        let already = found
            .0
            .iter()
            .any(|f| f.rule == "rotation-overdue" && f.object.as_deref() == Some(id.as_str()));
        if !already && age.to_std().is_ok_and(|age| age > max_age) {
            found.add(
                "rotation-overdue",
                id.clone(),
                "status.lastRotated",
                format!(
                    "Secret {:?} was last rotated {} days ago, longer than rotation.maxAge {}",
                    credential.spec.secret_ref.name,
                    age.num_days(),
                    rotation.max_age
                ),
            );
        }
    }
    if let Some(ready) = find_condition(&status.conditions, condition::READY)
        && ready.status == "False"
    {
        found.add(
            "credential-not-ready",
            id.clone(),
            "status.conditions[Ready]",
            format!("not ready: {}: {}", ready.reason, ready.message),
        );
    }
    if let Some(not_after) = status.certificate_not_after.as_ref() {
        let left = utc(not_after).signed_duration_since(now);
        if left <= Duration::zero() {
            found.add(
                "certificate-expired",
                id.clone(),
                "status.certificateNotAfter",
                format!("the client certificate expired {} days ago", -left.num_days()),
            );
        } else if left < Duration::days(CERTIFICATE_WARNING_DAYS) {
            found.add(
                "certificate-expiring",
                id,
                "status.certificateNotAfter",
                format!("the client certificate expires in {} days", left.num_days()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::report::model::ReportSource;

    const CREDENTIAL: &str = "
apiVersion: switchboard.dev/v1alpha1
kind: Credential
metadata: {name: c, namespace: ns}
spec:
  type: mtls
  secretRef: {name: s}
  rotation: {maxAge: 30d}
  owner: {team: a, contact: a@example.com}
status:
  certificateNotAfter: '2026-01-10T00:00:00Z'
  lastRotated: '2026-01-01T00:00:00Z'
";

    fn rules(yaml: &str, now: &str, mode: Mode) -> Vec<(String, Option<String>)> {
        let mut set = ObjectSet::default();
        let mut errors = Vec::new();
        set.add_text(std::path::Path::new("test.yaml"), yaml, "default", &mut errors);
        let options = BuildOptions {
            now: DateTime::parse_from_rfc3339(now).unwrap().to_utc(),
            unhealthy_days: 3,
            diagram_credentials: false,
            source: ReportSource { mode, paths: Vec::new(), context: None, namespace: None },
        };
        findings(&set, &errors, &options).into_iter().map(|f| (f.rule, f.file)).collect()
    }

    #[test]
    fn certificates_are_expiring_within_21_days_and_expired_after() {
        let at = |now| rules(CREDENTIAL, now, Mode::Live);
        assert_eq!(at("2025-12-19T00:00:00Z"), vec![]);
        assert_eq!(at("2026-01-01T00:00:00Z"), vec![("certificate-expiring".into(), None)]);
        assert_eq!(at("2026-01-10T00:00:00Z"), vec![("certificate-expired".into(), None)]);
    }

    #[test]
    fn rotation_is_overdue_only_past_max_age_and_reported_once() {
        let live = rules(CREDENTIAL, "2026-01-30T00:00:00Z", Mode::Live);
        assert!(!live.iter().any(|(rule, _)| rule == "rotation-overdue"), "{live:?}");
        let live = rules(CREDENTIAL, "2026-02-01T00:00:00Z", Mode::Live);
        assert_eq!(live.iter().filter(|(rule, _)| rule == "rotation-overdue").count(), 1);
        // With the Secret in the files, lint finds it first and the status adds no second one.
        let with_secret = format!(
            "{CREDENTIAL}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: ns, annotations: {{switchboard.dev/rotated-at: '2025-12-01T00:00:00Z'}}}}\n"
        );
        let offline = rules(&with_secret, "2026-02-01T00:00:00Z", Mode::Offline);
        let overdue: Vec<_> =
            offline.iter().filter(|(rule, _)| rule == "rotation-overdue").collect();
        assert_eq!(overdue.len(), 1, "{offline:?}");
        assert!(
            overdue[0].1.as_deref().is_some_and(|f| f.starts_with("test.yaml:")),
            "{offline:?}"
        );
    }

    #[test]
    fn live_reports_drop_the_file_only_missing_secret_rule() {
        let offline = rules(CREDENTIAL, "2025-12-01T00:00:00Z", Mode::Offline);
        assert!(offline.iter().any(|(rule, file)| rule == "missing-secret" && file.is_some()));
        let live = rules(CREDENTIAL, "2025-12-01T00:00:00Z", Mode::Live);
        assert_eq!(live, vec![]);
    }
}
