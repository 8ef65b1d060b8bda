//! CronJob → Jobs on schedule.
//!
//! On every tick the controller finds the most recent schedule time after the last one it
//! acted on (or the CronJob's creation), within `startingDeadlineSeconds`, in the CronJob's
//! `timeZone` (UTC when unset), and creates the Job `<name>-<minutes since the epoch>` with
//! the `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation, honouring `suspend` and
//! `concurrencyPolicy` (`Allow`, `Forbid`: skip while one runs, `Replace`: delete the running
//! ones first). Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`
//! are deleted, oldest first. Status: `active` (references to running Jobs),
//! `lastScheduleTime`, `lastSuccessfulTime`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Ctx, condition_status, controller_ref, create, delete, deleting, event, get, int, meta, owned,
    resource, write_status,
};
use crate::clock::{format_time, parse_time};
use crate::error::ApiError;

/// The annotation carrying a Job's scheduled time.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed schedules than this are not counted one by one.
const MAX_MISSED: usize = 100;

/// Syncs one CronJob.
pub fn reconcile(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Duration>, ApiError> {
    let core = &ctx.core;
    let cj_res = resource(core, "batch", "cronjobs");
    let job_res = resource(core, "batch", "jobs");
    let Some(cj) = get(core, &cj_res, ns, name) else { return Ok(None) };
    if deleting(&cj) {
        return Ok(None);
    }
    let tick = Some(ctx.settings.tick);
    let uid = meta(&cj, "uid").to_string();
    let now = ctx.clock.now();
    let mut jobs = owned(core, &job_res, ns, &uid);
    let mut status = cj.get("status").cloned().unwrap_or(json!({}));

    // History: finished Jobs beyond the limits go, oldest first.
    let keep_ok = int(&cj, "/spec/successfulJobsHistoryLimit").unwrap_or(3).max(0) as usize;
    let keep_failed = int(&cj, "/spec/failedJobsHistoryLimit").unwrap_or(1).max(0) as usize;
    for (which, keep) in [("Complete", keep_ok), ("Failed", keep_failed)] {
        let mut done: Vec<&Value> =
            jobs.iter().filter(|j| condition_status(j, which) == Some("True")).collect();
        done.sort_by_key(|j| scheduled_time(j));
        if done.len() > keep {
            for j in &done[..done.len() - keep] {
                delete(core, &job_res, ns, meta(j, "name"))?;
            }
        }
    }
    jobs = owned(core, &job_res, ns, &uid);
    let last_success = jobs
        .iter()
        .filter(|j| condition_status(j, "Complete") == Some("True"))
        .filter_map(|j| {
            j.pointer("/status/completionTime").and_then(Value::as_str).and_then(parse_time)
        })
        .chain(status.get("lastSuccessfulTime").and_then(Value::as_str).and_then(parse_time))
        .max();
    let mut active: Vec<Value> =
        jobs.iter().filter(|j| !finished(j) && !deleting(j)).cloned().collect();

    let suspended = cj.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
    let schedule = cj.pointer("/spec/schedule").and_then(Value::as_str).unwrap_or("");
    let zone = cj.pointer("/spec/timeZone").and_then(Value::as_str);
    if !suspended {
        match due_time(&cj, &status, schedule, zone, now) {
            Err(message) => {
                tracing::debug!(namespace = ns, name, %message, "cronjob schedule not usable");
                if status.get("lastScheduleTime").is_none() {
                    event(ctx, &cj, "Warning", "InvalidSchedule", &message);
                }
            }
            Ok(None) => {}
            Ok(Some(due)) => {
                let policy = cj
                    .pointer("/spec/concurrencyPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("Allow");
                let skip = policy == "Forbid" && !active.is_empty();
                if !skip {
                    if policy == "Replace" {
                        for j in &active {
                            delete(core, &job_res, ns, meta(j, "name"))?;
                            event(
                                ctx,
                                &cj,
                                "Normal",
                                "SuccessfulDelete",
                                &format!("Deleted job {}", meta(j, "name")),
                            );
                        }
                        active.clear();
                    }
                    let job_name = format!("{name}-{}", due.timestamp() / 60);
                    match create(core, &job_res, ns, job_from(&cj, &job_name, due)) {
                        Ok(job) => {
                            event(
                                ctx,
                                &cj,
                                "Normal",
                                "SuccessfulCreate",
                                &format!("Created job {job_name}"),
                            );
                            active.push(job);
                        }
                        Err(ApiError::AlreadyExists(_)) => {}
                        Err(e) => return Err(e),
                    }
                    status["lastScheduleTime"] = json!(format_time(due));
                }
            }
        }
    }

    active.sort_by(|a, b| meta(a, "name").cmp(meta(b, "name")));
    let refs: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "name": meta(j, "name"), "namespace": ns,
                "uid": meta(j, "uid"), "resourceVersion": meta(j, "resourceVersion"),
            })
        })
        .collect();
    let map = status.as_object_mut().expect("status is an object");
    if refs.is_empty() {
        map.remove("active");
    } else {
        map.insert("active".into(), json!(refs));
    }
    if let Some(t) = last_success {
        map.insert("lastSuccessfulTime".into(), json!(format_time(t)));
    }
    write_status(core, &cj_res, &cj, status)?;
    Ok(tick)
}

fn finished(job: &Value) -> bool {
    condition_status(job, "Complete") == Some("True")
        || condition_status(job, "Failed") == Some("True")
}

