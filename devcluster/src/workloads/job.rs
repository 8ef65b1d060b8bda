//! Job → Pods run to completion.
//!
//! Up to `parallelism` Pods run at a time until `completions` have succeeded. A failed Pod
//! (restartPolicy `Never`) is replaced after an exponential back-off (the settings' base,
//! doubling, at most 6 minutes); failures beyond `backoffLimit` (with `OnFailure`: container
//! restarts beyond it) fail the Job with `BackoffLimitExceeded`, and `activeDeadlineSeconds`
//! with `DeadlineExceeded`. On success the Job gets `SuccessCriteriaMet` and `Complete`; on
//! failure `FailureTarget` and `Failed` (as Kubernetes 1.31+ writes them), and its running
//! Pods are deleted. `suspend` deletes running Pods and sets `Suspended`.
//! `ttlSecondsAfterFinished` deletes the finished Job. Indexed completion mode, pod failure
//! policies and success policies are not implemented.

use std::time::Duration;

use serde_json::{Value, json};

use super::pods::{self, PodName};
use super::{
    Ctx, condition_status, create, delete, deleting, event, get, int, meta, owned, resource,
    set_condition, write_status,
};
use crate::clock::{format_time, parse_time};
use crate::error::ApiError;

/// The longest back-off between failed Pods.
const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// Syncs one Job.
pub fn reconcile(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Duration>, ApiError> {
    let core = &ctx.core;
    let job_res = resource(core, "batch", "jobs");
    let pod_res = resource(core, "", "pods");
    let Some(job) = get(core, &job_res, ns, name) else { return Ok(None) };
    if deleting(&job) {
        return Ok(None);
    }
    let uid = meta(&job, "uid").to_string();
    let now = ctx.clock.now();
    let now_s = format_time(now);
    let finished = condition_status(&job, "Complete") == Some("True")
        || condition_status(&job, "Failed") == Some("True");
    let mut status = job.get("status").cloned().unwrap_or(json!({}));
    let mut conditions: Vec<Value> =
        status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let all_pods = owned(core, &pod_res, ns, &uid);
    let active: Vec<&Value> = all_pods.iter().filter(|p| pods::is_active(p)).collect();
    let succeeded = all_pods.iter().filter(|p| pods::phase(p) == "Succeeded").count() as i64;
    let failed_pods: Vec<&Value> = all_pods.iter().filter(|p| pods::phase(p) == "Failed").collect();
    let on_failure = job.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str)
        == Some("OnFailure");
    let restarts: i64 = if on_failure { active.iter().map(|p| pods::restarts(p)).sum() } else { 0 };
    let failed = failed_pods.len() as i64;

    if finished {
        // Finished: delete leftovers, then the Job itself once its TTL has passed.
        for p in &active {
            delete(core, &pod_res, ns, meta(p, "name"))?;
        }
        let counts = counts(&all_pods);
        merge_counts(&mut status, counts);
        write_status(core, &job_res, &job, status.clone())?;
        if let Some(ttl) = int(&job, "/spec/ttlSecondsAfterFinished") {
            let done = status
                .get("completionTime")
                .or_else(|| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == "Failed")
                        .and_then(|c| c.get("lastTransitionTime"))
                })
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(now);
            let at = done + chrono::Duration::seconds(ttl);
            if at <= now {
                delete(core, &job_res, ns, name)?;
                return Ok(None);
            }
            return Ok((at - now).to_std().ok());
        }
        return Ok(None);
    }

    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
    if suspended {
        for p in &active {
            delete(core, &pod_res, ns, meta(p, "name"))?;
        }
        set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &now_s,
            false,
        );
        status["conditions"] = json!(conditions);
        merge_counts(&mut status, counts(&all_pods));
        write_status(core, &job_res, &job, status)?;
        return Ok(None);
    }
    if condition_status(&job, "Suspended") == Some("True") {
        set_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            &now_s,
            false,
        );
        status["startTime"] = json!(now_s);
    }
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now_s);
    }
    let started = status["startTime"].as_str().and_then(parse_time).unwrap_or(now);

    let completions = int(&job, "/spec/completions");
    let parallelism = int(&job, "/spec/parallelism").unwrap_or(1).max(0);
    let backoff_limit = int(&job, "/spec/backoffLimit").unwrap_or(6);
    let deadline = int(&job, "/spec/activeDeadlineSeconds");

    let failure = if failed + restarts > backoff_limit {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if let Some(d) = deadline
        && started + chrono::Duration::seconds(d) <= now
    {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    let complete = match completions {
        Some(c) => succeeded >= c,
        // Without completions, the first success completes the Job once nothing runs.
        None => succeeded > 0 && active.is_empty(),
    };

    let mut recheck = None;
    if let Some((reason, message)) = failure {
        for p in &active {
            delete(core, &pod_res, ns, meta(p, "name"))?;
        }
        set_condition(&mut conditions, "FailureTarget", "True", reason, message, &now_s, false);
        set_condition(&mut conditions, "Failed", "True", reason, message, &now_s, false);
        event(ctx, &job, "Warning", reason, message);
    } else if complete {
        let message = "Reached expected number of succeeded pods";
        set_condition(
            &mut conditions,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            message,
            &now_s,
            false,
        );
        set_condition(
            &mut conditions,
            "Complete",
            "True",
            "CompletionsReached",
            message,
            &now_s,
            false,
        );
        status["completionTime"] = json!(now_s);
        event(ctx, &job, "Normal", "Completed", "Job completed");
    } else {
        let remaining = completions.map_or(parallelism, |c| (c - succeeded).max(0));
        let want = parallelism.min(remaining);
        let missing = want - active.len() as i64;
        if missing > 0 {
            let wait = if on_failure || failed == 0 {
                Duration::ZERO
            } else {
                let delay = backoff(ctx.settings.job_backoff, failed);
                let last_failure = failed_pods.iter().filter_map(|p| finished_at(p)).max();
                match last_failure {
                    Some(t) => {
                        let at = t + chrono::Duration::from_std(delay).unwrap_or_default();
                        if at > now {
                            (at - now).to_std().unwrap_or_default()
                        } else {
                            Duration::ZERO
                        }
                    }
                    None => Duration::ZERO,
                }
            };
            if wait.is_zero() {
                let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let prefix = format!("{name}-");
                for _ in 0..missing {
                    let pod = pods::from_template(&template, &job, PodName::Generate(&prefix), &[]);
                    let created = create(core, &pod_res, ns, pod)?;
                    event(
                        ctx,
                        &job,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", meta(&created, "name")),
                    );
                }
            } else {
                recheck = Some(wait);
            }
        }
        if let Some(d) = deadline {
            let at = started + chrono::Duration::seconds(d);
            let left = (at - now).to_std().unwrap_or_default();
            recheck = Some(recheck.map_or(left, |r: Duration| r.min(left)));
        }
    }

    let pods_now = owned(core, &pod_res, ns, &uid);
    status["conditions"] = json!(conditions);
    if conditions.is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.remove("conditions");
    }
    merge_counts(&mut status, counts(&pods_now));
    write_status(core, &job_res, &job, status)?;
    Ok(recheck.map(|d| d + Duration::from_millis(10)))
}

