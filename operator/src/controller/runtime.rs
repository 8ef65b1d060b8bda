//! Runtime truth: each integration's worker `/status`, read by the operator and reflected in
//! the Integration's `Healthy` condition, counters and last failure.
//!
//! ```text
//!   every interval (leader only), one pass:
//!     Integrations (cache) × worker Pods (cache, by label)
//!        ──▶ per integration, `concurrency` at a time:
//!              GET http://<podIP>:9090/status (short timeout) ──▶ aggregate ──▶ Healthy
//!              ──▶ status write at once when something a person acts on changed (condition,
//!                  last failure, failure count, pending dead letters, a check's result);
//!                  counters and the checks' failed rounds within a write budget
//!              ──▶ the alert router judges the health just computed
//!        ──▶ the alerts it decided are sent at the end of the pass
//! ```
//!
//! `Healthy` is False, in this order of precedence, when a worker is not ready
//! (`WorkerNotReady`), when deliveries or the last scheduled run fail (their own reason),
//! or when a synthetic health check fails (`status.healthChecks`, merged over the workers:
//! a reason from [`crate::api::health_check_reason`] and a message naming the check).
//!
//! How this holds for 10,000 integrations within the 30 s promise:
//! - one small GET per worker pod per interval (15 s: ~700 requests/s at 10,000 pods), at
//!   most `concurrency` in flight, no per-integration timers or tasks;
//! - each integration is settled as soon as its workers answered, so a failure reaches
//!   `Healthy` one request and one write after the pass reaches it, never after the slowest
//!   worker of the pass (staleness: up to one interval, plus that);
//! - memory per pass is bounded by `concurrency`, not by the number of integrations: nothing
//!   of an integration outlives its turn but an alert decision (rare);
//! - status writes happen when something a person acts on changed, so the API server sees
//!   writes in proportion to failures; counters alone (which move with traffic) are capped at
//!   `counter_writes_per_second` over all integrations (20/s: every minute up to 1,200
//!   integrations, every 8 minutes at 10,000), each integration at its own phase, so that
//!   neither a busy minute nor an operator restart turns into 10,000 writes at once;
//! - the one thing kept per integration between passes is when its status was last written;
//!   worker Pods are cached trimmed to what a pass reads ([`keep_address`]).
//!
//! The benchmark `status-staleness` in `bench/` measures the staleness of `Healthy` and the
//! operator's cost at that size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use switchboard_worker::config::ADMIN_PORT;
use switchboard_worker::status::{HealthCheckStatus, STATUS_PATH, WorkerStatus};
use tracing::{debug, warn};

use super::Context;
use super::conditions::Desired;
use super::object::Unchecked;
use super::status::write_status;
use crate::alerting::{AlertDecision, AlertRouter, AlertSettings};
use crate::api::{
    Counters, Failure, HealthCheckResult, Integration, IntegrationStatus, RunReport, condition,
    health_check_reason,
};
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
    /// Writes of counters alone, over all integrations, per second at most: with more
    /// integrations than `counters_every` allows at this rate, each one's counters wait longer.
    pub counter_writes_per_second: f64,
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
            counter_writes_per_second: 20.0,
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
    /// Synthetic health checks merged over the workers, by name.
    pub health_checks: Vec<HealthCheckResult>,
}

/// The `Healthy` reason for a failing check: the worker's reason where it already names the
/// problem, otherwise what kind of check failed (see [`health_check_reason`]).
pub fn health_check_healthy_reason(check: &HealthCheckResult) -> &'static str {
    use health_check_reason::*;
    let kind = check.name.split_once(':').map_or(check.name.as_str(), |(kind, _)| kind);
    match (kind, check.reason.as_str()) {
        ("certificate" | "clientCertificate", "CertificateExpiringSoon") => {
            CERTIFICATE_EXPIRING_SOON
        }
        ("certificate" | "clientCertificate", "CertificateExpired") => CERTIFICATE_EXPIRED,
        ("certificate" | "clientCertificate", "CertificateUntrusted") => CERTIFICATE_UNTRUSTED,
        ("certificate" | "clientCertificate", _) => CERTIFICATE_UNAVAILABLE,
        ("token", "TokenEndpointUnreachable") => TOKEN_ENDPOINT_UNREACHABLE,
        ("token", "TokenRejected") => TOKEN_REJECTED,
        ("token", _) => TOKEN_UNAVAILABLE,
        ("target", _) => TARGET_UNAVAILABLE,
        ("source", _) => SOURCE_UNAVAILABLE,
        ("probe", _) => PROBE_FAILED,
        _ => HEALTH_CHECK_FAILED,
    }
}

