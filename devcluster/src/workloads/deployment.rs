//! Deployment → ReplicaSets: one ReplicaSet per pod template (named by the template's hash,
//! `pod-template-hash`), rolled with the `RollingUpdate` (maxSurge / maxUnavailable) or
//! `Recreate` strategy, old ones kept up to `revisionHistoryLimit`.
//!
//! ```text
//!  template ──hash──▶ new ReplicaSet (revision n+1)   old ReplicaSets (oldest first)
//!  RollingUpdate: scale new up to replicas+maxSurge-total ─▶ scale old down while
//!                 available stays ≥ replicas-maxUnavailable (unhealthy old pods first)
//!  Recreate:      old to 0 ─▶ wait for their pods to end ─▶ new to replicas
//!  status: replicas, updated/ready/available/unavailableReplicas, observedGeneration,
//!          conditions Available and Progressing (with the progress deadline)
//! ```

use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::{
    Ctx, condition_status, controller_ref, create, delete, deleting, event, get, int, meta, owned,
    resource, set_condition, update, write_status,
};
use crate::error::ApiError;

/// The label that ties Pods and ReplicaSets to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// Syncs one Deployment.
pub fn reconcile(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Duration>, ApiError> {
    let core = &ctx.core;
    let d_res = resource(core, "apps", "deployments");
    let rs_res = resource(core, "apps", "replicasets");
    let Some(d) = get(core, &d_res, ns, name) else { return Ok(None) };
    if deleting(&d) {
        return Ok(None);
    }
    let uid = meta(&d, "uid").to_string();
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let replicas = int(&d, "/spec/replicas").unwrap_or(1).max(0);
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
    let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
    let (surge, unavailable) = if recreate { (0, 0) } else { rolling_parameters(&d, replicas) };
    let collisions = int(&d, "/status/collisionCount").unwrap_or(0);

    let all = owned(core, &rs_res, ns, &uid);
    let max_old_revision =
        all.iter().filter(|rs| !same_template(rs, &template)).map(revision).max().unwrap_or(0);
    let mut created_new = false;
    let new_rs = match all.iter().find(|rs| same_template(rs, &template)).cloned() {
        Some(mut rs) => {
            if revision(&rs) <= max_old_revision {
                // Rolled back to an older template: it becomes the newest revision.
                rs["metadata"]["annotations"][REVISION] = json!((max_old_revision + 1).to_string());
                rs = update(core, &rs_res, ns, rs)?;
            }
            Some(rs)
        }
        None if paused => None,
        None => {
            let hash = template_hash(&template, collisions);
            let rs_name = format!("{name}-{hash}");
            let body = new_replica_set(&d, &template, &rs_name, &hash, max_old_revision + 1, surge);
            match create(core, &rs_res, ns, body) {
                Ok(rs) => {
                    created_new = true;
                    Some(rs)
                }
                Err(ApiError::AlreadyExists(_)) => {
                    // Another object holds the name: count a collision and hash again.
                    let mut status = d.get("status").cloned().unwrap_or(json!({}));
                    status["collisionCount"] = json!(collisions + 1);
                    write_status(core, &d_res, &d, status)?;
                    return Ok(Some(Duration::ZERO));
                }
                Err(e) => return Err(e),
            }
        }
    };
    let new_uid = new_rs.as_ref().map(|rs| meta(rs, "uid").to_string()).unwrap_or_default();
    let mut old: Vec<Value> = all.iter().filter(|rs| meta(rs, "uid") != new_uid).cloned().collect();
    old.sort_by(|a, b| {
        meta(a, "creationTimestamp")
            .cmp(meta(b, "creationTimestamp"))
            .then(revision(a).cmp(&revision(b)))
    });

    if !paused && let Some(new_rs) = &new_rs {
        if recreate {
            let mut old_running = false;
            for rs in &old {
                if spec_replicas(rs) > 0 {
                    scale(ctx, &d, rs, 0)?;
                }
                if int(rs, "/status/replicas").unwrap_or(0) > 0 {
                    old_running = true;
                }
            }
            if !old_running && spec_replicas(new_rs) != replicas {
                scale(ctx, &d, new_rs, replicas)?;
            }
        } else {
            roll(ctx, &d, new_rs, &old, replicas, surge, unavailable)?;
        }
    }

    // Old ReplicaSets beyond the history limit.
    let limit = int(&d, "/spec/revisionHistoryLimit").unwrap_or(10).max(0) as usize;
    let all = owned(core, &rs_res, ns, &uid);
    let mut idle: Vec<&Value> = all
        .iter()
        .filter(|rs| meta(rs, "uid") != new_uid)
        .filter(|rs| spec_replicas(rs) == 0 && int(rs, "/status/replicas").unwrap_or(0) == 0)
        .collect();
    idle.sort_by_key(|rs| revision(rs));
    if idle.len() > limit {
        for rs in &idle[..idle.len() - limit] {
            delete(core, &rs_res, ns, meta(rs, "name"))?;
        }
    }

    // The Deployment's revision annotation follows its newest ReplicaSet.
    let d = match &new_rs {
        Some(rs) => {
            let rev = revision(rs).to_string();
            if d.pointer(&format!("/metadata/annotations/{}", REVISION.replace('/', "~1")))
                .and_then(Value::as_str)
                != Some(rev.as_str())
            {
                let mut next = d.clone();
                if !next["metadata"]["annotations"].is_object() {
                    next["metadata"]["annotations"] = json!({});
                }
                next["metadata"]["annotations"][REVISION] = json!(rev);
                update(core, &d_res, ns, next)?
            } else {
                d
            }
        }
        None => d,
    };
    let all = owned(core, &rs_res, ns, &uid);
    let new_rs = all.iter().find(|rs| meta(rs, "uid") == new_uid);
    status(ctx, &d, &all, new_rs, replicas, unavailable, paused, created_new)
}

#[allow(clippy::too_many_arguments)]
fn status(
    ctx: &Ctx,
    d: &Value,
    all: &[Value],
    new_rs: Option<&Value>,
    replicas: i64,
    max_unavailable: i64,
    paused: bool,
    created_new: bool,
) -> Result<Option<Duration>, ApiError> {
    let sum = |p: &str| all.iter().map(|rs| int(rs, p).unwrap_or(0)).sum::<i64>();
    let actual = sum("/status/replicas");
    let spec_total: i64 = all.iter().map(spec_replicas).sum();
    let available = sum("/status/availableReplicas");
    let ready = sum("/status/readyReplicas");
    let updated = new_rs.map(|rs| int(rs, "/status/replicas").unwrap_or(0)).unwrap_or(0);
    let generation = int(d, "/metadata/generation").unwrap_or(1);
    let now = ctx.clock.timestamp();
    let previous = d.get("status").cloned().unwrap_or(json!({}));
    let mut conditions: Vec<Value> =
        previous.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();

    let (a_status, a_reason, a_message) = if available >= replicas - max_unavailable {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    set_condition(&mut conditions, "Available", a_status, a_reason, a_message, &now, true);

    let rs_name = new_rs.map(|rs| meta(rs, "name").to_string()).unwrap_or_default();
    let complete =
        updated == replicas && actual == replicas && available == replicas && new_rs.is_some();
    let progressed = updated > int(&previous, "/updatedReplicas").unwrap_or(0)
        || actual < int(&previous, "/replicas").unwrap_or(0)
        || ready > int(&previous, "/readyReplicas").unwrap_or(0)
        || available > int(&previous, "/availableReplicas").unwrap_or(0);
    let deadline = int(d, "/spec/progressDeadlineSeconds");
    let mut recheck = None;
    // (status, reason, message, whether it counts as progress now)
    let progressing: Option<(&str, &str, String, bool)> = if paused {
        Some(("Unknown", "DeploymentPaused", "Deployment is paused".into(), false))
    } else if complete {
        let msg = format!("ReplicaSet {rs_name:?} has successfully progressed.");
        Some(("True", "NewReplicaSetAvailable", msg, false))
    } else if created_new {
        Some((
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set {rs_name:?}"),
            false,
        ))
    } else if progressed || condition_status(d, "Progressing").is_none() {
        Some(("True", "ReplicaSetUpdated", format!("ReplicaSet {rs_name:?} is progressing."), true))
    } else if let Some(deadline) = deadline {
        // No progress: fail the rollout once the deadline has passed since the last progress.
        let since = conditions
            .iter()
            .find(|c| c["type"] == "Progressing")
            .and_then(|c| c.get("lastUpdateTime"))
            .and_then(Value::as_str)
            .and_then(crate::clock::parse_time);
        match since.map(|t| t + chrono::Duration::seconds(deadline)) {
            Some(at) if at <= ctx.clock.now() => {
                let msg = format!("ReplicaSet {rs_name:?} has timed out progressing.");
                Some(("False", "ProgressDeadlineExceeded", msg, false))
            }
            Some(at) => {
                recheck = (at - ctx.clock.now()).to_std().ok();
                None
            }
            None => None,
        }
    } else {
        None
    };
    if let Some((status, reason, message, touch)) = progressing {
        set_condition(&mut conditions, "Progressing", status, reason, &message, &now, true);
        if touch && let Some(c) = conditions.iter_mut().find(|c| c["type"] == "Progressing") {
            c["lastUpdateTime"] = json!(now);
        }
    }
    // Available first, then Progressing, as the controller writes them.
    conditions.sort_by_key(|c| match c["type"].as_str() {
        Some("Available") => 0,
        Some("Progressing") => 1,
        _ => 2,
    });
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": actual,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (spec_total - available).max(0),
        "conditions": conditions,
    });
    if let Some(c) = previous.get("collisionCount") {
        status["collisionCount"] = c.clone();
    }
    let status = omit_zero_counts(status);
    let d_res = resource(&ctx.core, "apps", "deployments");
    write_status(&ctx.core, &d_res, d, status)?;
    Ok(recheck)
}

