//! Runtime truth: each integration's worker `/status`, read by the operator and reflected in
//! the Integration's `Healthy` condition, counters and last failure.
//!
//! ```text
//!   every interval (leader only):
//!     Integrations (cache) × worker Pods (cache, by label) ──▶ GET http://<podIP>:9090/status
//!        (bounded concurrency, short timeout) ──▶ aggregate per Integration ──▶ Healthy
//!        ──▶ status write only when something a person acts on changed (condition, last
//!            failure, failure count, pending dead letters), counters at most once a minute
//! ```
//!
//! Why polling holds for 10,000 integrations: one small GET per worker pod per interval
//! (15 s by default: ~700 requests/s at 10,000 pods, each a few hundred bytes on a kept-alive
//! connection), no per-integration timers, and status writes only on change, so the API
//! server sees writes in proportion to failures rather than to traffic. The benchmark in
//! `bench/` measures the staleness of `Healthy` and the operator's cost at that size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use switchboard_worker::config::ADMIN_PORT;
use switchboard_worker::status::{STATUS_PATH, WorkerStatus};
use tracing::{debug, warn};

use super::Context;
use super::conditions::Desired;
use super::object::Unchecked;
use super::status::write_status;
use crate::alerting::{AlertRouter, AlertSettings};
use crate::api::{Counters, Failure, Integration, IntegrationStatus, RunReport, condition};
use crate::render::{LABEL_INTEGRATION, label_value};

/// How often and how hard the worker statuses are read.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    /// Time between two passes over every integration.
    pub interval: Duration,
    /// Timeout of one `/status` request.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Counters alone are written at most this often.
    pub counters_every: Duration,
    /// Port of the workers' admin endpoint (`/status`).
    pub port: u16,
    /// The operator's namespace (where the cluster default alert routes live).
    pub operator_namespace: String,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(3),
            concurrency: 64,
            counters_every: Duration::from_secs(60),
            port: ADMIN_PORT,
            operator_namespace: "switchboard-system".into(),
        }
    }
}

/// What the workers of one integration said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Documents of the workers that answered.
    pub statuses: Vec<WorkerStatus>,
    /// Worker pods that did not answer.
    pub unreachable: usize,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// The runtime part of an Integration's status, aggregated over its workers (pure).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The `Healthy` condition.
    pub healthy: Desired,
    /// Latest success over the workers.
    pub last_success_time: Option<Time>,
    /// Latest failure over the workers (or of the last run).
    pub last_failure: Option<Failure>,
    /// Most consecutive failures of any worker.
    pub consecutive_failures: Option<u64>,
    /// Counters summed over the workers.
    pub counters: Option<Counters>,
}