/// One worker's check as the Integration status shows it.
fn check_result(check: &HealthCheckStatus) -> HealthCheckResult {
    HealthCheckResult {
        name: check.name.clone(),
        status: check.status.clone(),
        reason: check.reason.clone(),
        message: (!check.message.is_empty()).then(|| check.message.clone()),
        last_checked: time(check.last_checked),
        last_transition_time: Some(time(check.last_transition_time)),
        consecutive_failures: Some(check.consecutive_failures),
        not_after: check.not_after.map(time),
    }
}

/// The checks of every worker, one result per name: failing when any worker's fails (the
/// failure that started first), with the most failed rounds and the latest run of any.
fn merge_health_checks(statuses: &[WorkerStatus]) -> Vec<HealthCheckResult> {
    let mut merged: std::collections::BTreeMap<String, HealthCheckResult> = Default::default();
    for check in statuses.iter().flat_map(|s| &s.health_checks) {
        let new = check_result(check);
        let Some(old) = merged.get_mut(&check.name) else {
            merged.insert(check.name.clone(), new);
            continue;
        };
        let rank = |c: &HealthCheckResult| {
            (c.status != "False", c.last_transition_time.as_ref().map(|t| t.0), c.message.clone())
        };
        let latest_check = old.last_checked.0.max(new.last_checked.0);
        let failures = old.consecutive_failures.max(new.consecutive_failures);
        if rank(&new) < rank(old) {
            *old = new;
        }
        old.last_checked = Time(latest_check);
        old.consecutive_failures = failures;
    }
    merged.into_values().collect()
}

/// Which failing check names the `Healthy` reason: what breaks every call (a token endpoint,
/// an expired or untrusted certificate) before what is unavailable (a target, the source, a
/// probe), before warnings (a certificate expiring soon or unreadable).
fn precedence(healthy_reason: &str) -> u8 {
    use health_check_reason::*;
    match healthy_reason {
        TOKEN_ENDPOINT_UNREACHABLE
        | TOKEN_REJECTED
        | TOKEN_UNAVAILABLE
        | CERTIFICATE_EXPIRED
        | CERTIFICATE_UNTRUSTED => 0,
        CERTIFICATE_EXPIRING_SOON | CERTIFICATE_UNAVAILABLE => 2,
        _ => 1,
    }
}

/// `Healthy=False` for the failing checks, when there are any: the reason of the first by
/// [`precedence`] (then the one that started failing first), a message naming it and the
/// others.
fn failing_checks_condition(checks: &[HealthCheckResult]) -> Option<Desired> {
    let mut failing: Vec<&HealthCheckResult> =
        checks.iter().filter(|c| c.status == "False").collect();
    failing.sort_by_key(|c| {
        (
            precedence(health_check_healthy_reason(c)),
            c.last_transition_time.as_ref().map(|t| t.0),
            c.name.as_str(),
        )
    });
    let (first, others) = failing.split_first()?;
    let mut message = format!("health check {} fails ({})", first.name, first.reason);
    if let Some(what) = &first.message {
        message.push_str(&format!(": {what}"));
    }
    if !others.is_empty() {
        let names: Vec<String> =
            others.iter().map(|c| format!("{} ({})", c.name, c.reason)).collect();
        message.push_str(&format!("; also failing: {}", names.join(", ")));
    }
    Some(Desired::no(condition::HEALTHY, health_check_healthy_reason(first), message))
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

    let health_checks = merge_health_checks(statuses);
    let failing_checks = failing_checks_condition(&health_checks);

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
    } else if let Some(checks) = failing_checks {
        checks
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
        health_checks,
    }
}