fn omit_zero_counts(mut status: Value) -> Value {
    if let Some(m) = status.as_object_mut() {
        m.retain(|_, v| v.as_i64() != Some(0));
    }
    status
}

/// One step of a rolling update: scale the new ReplicaSet up within the surge, then the old
/// ones down within the unavailability budget.
fn roll(
    ctx: &Ctx,
    d: &Value,
    new_rs: &Value,
    old: &[Value],
    replicas: i64,
    surge: i64,
    max_unavailable: i64,
) -> Result<(), ApiError> {
    let new_spec = spec_replicas(new_rs);
    let old_spec: i64 = old.iter().map(spec_replicas).sum();
    let target = if new_spec > replicas || old_spec == 0 {
        replicas
    } else {
        let max_total = replicas + surge;
        let total = old_spec + new_spec;
        if total >= max_total { new_spec } else { (new_spec + max_total - total).min(replicas) }
    };
    if target != new_spec {
        scale(ctx, d, new_rs, target)?;
    }
    if old_spec == 0 {
        return Ok(());
    }
    let min_available = replicas - max_unavailable;
    let new_unavailable = (target - int(new_rs, "/status/availableReplicas").unwrap_or(0)).max(0);
    let mut budget = old_spec + target - min_available - new_unavailable;
    let mut specs: Vec<i64> = old.iter().map(spec_replicas).collect();
    // Old pods that are not available go first: removing them costs no availability.
    for (i, rs) in old.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = specs[i] - int(rs, "/status/availableReplicas").unwrap_or(0);
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget).min(specs[i]);
        specs[i] -= down;
        budget -= down;
    }
    // Then available old pods, as far as availability allows.
    let available: i64 =
        old.iter().map(|rs| int(rs, "/status/availableReplicas").unwrap_or(0)).sum::<i64>()
            + int(new_rs, "/status/availableReplicas").unwrap_or(0);
    let mut allowed = (available - min_available).max(0);
    for spec in specs.iter_mut() {
        if allowed <= 0 {
            break;
        }
        let down = (*spec).min(allowed);
        *spec -= down;
        allowed -= down;
    }
    for (rs, spec) in old.iter().zip(specs) {
        if spec != spec_replicas(rs) {
            scale(ctx, d, rs, spec)?;
        }
    }
    Ok(())
}

