//! ReplicaSet → Pods: keep `spec.replicas` active Pods from the template, and report
//! replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and observedGeneration.

use std::time::Duration;

use serde_json::{Value, json};

use super::pods::{self, Availability, PodName};
use super::{Ctx, create, delete, deleting, event, get, int, meta, owned, resource, write_status};
use crate::error::ApiError;

/// The most Pods created or deleted in one sync.
const BURST: usize = 500;

/// Syncs one ReplicaSet.
pub fn reconcile(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Duration>, ApiError> {
    let core = &ctx.core;
    let rs_res = resource(core, "apps", "replicasets");
    let pod_res = resource(core, "", "pods");
    let Some(rs) = get(core, &rs_res, ns, name) else { return Ok(None) };
    let uid = meta(&rs, "uid").to_string();
    let want = int(&rs, "/spec/replicas").unwrap_or(1).max(0) as usize;
    let mut owned_pods = owned(core, &pod_res, ns, &uid);
    if !deleting(&rs) {
        let active: Vec<&Value> = owned_pods.iter().filter(|p| pods::is_active(p)).collect();
        if active.len() < want {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let prefix = format!("{name}-");
            for _ in 0..(want - active.len()).min(BURST) {
                let pod = pods::from_template(&template, &rs, PodName::Generate(&prefix), &[]);
                let created = create(core, &pod_res, ns, pod)?;
                event(
                    ctx,
                    &rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", meta(&created, "name")),
                );
            }
        } else if active.len() > want {
            let mut victims: Vec<Value> = active.into_iter().cloned().collect();
            victims.sort_by(pods::deletion_rank);
            for pod in victims.iter().take((victims.len() - want).min(BURST)) {
                let pod_name = meta(pod, "name");
                delete(core, &pod_res, ns, pod_name)?;
                event(ctx, &rs, "Normal", "SuccessfulDelete", &format!("Deleted pod: {pod_name}"));
            }
        }
        owned_pods = owned(core, &pod_res, ns, &uid);
    }

    // Status, from the Pods as they are now.
    let now = ctx.clock.now();
    let min_ready = int(&rs, "/spec/minReadySeconds").unwrap_or(0);
    let template_labels =
        rs.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    let mut replicas = 0;
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut recheck: Option<Duration> = None;
    for pod in owned_pods.iter().filter(|p| pods::is_active(p)) {
        replicas += 1;
        let labels = pod.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
        if template_labels
            .as_object()
            .is_none_or(|t| t.iter().all(|(k, v)| labels.get(k) == Some(v)))
        {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
        }
        match pods::availability(pod, min_ready, now) {
            Availability::Yes => available += 1,
            Availability::After(d) => recheck = Some(recheck.map_or(d, |r| r.min(d))),
            Availability::No => {}
        }
    }
    let mut status = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": int(&rs, "/metadata/generation").unwrap_or(1),
    });
    if let Some(c) =
        rs.pointer("/status/conditions").filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    {
        status["conditions"] = c.clone();
    }
    // Kubernetes leaves zero counts out (`omitempty`).
    let status = omit_zero(status);
    write_status(core, &rs_res, &rs, status)?;
    Ok(recheck.map(|d| d + Duration::from_millis(10)))
}

/// Drops integer fields that are zero (except `replicas`), as Kubernetes serializes them.
pub(crate) fn omit_zero(mut status: Value) -> Value {
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| v.as_i64() != Some(0) || k == "replicas");
    }
    status
}