/// Whether a new summary is worth a status write now: anything a person acts on changed, or
/// the counters (with the checks' failed rounds and last runs) are older than
/// `counters_every`.
fn worth_writing(old: &IntegrationStatus, new: &Summary, counters_due: bool) -> bool {
    let checks_changed = old.health_checks.len() != new.health_checks.len()
        || old.health_checks.iter().zip(&new.health_checks).any(|(a, b)| {
            (&a.name, &a.status, &a.reason, &a.message, &a.last_transition_time, &a.not_after)
                != (
                    &b.name,
                    &b.status,
                    &b.reason,
                    &b.message,
                    &b.last_transition_time,
                    &b.not_after,
                )
        });
    let healthy = old.conditions.iter().find(|c| c.type_ == condition::HEALTHY);
    // The message of a True condition names the last success, which moves with every event:
    // alone, it is written with the counters, or every busy integration would be written on
    // every pass.
    let condition_changed = healthy.is_none_or(|c| {
        c.status != new.healthy.status_text()
            || c.reason != new.healthy.reason
            || (c.message != new.healthy.message && (c.status != "True" || counters_due))
    });
    let pending = |c: &Option<Counters>| c.as_ref().map(|c| c.dead_letters_pending);
    condition_changed
        || checks_changed
        || old.last_failure != new.last_failure
        || old.consecutive_failures != new.consecutive_failures
        || pending(&old.counters) != pending(&new.counters)
        || (counters_due
            && (old.counters != new.counters
                || old.last_success_time != new.last_success_time
                || old
                    .health_checks
                    .iter()
                    .zip(&new.health_checks)
                    .any(|(a, b)| a.consecutive_failures != b.consecutive_failures)))
}

/// Read one worker's status document, on a connection of its own that the worker closes
/// after answering (see [`StatusReader::new`]).
async fn read_status(http: &reqwest::Client, ip: &str, port: u16) -> Option<WorkerStatus> {
    let url = format!("http://{ip}:{port}{STATUS_PATH}");
    let request = http.get(&url).header(reqwest::header::CONNECTION, "close");
    let response = request.send().await.ok()?.error_for_status().ok()?;
    response.json::<WorkerStatus>().await.ok()
}

/// Trim a worker Pod to what a pass reads (labels, address, deletion) before it is cached:
/// a Pod's spec, managed fields and status are most of its size, and one is cached per
/// worker (10,000 and more).
pub fn keep_address(pod: &mut Pod) {
    pod.spec = None;
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.status = pod.status.take().map(|status| k8s_openapi::api::core::v1::PodStatus {
        pod_ip: status.pod_ip,
        ..Default::default()
    });
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Integrations looked at.
    pub integrations: usize,
    /// Worker pods that answered.
    pub answered: usize,
    /// Worker pods that did not answer.
    pub unreachable: usize,
    /// Status writes of runtime health.
    pub written: usize,
    /// Alerts sent (fired, resolved, refreshed or retried).
    pub alerts: usize,
}

/// What one integration's part of a pass ended with.
struct Settled {
    key: String,
    answered: usize,
    unreachable: usize,
    written: bool,
    /// An alert to send, with the object its state is written to.
    alert: Option<(Arc<Unchecked<Integration>>, AlertDecision)>,
}

/// Reads the workers' statuses, pass after pass: the HTTP client, the alert router, and the
/// one thing kept per Integration between passes (when its status was last written).
pub struct StatusReader {
    settings: RuntimeSettings,
    http: reqwest::Client,
    alerts: AlertRouter,
    /// When each integration's status was last written, and the last pass that saw it (to
    /// forget deleted integrations), by object key.
    written_at: HashMap<String, (Instant, u64)>,
    passes: u64,
}

impl StatusReader {
    /// A reader with its own HTTP client and alert router.
    ///
    /// The client keeps no connection between passes: each worker is asked once per interval,
    /// so a kept-alive connection would only idle, and an idle connection costs the operator
    /// about 26 KiB (its buffers and task): 260 MiB at 10,000 pods. Asking with
    /// `Connection: close` lets the worker close first, so the closed connections' TIME_WAIT
    /// states stay with the workers rather than piling up in the operator.
    pub fn new(ctx: &Context, settings: RuntimeSettings) -> StatusReader {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        let alerts =
            AlertRouter::from_context(ctx, AlertSettings::new(settings.operator_namespace.clone()));
        StatusReader { settings, http, alerts, written_at: HashMap::new(), passes: 0 }
    }