/// Aggregate what the workers said, with the last scheduled run, into the runtime status.
pub fn summarize(observed: &Observed, last_run: Option<&RunReport>, pull_source: bool) -> Summary {
    let statuses = &observed.statuses;
    let last_success = statuses.iter().filter_map(|s| s.last_success_time).max();
    let last_failure =
        statuses.iter().filter_map(|s| s.last_failure.clone()).max_by_key(|f| f.time);
    let consecutive = statuses.iter().map(|s| s.consecutive_failures).max();
    let counters = (!statuses.is_empty()).then(|| {
        let mut sum = Counters::default();
        for s in statuses {
            let c = &s.counters;
            sum.received += c.received;
            sum.rejected += c.rejected;
            sum.filtered += c.filtered;
            sum.delivered += c.delivered;
            sum.retried += c.retried;
            sum.dead_lettered += c.dead_lettered;
            sum.dead_letters_pending += c.dead_letters_pending;
        }
        sum
    });
    let mut failure = last_failure.as_ref().map(|f| Failure {
        time: time(f.time),
        reason: f.reason.clone(),
        message: f.message.clone(),
    });
    let failing_events = consecutive.unwrap_or(0) > 0
        && last_failure.as_ref().is_some_and(|f| last_success.is_none_or(|s| f.time > s));

    // A failed scheduled run newer than anything the workers did counts too.
    let run_failed = last_run.filter(|r| r.result == "Failed").filter(|r| {
        let finished = r.completion_time.as_ref().unwrap_or(&r.start_time).0.as_second();
        last_success.is_none_or(|s| finished > s.timestamp())
    });
    if let Some(run) = run_failed {
        let at = run.completion_time.clone().unwrap_or_else(|| run.start_time.clone());
        let newer = failure.as_ref().is_none_or(|f| at.0 > f.time.0);
        if newer {
            let why = run
                .rejections
                .first()
                .map(|r| format!(": row {}: {}", r.row, r.reason))
                .unwrap_or_default();
            failure = Some(Failure {
                time: at,
                reason: "RunFailed".into(),
                message: format!(
                    "the last run failed ({} read, {} rejected){why}",
                    run.read, run.rejected
                ),
            });
        }
    }

    let not_ready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.not_ready_reason.clone().unwrap_or_else(|| "not ready".into()))
        .collect();
    let healthy = if let Some(reason) = not_ready.first() {
        Desired::no(
            condition::HEALTHY,
            "WorkerNotReady",
            format!("{} of {} worker(s) not ready: {reason}", not_ready.len(), statuses.len()),
        )
    } else if failing_events || run_failed.is_some() {
        let f = failure.clone().expect("a failure is known when failing");
        let count = consecutive
            .filter(|c| *c > 0)
            .map(|c| format!("{c} consecutive failure(s); "))
            .unwrap_or_default();
        Desired::no(
            condition::HEALTHY,
            f.reason.clone(),
            format!("{count}last at {}: {}", f.time.0, f.message),
        )
    } else if statuses.is_empty() && !pull_source {
        let why = if observed.unreachable > 0 {
            format!("{} worker(s) did not answer", observed.unreachable)
        } else {
            "no worker is running".into()
        };
        Desired::unknown(condition::HEALTHY, "StatusUnavailable", why)
    } else if let Some(success) = last_success {
        Desired::yes(
            condition::HEALTHY,
            "Succeeding",
            format!("last success at {}", time(success).0),
        )
    } else if let Some(run) = last_run.filter(|r| r.result == "Succeeded") {
        Desired::yes(
            condition::HEALTHY,
            "Succeeding",
            format!(
                "the last run succeeded at {}",
                run.completion_time.as_ref().unwrap_or(&run.start_time).0
            ),
        )
    } else if pull_source && statuses.is_empty() {
        Desired::unknown(condition::HEALTHY, "NoRunsYet", "no scheduled run has finished yet")
    } else {
        Desired::yes(condition::HEALTHY, "NoFailures", "no events yet, and no failures")
    };
    Summary {
        healthy,
        last_success_time: last_success.map(time),
        last_failure: failure,
        consecutive_failures: consecutive,
        counters,
    }
}

/// Whether a new summary is worth a status write now: anything a person acts on changed, or
/// the counters are older than `counters_every`.
fn worth_writing(old: &IntegrationStatus, new: &Summary, counters_due: bool) -> bool {
    let healthy = old.conditions.iter().find(|c| c.type_ == condition::HEALTHY);
    let condition_changed = healthy.is_none_or(|c| {
        c.status != new.healthy.status_text()
            || c.reason != new.healthy.reason
            || c.message != new.healthy.message
    });
    let pending = |c: &Option<Counters>| c.as_ref().map(|c| c.dead_letters_pending);
    condition_changed
        || old.last_failure != new.last_failure
        || old.consecutive_failures != new.consecutive_failures
        || pending(&old.counters) != pending(&new.counters)
        || (counters_due
            && (old.counters != new.counters || old.last_success_time != new.last_success_time))
}

/// Read one worker's status document.
async fn read_status(http: &reqwest::Client, ip: &str, port: u16) -> Option<WorkerStatus> {
    let url = format!("http://{ip}:{port}{STATUS_PATH}");
    let response = http.get(&url).send().await.ok()?.error_for_status().ok()?;
    response.json::<WorkerStatus>().await.ok()
}