fn scale(ctx: &Ctx, d: &Value, rs: &Value, to: i64) -> Result<(), ApiError> {
    let from = spec_replicas(rs);
    let mut next = rs.clone();
    next["spec"]["replicas"] = json!(to);
    let ns = meta(rs, "namespace").to_string();
    let rs_res = resource(&ctx.core, "apps", "replicasets");
    update(&ctx.core, &rs_res, &ns, next)?;
    let verb = if to > from { "up" } else { "down" };
    event(
        ctx,
        d,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled {verb} replica set {} from {from} to {to}", meta(rs, "name")),
    );
    Ok(())
}

fn new_replica_set(
    d: &Value,
    template: &Value,
    name: &str,
    hash: &str,
    revision: i64,
    surge: i64,
) -> Value {
    let mut template = template.clone();
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
    let replicas = int(d, "/spec/replicas").unwrap_or(1);
    let mut spec = json!({"replicas": 0, "selector": selector, "template": template.clone()});
    if let Some(m) = d.pointer("/spec/minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "labels": template["metadata"]["labels"],
            "annotations": {
                REVISION: revision.to_string(),
                "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                "deployment.kubernetes.io/max-replicas": (replicas + surge).to_string(),
            },
            "ownerReferences": [controller_ref(d)],
        },
        "spec": spec,
    })
}