fn scheduled_time(job: &Value) -> String {
    job.pointer(&format!("/metadata/annotations/{}", SCHEDULED_TIMESTAMP.replace('/', "~1")))
        .and_then(Value::as_str)
        .unwrap_or_else(|| meta(job, "creationTimestamp"))
        .to_string()
}

/// The most recent schedule time not yet acted on, if one is due now.
fn due_time(
    cj: &Value,
    status: &Value,
    schedule: &str,
    zone: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let cron = parse_schedule(schedule)?;
    let tz: chrono_tz::Tz = match zone {
        Some(z) => z.parse().map_err(|_| format!("unknown time zone {z:?}"))?,
        None => chrono_tz::UTC,
    };
    let mut earliest = status
        .get("lastScheduleTime")
        .and_then(Value::as_str)
        .or_else(|| cj.pointer("/metadata/creationTimestamp").and_then(Value::as_str))
        .and_then(parse_time)
        .unwrap_or(now);
    if let Some(deadline) = int(cj, "/spec/startingDeadlineSeconds") {
        earliest = earliest.max(now - chrono::Duration::seconds(deadline));
    }
    let mut latest = None;
    let mut cursor = earliest.with_timezone(&tz);
    for _ in 0..MAX_MISSED {
        let next = cron
            .find_next_occurrence(&cursor, false)
            .map_err(|e| format!("schedule {schedule:?}: {e}"))?;
        if next.with_timezone(&Utc) > now {
            break;
        }
        latest = Some(next.with_timezone(&Utc));
        cursor = next;
    }
    if latest.is_some() {
        // More than MAX_MISSED times were missed: jump to the most recent one.
        let prev = cron
            .find_previous_occurrence(&now.with_timezone(&tz), true)
            .map_err(|e| format!("schedule {schedule:?}: {e}"))?
            .with_timezone(&Utc);
        if prev > earliest {
            latest = Some(prev);
        }
    }
    Ok(latest)
}

/// Parses a schedule as a CronJob does: five fields or a macro (`@hourly`, ...), and an
/// optional `TZ=`/`CRON_TZ=` prefix is refused as Kubernetes refuses it.
fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    if schedule.contains("TZ=") {
        return Err("CRON_TZ or TZ used in schedule is not supported, use spec.timeZone".into());
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule.trim())
        .map_err(|e| format!("unparseable schedule {schedule:?}: {e}"))
}

fn job_from(cj: &Value, name: &str, due: DateTime<Utc>) -> Value {
    let mut metadata = json!({
        "name": name,
        "labels": cj.pointer("/spec/jobTemplate/metadata/labels").cloned().unwrap_or(json!({})),
        "annotations": cj.pointer("/spec/jobTemplate/metadata/annotations").cloned().unwrap_or(json!({})),
        "ownerReferences": [controller_ref(cj)],
    });
    metadata["annotations"][SCHEDULED_TIMESTAMP] = json!(format_time(due));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": cj.pointer("/spec/jobTemplate/spec").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn the_most_recent_missed_time_is_due() {
        let cj = json!({"metadata": {"creationTimestamp": "2026-11-29T10:00:30Z"}, "spec": {}});
        let status = json!({});
        assert_eq!(
            due_time(&cj, &status, "*/1 * * * *", None, t("2026-11-29T10:00:59Z")).unwrap(),
            None
        );
        assert_eq!(
            due_time(&cj, &status, "*/1 * * * *", None, t("2026-11-29T10:03:10Z")).unwrap(),
            Some(t("2026-11-29T10:03:00Z"))
        );
        let acted = json!({"lastScheduleTime": "2026-11-29T10:03:00Z"});
        assert_eq!(
            due_time(&cj, &acted, "*/1 * * * *", None, t("2026-11-29T10:03:30Z")).unwrap(),
            None
        );
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let cj = json!({"metadata": {"creationTimestamp": "2026-11-29T00:00:00Z"}, "spec": {}});
        // 02:00 in Berlin is 01:00 UTC in winter.
        let due = due_time(
            &cj,
            &json!({}),
            "0 2 * * *",
            Some("Europe/Berlin"),
            t("2026-11-29T01:30:00Z"),
        );
        assert_eq!(due.unwrap(), Some(t("2026-11-29T01:00:00Z")));
    }

    #[test]
    fn starting_deadline_skips_old_times() {
        let cj = json!({"metadata": {"creationTimestamp": "2026-11-29T00:00:00Z"},
            "spec": {"startingDeadlineSeconds": 60}});
        assert_eq!(
            due_time(&cj, &json!({}), "0 1 * * *", None, t("2026-11-29T01:05:00Z")).unwrap(),
            None
        );
        assert_eq!(
            due_time(&cj, &json!({}), "0 1 * * *", None, t("2026-11-29T01:00:30Z")).unwrap(),
            Some(t("2026-11-29T01:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_and_zones_are_errors() {
        let cj = json!({"metadata": {"creationTimestamp": "2026-11-29T00:00:00Z"}, "spec": {}});
        assert!(due_time(&cj, &json!({}), "not cron", None, Utc::now()).is_err());
        assert!(due_time(&cj, &json!({}), "* * * * *", Some("Mars/Base"), Utc::now()).is_err());
        assert!(due_time(&cj, &json!({}), "TZ=UTC * * * * *", None, Utc::now()).is_err());
    }
}
