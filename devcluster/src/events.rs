//! Events: recording them from in-process controllers, and serving one set of Events as both
//! `v1` (core) and `events.k8s.io/v1`.
//!
//! Like the API server, devcluster stores Events once, in the core/v1 shape, and converts
//! on the way in and out of `events.k8s.io/v1`:
//!
//! ```text
//!  events.k8s.io/v1 write ──to_core──▶ store (core/v1 Event) ──to_events_v1──▶ events.k8s.io/v1 read/watch
//!  core/v1 write ───────────────────▶ store ─────────────────────────────▶ core/v1 read/watch (kubectl describe)
//! ```
//!
//! | events.k8s.io/v1 | core/v1 |
//! |---|---|
//! | `regarding` | `involvedObject` |
//! | `related` | `related` |
//! | `note` | `message` |
//! | `reportingController` | `reportingComponent` |
//! | `reportingInstance` | `reportingInstance` |
//! | `deprecatedSource` | `source` |
//! | `deprecatedFirstTimestamp`, `deprecatedLastTimestamp`, `deprecatedCount` | `firstTimestamp`, `lastTimestamp`, `count` |
//! | `eventTime`, `series`, `action`, `reason`, `type` | the same |

use serde_json::{Map, Value, json};

use crate::api::{Core, WriteOptions};
use crate::clock::Clock;
use crate::resources::{Resource, ResourceKey};

/// Whether `res` is `events.k8s.io` Events, served from the core Events' storage.
pub fn is_events_v1(res: &Resource) -> bool {
    res.group == "events.k8s.io" && res.plural == "events"
}

/// The storage of both Event resources.
pub fn storage_key() -> ResourceKey {
    ResourceKey::new("", "events")
}

const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

const SHARED: &[&str] = &[
    "metadata",
    "related",
    "reportingInstance",
    "eventTime",
    "series",
    "action",
    "reason",
    "type",
];

fn rename(
    from: &Map<String, Value>,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for key in SHARED {
        if let Some(v) = from.get(*key) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    for (a, b) in pairs {
        if let Some(v) = from.get(a) {
            out.insert(b.to_string(), v.clone());
        }
    }
    out
}

/// An `events.k8s.io/v1` Event in the core/v1 shape.
pub fn to_core(event: &Value) -> Value {
    let Some(map) = event.as_object() else { return event.clone() };
    let mut out = rename(map, RENAMES.iter().copied());
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A core/v1 Event in the `events.k8s.io/v1` shape.
pub fn to_events_v1(event: &Value) -> Value {
    let Some(map) = event.as_object() else { return event.clone() };
    let mut out = rename(map, RENAMES.iter().map(|(a, b)| (*b, *a)));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// Records a core/v1 Event about `involved` (an object with apiVersion, kind and metadata).
pub fn record(
    core: &Core,
    clock: &Clock,
    involved: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some(res) = core.registry.get("", "v1", "events") else { return };
    let meta =
        |f: &str| involved.pointer(&format!("/metadata/{f}")).cloned().unwrap_or(Value::Null);
    let namespace =
        involved.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let name = involved.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("object");
    let now = clock.timestamp();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{suffix}"), "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta("name"),
            "namespace": meta("namespace"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "devcluster",
    });
    let opts = WriteOptions { field_manager: Some(component.into()), ..Default::default() };
    if let Err(e) = core.create(&res, namespace, body, &opts, component) {
        tracing::debug!(error = %e, reason, "recording an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_round_trips_both_ways() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x.1", "namespace": "ns"},
            "regarding": {"kind": "Integration", "name": "x", "namespace": "ns", "uid": "u"},
            "note": "Workers available", "reason": "Ready", "type": "Normal", "action": "Reconcile",
            "reportingController": "switchboard.dev/operator", "reportingInstance": "op-1",
            "eventTime": "2026-11-29T10:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-11-29T10:01:00.000000Z"},
        });
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["message"], "Workers available");
        assert_eq!(core["reportingComponent"], "switchboard.dev/operator");
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("regarding").is_none() && core.get("note").is_none());
        assert_eq!(to_events_v1(&core), v1);
    }
}