/// One pass over every Integration. Returns how many statuses were written.
pub async fn pass(
    ctx: &Context,
    pods: &Store<Pod>,
    http: &reqwest::Client,
    settings: &RuntimeSettings,
    last_counters: &mut HashMap<String, Instant>,
    alerts: &AlertRouter,
) -> usize {
    let port = settings.port;
    // Worker pod IPs by (namespace, integration label).
    let mut endpoints: HashMap<(String, String), Vec<String>> = HashMap::new();
    for pod in pods.state() {
        let (Some(label), Some(ip)) = (
            pod.labels().get(LABEL_INTEGRATION).cloned(),
            pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
        ) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        endpoints.entry((pod.namespace().unwrap_or_default(), label)).or_default().push(ip);
    }
    let integrations: Vec<Arc<Unchecked<Integration>>> = ctx.stores.integrations.state();
    let work = integrations.into_iter().map(|object| {
        let key = (object.namespace().unwrap_or_default(), label_value(&object.name_any()));
        let ips = endpoints.get(&key).cloned().unwrap_or_default();
        async move {
            let mut observed = Observed::default();
            for ip in ips {
                match read_status(http, &ip, port).await {
                    Some(status) => observed.statuses.push(status),
                    None => observed.unreachable += 1,
                }
            }
            (object, observed)
        }
    });
    let results: Vec<_> =
        futures::stream::iter(work).buffer_unordered(settings.concurrency).collect().await;
    let mut written = 0;
    let mut views = Vec::with_capacity(results.len());
    for (object, observed) in results {
        let Ok(mut integration) = object.typed() else { continue };
        let key = super::object_key(object.as_ref());
        let old = integration.status.clone().unwrap_or_default();
        let summary =
            summarize(&observed, old.last_run.as_ref(), !integration.spec.source.is_inbound());
        let counters_due =
            last_counters.get(&key).is_none_or(|at| at.elapsed() >= settings.counters_every);
        if worth_writing(&old, &summary, counters_due) {
            let fill_summary = summary.clone();
            let result = write_status(
                ctx,
                object.as_ref(),
                vec![summary.healthy.clone()],
                move |status: &mut IntegrationStatus| {
                    apply_summary(status, &fill_summary);
                },
            )
            .await;
            match result {
                Ok(()) => {
                    written += 1;
                    last_counters.insert(key, Instant::now());
                }
                Err(error) => warn!(object = %key, %error, "could not write the runtime status"),
            }
        }
        // Alerts judge the health just computed, not the cached status of the last pass.
        let mut status = old;
        apply_summary(&mut status, &summary);
        let now_time = Time(k8s_openapi::jiff::Timestamp::now());
        let generation = integration.metadata.generation.unwrap_or(0);
        status.conditions = super::conditions::merge(
            &status.conditions,
            std::slice::from_ref(&summary.healthy),
            generation,
            &now_time,
        )
        .0;
        integration.status = Some(status);
        views.push((object, integration));
    }
    let changes: Vec<_> = futures::stream::iter(views)
        .map(|(object, integration)| async move {
            let change = alerts.process(&integration, k8s_openapi::jiff::Timestamp::now()).await;
            change.map(|state| (object, state))
        })
        .buffer_unordered(16)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    for (object, state) in changes {
        let key = super::object_key(object.as_ref());
        let result = write_status(
            ctx,
            object.as_ref(),
            Vec::new(),
            move |status: &mut IntegrationStatus| {
                status.alert = Some(state.clone());
            },
        )
        .await;
        if let Err(error) = result {
            warn!(object = %key, %error, "could not record the alert state");
        }
    }
    written
}

fn apply_summary(status: &mut IntegrationStatus, summary: &Summary) {
    status.last_success_time = summary.last_success_time.clone();
    status.last_failure = summary.last_failure.clone();
    status.consecutive_failures = summary.consecutive_failures;
    status.counters = summary.counters.clone();
}

