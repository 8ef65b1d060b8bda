//! The delivery side of the runtime: the [`Pipeline`] (transform, then each target), the
//! durable [`Dispatcher`] that drains the queue into it, and the two [`EventSink`]s the
//! inbound server hands events to.
//!
//! ```text
//!  durable:      inbound ─▶ QueueSink ─▶ queue (fsync) ─▶ Dispatcher ─▶ Pipeline ─▶ targets
//!                                                           │  filtered / delivered ─▶ complete
//!                                                           └─ mapping error / exhausted ─▶ dead letter
//!  synchronous:  inbound ─▶ SynchronousSink ─▶ Pipeline ─▶ targets ─▶ 2xx only after delivery
//! ```
//!
//! Every event that was acknowledged ends as delivered, filtered or dead-lettered, and each
//! of these is counted in the store's counters in the same transaction that removes it from
//! the queue. A crash between delivery and that transaction means one duplicate delivery,
//! with the same delivery id (idempotency key), never a loss.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use tokio::sync::{Semaphore, watch};

use super::health::Health;
use super::metrics::{FailureLabels, Metrics, ReasonLabels, TargetSeries};
use crate::config::TargetConfig;
use crate::inbound::{
    AcceptedEvent, EventSink, SinkFuture, SinkOutcome, expression_inputs, parse_stored_body,
};
use crate::queue::{Attempt, Completion, DeadLetter, Queue, QueuedEvent, sanitize_message};
use crate::status::CircuitInfo;
use crate::transform::{CelInput, Outcome, Transform, TransformError, Variables};

/// The result of delivering one event to one target, retries included.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutcome {
    /// Whether the target has the event.
    pub delivered: bool,
    /// Every attempt made.
    pub attempts: Vec<Attempt>,
    /// Retries made (attempts after the first).
    pub retries: u64,
    /// Short reason of the final failure (`retries_exhausted`, `status_400`, `circuit_open`, ...).
    pub reason: String,
    /// Sanitized message of the final failure.
    pub message: String,
}

/// Boxed future of a delivery.
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = TargetOutcome> + Send + 'a>>;

/// Delivers mapped variables to one target (the outbound module behind it).
pub trait Deliverer: Send + Sync + 'static {
    /// Deliver `vars` to `target`, retrying as its policy says; `delivery_id` is the same on
    /// every retry (idempotency key).
    fn deliver<'a>(
        &'a self,
        target: &'a TargetConfig,
        vars: &'a Variables,
        delivery_id: &'a str,
    ) -> DeliveryFuture<'a>;
    /// Circuit breaker states, for `/status` and metrics.
    fn circuits(&self) -> Vec<CircuitInfo> {
        Vec::new()
    }
    /// Add the deliverer's own metrics to the worker's registry.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
    /// The credential store the deliverer reads, to share with the inbound side.
    fn secrets(&self) -> Option<Arc<dyn crate::inbound::auth::SecretLookup>> {
        None
    }
    /// The outbound side the deliverer sends through, so that health checks share its
    /// credentials (and OAuth2 token cache) without touching its circuit breakers.
    fn outbound(&self) -> Option<crate::delivery::Outbound> {
        None
    }
}

/// What the pipeline made of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineResult {
    /// Dropped by the filter.
    Filtered,
    /// Every target has it.
    Delivered {
        /// Retries it took.
        retries: u64,
    },
    /// The transform failed.
    MappingFailed(TransformError),
    /// Some targets did not take it.
    Failed {
        /// Short reason.
        reason: String,
        /// Sanitized message.
        message: String,
        /// Targets still without it.
        failed_targets: Vec<String>,
        /// Retries made.
        retries: u64,
    },
}

/// Transform plus targets.
pub struct Pipeline {
    transform: Transform,
    inputs: Vec<&'static str>,
    targets: Vec<TargetConfig>,
    /// Each target's metric series, in the order of `targets`.
    series: Vec<TargetSeries>,
    deliverer: Arc<dyn Deliverer>,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// New pipeline.
    pub fn new(
        transform: Transform,
        targets: Vec<TargetConfig>,
        deliverer: Arc<dyn Deliverer>,
        metrics: Arc<Metrics>,
    ) -> Pipeline {
        let inputs = transform.referenced_inputs();
        let series = targets.iter().map(|_| TargetSeries::default()).collect();
        Pipeline { transform, inputs, targets, series, deliverer, metrics }
    }

    /// The deliverer (for circuit states).
    pub fn deliverer(&self) -> &Arc<dyn Deliverer> {
        &self.deliverer
    }