    /// How long counters alone wait between two writes of one integration: `counters_every`,
    /// or longer when that would exceed `counter_writes_per_second` over all integrations.
    fn counters_period(&self, integrations: usize) -> Duration {
        let spread = integrations as f64 / self.settings.counter_writes_per_second;
        let spread = Duration::try_from_secs_f64(spread).unwrap_or(Duration::MAX);
        self.settings.counters_every.max(spread)
    }

    /// One pass over every Integration. Each one's workers are asked, and its status written
    /// and its alert judged as soon as they answered, `concurrency` integrations at a time;
    /// the alerts decided are sent at the end of the pass.
    pub async fn pass(&mut self, ctx: &Context, pods: &Store<Pod>) -> PassReport {
        self.passes += 1;
        let pass = self.passes;
        let port = self.settings.port;
        // Worker pod IPs by (namespace, integration label).
        let mut endpoints: HashMap<(String, String), Vec<String>> = HashMap::new();
        for pod in pods.state() {
            let (Some(label), Some(ip)) = (
                pod.labels().get(LABEL_INTEGRATION),
                pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()),
            ) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            endpoints
                .entry((pod.namespace().unwrap_or_default(), label.clone()))
                .or_default()
                .push(ip.clone());
        }
        let integrations: Vec<Arc<Unchecked<Integration>>> = ctx.stores.integrations.state();
        let period = self.counters_period(integrations.len());
        let now = Instant::now();
        let work: Vec<_> = integrations
            .into_iter()
            .map(|object| {
                let key = super::object_key(object.as_ref());
                let pod = (object.namespace().unwrap_or_default(), label_value(&object.name_any()));
                let ips = endpoints.remove(&pod).unwrap_or_default();
                // A newly seen integration gets a phase of its own, so that the counters of
                // all are not due in the same pass (after a restart, say).
                let entry = self
                    .written_at
                    .entry(key.clone())
                    .or_insert_with(|| (now.checked_sub(phase(&key, period)).unwrap_or(now), pass));
                entry.1 = pass;
                let counters_due = entry.0.elapsed() >= period;
                (object, key, ips, counters_due)
            })
            .collect();
        self.written_at.retain(|_, (_, seen)| *seen == pass);
        let (http, alerts) = (&self.http, &self.alerts);
        let mut report = PassReport { integrations: work.len(), ..PassReport::default() };
        let mut to_send = Vec::new();
        let mut settled = futures::stream::iter(work)
            .map(|(object, key, ips, counters_due)| async move {
                let mut observed = Observed::default();
                for ip in &ips {
                    match read_status(http, ip, port).await {
                        Some(status) => observed.statuses.push(status),
                        None => observed.unreachable += 1,
                    }
                }
                let integration = object.typed().ok()?;
                let summary = summarize(
                    &observed,
                    integration.status.as_ref().and_then(|s| s.last_run.as_ref()),
                    !integration.spec.source.is_inbound(),
                );
                let written =
                    write_summary(ctx, &object, &integration, &summary, counters_due).await;
                // Alerts judge the health just computed, not the cached status.
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                let view = with_summary(integration, &summary, &now);
                let alert = alerts.evaluate(&view, now.0).map(|decision| (object, decision));
                Some(Settled {
                    key,
                    answered: observed.statuses.len(),
                    unreachable: observed.unreachable,
                    written,
                    alert,
                })
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        while let Some(one) = settled.next().await {
            let Some(one) = one else { continue };
            report.answered += one.answered;
            report.unreachable += one.unreachable;
            if one.written {
                report.written += 1;
                if let Some(entry) = self.written_at.get_mut(&one.key) {
                    entry.0 = Instant::now();
                }
            }
            to_send.extend(one.alert);
        }
        drop(settled);
        report.alerts = to_send.len();
        futures::stream::iter(to_send)
            .for_each_concurrent(16, |(object, decision)| async move {
                let previous = decision.previous.clone();
                let Some(outcome) = alerts.notify(decision).await else { return };
                if Some(&outcome.state) == previous.as_ref() {
                    return;
                }
                let state = outcome.state;
                let result = write_status(
                    ctx,
                    object.as_ref(),
                    Vec::new(),
                    move |status: &mut IntegrationStatus| status.alert = Some(state.clone()),
                )
                .await;
                if let Err(error) = result {
                    let key = super::object_key(object.as_ref());
                    warn!(object = %key, %error, "could not record the alert state");
                }
            })
            .await;
        report
    }
}

/// A phase in `[0, period)` that depends only on the key: spreads first counter writes.
fn phase(key: &str, period: Duration) -> Duration {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    Duration::from_millis(hash % (period.as_millis().max(1) as u64))
}

/// Write `summary` into the status of `object` when [`worth_writing`]. Returns whether it
/// was written.
async fn write_summary(
    ctx: &Context,
    object: &Unchecked<Integration>,
    integration: &Integration,
    summary: &Summary,
    counters_due: bool,
) -> bool {
    let old = integration.status.clone().unwrap_or_default();
    if !worth_writing(&old, summary, counters_due) {
        return false;
    }
    let fill = summary.clone();
    let result = write_status(
        ctx,
        object,
        vec![summary.healthy.clone()],
        move |status: &mut IntegrationStatus| {
            apply_summary(status, &fill);
        },
    )
    .await;
    match result {
        Ok(()) => true,
        Err(error) => {
            let key = super::object_key(object);
            warn!(object = %key, %error, "could not write the runtime status");
            false
        }
    }
}

/// `integration` as the alert router judges it: its status with `summary` applied and the
/// `Healthy` condition merged in at `now`.
pub fn with_summary(mut integration: Integration, summary: &Summary, now: &Time) -> Integration {
    let mut status = integration.status.take().unwrap_or_default();
    apply_summary(&mut status, summary);
    let generation = integration.metadata.generation.unwrap_or(0);
    status.conditions = super::conditions::merge(
        &status.conditions,
        std::slice::from_ref(&summary.healthy),
        generation,
        now,
    )
    .0;
    integration.status = Some(status);
    integration
}

fn apply_summary(status: &mut IntegrationStatus, summary: &Summary) {
    status.last_success_time = summary.last_success_time.clone();
    status.last_failure = summary.last_failure.clone();
    status.consecutive_failures = summary.consecutive_failures;
    status.counters = summary.counters.clone();
    status.health_checks = summary.health_checks.clone();
}

/// Run passes forever (while this replica leads).
pub async fn run(ctx: Arc<Context>, pods: Store<Pod>, settings: RuntimeSettings) {
    let interval = settings.interval;
    let mut reader = StatusReader::new(&ctx, settings);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !ctx.leader.is_leader() {
            continue;
        }
        let started = Instant::now();
        let report = reader.pass(&ctx, &pods).await;
        let elapsed = started.elapsed();
        debug!(?report, ?elapsed, "runtime status pass");
        if elapsed > interval {
            warn!(
                integrations = report.integrations,
                ?elapsed,
                ?interval,
                "a runtime status pass took longer than the status interval: Healthy is that much staler"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_worker::status::{FailureInfo, HealthCheckStatus, StatusCounters};

    fn check(
        name: &str,
        status: &str,
        reason: &str,
        message: &str,
        since: i64,
        failures: u64,
    ) -> HealthCheckStatus {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        HealthCheckStatus {
            name: name.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_checked: at(1000),
            last_transition_time: at(since),
            consecutive_failures: failures,
            not_after: None,
        }
    }

    /// A healthy worker whose certificate and token checks fail.
    fn worker_with_failing_checks() -> WorkerStatus {
        let mut w = worker(Some(100), None, 0);
        w.health_checks = vec![
            check("target:billing", "True", "Reachable", "HEAD answered HTTP 200", 50, 0),
            check(
                "certificate:billing.acme.example:443",
                "False",
                "CertificateExpiringSoon",
                "the certificate expires at 1970-01-04T00:00:00Z, in 3 day(s): within the warning window of 21 day(s)",
                200,
                4,
            ),
            check(
                "token:billing-oauth",
                "False",
                "TokenEndpointUnreachable",
                "credential \"billing-oauth\": token endpoint unreachable: connection refused",
                300,
                2,
            ),
        ];
        w
    }

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
            health_checks: Vec::new(),
        }
    }

    #[test]
    fn a_cached_worker_pod_keeps_only_what_a_pass_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w-0", "namespace": "ns", "labels": {LABEL_INTEGRATION: "orders"},
                "annotations": {"a": "b"}, "deletionTimestamp": "2026-11-29T00:00:00Z",
                "managedFields": [{"manager": "m", "operation": "Apply"}]},
            "spec": {"containers": [{"name": "worker", "image": "switchboard",
                "env": [{"name": "X", "value": "y"}]}]},
            "status": {"podIP": "10.0.0.7", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let full = serde_json::to_vec(&pod).unwrap().len();
        keep_address(&mut pod);
        assert_eq!(pod.labels().get(LABEL_INTEGRATION).map(String::as_str), Some("orders"));
        assert_eq!(pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()), Some("10.0.0.7"));
        assert!(pod.metadata.deletion_timestamp.is_some());
        assert_eq!(pod.namespace().as_deref(), Some("ns"));
        let kept = serde_json::to_vec(&pod).unwrap().len();
        assert!(kept * 2 < full, "kept {kept} of {full} bytes");
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