fn spec_replicas(rs: &Value) -> i64 {
    int(rs, "/spec/replicas").unwrap_or(1)
}

fn revision(rs: &Value) -> i64 {
    rs.pointer(&format!("/metadata/annotations/{}", REVISION.replace('/', "~1")))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether a ReplicaSet runs `template` (its `pod-template-hash` label aside).
fn same_template(rs: &Value, template: &Value) -> bool {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut want = template.clone();
    // An empty label map and none are the same template.
    for v in [&mut t, &mut want] {
        if v.pointer("/metadata/labels").and_then(Value::as_object).is_some_and(|m| m.is_empty())
            && let Some(m) = v["metadata"].as_object_mut()
        {
            m.remove("labels");
        }
    }
    t == want
}

/// The `pod-template-hash` of a template: a hash of its content (and the collision count),
/// spelled with the alphabet Kubernetes uses for generated names.
pub fn template_hash(template: &Value, collisions: i64) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = sha2::Sha256::new();
    hasher.update(serde_json::to_vec(template).unwrap_or_default());
    if collisions > 0 {
        hasher.update(collisions.to_le_bytes());
    }
    let digest = hasher.finalize();
    let n = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n.to_string().bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// maxSurge and maxUnavailable as Pod counts (surge rounds up, unavailability down; both
/// zero means one may be unavailable).
pub fn rolling_parameters(d: &Value, replicas: i64) -> (i64, i64) {
    let resolve = |v: Option<&Value>, up: bool| -> i64 {
        match v {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => {
                let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
                if up { (pct * replicas + 99) / 100 } else { pct * replicas / 100 }
            }
            _ => {
                if up {
                    (25 * replicas + 99) / 100
                } else {
                    25 * replicas / 100
                }
            }
        }
    };
    let surge = resolve(d.pointer("/spec/strategy/rollingUpdate/maxSurge"), true);
    let unavailable = resolve(d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"), false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_parameters_round_like_kubernetes() {
        let d = |surge: Value, unavailable: Value| json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}});
        assert_eq!(rolling_parameters(&d(json!("25%"), json!("25%")), 1), (1, 0));
        assert_eq!(rolling_parameters(&d(json!("25%"), json!("25%")), 10), (3, 2));
        assert_eq!(rolling_parameters(&d(json!(0), json!(0)), 3), (0, 1));
        assert_eq!(rolling_parameters(&d(json!(1), json!(0)), 2), (1, 0));
    }

    #[test]
    fn template_hash_changes_with_the_template_and_collisions() {
        let a = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}});
        assert_eq!(template_hash(&a, 0), template_hash(&a, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(template_hash(&a, 0).bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
    }
}
