//! `Schedule`: run an integration, or one outbound method, on a cron schedule.
//!
//! A Schedule becomes a Kubernetes CronJob whose Job runs `switchboard worker run-once`. The
//! cron expression is checked for shape by the schema and parsed fully by the operator, which
//! reports a bad expression as `Ready=False` with reason `InvalidSchedule`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, DNS_SUBDOMAIN_PATTERN, MethodRef, Owner};

/// A Schedule: a cron-driven run of an integration or of an outbound method.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Schedule",
    plural = "schedules",
    shortname = "sbsched",
    category = "switchboard",
    namespaced,
    status = "ScheduleStatus",
    doc = "Schedule runs an integration's pull (REST, database, file or IMAP import) or one OutboundMessage method on a cron schedule, in a time zone, with a concurrency policy and a bounded catch-up after downtime.",
    printcolumn = r#"{"name":"Cron","type":"string","jsonPath":".spec.cron"}"#,
    printcolumn = r#"{"name":"Time Zone","type":"string","jsonPath":".spec.timeZone","priority":1}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Result","type":"string","jsonPath":".status.lastRunResult"}"#,
    printcolumn = r#"{"name":"Next Run","type":"string","jsonPath":".status.nextScheduleTime"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.run.outboundMessage) || has(self.owner)",
     "message": "a schedule that calls an outbound method needs an owner (there is no integration to inherit one from)",
     "fieldPath": ".owner"}
]))]
pub struct ScheduleSpec {
    /// Five-field cron expression (minute hour day-of-month month day-of-week), or one of
    /// `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. Evaluated in `timeZone`.
    #[schemars(
        length(min = 1, max = 128),
        extend("x-kubernetes-validations" = [
            {"rule": r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+( +[^ ]+){4})$')",
             "message": "cron must have five fields (minute hour day-of-month month day-of-week) or be a macro such as @daily"},
            {"rule": "!self.contains('TZ')",
             "message": "set the time zone with timeZone, not CRON_TZ or TZ inside the expression"}
        ])
    )]
    pub cron: String,
    /// IANA time zone the cron expression is evaluated in, for example `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[schemars(
        default = "default_time_zone",
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")
    )]
    pub time_zone: String,
    /// Stop starting new runs (running ones finish).
    #[serde(default)]
    #[schemars(default)]
    pub suspend: bool,
    /// What to do when a run is due while the previous one still runs: `Forbid` (skip the new
    /// run), `Allow` (run both) or `Replace` (stop the old run).
    #[serde(default = "default_concurrency_policy")]
    #[schemars(default = "default_concurrency_policy")]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Catch-up bound after downtime: a run that could not start within this many seconds of
    /// its scheduled time is skipped rather than started late, so an outage never causes a
    /// burst of stale runs.
    #[serde(default = "default_starting_deadline")]
    #[schemars(default = "default_starting_deadline", range(min = 10, max = 86400))]
    pub starting_deadline_seconds: i64,
    /// Longest a single run may take before it is stopped and counted as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of a failed run within the same schedule slot.
    #[serde(default = "default_backoff_limit")]
    #[schemars(default = "default_backoff_limit", range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// Finished successful runs to keep for inspection.
    #[serde(default = "default_successful_history")]
    #[schemars(default = "default_successful_history", range(min = 0, max = 100))]
    pub successful_runs_history_limit: i32,
    /// Finished failed runs to keep for inspection.
    #[serde(default = "default_failed_history")]
    #[schemars(default = "default_failed_history", range(min = 0, max = 100))]
    pub failed_runs_history_limit: i32,
    /// What each run does.
    pub run: ScheduleRun,
    /// Who owns this schedule. Defaults to the owner of the integration it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

fn default_time_zone() -> String {
    "UTC".into()
}
fn default_concurrency_policy() -> ConcurrencyPolicy {
    ConcurrencyPolicy::Forbid
}
fn default_starting_deadline() -> i64 {
    300
}
fn default_backoff_limit() -> i32 {
    2
}
fn default_successful_history() -> i32 {
    3
}
fn default_failed_history() -> i32 {
    5
}

/// Concurrency policy of a Schedule (the CronJob semantics).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// A due run is skipped while the previous one runs.
    Forbid,
    /// A due run replaces the one still running.
    Replace,
}

impl ConcurrencyPolicy {
    /// The name as written in YAML (and in the CronJob).
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Allow => "Allow",
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Replace => "Replace",
        }
    }
}

/// What a Schedule runs: exactly one of `integration` or `outboundMessage`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.integration), has(self.outboundMessage)].exists_one(x, x)",
     "message": "run needs exactly one of integration or outboundMessage"},
    {"rule": "!has(self.variables) || has(self.outboundMessage)",
     "message": "variables only apply to an outboundMessage run", "fieldPath": ".variables"}
]))]
pub struct ScheduleRun {
    /// Run one pull of this Integration (its REST, database, file or IMAP source) through its
    /// transform to its targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<IntegrationRef>,
    /// Invoke this method of an OutboundMessage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_message: Option<MethodRef>,
    /// Variable values for the outbound method (literal text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32), inner(length(max = 4096)))]
    pub variables: Option<BTreeMap<String, String>>,
}

/// A reference to an Integration in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRef {
    /// Name of the Integration, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Observed state of a Schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (reason `Scheduled` or `Suspended`; otherwise `InvalidSpec`, `InvalidSchedule`
    /// (cron or time zone), `MissingReference` (the target does not exist),
    /// `WrongCredentialType`, `InvalidTemplate`, `MissingVariable` or `InvalidValue`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the last run was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next run is due (absent while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Result of the last finished run: `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_result: Option<String>,
    /// Why the last run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_message: Option<String>,
}

impl ScheduleSpec {
    /// Parse the cron expression the way a Kubernetes CronJob does: five fields or a macro,
    /// POSIX weekdays, no seconds and none of the `L`, `W` or `#` extensions.
    pub fn cron_schedule(&self) -> Result<croner::Cron, String> {
        let expression = self.cron.trim();
        if !expression.starts_with('@') && expression.contains(['L', 'W', '#', '?']) {
            return Err(format!(
                "{expression:?} uses L, W, # or ?, which Kubernetes CronJobs do not support"
            ));
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| format!("{expression:?} is not a valid cron expression: {error}"))
    }

    /// Parse the time zone.
    pub fn time_zone(&self) -> Result<chrono_tz::Tz, String> {
        self.time_zone.parse().map_err(|_| {
            format!("{:?} is not an IANA time zone such as Europe/Berlin", self.time_zone)
        })
    }

    /// When the schedule next fires after `after`, or why it cannot be computed.
    pub fn next_run(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, String> {
        let cron = self.cron_schedule()?;
        let zone = self.time_zone()?;
        cron.find_next_occurrence(&after.with_timezone(&zone), false)
            .map(|next| next.with_timezone(&chrono::Utc))
            .map_err(|error| format!("no next run of {:?}: {error}", self.cron))
    }
}
