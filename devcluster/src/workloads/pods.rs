//! Pods as the workload controllers see them: built from templates, counted as active,
//! ready or available, and ranked for deletion.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{controller_ref, meta};
use crate::clock::parse_time;

/// The Pod phase.
pub fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

/// Not finished and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !super::deleting(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// The Pod's `Ready` condition is true.
pub fn is_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

/// When the Pod became Ready, if it is.
pub fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    let c = pod
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    if c.get("status").and_then(Value::as_str) != Some("True") {
        return None;
    }
    Some(
        c.get("lastTransitionTime")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// Ready for at least `min_ready_seconds`; otherwise how long until it will be (if ready).
pub fn availability(pod: &Value, min_ready_seconds: i64, now: DateTime<Utc>) -> Availability {
    match ready_since(pod) {
        None => Availability::No,
        Some(since) => {
            let at = since + chrono::Duration::seconds(min_ready_seconds);
            if min_ready_seconds <= 0 || at <= now {
                Availability::Yes
            } else {
                Availability::After((at - now).to_std().unwrap_or_default())
            }
        }
    }
}

/// Whether a Pod counts as available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Ready long enough.
    Yes,
    /// Not ready.
    No,
    /// Ready, available after this long.
    After(std::time::Duration),
}

impl Availability {
    /// Available now.
    pub fn yes(self) -> bool {
        self == Availability::Yes
    }
}

/// Sum of the restart counts of a Pod's containers.
pub fn restarts(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum())
        .unwrap_or(0)
}

/// Orders Pods so that the first are the best to delete when scaling down: unscheduled
/// before scheduled, pending before running, not ready before ready, recently ready before
/// long ready, more restarts before fewer, newer before older (the ReplicaSet controller's
/// ranking).
pub fn deletion_rank(a: &Value, b: &Value) -> std::cmp::Ordering {
    let running = |p: &Value| phase(p) == "Running";
    let created = |p: &Value| meta(p, "creationTimestamp").to_string();
    running(a)
        .cmp(&running(b))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(ready_since(b).cmp(&ready_since(a)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

/// A Pod built from a template, owned by `owner` (as its controller).
pub fn from_template(
    template: &Value,
    owner: &Value,
    name: PodName<'_>,
    extra_labels: &[(&str, String)],
) -> Value {
    let mut metadata = Map::new();
    match name {
        PodName::Generate(prefix) => {
            metadata.insert("generateName".into(), json!(prefix));
        }
        PodName::Fixed(n) => {
            metadata.insert("name".into(), json!(n));
        }
    }
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    metadata.insert("labels".into(), labels);
    if let Some(a) = template.pointer("/metadata/annotations") {
        metadata.insert("annotations".into(), a.clone());
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(owner)]));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// How a new Pod is named.
pub enum PodName<'a> {
    /// `generateName`.
    Generate(&'a str),
    /// A fixed name (StatefulSets).
    Fixed(&'a str),
}

/// Whether every `matchLabels` entry (and `matchExpressions`) of a selector matches labels.
pub fn selector_matches(selector: &Value, obj: &Value) -> bool {
    crate::selectors::LabelSelector::from_object(selector).matches(obj)
}
