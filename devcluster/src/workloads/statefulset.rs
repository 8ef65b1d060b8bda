//! StatefulSet → ordinal Pods `<name>-0 … <name>-(n-1)` with stable names, a
//! PersistentVolumeClaim per claim template and ordinal, and rolling updates from the highest
//! ordinal down.
//!
//! With `podManagementPolicy: OrderedReady` (the default) Pod `i` is created only when Pods
//! `0..i` are Running and Ready, scaling down removes the highest ordinal first and one at a
//! time, and an update replaces one Pod at a time once all are Ready. `Parallel` creates and
//! deletes without waiting. Revisions are named `<name>-<template hash>` and carried on each
//! Pod as `controller-revision-hash` (no ControllerRevision objects are stored).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::pods::{self, Availability, PodName};
use super::{Ctx, create, delete, deleting, event, get, int, meta, owned, resource, write_status};
use crate::error::ApiError;

/// The Pod label naming its revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Syncs one StatefulSet.
pub fn reconcile(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Duration>, ApiError> {
    let core = &ctx.core;
    let sts_res = resource(core, "apps", "statefulsets");
    let pod_res = resource(core, "", "pods");
    let Some(sts) = get(core, &sts_res, ns, name) else { return Ok(None) };
    let uid = meta(&sts, "uid").to_string();
    let replicas = int(&sts, "/spec/replicas").unwrap_or(1).max(0);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let update_revision = format!("{name}-{}", super::deployment::template_hash(&template, 0));
    let current_revision = sts
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or(&update_revision)
        .to_string();
    let ordered =
        sts.pointer("/spec/podManagementPolicy").and_then(Value::as_str) != Some("Parallel");
    let on_delete =
        sts.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete");
    let partition = int(&sts, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);

    let by_ordinal = |list: Vec<Value>| -> BTreeMap<i64, Value> {
        list.into_iter().filter_map(|p| ordinal(meta(&p, "name"), name).map(|i| (i, p))).collect()
    };
    let mut pods = by_ordinal(owned(core, &pod_res, ns, &uid));

    if !deleting(&sts) {
        ensure_claims(ctx, &sts, replicas)?;
        let healthy = |p: &Value| pods::phase(p) == "Running" && pods::is_ready(p);
        // Create missing ordinals, and replace Pods that ended.
        for i in 0..replicas {
            match pods.get(&i) {
                None => {
                    let pod = ordinal_pod(&sts, &template, name, i, &update_revision);
                    let created = create(core, &pod_res, ns, pod)?;
                    event(
                        ctx,
                        &sts,
                        "Normal",
                        "SuccessfulCreate",
                        &format!(
                            "create Pod {} in StatefulSet {name} successful",
                            meta(&created, "name")
                        ),
                    );
                    if ordered {
                        break;
                    }
                }
                Some(p) if matches!(pods::phase(p), "Succeeded" | "Failed") && !deleting(p) => {
                    delete(core, &pod_res, ns, meta(p, "name"))?;
                    if ordered {
                        break;
                    }
                }
                Some(p) if ordered && !healthy(p) => break,
                Some(_) => {}
            }
        }
        // Remove ordinals beyond replicas, highest first.
        let extra: Vec<i64> = pods.keys().rev().copied().filter(|i| *i >= replicas).collect();
        let all_healthy = (0..replicas).all(|i| pods.get(&i).is_some_and(healthy));
        for i in extra {
            if ordered && !all_healthy {
                break;
            }
            if let Some(p) = pods.get(&i).filter(|p| !deleting(p)) {
                delete(core, &pod_res, ns, meta(p, "name"))?;
                event(
                    ctx,
                    &sts,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("delete Pod {} in StatefulSet {name} successful", meta(p, "name")),
                );
            }
            if ordered {
                break;
            }
        }
        // Rolling update: replace the highest outdated ordinal once every Pod is healthy.
        if !on_delete && all_healthy && pods.len() as i64 == replicas {
            let outdated = (partition..replicas).rev().find(|i| {
                pods.get(i)
                    .is_some_and(|p| label(p, REVISION_LABEL) != Some(update_revision.as_str()))
            });
            if let Some(i) = outdated
                && let Some(p) = pods.get(&i)
            {
                delete(core, &pod_res, ns, meta(p, "name"))?;
            }
        }
        pods = by_ordinal(owned(core, &pod_res, ns, &uid));
    }

    // Status.
    let now = ctx.clock.now();
    let min_ready = int(&sts, "/spec/minReadySeconds").unwrap_or(0);
    let live: Vec<&Value> = pods.values().filter(|p| !deleting(p)).collect();
    let count =
        |rev: &str| live.iter().filter(|p| label(p, REVISION_LABEL) == Some(rev)).count() as i64;
    let ready = live.iter().filter(|p| pods::is_ready(p)).count() as i64;
    let mut available = 0;
    let mut recheck: Option<Duration> = None;
    for p in &live {
        match pods::availability(p, min_ready, now) {
            Availability::Yes => available += 1,
            Availability::After(d) => recheck = Some(recheck.map_or(d, |r| r.min(d))),
            Availability::No => {}
        }
    }
    let updated = count(&update_revision);
    let (current_revision, current) = if updated == replicas && ready == replicas {
        (update_revision.clone(), updated)
    } else {
        let c = count(&current_revision);
        (current_revision, c)
    };
    let status = json!({
        "observedGeneration": int(&sts, "/metadata/generation").unwrap_or(1),
        "replicas": live.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    let status = super::replicaset::omit_zero(status);
    write_status(core, &sts_res, &sts, status)?;
    Ok(recheck.map(|d| d + Duration::from_millis(10)))
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// The ordinal of `<set>-<i>`.
fn ordinal(pod: &str, set: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn claim_name(claim: &str, set: &str, i: i64) -> String {
    format!("{claim}-{set}-{i}")
}

fn ordinal_pod(sts: &Value, template: &Value, set: &str, i: i64, revision: &str) -> Value {
    let pod_name = format!("{set}-{i}");
    let mut pod = pods::from_template(
        template,
        sts,
        PodName::Fixed(&pod_name),
        &[
            (REVISION_LABEL, revision.to_string()),
            ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
            ("apps.kubernetes.io/pod-index", i.to_string()),
        ],
    );
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(service) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
        pod["spec"]["subdomain"] = json!(service);
    }
    let claims = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !claims.is_empty() {
        if !pod["spec"]["volumes"].is_array() {
            pod["spec"]["volumes"] = json!([]);
        }
        let volumes = pod["spec"]["volumes"].as_array_mut().expect("volumes array");
        for claim in claims {
            let Some(cname) = claim.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(cname));
            volumes.push(json!({"name": cname, "persistentVolumeClaim": {"claimName": claim_name(cname, set, i)}}));
        }
    }
    pod
}

/// Creates the claims of ordinals `0..replicas` that do not exist yet; they are bound at
/// once (the pod runner keeps a directory per claim).
fn ensure_claims(ctx: &Ctx, sts: &Value, replicas: i64) -> Result<(), ApiError> {
    let core = &ctx.core;
    let pvc_res = resource(core, "", "persistentvolumeclaims");
    let set = meta(sts, "name");
    let ns = meta(sts, "namespace");
    let claims = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let selector_labels = sts.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}));
    for claim in claims {
        let Some(cname) = claim.pointer("/metadata/name").and_then(Value::as_str) else { continue };
        for i in 0..replicas {
            let name = claim_name(cname, set, i);
            if get(core, &pvc_res, ns, &name).is_some() {
                continue;
            }
            let mut labels = claim.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            if let (Some(l), Some(s)) = (labels.as_object_mut(), selector_labels.as_object()) {
                for (k, v) in s {
                    l.insert(k.clone(), v.clone());
                }
            }
            let body = json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "labels": labels},
                "spec": claim.get("spec").cloned().unwrap_or(json!({})),
            });
            let created = match create(core, &pvc_res, ns, body) {
                Ok(c) => c,
                Err(ApiError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut status = json!({"phase": "Bound"});
            if let Some(modes) = created.pointer("/spec/accessModes") {
                status["accessModes"] = modes.clone();
            }
            if let Some(size) = created.pointer("/spec/resources/requests/storage") {
                status["capacity"] = json!({"storage": size});
            }
            write_status(core, &pvc_res, &created, status)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_for_the_set() {
        assert_eq!(ordinal("web-0", "web"), Some(0));
        assert_eq!(ordinal("web-12", "web"), Some(12));
        assert_eq!(ordinal("web-api-0", "web"), None);
        assert_eq!(ordinal("webx-1", "web"), None);
    }
}