/// Run passes forever (while this replica leads).
pub async fn run(ctx: Arc<Context>, pods: Store<Pod>, settings: RuntimeSettings) {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client");
    let mut last_counters = HashMap::new();
    let alerts =
        AlertRouter::from_context(&ctx, AlertSettings::new(settings.operator_namespace.clone()));
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !ctx.leader.is_leader() {
            continue;
        }
        let started = Instant::now();
        let written = pass(&ctx, &pods, &http, &settings, &mut last_counters, &alerts).await;
        debug!(written, elapsed = ?started.elapsed(), "runtime status pass");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_worker::status::{FailureInfo, StatusCounters};

    fn worker(
        success: Option<i64>,
        failure: Option<(i64, &str)>,
        consecutive: u64,
    ) -> WorkerStatus {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        WorkerStatus {
            api_version: "worker.switchboard.dev/v1".into(),
            subject_kind: "Integration".into(),
            namespace: "ns".into(),
            name: "i".into(),
            started_at: at(0),
            ready: true,
            not_ready_reason: None,
            delivery_mode: "durable".into(),
            counters: StatusCounters {
                delivered: 3,
                dead_letters_pending: 1,
                ..StatusCounters::default()
            },
            last_success_time: success.map(at),
            last_failure: failure.map(|(t, reason)| FailureInfo {
                time: at(t),
                reason: reason.into(),
                message: "connection refused".into(),
            }),
            consecutive_failures: consecutive,
            circuits: Vec::new(),
        }
    }

    #[test]
    fn failures_newer_than_the_last_success_make_it_unhealthy_with_the_reason() {
        let observed = Observed {
            statuses: vec![
                worker(Some(100), Some((200, "TargetUnavailable")), 4),
                worker(Some(150), None, 0),
            ],
            unreachable: 0,
        };
        let summary = summarize(&observed, None, false);
        assert!(!summary.healthy.status && !summary.healthy.unknown);
        assert_eq!(summary.healthy.reason, "TargetUnavailable");
        assert!(
            summary.healthy.message.starts_with(
                "4 consecutive failure(s); last at 1970-01-01T00:03:20Z: connection refused"
            ),
            "{}",
            summary.healthy.message
        );
        assert_eq!(summary.counters.as_ref().unwrap().delivered, 6, "counters add up over workers");
        assert_eq!(summary.consecutive_failures, Some(4));
    }

    #[test]
    fn a_success_after_the_failure_recovers() {
        let observed = Observed {
            statuses: vec![worker(Some(300), Some((200, "TargetUnavailable")), 0)],
            unreachable: 0,
        };
        let summary = summarize(&observed, None, false);
        assert!(summary.healthy.status);
        assert_eq!(summary.healthy.reason, "Succeeding");
        assert_eq!(
            summary.last_failure.unwrap().reason,
            "TargetUnavailable",
            "the last failure stays on record"
        );
    }

    #[test]
    fn silence_is_unknown_and_not_ready_workers_are_unhealthy() {
        let unknown = summarize(&Observed { statuses: vec![], unreachable: 2 }, None, false);
        assert!(unknown.healthy.unknown);
        assert_eq!(unknown.healthy.message, "2 worker(s) did not answer");
        let mut broken = worker(None, None, 0);
        broken.ready = false;
        broken.not_ready_reason = Some("credential file /x missing".into());
        let summary = summarize(&Observed { statuses: vec![broken], unreachable: 0 }, None, false);
        assert_eq!(
            (summary.healthy.status, summary.healthy.reason.as_str()),
            (false, "WorkerNotReady")
        );
    }

    #[test]
    fn a_failed_scheduled_run_is_a_failure_of_a_pull_integration() {
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let run = RunReport {
            start_time: at(500),
            completion_time: Some(at(510)),
            result: "Failed".into(),
            read: 10,
            created: 0,
            updated: 0,
            rejected: 9,
            rejections: vec![crate::api::Rejection { row: 3, reason: "email is empty".into() }],
        };
        let summary = summarize(
            &Observed { statuses: vec![worker(Some(100), None, 0)], unreachable: 0 },
            Some(&run),
            true,
        );
        assert_eq!((summary.healthy.status, summary.healthy.reason.as_str()), (false, "RunFailed"));
        assert!(
            summary
                .healthy
                .message
                .contains("the last run failed (10 read, 9 rejected): row 3: email is empty")
        );
        let none_yet = summarize(&Observed::default(), None, true);
        assert_eq!(none_yet.healthy.reason, "NoRunsYet");
    }

    #[test]
    fn the_status_a_scheduled_worker_writes_is_read_back_whole() {
        // The worker patches `lastRun` and `watermark` with its own types; the operator reads
        // them with the CRD's. A field that does not parse would make the operator's status
        // writer start from an empty status.
        use switchboard_worker::import::report::RunReport as WorkerRunReport;
        let started = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut report = WorkerRunReport::start(started);
        report.read = 4;
        report.created = 2;
        report.updated = 1;
        report.reject(3, "Work_Email is not an acme.example address");
        report.finish(false);
        let written = serde_json::json!({
            "lastRun": report,
            "watermark": "2026-01-02T03:04:05.123456Z",
        });
        let status: IntegrationStatus = serde_json::from_value(written).unwrap();
        assert_eq!(status.watermark.as_deref(), Some("2026-01-02T03:04:05.123456Z"));
        let run = status.last_run.as_ref().expect("lastRun parses");
        assert_eq!(run.start_time.0.as_second(), 1_700_000_000);
        assert!(run.completion_time.is_some());
        assert_eq!(
            (run.result.as_str(), run.read, run.created, run.updated, run.rejected),
            ("Failed", 4, 2, 1, 1)
        );
        let summary = summarize(&Observed::default(), status.last_run.as_ref(), true);
        assert_eq!((summary.healthy.status, summary.healthy.reason.as_str()), (false, "RunFailed"));
        assert!(
            summary.healthy.message.contains("row 3: Work_Email is not an acme.example address"),
            "{}",
            summary.healthy.message
        );
    }

    #[test]
    fn counters_alone_are_written_only_when_due() {
        let observed = Observed { statuses: vec![worker(Some(100), None, 0)], unreachable: 0 };
        let summary = summarize(&observed, None, false);
        let mut old = IntegrationStatus::default();
        assert!(worth_writing(&old, &summary, false), "a new condition is always written");
        old.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Healthy".into(),
            status: "True".into(),
            reason: "Succeeding".into(),
            message: summary.healthy.message.clone(),
            observed_generation: Some(1),
            last_transition_time: time(chrono::DateTime::from_timestamp(1, 0).unwrap()),
        }];
        old.consecutive_failures = Some(0);
        old.counters = summary.counters.clone().map(|mut c| {
            c.delivered = 1;
            c
        });
        assert!(!worth_writing(&old, &summary, false), "only counters moved and they are not due");
        assert!(worth_writing(&old, &summary, true));
    }
}