struct Counts {
    active: i64,
    ready: i64,
    succeeded: i64,
    failed: i64,
}

fn counts(all: &[Value]) -> Counts {
    let active: Vec<&Value> = all.iter().filter(|p| pods::is_active(p)).collect();
    Counts {
        active: active.len() as i64,
        ready: active.iter().filter(|p| pods::is_ready(p)).count() as i64,
        succeeded: all.iter().filter(|p| pods::phase(p) == "Succeeded").count() as i64,
        failed: all.iter().filter(|p| pods::phase(p) == "Failed").count() as i64,
    }
}

/// Writes the Pod counts the way Kubernetes does: zero `active`, `succeeded` and `failed`
/// are left out; `ready`, `terminating` and `uncountedTerminatedPods` are always present.
fn merge_counts(status: &mut Value, c: Counts) {
    for (k, v) in [("active", c.active), ("succeeded", c.succeeded), ("failed", c.failed)] {
        if v > 0 {
            status[k] = json!(v);
        } else if let Some(m) = status.as_object_mut() {
            m.remove(k);
        }
    }
    status["ready"] = json!(c.ready);
    status["terminating"] = json!(0);
    status["uncountedTerminatedPods"] = json!({});
}

/// When a failed Pod's last container ended.
fn finished_at(pod: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    pod.pointer("/status/containerStatuses")?
        .as_array()?
        .iter()
        .filter_map(|c| {
            c.pointer("/state/terminated/finishedAt").and_then(Value::as_str).and_then(parse_time)
        })
        .max()
}

/// The delay before the next Pod after `failures` failures.
pub fn backoff(base: Duration, failures: i64) -> Duration {
    let exp = (failures - 1).clamp(0, 16) as u32;
    base.saturating_mul(2u32.saturating_pow(exp)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 1), Duration::from_secs(10));
        assert_eq!(backoff(base, 2), Duration::from_secs(20));
        assert_eq!(backoff(base, 3), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }
}
