//! Schedule: render → apply the CronJob (and the ConfigMap of a method call) → status with the
//! next run, the last run and its result from the Jobs the CronJob started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

use super::apply::{apply, remove_owned};
use super::conditions::Desired;
use super::index::schedule_references;
use super::object::Unchecked;
use super::status::write_status;
use super::{Context, Error};
use crate::api::{Schedule, ScheduleStatus, condition};
use crate::render::{self, LABEL_SCHEDULE, RenderErrorReason, child_name, label_value};

const KIND: &str = "Schedule";

/// Reconcile one Schedule.
pub async fn reconcile(
    object: Arc<Unchecked<Schedule>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics.observe(
        KIND,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok() {
        ctx.succeeded(&super::object_key(object.as_ref()));
    }
    result
}

/// The result of the newest finished Job: (`Succeeded` or `Failed`, message).
pub fn last_result(jobs: &[Job]) -> Option<(String, Option<String>)> {
    let finished = |job: &&Job| {
        job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
    };
    let newest = jobs
        .iter()
        .filter(finished)
        .max_by_key(|job| job.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let conditions = newest.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True");
    Some(match failed {
        Some(c) => (
            "Failed".into(),
            Some(c.message.clone().unwrap_or_else(|| c.reason.clone().unwrap_or_default())),
        ),
        None => ("Succeeded".into(), None),
    })
}

async fn reconcile_inner(object: &Unchecked<Schedule>, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let schedule = match object.typed() {
        Ok(schedule) => schedule,
        Err(text) => {
            let status = Desired::no(
                condition::READY,
                "InvalidSpec",
                format!("the spec cannot be read: {text}"),
            );
            write_status::<_, ScheduleStatus>(ctx, object, vec![status], |_| {}).await?;
            return Err(Error::InvalidSpec(text));
        }
    };
    let references = schedule_references(&schedule);
    let mut expanded = references.clone();
    for r in references.iter().filter(|r| r.kind == "Integration") {
        if let Some(integration) = ctx.stores.integration(&namespace, &r.name) {
            expanded.extend(super::index::integration_references(&integration));
        }
    }
    let mut refs = super::integration::resolve(ctx, &namespace, &expanded);
    for r in references.iter().filter(|r| r.kind == "Integration") {
        if let Some(integration) = ctx.stores.integration(&namespace, &r.name) {
            refs.integrations.insert(r.name.clone(), integration);
        }
    }
    let name = schedule.name_any();
    let children = match render::render_schedule(&schedule, &refs, &ctx.settings) {
        Ok(children) => children,
        Err(errors) => {
            let reason = if errors.0.iter().any(|e| e.reason == RenderErrorReason::InvalidSchedule)
            {
                "InvalidSchedule"
            } else {
                errors.0[0].reason.as_str()
            };
            let ready = Desired::no(condition::READY, reason, errors.to_string());
            write_status(ctx, object, vec![ready], |status: &mut ScheduleStatus| {
                status.next_schedule_time = None
            })
            .await?;
            return Ok(Action::await_change());
        }
    };
    let config_map_name = child_name(&name, "schedule", 63);
    match &children.config_map {
        Some(config_map) => {
            apply(ctx, config_map).await?;
        }
        None => {
            remove_owned::<ConfigMap>(
                ctx,
                &namespace,
                &config_map_name,
                &schedule.uid().unwrap_or_default(),
            )
            .await?;
        }
    }
    let cron_job: CronJob = apply(ctx, &children.cron_job).await?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{LABEL_SCHEDULE}={}", label_value(&name));
    let jobs = jobs.list(&ListParams::default().labels(&selector)).await?.items;
    let result = last_result(&jobs);
    let cron_status = cron_job.status.unwrap_or_default();

    let now = chrono::Utc::now();
    let next = if schedule.spec.suspend { None } else { schedule.spec.next_run(now).ok() };
    let ready = if schedule.spec.suspend {
        Desired::yes(
            condition::READY,
            "Suspended",
            "the schedule is suspended; no run starts until suspend is false",
        )
    } else {
        Desired::yes(
            condition::READY,
            "Scheduled",
            match next {
                Some(next) => format!("next run at {}", next.to_rfc3339()),
                None => "no next run".into(),
            },
        )
    };
    let next_time =
        next.and_then(|n| k8s_openapi::jiff::Timestamp::from_second(n.timestamp()).ok()).map(Time);
    write_status(ctx, object, vec![ready], move |status: &mut ScheduleStatus| {
        status.next_schedule_time = next_time.clone();
        status.last_schedule_time = cron_status.last_schedule_time.clone();
        status.last_successful_time = cron_status.last_successful_time.clone();
        if let Some((outcome, message)) = &result {
            status.last_run_result = Some(outcome.clone());
            status.last_run_message = message.clone();
        }
    })
    .await?;
    // Come back just after the next run, to record it.
    let wait = next
        .map(|n| (n - now).to_std().unwrap_or_default() + Duration::from_secs(5))
        .unwrap_or(Duration::from_secs(600));
    Ok(Action::requeue(wait.min(Duration::from_secs(600))))
}