    /// `Healthy=True` as written for `summary`.
    fn succeeding(summary: &Summary) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Healthy".into(),
            status: "True".into(),
            reason: "Succeeding".into(),
            message: summary.healthy.message.clone(),
            observed_generation: Some(1),
            last_transition_time: time(chrono::DateTime::from_timestamp(1, 0).unwrap()),
        }
    }

    #[test]
    fn counters_alone_are_written_only_when_due() {
        let observed = Observed { statuses: vec![worker(Some(100), None, 0)], unreachable: 0 };
        let summary = summarize(&observed, None, false);
        let mut old = IntegrationStatus::default();
        assert!(worth_writing(&old, &summary, false), "a new condition is always written");
        old.conditions = vec![succeeding(&summary)];
        old.consecutive_failures = Some(0);
        old.counters = summary.counters.clone().map(|mut c| {
            c.delivered = 1;
            c
        });
        assert!(!worth_writing(&old, &summary, false), "only counters moved and they are not due");
        assert!(worth_writing(&old, &summary, true));
    }

    #[test]
    fn a_moving_last_success_alone_waits_for_the_counters() {
        let observed = |success: i64| Observed {
            statuses: vec![worker(Some(success), None, 0)],
            unreachable: 0,
        };
        let summary = summarize(&observed(100), None, false);
        let mut old = IntegrationStatus::default();
        apply_summary(&mut old, &summary);
        old.conditions = vec![succeeding(&summary)];
        assert!(!worth_writing(&old, &summary, true), "nothing changed");
        let later = summarize(&observed(200), None, false);
        assert_ne!(later.healthy.message, summary.healthy.message);
        assert!(!worth_writing(&old, &later, false), "only the time of the last success moved");
        assert!(worth_writing(&old, &later, true), "it goes with the counters");
        let failing = summarize(
            &Observed {
                statuses: vec![worker(Some(100), Some((300, "TargetUnavailable")), 2)],
                unreachable: 0,
            },
            None,
            false,
        );
        assert!(worth_writing(&old, &failing, false), "a failure is written at once");
    }

    #[test]
    fn a_failing_health_check_makes_it_unhealthy_with_a_reason_naming_the_problem() {
        let observed = Observed { statuses: vec![worker_with_failing_checks()], unreachable: 0 };
        let summary = summarize(&observed, None, false);
        assert!(!summary.healthy.status && !summary.healthy.unknown, "{:?}", summary.healthy);
        assert_eq!(
            summary.healthy.reason, "TokenEndpointUnreachable",
            "what breaks every call comes before a warning, though the warning came first"
        );
        assert_eq!(
            summary.healthy.message,
            "health check token:billing-oauth fails (TokenEndpointUnreachable): credential \
             \"billing-oauth\": token endpoint unreachable: connection refused; also failing: \
             certificate:billing.acme.example:443 (CertificateExpiringSoon)"
        );
        let names: Vec<&str> = summary.health_checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["certificate:billing.acme.example:443", "target:billing", "token:billing-oauth"]
        );
        let token = &summary.health_checks[2];
        assert_eq!(
            (token.status.as_str(), token.reason.as_str(), token.consecutive_failures),
            ("False", "TokenEndpointUnreachable", Some(2))
        );

        // The certificate alone.
        let mut only_certificate = worker_with_failing_checks();
        only_certificate.health_checks.remove(2);
        let summary =
            summarize(&Observed { statuses: vec![only_certificate], unreachable: 0 }, None, false);
        assert_eq!(summary.healthy.reason, "CertificateExpiringSoon");
        assert_eq!(
            summary.healthy.message,
            "health check certificate:billing.acme.example:443 fails (CertificateExpiringSoon): \
             the certificate expires at 1970-01-04T00:00:00Z, in 3 day(s): within the warning \
             window of 21 day(s)"
        );

        // A target that fails because it gets no token: the token endpoint is named, though
        // the target's check failed first.
        let mut no_token = worker_with_failing_checks();
        no_token.health_checks.remove(1);
        no_token.health_checks[0] =
            check("target:billing", "False", "TokenUnavailable", "no token", 250, 2);
        let summary =
            summarize(&Observed { statuses: vec![no_token], unreachable: 0 }, None, false);
        assert_eq!(summary.healthy.reason, "TokenEndpointUnreachable");
        assert!(
            summary.healthy.message.ends_with("also failing: target:billing (TokenUnavailable)"),
            "{}",
            summary.healthy.message
        );

        // Recovered: Healthy again, the checks stay on record.
        let mut recovered = worker_with_failing_checks();
        for c in &mut recovered.health_checks {
            c.status = "True".into();
        }
        let summary =
            summarize(&Observed { statuses: vec![recovered], unreachable: 0 }, None, false);
        assert!(summary.healthy.status, "{:?}", summary.healthy);
        assert_eq!(summary.health_checks.len(), 3);
    }

    #[test]
    fn every_kind_of_failing_check_has_its_healthy_reason() {
        let reason = |name: &str, worker_reason: &str| {
            let c = check_result(&check(name, "False", worker_reason, "", 0, 1));
            health_check_healthy_reason(&c)
        };
        assert_eq!(
            reason("certificate:h:443", "CertificateExpiringSoon"),
            "CertificateExpiringSoon"
        );
        assert_eq!(reason("clientCertificate:c", "CertificateExpired"), "CertificateExpired");
        assert_eq!(reason("certificate:h:443", "CertificateUntrusted"), "CertificateUntrusted");
        assert_eq!(reason("certificate:h:443", "Unreachable"), "CertificateUnavailable");
        assert_eq!(reason("token:c", "TokenEndpointUnreachable"), "TokenEndpointUnreachable");
        assert_eq!(reason("token:c", "TokenRejected"), "TokenRejected");
        assert_eq!(reason("token:c", "EgressRefused"), "TokenUnavailable");
        assert_eq!(reason("target:t", "ServerError"), "TargetUnavailable");
        assert_eq!(reason("source:imap", "Timeout"), "SourceUnavailable");
        assert_eq!(reason("probe:p", "ProbeFailed"), "ProbeFailed");
        assert_eq!(reason("somethingNew:x", "Whatever"), "HealthCheckFailed");
    }

    #[test]
    fn failing_deliveries_come_before_failing_checks_and_workers_merge_per_check() {
        let mut delivering = worker_with_failing_checks();
        delivering.last_failure = Some(FailureInfo {
            time: chrono::DateTime::from_timestamp(400, 0).unwrap(),
            reason: "TargetUnavailable".into(),
            message: "billing answered 503".into(),
        });
        delivering.consecutive_failures = 2;
        let summary =
            summarize(&Observed { statuses: vec![delivering], unreachable: 0 }, None, false);
        assert_eq!(summary.healthy.reason, "TargetUnavailable");

        // Two replicas: one sees the token endpoint, the other does not.
        let mut passing = worker_with_failing_checks();
        passing.health_checks.retain(|c| c.name == "token:billing-oauth");
        passing.health_checks[0].status = "True".into();
        passing.health_checks[0].reason = "TokenIssued".into();
        passing.health_checks[0].consecutive_failures = 0;
        let mut failing = worker_with_failing_checks();
        failing.health_checks.retain(|c| c.name == "token:billing-oauth");
        failing.health_checks[0].consecutive_failures = 5;
        failing.health_checks[0].last_checked = chrono::DateTime::from_timestamp(2000, 0).unwrap();
        let summary =
            summarize(&Observed { statuses: vec![passing, failing], unreachable: 0 }, None, false);
        assert_eq!(summary.health_checks.len(), 1);
        let token = &summary.health_checks[0];
        assert_eq!((token.status.as_str(), token.consecutive_failures), ("False", Some(5)));
        assert_eq!(token.last_checked, time(chrono::DateTime::from_timestamp(2000, 0).unwrap()));
        assert_eq!(summary.healthy.reason, "TokenEndpointUnreachable");
    }

    #[test]
    fn a_check_that_only_ran_again_is_not_rewritten() {
        let summary = summarize(
            &Observed { statuses: vec![worker_with_failing_checks()], unreachable: 0 },
            None,
            false,
        );
        let mut old = IntegrationStatus::default();
        apply_summary(&mut old, &summary);
        old.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Healthy".into(),
            status: "False".into(),
            reason: summary.healthy.reason.clone(),
            message: summary.healthy.message.clone(),
            observed_generation: Some(1),
            last_transition_time: time(chrono::DateTime::from_timestamp(1, 0).unwrap()),
        }];
        let mut next = worker_with_failing_checks();
        for c in &mut next.health_checks {
            c.last_checked = chrono::DateTime::from_timestamp(1060, 0).unwrap();
        }
        let again =
            summarize(&Observed { statuses: vec![next.clone()], unreachable: 0 }, None, false);
        assert!(!worth_writing(&old, &again, true), "only lastChecked moved");
        next.health_checks[1].consecutive_failures += 1;
        let more =
            summarize(&Observed { statuses: vec![next.clone()], unreachable: 0 }, None, false);
        assert!(!worth_writing(&old, &more, false), "failed rounds wait for the counters");
        assert!(worth_writing(&old, &more, true));
        next.health_checks[1].message =
            "the certificate expires at 1970-01-04T00:00:00Z, in 2 day(s)".into();
        let changed = summarize(&Observed { statuses: vec![next], unreachable: 0 }, None, false);
        assert!(worth_writing(&old, &changed, false), "a new message is written at once");
    }

    #[tokio::test]
    async fn a_failing_check_past_the_threshold_raises_an_alert_that_names_it() {
        use crate::alerting::{Action, AlertRouter, AlertSettings};
        let integration: Integration = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": "billing", "namespace": "shop", "generation": 1},
            "spec": {
                "owner": {"team": "finance", "contact": "finance@acme.example"},
                "dataFlow": {"sourceSystem": "Shop", "targetSystem": "Billing", "classification": "internal"},
                "source": {"webhook": {"auth": {"type": "none"}}},
                "targets": [{"name": "billing", "outboundMessage": {"name": "billing", "method": "post"}}],
                "alerting": {"threshold": {"consecutiveFailures": 3}, "useDefaultRoutes": false},
            },
            "status": {
                "lastFailure": {"time": "1970-01-01T00:00:10Z", "reason": "MappingFailed",
                                "message": "an old mapping failure"},
                "consecutiveFailures": 0,
            },
        }))
        .unwrap();
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let router = AlertRouter::new(
            client,
            Arc::new(crate::controller::metrics::Metrics::default()),
            crate::controller::leader::LeaderGuard::always(),
            kube::runtime::events::Reporter { controller: "test".into(), instance: None },
            AlertSettings::new("switchboard-system"),
        );
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let observe = |remove: usize| {
            let mut worker = worker_with_failing_checks();
            worker.health_checks.remove(remove);
            summarize(&Observed { statuses: vec![worker], unreachable: 0 }, None, false)
        };
        // The token endpoint alone: two failed rounds are below the threshold of three.
        let view = with_summary(integration.clone(), &observe(1), &now);
        assert_eq!(view.status.as_ref().unwrap().conditions[0].reason, "TokenEndpointUnreachable");
        assert!(router.evaluate(&view, now.0).is_none(), "below the threshold");

        // The certificate alone: four failed rounds fire.
        let view = with_summary(integration, &observe(2), &now);
        let decision = router.evaluate(&view, now.0).expect("four failed rounds fire");
        assert_eq!(decision.action, Action::Fire);
        let alert = &decision.alert;
        assert_eq!(alert.annotation("reason"), "CertificateExpiringSoon");
        assert_eq!(alert.annotation("consecutive_failures"), "4");
        assert!(
            alert.annotation("last_error").starts_with(
                "health check certificate:billing.acme.example:443 fails (CertificateExpiringSoon)"
            ),
            "the check, not the old mapping failure: {:?}",
            alert.annotations
        );
        assert_eq!(alert.label("owner_team"), "finance");
    }
}
