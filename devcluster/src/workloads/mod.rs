//! Workload controllers: what kube-controller-manager does for Deployments, ReplicaSets,
//! StatefulSets, Jobs and CronJobs, run in-process against [`Core`].
//!
//! ```text
//!  store events ──▶ keys to sync ──▶ reconcile one object ──▶ Core create/update/delete
//!   Deployment ─────▶ Deployment                     (ReplicaSets, rolling update, status)
//!   ReplicaSet ─────▶ ReplicaSet + its Deployment    (Pods, status)
//!   StatefulSet ────▶ StatefulSet                    (ordinal Pods, PVCs, status)
//!   Job ────────────▶ Job + its CronJob              (Pods to completion, back-off, status)
//!   CronJob ────────▶ CronJob (and every tick)       (Jobs on schedule, history, status)
//!   Pod ────────────▶ its controller (owner reference with `controller: true`)
//! ```
//!
//! Each reconcile reads the current state from the store, makes at most the writes needed
//! to move towards the spec, and writes status only when it changed, so the writes it causes
//! settle. A reconcile may ask to be run again after a delay (minReadySeconds, Job back-off,
//! progress deadlines, cron ticks). Times come from the cluster [`Clock`], so tests can move
//! a CronJob's schedule forward instead of waiting for it.
//!
//! Pods run only when a pod runner ([`crate::kubelet`]) is there to run them; without one,
//! Pods stay `Pending` and the controllers wait, as on a cluster without nodes.

pub mod cronjob;
pub mod deployment;
pub mod job;
pub mod pods;
pub mod replicaset;
pub mod statefulset;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Core, DeleteOptions, Propagation, Subresource, WriteOptions};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::resources::{Resource, ResourceKey};
use crate::store::Event;

/// The field manager and event source of the controllers.
pub const MANAGER: &str = "kube-controller-manager";

/// Settings of the workload controllers.
#[derive(Clone, Debug)]
pub struct WorkloadSettings {
    /// Run the controllers at all.
    pub enabled: bool,
    /// First delay before a Job replaces a failed Pod; it doubles per failure up to 6 minutes
    /// (Kubernetes: 10 s).
    pub job_backoff: Duration,
    /// How often CronJobs are looked at (the clock may have been moved).
    pub tick: Duration,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        WorkloadSettings {
            enabled: true,
            job_backoff: Duration::from_secs(10),
            tick: Duration::from_secs(1),
        }
    }
}

/// What a reconcile needs.
pub struct Ctx {
    /// The API.
    pub core: Arc<Core>,
    /// The cluster clock.
    pub clock: Clock,
    /// Settings.
    pub settings: WorkloadSettings,
}

/// The kinds the controllers own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

impl Kind {
    const ALL: [Kind; 5] =
        [Kind::Deployment, Kind::ReplicaSet, Kind::StatefulSet, Kind::Job, Kind::CronJob];

    fn group_resource(self) -> (&'static str, &'static str) {
        match self {
            Kind::Deployment => ("apps", "deployments"),
            Kind::ReplicaSet => ("apps", "replicasets"),
            Kind::StatefulSet => ("apps", "statefulsets"),
            Kind::Job => ("batch", "jobs"),
            Kind::CronJob => ("batch", "cronjobs"),
        }
    }

    fn from_kind(kind: &str) -> Option<Kind> {
        Some(match kind {
            "Deployment" => Kind::Deployment,
            "ReplicaSet" => Kind::ReplicaSet,
            "StatefulSet" => Kind::StatefulSet,
            "Job" => Kind::Job,
            "CronJob" => Kind::CronJob,
            _ => return None,
        })
    }

    fn from_key(key: &ResourceKey) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let (g, r) = k.group_resource();
            key.group == g && key.resource == r
        })
    }
}

type Key = (Kind, String, String);

