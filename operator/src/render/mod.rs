//! Pure builders: custom resources in, the Kubernetes objects the operator applies out.
//!
//! ```text
//!   Integration ──┐                         ┌─▶ ConfigMap (worker.yaml, no secret values)
//!   References ───┼─▶ worker_config ─▶ pod ─┼─▶ Deployment or StatefulSet
//!   (Credentials, │   (WorkerConfig,        ├─▶ Service (webhook and api sources)
//!    Outbound-    │    volume mounts)       ├─▶ ServiceAccount, Role, RoleBinding
//!    Messages,    │                         └─▶ PodDisruptionBudget (replicas > 1)
//!    hashes)      │
//!   Schedule ─────┴─▶ schedule ─────────────────▶ CronJob (+ ConfigMap for method calls)
//! ```
//!
//! One more child is outside [`IntegrationChildren`]: the workers' admin token Secret
//! ([`render_admin_token_secret`]), which holds a random value and so is created once by the
//! controller rather than applied on every reconcile; the pod template mounts it by name.
//!
//! Nothing here does I/O: the operator fetches the referenced objects into [`References`]
//! and applies what comes out; `switchboard render` does the same from files. Problems are
//! collected, not short-circuited, so one run names every broken reference.

mod admin_token;
mod metadata;
mod pod;
mod rbac;
mod schedule;
mod worker_config;
mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;

use crate::api::{Credential, Integration, OutboundMessage};

pub use admin_token::{admin_token_secret_name, render_admin_token_secret};
pub use metadata::*;
pub use schedule::render_schedule;
pub use worker_config::{method_problem, render_worker_config};
pub use workload::{render_integration, service_name, worker_name};

/// Default image of workers (and of the operator): the one `switchboard` binary.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/switchboard-dev/switchboard:", env!("CARGO_PKG_VERSION"));

/// The objects an Integration references, resolved by name within its namespace.
#[derive(Clone, Debug, Default)]
pub struct References {
    /// Credentials by name (shared with the operator's cache of typed objects).
    pub credentials: BTreeMap<String, Arc<Credential>>,
    /// OutboundMessages by name (shared likewise).
    pub outbound_messages: BTreeMap<String, Arc<OutboundMessage>>,
    /// Integrations by name (for Schedules).
    pub integrations: BTreeMap<String, Integration>,
    /// Content hash of each Credential's Secret, by Credential name, where known.
    pub credential_hashes: BTreeMap<String, String>,
}

/// Settings of the rendering that do not come from the custom resources.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// Image of the worker containers.
    pub image: String,
    /// Where workers send OpenLineage run events (the operator's `--openlineage-url`).
    pub lineage: Option<switchboard_worker::config::LineageConfig>,
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings { image: DEFAULT_IMAGE.into(), lineage: None }
    }
}

/// What runs an integration's workers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Workload {
    /// Workers with a pod-local queue.
    Deployment(Box<Deployment>),
    /// Workers with a persistent queue volume per pod.
    StatefulSet(Box<StatefulSet>),
}

impl Workload {
    /// The replicas asked for.
    pub fn replicas(&self) -> i32 {
        let replicas = match self {
            Workload::Deployment(d) => d.spec.as_ref().and_then(|s| s.replicas),
            Workload::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
        };
        replicas.unwrap_or(1)
    }
}

/// Every child object of an Integration.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrationChildren {
    /// The worker config, as the ConfigMap holds it.
    pub config: switchboard_worker::config::WorkerConfig,
    /// The rendered worker config.
    pub config_map: ConfigMap,
    /// The workers.
    pub workload: Workload,
    /// The inbound endpoint, for webhook and api sources.
    pub service: Option<Service>,
    /// Identity of the workers.
    pub service_account: ServiceAccount,
    /// What the workers may do in the API: report their integration's status.
    pub role: Role,
    /// Binds the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// Keeps one worker up during voluntary disruptions, when replicas > 1.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
}

/// Every child object of a Schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleChildren {
    /// The worker config of an outbound-method run (integration runs use the integration's).
    pub config_map: Option<ConfigMap>,
    /// The CronJob.
    pub cron_job: CronJob,
}

/// A problem that keeps an object from rendering, with the object and field it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {message}")]
pub struct RenderError {
    /// The object, as `Kind namespace/name`.
    pub object: String,
    /// The field path, as `spec.targets[0].outboundMessage.name`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
    /// Short category, for metrics, Events and lint rule ids.
    pub reason: RenderErrorReason,
}

/// Categories of render problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RenderErrorReason {
    /// A referenced object does not exist.
    MissingReference,
    /// A referenced Credential has a type that cannot serve this use.
    WrongCredentialType,
    /// A template uses an undeclared variable or is malformed.
    InvalidTemplate,
    /// A required variable is provided by nothing.
    MissingVariable,
    /// A value cannot be parsed or used (a duration, a source kind).
    InvalidValue,
    /// The cron expression or time zone of a Schedule is not valid.
    InvalidSchedule,
}

impl RenderErrorReason {
    /// The reason as used in conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            RenderErrorReason::MissingReference => "MissingReference",
            RenderErrorReason::WrongCredentialType => "WrongCredentialType",
            RenderErrorReason::InvalidTemplate => "InvalidTemplate",
            RenderErrorReason::MissingVariable => "MissingVariable",
            RenderErrorReason::InvalidValue => "InvalidValue",
            RenderErrorReason::InvalidSchedule => "InvalidSchedule",
        }
    }
}

/// Every problem found while rendering one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderErrors(pub Vec<RenderError>);

impl fmt::Display for RenderErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RenderErrors {}

/// Collects problems about one object.
pub(crate) struct Problems {
    object: String,
    found: Vec<RenderError>,
}

impl Problems {
    pub(crate) fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Problems { object: format!("{kind} {namespace}/{name}"), found: Vec::new() }
    }

    pub(crate) fn add(
        &mut self,
        reason: RenderErrorReason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.found.push(RenderError {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
            reason,
        });
    }

    /// Parse a duration field, recording a problem when it is malformed.
    pub(crate) fn duration_ms(&mut self, field: &str, text: &str) -> u64 {
        match crate::api::parse_duration(text) {
            Ok(duration) => duration.as_millis() as u64,
            Err(message) => {
                self.add(RenderErrorReason::InvalidValue, field, message);
                0
            }
        }
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, RenderErrors> {
        if self.found.is_empty() { Ok(value) } else { Err(RenderErrors(self.found)) }
    }

    /// Finish with an optional value: `None` is only returned along with a recorded problem.
    pub(crate) fn finish_some<T>(self, value: Option<T>) -> Result<T, RenderErrors> {
        match value {
            Some(value) => self.finish(value),
            None => {
                debug_assert!(!self.found.is_empty(), "a missing value must come with a problem");
                Err(RenderErrors(self.found))
            }
        }
    }
}
