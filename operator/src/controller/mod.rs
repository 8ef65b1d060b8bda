//! The operator: four controllers, one pipeline each.
//!
//! ```text
//!   watch ─▶ fetch (caches) ─▶ validate ─▶ build (crate::render, pure) ─▶ apply (SSA) ─▶ status
//!              │                                                        │              │
//!              └── references recorded in the RefIndex ──┐              └─ children     └─ conditions with
//!   Secret / Credential / OutboundMessage changes ───────┴─▶ reconcile the consumers       observedGeneration,
//!                                                                                          Events on transitions
//! ```
//!
//! Only the fetch and the last two steps touch the API, and every write passes the leader guard.
//! `error_policy` tells an invalid spec (wait for a change) from a transient failure (requeue
//! with per-object exponential backoff).

pub mod admin_token;
pub mod apply;
pub mod children;
pub mod conditions;
pub mod credential;
pub mod feed;
pub mod index;
pub mod integration;
pub mod leader;
pub mod metrics;
pub mod object;
pub mod outbound_message;
pub mod run;
pub mod runtime;
pub mod schedule;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use crate::api::{Credential, Integration, OutboundMessage, Schedule};
use crate::render::RenderSettings;
use index::RefIndex;
use leader::LeaderGuard;
use metrics::Metrics;
use object::Unchecked;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be used as it is; waiting for a change.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// This replica does not hold the lease.
    #[error("not the leader")]
    NotLeader,
    /// Something on this machine failed (retried with backoff).
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Short category, for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid-spec",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Error::Kube(_) => "api",
            Error::NotLeader => "not-leader",
            Error::Internal(_) => "internal",
        }
    }
}

/// The caches of the four kinds.
#[derive(Clone)]
pub struct Stores {
    /// Integrations.
    pub integrations: Store<Unchecked<Integration>>,
    /// Credentials.
    pub credentials: Store<Unchecked<Credential>>,
    /// OutboundMessages.
    pub outbound_messages: Store<Unchecked<OutboundMessage>>,
    /// Schedules.
    pub schedules: Store<Unchecked<Schedule>>,
}

impl Stores {
    /// A cached Credential, typed, when it exists and reads.
    pub fn credential(&self, namespace: &str, name: &str) -> Option<Arc<Credential>> {
        self.credentials
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|c| c.typed_cached().ok())
    }

    /// A cached OutboundMessage, typed, when it exists and reads.
    pub fn outbound_message(&self, namespace: &str, name: &str) -> Option<Arc<OutboundMessage>> {
        self.outbound_messages
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|c| c.typed_cached().ok())
    }

    /// A cached Integration, typed, when it exists and reads.
    pub fn integration(&self, namespace: &str, name: &str) -> Option<Integration> {
        self.integrations.get(&ObjectRef::new(name).within(namespace)).and_then(|c| c.typed().ok())
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Image and other rendering settings.
    pub settings: RenderSettings,
    /// Whether this replica may write.
    pub leader: LeaderGuard,
    /// Identity on Events.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Caches.
    pub stores: Stores,
    /// Who references whom.
    pub index: Arc<RefIndex>,
    /// What the children's watches show, and what was applied last.
    pub children: Arc<children::Children>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context over the given caches.
    pub fn new(
        client: Client,
        settings: RenderSettings,
        leader: LeaderGuard,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        stores: Stores,
        index: Arc<RefIndex>,
    ) -> Self {
        Context {
            client,
            settings,
            leader,
            reporter,
            metrics,
            stores,
            index,
            children: Arc::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Fail unless this replica holds the lease.
    pub fn require_leader(&self) -> Result<(), Error> {
        if self.leader.is_leader() { Ok(()) } else { Err(Error::NotLeader) }
    }

    /// Forget an object's failures after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// The delay before retrying an object that failed `n` times in a row: 1s, 2s, 4s, ...
    /// up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }
}

/// Key of an object in the backoff table.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or(""),
        object.meta().name.as_deref().unwrap_or("")
    )
}

/// The error policy of every controller: invalid specs wait for a change; everything else is
/// retried with backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match error {
        Error::InvalidSpec(_) => Action::await_change(),
        Error::NotLeader => Action::requeue(Duration::from_secs(5)),
        _ => {
            let delay = ctx.backoff(&object_key(object.as_ref()));
            tracing::warn!(object = %object_key(object.as_ref()), %error, ?delay, "reconcile failed; retrying");
            Action::requeue(delay)
        }
    }
}