/// Runs the controllers until `shutdown` turns true.
pub async fn run(ctx: Arc<Ctx>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut notify = ctx.core.store.subscribe();
    let mut cursor = ctx.core.store.current_rv();
    let mut dirty: BTreeSet<Key> = all_keys(&ctx.core);
    let mut timers: BTreeMap<Key, tokio::time::Instant> = BTreeMap::new();
    loop {
        match ctx.core.store.events_since(cursor) {
            Ok(events) => {
                for e in events {
                    cursor = e.rv;
                    dirty.extend(keys_for(&e));
                }
            }
            Err(_) => {
                cursor = ctx.core.store.current_rv();
                dirty.extend(all_keys(&ctx.core));
            }
        }
        let now = tokio::time::Instant::now();
        let due: Vec<Key> =
            timers.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
        for k in due {
            timers.remove(&k);
            dirty.insert(k);
        }
        for key in std::mem::take(&mut dirty) {
            if *shutdown.borrow() {
                return;
            }
            if let Some(after) = reconcile(&ctx, &key) {
                let at = now + after;
                let entry = timers.entry(key).or_insert(at);
                if at < *entry {
                    *entry = at;
                }
            }
        }
        let next = timers.values().min().copied().unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            r = notify.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

fn reconcile(ctx: &Ctx, key: &Key) -> Option<Duration> {
    let (kind, ns, name) = key;
    let result = match kind {
        Kind::Deployment => deployment::reconcile(ctx, ns, name),
        Kind::ReplicaSet => replicaset::reconcile(ctx, ns, name),
        Kind::StatefulSet => statefulset::reconcile(ctx, ns, name),
        Kind::Job => job::reconcile(ctx, ns, name),
        Kind::CronJob => cronjob::reconcile(ctx, ns, name),
    };
    match result {
        Ok(after) => after,
        Err(ApiError::Conflict { .. }) => Some(Duration::from_millis(50)),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => {
            tracing::warn!(kind = ?kind, namespace = %ns, name = %name, error = %e, "workload sync failed");
            Some(Duration::from_secs(1))
        }
    }
}

fn all_keys(core: &Core) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    for kind in Kind::ALL {
        let (g, r) = kind.group_resource();
        for (ns, name, _) in core.store.list(&ResourceKey::new(g, r), None, None).1 {
            out.insert((kind, ns, name));
        }
    }
    out
}

/// Which objects a change concerns: the object itself, when it is a workload, and its
/// controlling owner.
fn keys_for(e: &Event) -> Vec<Key> {
    let pods = e.key.group.is_empty() && e.key.resource == "pods";
    let own = Kind::from_key(&e.key);
    if !pods && own.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(kind) = own {
        out.push((kind, e.namespace.clone(), e.name.clone()));
    }
    let obj = e.object.value();
    if let Some((kind, name)) = controller_of(&obj) {
        out.push((kind, e.namespace.clone(), name));
    }
    out
}

/// The kind and name of an object's controlling owner, when it is a workload.
fn controller_of(obj: &Value) -> Option<(Kind, String)> {
    obj.pointer("/metadata/ownerReferences")?.as_array()?.iter().find_map(|r| {
        if r.get("controller").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let kind = Kind::from_kind(r.get("kind")?.as_str()?)?;
        Some((kind, r.get("name")?.as_str()?.to_string()))
    })
}

/// Looks a built-in resource up.
pub(crate) fn resource(core: &Core, group: &str, plural: &str) -> Arc<Resource> {
    core.registry.get(group, "v1", plural).expect("built-in resource registered")
}

/// The object, or `None` when it is gone.
pub(crate) fn get(core: &Core, res: &Resource, ns: &str, name: &str) -> Option<Value> {
    core.store.get(&res.key(), ns, name).map(|o| o.value())
}

/// Objects of `res` in `ns` whose controlling owner has `uid`.
pub(crate) fn owned(core: &Core, res: &Resource, ns: &str, uid: &str) -> Vec<Value> {
    let key = res.key();
    core.store
        .dependents_of(uid)
        .into_iter()
        .filter(|(k, n, _)| *k == key && n == ns)
        .filter_map(|(_, n, name)| core.store.get(&key, &n, &name).map(|o| o.value()))
        .filter(|v| controller_uid(v).as_deref() == Some(uid))
        .collect()
}

/// The uid of an object's controlling owner.
pub(crate) fn controller_uid(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/ownerReferences")?.as_array()?.iter().find_map(|r| {
        (r.get("controller").and_then(Value::as_bool) == Some(true))
            .then(|| r.get("uid").and_then(Value::as_str).map(str::to_string))
            .flatten()
    })
}