    /// Transform `event` and deliver it to its pending targets, recording attempts in it and
    /// removing each target that took it.
    pub async fn process(
        &self,
        event: &mut QueuedEvent,
        body: &serde_json::Value,
    ) -> PipelineResult {
        // Only what some expression reads is converted (most read `body` alone).
        let inputs = expression_inputs(event, body, &self.inputs);
        let refs: Vec<(&str, &serde_json::Value)> =
            inputs.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        let input = CelInput::new(&refs);
        let vars = match self.transform.apply(&input, body) {
            Ok(Outcome::Filtered) => return PipelineResult::Filtered,
            Ok(Outcome::Mapped(vars)) => vars,
            Err(e) => return PipelineResult::MappingFailed(e),
        };
        self.deliver_variables(event, &vars, &input).await
    }

    /// The compiled transform (a pull source that builds its own expression inputs applies
    /// it itself, then calls [`Pipeline::deliver_variables`]).
    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Deliver mapped `vars` to the event's pending targets (all targets when none are
    /// pending), each target's `when` evaluated against `input`; attempts are recorded in the
    /// event and each target that took it is removed from its pending list.
    pub async fn deliver_variables(
        &self,
        event: &mut QueuedEvent,
        vars: &Variables,
        input: &CelInput,
    ) -> PipelineResult {
        if event.pending_targets.is_empty() {
            event.pending_targets = self.targets.iter().map(|t| t.name.clone()).collect();
        }
        let mut retries = 0;
        let mut last_failure = None;
        let pending: Vec<String> = event.pending_targets.clone();
        let mut still: BTreeSet<String> = pending.iter().cloned().collect();
        for name in &pending {
            let Some(index) = self.targets.iter().position(|t| &t.name == name) else {
                // A target removed from the config since the event was stored: nothing to do.
                still.remove(name);
                continue;
            };
            let (target, series) = (&self.targets[index], &self.series[index]);
            match self.transform.target_accepts(name, input) {
                Ok(true) => {}
                Ok(false) => {
                    still.remove(name);
                    continue;
                }
                Err(e) => return PipelineResult::MappingFailed(e),
            }
            let started = Instant::now();
            let outcome = self.deliverer.deliver(target, vars, &event.id).await;
            series.delivery_duration(&self.metrics, name).observe(started.elapsed().as_secs_f64());
            if outcome.retries > 0 {
                series.retried(&self.metrics, name).inc_by(outcome.retries);
            }
            retries += outcome.retries;
            event.attempts.extend(outcome.attempts.into_iter().map(|mut a| {
                a.message = sanitize_message(&a.message);
                a
            }));
            if outcome.delivered {
                series.delivered(&self.metrics, name).inc();
                still.remove(name);
            } else {
                self.metrics
                    .delivery_failures
                    .get_or_create(&FailureLabels {
                        target: name.clone(),
                        reason: outcome.reason.clone(),
                    })
                    .inc();
                last_failure = Some((outcome.reason, sanitize_message(&outcome.message)));
            }
        }
        event.pending_targets = pending.into_iter().filter(|t| still.contains(t)).collect();
        match last_failure {
            None if event.pending_targets.is_empty() => PipelineResult::Delivered { retries },
            None => PipelineResult::Delivered { retries },
            Some((reason, message)) => PipelineResult::Failed {
                reason,
                message,
                failed_targets: event.pending_targets.clone(),
                retries,
            },
        }
    }
}

/// An event handed from the inbound side to the dispatcher in memory, right after it was
/// stored: its sequence number, the event and its parsed body.
pub type FastEvent = (u64, QueuedEvent, serde_json::Value);

/// Durable mode: events are acknowledged once stored.
pub struct QueueSink {
    /// The queue.
    pub queue: Queue,
    /// The dispatcher's in-memory inlet; when it is full (or absent) the dispatcher finds the
    /// event by scanning the store instead.
    pub fast: Option<tokio::sync::mpsc::Sender<FastEvent>>,
}

impl EventSink for QueueSink {
    fn seen(&self, source_id: &str) -> bool {
        self.queue.seen(source_id).unwrap_or(false)
    }

