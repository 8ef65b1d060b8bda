//! Schedule → CronJob (and, for outbound-method runs, the ConfigMap of the call).
//!
//! A Schedule of an Integration runs `switchboard worker run-once` with the integration's own
//! config, credentials and ServiceAccount, so a scheduled pull behaves exactly like the
//! integration's workers. A Schedule of an OutboundMessage method gets a small config of its own
//! whose `run` is the call, and runs without API access.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use switchboard_worker::config::{self as contract, DeliveryConfig, Subject, WorkerConfig};

use super::metadata::{
    FIELD_MANAGER, LABEL_OWNER_TEAM, LABEL_SCHEDULE, child_meta, child_name, label_value,
    selector_labels, sha256_hex,
};
use super::pod::{PodParts, empty_dir_data_volume, worker_pod_template};
use super::worker_config::{Resolver, WorkerMounts, owner_info, render_worker_config};
use super::workload::{config_map, worker_name};
use super::{
    Problems, References, RenderErrorReason, RenderErrors, RenderSettings, ScheduleChildren,
};
use crate::api::{Schedule, Workers};

/// What a Schedule's Job runs with.
struct JobInputs {
    config_map: String,
    config_hash: String,
    mounts: WorkerMounts,
    service_account: String,
    team: String,
    workers: Workers,
    own_config_map: Option<ConfigMap>,
    api_access: bool,
}

/// Render the children of a Schedule.
pub fn render_schedule(
    schedule: &Schedule,
    refs: &References,
    settings: &RenderSettings,
) -> Result<ScheduleChildren, RenderErrors> {
    let namespace = schedule.namespace().unwrap_or_else(|| "default".into());
    let mut problems = Problems::new("Schedule", &namespace, &schedule.name_any());
    if let Err(message) = schedule.spec.cron_schedule() {
        problems.add(RenderErrorReason::InvalidSchedule, "spec.cron", message);
    }
    if let Err(message) = schedule.spec.time_zone() {
        problems.add(RenderErrorReason::InvalidSchedule, "spec.timeZone", message);
    }
    let (problems, inputs) = if schedule.spec.run.integration.is_some() {
        integration_run(schedule, refs, settings, problems)
    } else {
        outbound_run(schedule, refs, problems)
    };
    let cron_job =
        inputs.map(|inputs| (render_cron_job(schedule, settings, &inputs), inputs.own_config_map));
    problems
        .finish_some(cron_job)
        .map(|(cron_job, config_map)| ScheduleChildren { config_map, cron_job })
}

/// Inputs of a scheduled pull of an Integration: its own config, mounts and identity.
fn integration_run(
    schedule: &Schedule,
    refs: &References,
    settings: &RenderSettings,
    mut problems: Problems,
) -> (Problems, Option<JobInputs>) {
    let reference =
        schedule.spec.run.integration.as_ref().map(|i| i.name.as_str()).unwrap_or_default();
    let Some(integration) = refs.integrations.get(reference) else {
        problems.add(
            RenderErrorReason::MissingReference,
            "spec.run.integration.name",
            format!("Integration {reference:?} not found in the namespace"),
        );
        return (problems, None);
    };
    if integration.spec.source.is_inbound() {
        problems.add(
            RenderErrorReason::InvalidValue,
            "spec.run.integration.name",
            format!(
                "Integration {reference:?} has a {} source, which receives events; only rest, database, file and imap sources run on a schedule",
                integration.spec.source.kind()
            ),
        );
    }
    match render_worker_config(integration, refs) {
        Ok((mut config, mounts)) => {
            // The same config as the integration's workers (the hash must match theirs).
            config.lineage = settings.lineage.clone();
            let worker = worker_name(reference);
            let team = schedule.spec.owner.as_ref().unwrap_or(&integration.spec.owner).team.clone();
            let inputs = JobInputs {
                config_map: worker.clone(),
                config_hash: sha256_hex(config.to_yaml().as_bytes()),
                mounts,
                service_account: worker,
                team,
                workers: integration.spec.workers.clone(),
                own_config_map: None,
                api_access: true,
            };
            (problems, Some(inputs))
        }
        Err(errors) => {
            for error in errors.0 {
                problems.add(error.reason, "spec.run.integration", error.to_string());
            }
            (problems, None)
        }
    }
}