/// An owner reference to `owner` with `controller: true`.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner.pointer("/metadata/name"),
        "uid": owner.pointer("/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// `metadata.<field>` as a string.
pub(crate) fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a JSON pointer.
pub(crate) fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// Whether an object is being deleted.
pub(crate) fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

fn writer() -> WriteOptions {
    WriteOptions { field_manager: Some(MANAGER.into()), ..Default::default() }
}

/// Creates an object as the controller manager.
pub(crate) fn create(
    core: &Core,
    res: &Resource,
    ns: &str,
    body: Value,
) -> Result<Value, ApiError> {
    core.create(res, ns, body, &writer(), MANAGER).map(|w| w.object)
}

/// Replaces an object (optimistically, at the resourceVersion it carries).
pub(crate) fn update(core: &Core, res: &Resource, ns: &str, obj: Value) -> Result<Value, ApiError> {
    let name = meta(&obj, "name").to_string();
    core.update(res, ns, &name, obj, &writer(), Subresource::Main, MANAGER).map(|w| w.object)
}

/// Writes `status` when it differs from the object's current status.
pub(crate) fn write_status(
    core: &Core,
    res: &Resource,
    obj: &Value,
    status: Value,
) -> Result<(), ApiError> {
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let mut next = obj.clone();
    next["status"] = status;
    let ns = meta(obj, "namespace").to_string();
    let name = meta(obj, "name").to_string();
    core.update(res, &ns, &name, next, &writer(), Subresource::Status, MANAGER).map(|_| ())
}

/// Deletes an object in the background; a missing object is not an error.
pub(crate) fn delete(core: &Core, res: &Resource, ns: &str, name: &str) -> Result<(), ApiError> {
    let opts = DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() };
    match core.delete(res, ns, name, &opts) {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets a condition in a list, keeping `lastTransitionTime` when the status is unchanged
/// (and `lastUpdateTime`, for conditions that carry one, when nothing changed at all).
pub(crate) fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status_str: &str,
    reason: &str,
    message: &str,
    now: &str,
    with_update_time: bool,
) {
    let existing =
        conditions.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let mut next =
        json!({"type": kind, "status": status_str, "reason": reason, "message": message});
    match existing {
        Some(c) => {
            let same_status = c.get("status").and_then(Value::as_str) == Some(status_str);
            let same_all = same_status
                && c.get("reason").and_then(Value::as_str) == Some(reason)
                && c.get("message").and_then(Value::as_str) == Some(message);
            next["lastTransitionTime"] = if same_status {
                c.get("lastTransitionTime").cloned().unwrap_or(json!(now))
            } else {
                json!(now)
            };
            if with_update_time {
                next["lastUpdateTime"] = if same_all {
                    c.get("lastUpdateTime").cloned().unwrap_or(json!(now))
                } else {
                    json!(now)
                };
            }
            *c = next;
        }
        None => {
            next["lastTransitionTime"] = json!(now);
            if with_update_time {
                next["lastUpdateTime"] = json!(now);
            }
            conditions.push(next);
        }
    }
}

/// A condition's status, if present.
pub(crate) fn condition_status<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?
        .get("status")?
        .as_str()
}

/// Records a core/v1 Event about `involved`.
pub(crate) fn event(ctx: &Ctx, involved: &Value, kind: &str, reason: &str, message: &str) {
    crate::events::record(&ctx.core, &ctx.clock, involved, kind, reason, message, MANAGER);
}