    fn accept(&self, accepted: AcceptedEvent) -> SinkFuture {
        let queue = self.queue.clone();
        let fast = self.fast.clone();
        Box::pin(async move {
            let AcceptedEvent { event, body } = accepted;
            // The event is handed to the dispatcher in memory below; the dispatcher is woken
            // to scan the store only when that fails.
            match queue.enqueue_unannounced(&event).await {
                Ok(seq) => {
                    let handed = fast.is_some_and(|fast| fast.try_send((seq, event, body)).is_ok());
                    if !handed {
                        // A full inlet is fine: the store has the event and the scan finds it.
                        queue.notify().notify_one();
                    }
                    SinkOutcome::Queued
                }
                Err(e) => {
                    tracing::error!(error = %e, "event not stored");
                    SinkOutcome::Refused {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        reason: format!("queue_{}", e.category()),
                        message: "the event could not be stored; retry later".into(),
                    }
                }
            }
        })
    }
}

/// Synchronous mode: events are acknowledged after delivery.
pub struct SynchronousSink {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Counters and dedup memory.
    pub queue: Queue,
    /// Outcome history.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl EventSink for SynchronousSink {
    fn seen(&self, source_id: &str) -> bool {
        self.queue.seen(source_id).unwrap_or(false)
    }

    fn accept(&self, accepted: AcceptedEvent) -> SinkFuture {
        let pipeline = self.pipeline.clone();
        let queue = self.queue.clone();
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let AcceptedEvent { mut event, body } = accepted;
            let started = Instant::now();
            let result = pipeline.process(&mut event, &body).await;
            let source_id = event.source_id.clone();
            match result {
                PipelineResult::Filtered => {
                    metrics.filtered.inc();
                    let _ = queue.complete_unqueued(Completion::Filtered, 0).await;
                    if let Some(id) = source_id {
                        let _ = queue.remember(id);
                    }
                    SinkOutcome::Filtered
                }
                PipelineResult::Delivered { retries } => {
                    metrics.event_latency.observe(started.elapsed().as_secs_f64());
                    let _ = queue.complete_unqueued(Completion::Delivered, retries).await;
                    if let Some(id) = source_id {
                        let _ = queue.remember(id);
                    }
                    health.success();
                    SinkOutcome::Delivered
                }
                PipelineResult::MappingFailed(e) => {
                    health.failure("MappingFailed", &e.to_string());
                    SinkOutcome::Refused {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        reason: e.category().into(),
                        message: e.to_string(),
                    }
                }
                PipelineResult::Failed { reason, message, failed_targets, .. } => {
                    health.failure(
                        "TargetUnavailable",
                        &format!("{}: {message}", failed_targets.join(", ")),
                    );
                    let status = if reason == "circuit_open" {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    SinkOutcome::Refused {
                        status,
                        reason: format!("delivery_{reason}"),
                        message: format!(
                            "target(s) {} did not accept the event",
                            failed_targets.join(", ")
                        ),
                    }
                }
            }
        })
    }
}

/// Drains the durable queue into the pipeline with bounded concurrency.
pub struct Dispatcher {
    /// The queue.
    pub queue: Queue,
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Outcome history.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Events handed over in memory by the inbound side (see [`QueueSink::fast`]).
    pub fast: Option<tokio::sync::mpsc::Receiver<FastEvent>>,
}

/// How many events are read from the store per scan.
const SCAN_BATCH: usize = 256;

/// How often the store is scanned even without a wake-up: the safety net for a missed one.
pub const SAFETY_SCAN_INTERVAL: Duration = Duration::from_secs(2);