/// Inputs of a scheduled OutboundMessage call: a config of its own, no API access.
fn outbound_run(
    schedule: &Schedule,
    refs: &References,
    problems: Problems,
) -> (Problems, Option<JobInputs>) {
    let spec = &schedule.spec;
    let name = schedule.name_any();
    let mut resolver = Resolver::new(refs, problems);
    let call = spec.run.outbound_message.as_ref().and_then(|call| {
        resolver.call(
            "spec.run.outboundMessage",
            &call.name,
            &call.method,
            spec.run.variables.as_ref(),
        )
    });
    if let Some(call) = &call {
        for variable in &call.method.variables {
            if variable.default.is_none() && !call.variables.contains_key(&variable.name) {
                resolver.problems.add(
                    RenderErrorReason::MissingVariable,
                    "spec.run.variables",
                    format!("method {:?} requires variable {:?}", call.method.name, variable.name),
                );
            }
        }
    }
    let (mut problems, credentials, mounts) = resolver.into_parts();
    let Some(owner) = &spec.owner else {
        problems.add(
            RenderErrorReason::MissingReference,
            "spec.owner",
            "a schedule that calls an outbound method needs an owner",
        );
        return (problems, None);
    };
    let Some(call) = call else { return (problems, None) };
    let config = WorkerConfig {
        api_version: contract::CONFIG_API_VERSION.into(),
        kind: contract::CONFIG_KIND.into(),
        subject: Subject {
            kind: "Schedule".into(),
            namespace: schedule.namespace().unwrap_or_else(|| "default".into()),
            name: name.clone(),
        },
        owner: owner_info(owner),
        data_flow: None,
        source: None,
        transform: Default::default(),
        targets: Vec::new(),
        // A scheduled call is delivered within its run; the Job's retries and status report
        // its failure, so there is no queue or dead-letter store behind it.
        delivery: DeliveryConfig {
            mode: "synchronous".into(),
            retry: call.endpoint.retry.clone(),
            dead_letter_retention_seconds: 0,
            dead_letter_max_entries: 0,
            concurrency: 1,
        },
        credentials,
        egress: Default::default(),
        health_checks: None,
        run: Some(call),
        server: Default::default(),
        lineage: None,
    };
    let config_map_name = child_name(&name, "schedule", 63);
    let (own, hash) = config_map(
        child_meta(schedule, config_map_name.clone(), schedule_labels(&name, &owner.team)),
        &config,
    );
    let inputs = JobInputs {
        config_map: config_map_name,
        config_hash: hash,
        mounts,
        service_account: "default".into(),
        team: owner.team.clone(),
        workers: Workers::default(),
        own_config_map: Some(own),
        api_access: false,
    };
    (problems, Some(inputs))
}

fn render_cron_job(schedule: &Schedule, settings: &RenderSettings, inputs: &JobInputs) -> CronJob {
    let spec = &schedule.spec;
    let name = schedule.name_any();
    let labels = schedule_labels(&name, &inputs.team);
    let template = worker_pod_template(PodParts {
        labels: labels.clone(),
        image: &settings.image,
        args: vec![
            "worker".into(),
            "run-once".into(),
            "--config".into(),
            format!("{}/{}", contract::CONFIG_MOUNT_PATH, contract::CONFIG_FILE_NAME),
        ],
        config_map: &inputs.config_map,
        config_hash: &inputs.config_hash,
        mounts: &inputs.mounts,
        credential_hashes: &BTreeMap::new(),
        service_account: &inputs.service_account,
        workers: &inputs.workers,
        inbound: false,
        server: false,
        api_access: inputs.api_access,
        data_volume: Some(empty_dir_data_volume(&inputs.workers.queue.size)),
        admin_token_secret: None,
    });
    CronJob {
        // Job names add 11 characters to the CronJob's name; keep the total within 63.
        metadata: child_meta(schedule, child_name(&name, "", 52), labels.clone()),
        spec: Some(CronJobSpec {
            schedule: spec.cron.trim().to_string(),
            time_zone: Some(spec.time_zone.clone()),
            suspend: Some(spec.suspend),
            concurrency_policy: Some(spec.concurrency_policy.as_str().into()),
            starting_deadline_seconds: Some(spec.starting_deadline_seconds),
            successful_jobs_history_limit: Some(spec.successful_runs_history_limit),
            failed_jobs_history_limit: Some(spec.failed_runs_history_limit),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(JobSpec {
                    backoff_limit: Some(spec.backoff_limit),
                    active_deadline_seconds: spec.active_deadline_seconds,
                    template,
                    ..JobSpec::default()
                }),
            },
        }),
        ..CronJob::default()
    }
}

fn schedule_labels(schedule: &str, team: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(schedule, "schedule");
    labels.insert("app.kubernetes.io/part-of".into(), "switchboard".into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels.insert(LABEL_SCHEDULE.into(), label_value(schedule));
    labels.insert(LABEL_OWNER_TEAM.into(), label_value(team));
    labels
}