impl Dispatcher {
    /// Run until `shutdown` turns true; then wait up to `grace` for deliveries in flight.
    /// Events still in flight stay in the queue and are delivered after the restart.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let concurrency = self.concurrency.max(1);
        let semaphore = Arc::new(Semaphore::new(concurrency));
        let mut fast = self.fast.take();
        let this = Arc::new(self);
        // Events at or below `cursor` were dispatched by a scan; `handed` holds events above
        // it that were dispatched from memory, so the next scan skips them unread.
        let mut cursor = 0u64;
        let mut handed: HashSet<u64> = HashSet::new();
        let mut scan = true;
        // One timer for the whole run: a fresh sleep per received event registered and
        // removed a timer for every event, and under steady traffic it never fired, so a
        // missed wake-up waited for a pause in the traffic (and `handed` grew until then).
        let mut safety_scan = tokio::time::interval(SAFETY_SCAN_INTERVAL);
        safety_scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        safety_scan.reset();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if scan {
                let batch =
                    match this.queue.scan_after(cursor, SCAN_BATCH, |seq| handed.contains(&seq)) {
                        Ok(batch) => batch,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the queue");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                                _ = shutdown.changed() => break,
                            }
                        }
                    };
                let full = batch.len() == SCAN_BATCH;
                scan = full;
                let mut stopped = false;
                for (seq, event) in batch {
                    cursor = seq;
                    let Some(event) = event else {
                        handed.remove(&seq);
                        continue;
                    };
                    let permit = tokio::select! {
                        p = semaphore.clone().acquire_owned() => p.expect("semaphore never closed"),
                        _ = shutdown.changed() => { stopped = true; break }
                    };
                    let this = this.clone();
                    tokio::spawn(async move {
                        // Boxed (here and below): the task is then small where tokio moves
                        // it, instead of the whole delivery's state (~3.5 KB) several times.
                        Box::pin(this.deliver_one(seq, event, None)).await;
                        drop(permit);
                    });
                }
                if stopped {
                    break;
                }
                if full {
                    handed.retain(|seq| *seq > cursor);
                } else {
                    // The scan saw every stored event above the old cursor, and everything in
                    // `handed` was stored before it began: what it did not see is finished.
                    handed.clear();
                }
                continue;
            }
            let received = tokio::select! {
                item = async { match fast.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => item,
                _ = this.queue.notify().notified() => { scan = true; continue }
                // A safety net: a missed wake-up costs at most this long, traffic or not.
                _ = safety_scan.tick() => { scan = true; continue }
                _ = shutdown.changed() => break,
            };
            let Some((seq, event, body)) = received else {
                fast = None;
                continue;
            };
            if seq <= cursor || !handed.insert(seq) {
                continue;
            }
            let permit = tokio::select! {
                p = semaphore.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = shutdown.changed() => break,
            };
            let this = this.clone();
            tokio::spawn(async move {
                Box::pin(this.deliver_one(seq, event, Some(body))).await;
                drop(permit);
            });
        }
        let drained = tokio::time::timeout(grace, semaphore.acquire_many(concurrency as u32)).await;
        if drained.is_err() {
            tracing::warn!("deliveries still in flight at shutdown stay queued for the next start");
        }
    }

    async fn deliver_one(&self, seq: u64, mut event: QueuedEvent, body: Option<serde_json::Value>) {
        let started = Instant::now();
        let body = match body.map(Ok).unwrap_or_else(|| parse_stored_body(&event)) {
            Ok(body) => body,
            Err(e) => {
                self.dead_letter(seq, event, "malformed_body", &e.to_string(), vec![], 0).await;
                return;
            }
        };
        match self.pipeline.process(&mut event, &body).await {
            PipelineResult::Filtered => {
                self.metrics.filtered.inc();
                if let Err(e) = self.queue.complete(seq, Completion::Filtered, 0) {
                    tracing::error!(error = %e, event = %event.id, "cannot complete event");
                }
            }
            PipelineResult::Delivered { retries } => {
                let since = (Utc::now() - event.received_at).to_std().unwrap_or(started.elapsed());
                self.metrics.event_latency.observe(since.as_secs_f64());
                self.health.success();
                if let Err(e) = self.queue.complete(seq, Completion::Delivered, retries) {
                    tracing::error!(error = %e, event = %event.id, "cannot complete event");
                }
            }
            PipelineResult::MappingFailed(e) => {
                let targets = event.pending_targets.clone();
                self.dead_letter(seq, event, e.category(), &e.to_string(), targets, 0).await;
            }
            PipelineResult::Failed { reason, message, failed_targets, retries } => {
                self.dead_letter(seq, event, &reason, &message, failed_targets, retries).await;
            }
        }
    }

    async fn dead_letter(
        &self,
        seq: u64,
        event: QueuedEvent,
        reason: &str,
        message: &str,
        failed_targets: Vec<String>,
        retries: u64,
    ) {
        let message = sanitize_message(message);
        tracing::warn!(event = %event.id, reason, message = %message, "event dead-lettered");
        self.health.failure(
            if reason == "mapping_failed" || reason == "cost_exceeded" {
                "MappingFailed"
            } else {
                "DeliveryFailed"
            },
            &format!("event {}: {message}", event.id),
        );
        self.metrics
            .dead_lettered
            .get_or_create(&ReasonLabels { reason: reason.to_string() })
            .inc();
        let dead = DeadLetter {
            id: event.id.clone(),
            dead_lettered_at: Utc::now(),
            reason: reason.to_string(),
            message,
            failed_targets,
            state: "pending".into(),
            event,
        };
        if let Err(e) = self.queue.dead_letter(Some(seq), dead, retries).await {
            // The event stays in the queue and is retried after a restart.
            tracing::error!(error = %e, "cannot write the dead letter");
        }
    }
}
