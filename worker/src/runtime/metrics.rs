//! Prometheus metrics of a worker (prometheus-client), served on the admin port's `/metrics`.
//!
//! Every series carries the constant labels `integration`, `namespace` and `owner_team`, so
//! one alert rule can route by owner. Names are stable API: dashboards and the operator's
//! alert rules use them.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `switchboard_worker_received_total` | route | requests received |
//! | `switchboard_worker_rejected_total` | route, reason | requests refused (auth, size, parse, ...) |
//! | `switchboard_worker_duplicates_total` | route | duplicates acknowledged, not processed again |
//! | `switchboard_worker_accepted_total` | route | events accepted (stored or delivered) |
//! | `switchboard_worker_filtered_total` | | events dropped by the filter |
//! | `switchboard_worker_delivered_total` | target | deliveries that succeeded |
//! | `switchboard_worker_retried_total` | target | retries made |
//! | `switchboard_worker_delivery_failures_total` | target, reason | deliveries that finally failed |
//! | `switchboard_worker_dead_lettered_total` | reason | events moved to the dead-letter store |
//! | `switchboard_worker_circuit_state` | target | 0 closed, 1 half-open, 2 open |
//! | `switchboard_worker_queue_depth` | | events waiting |
//! | `switchboard_worker_dead_letters_pending` | | dead letters not replayed |
//! | `switchboard_worker_ready` | | 1 when ready |
//! | `switchboard_worker_request_duration_seconds` | route | inbound request handling |
//! | `switchboard_worker_delivery_duration_seconds` | target | one delivery, retries included |
//! | `switchboard_worker_event_latency_seconds` | | acceptance to last target delivered |
//! | `switchboard_worker_rows_total` | result (`read`, `created`, `updated`, `rejected`) | rows of pulls, imports and database targets |
//! | `switchboard_worker_watermark_timestamp` | | a database pull's watermark, when it is a timestamp (seconds since the epoch) |
//! | `switchboard_worker_lineage_errors_total` | | OpenLineage events not accepted |
//! | `switchboard_worker_emails_total` | result | inbound emails: `handled`, `unmatched`, `failed` |
//! | `switchboard_worker_health_check` | check | 1 when a synthetic health check passes, else 0 |
//! | `switchboard_worker_certificate_expiry_timestamp_seconds` | check | `notAfter` of a checked certificate |

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use crate::delivery::Series;

use crate::config::WorkerConfig;

/// `route` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Webhook path or API route name.
    pub route: String,
}

/// `route` and `reason` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Webhook path or API route name.
    pub route: String,
    /// Short category.
    pub reason: String,
}

/// `target` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Target name.
    pub target: String,
}

/// `target` and `reason` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Target name.
    pub target: String,
    /// Short category.
    pub reason: String,
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Outcome (of an inbound email, or of a row).
    pub result: String,
}

/// `check` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Health check name (`target:incident`, `certificate:host:443`, ...).
    pub check: String,
}

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Short category.
    pub reason: String,
}

/// The series of one inbound route that every request counts into.
#[derive(Debug, Default)]
pub struct RouteSeries {
    received: Series<Counter>,
    accepted: Series<Counter>,
    request_duration: Series<Histogram>,
}

impl RouteSeries {
    /// `received_total{route}`.
    pub fn received(&self, metrics: &Metrics, route: &str) -> &Counter {
        self.received.of(&metrics.received, || RouteLabels { route: route.to_string() })
    }

    /// `accepted_total{route}`.
    pub fn accepted(&self, metrics: &Metrics, route: &str) -> &Counter {
        self.accepted.of(&metrics.accepted, || RouteLabels { route: route.to_string() })
    }

    /// `request_duration_seconds{route}`.
    pub fn request_duration(&self, metrics: &Metrics, route: &str) -> &Histogram {
        self.request_duration
            .of(&metrics.request_duration, || RouteLabels { route: route.to_string() })
    }
}

/// The series of one target that every delivery counts into.
#[derive(Debug, Default)]
pub struct TargetSeries {
    delivered: Series<Counter>,
    retried: Series<Counter>,
    delivery_duration: Series<Histogram>,
}

impl TargetSeries {
    /// `delivered_total{target}`.
    pub fn delivered(&self, metrics: &Metrics, target: &str) -> &Counter {
        self.delivered.of(&metrics.delivered, || TargetLabels { target: target.to_string() })
    }

    /// `retried_total{target}`.
    pub fn retried(&self, metrics: &Metrics, target: &str) -> &Counter {
        self.retried.of(&metrics.retried, || TargetLabels { target: target.to_string() })
    }

    /// `delivery_duration_seconds{target}`.
    pub fn delivery_duration(&self, metrics: &Metrics, target: &str) -> &Histogram {
        self.delivery_duration
            .of(&metrics.delivery_duration, || TargetLabels { target: target.to_string() })
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// All metrics of one worker.
pub struct Metrics {
    registry: Registry,
    /// Requests received.
    pub received: Family<RouteLabels, Counter>,
    /// Requests refused, by reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Duplicates acknowledged.
    pub duplicates: Family<RouteLabels, Counter>,
    /// Events accepted.
    pub accepted: Family<RouteLabels, Counter>,
    /// Events filtered.
    pub filtered: Counter,
    /// Deliveries that succeeded.
    pub delivered: Family<TargetLabels, Counter>,
    /// Retries.
    pub retried: Family<TargetLabels, Counter>,
    /// Deliveries that failed for good.
    pub delivery_failures: Family<FailureLabels, Counter>,
    /// Events dead-lettered.
    pub dead_lettered: Family<ReasonLabels, Counter>,
    /// Circuit state per target.
    pub circuit_state: Family<TargetLabels, Gauge>,
    /// Events waiting.
    pub queue_depth: Gauge,
    /// Dead letters pending.
    pub dead_letters_pending: Gauge,
    /// Readiness.
    pub ready: Gauge,
    /// Inbound handling time.
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Delivery time per target.
    pub delivery_duration: Family<TargetLabels, Histogram, fn() -> Histogram>,
    /// Acceptance to delivery.
    pub event_latency: Histogram,
    /// Rows by result.
    pub rows: Family<ResultLabels, Counter>,
    /// A timestamp watermark, in seconds since the epoch.
    pub watermark_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// OpenLineage events not accepted.
    pub lineage_errors: Counter,
    /// Inbound emails by result.
    pub emails: Family<ResultLabels, Counter>,
    /// Health checks: 1 passing, 0 failing.
    pub health_check: Family<CheckLabels, Gauge>,
    /// `notAfter` of checked certificates, in Unix seconds.
    pub certificate_expiry: Family<CheckLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics labelled for the config's subject and owner.
    pub fn for_config(config: &WorkerConfig) -> Metrics {
        Metrics::new(&config.subject.name, &config.subject.namespace, &config.owner.team)
    }

    /// Metrics with the given constant labels.
    pub fn new(integration: &str, namespace: &str, owner_team: &str) -> Metrics {
        let labels = [
            (Cow::Borrowed("integration"), Cow::Owned(integration.to_string())),
            (Cow::Borrowed("namespace"), Cow::Owned(namespace.to_string())),
            (Cow::Borrowed("owner_team"), Cow::Owned(owner_team.to_string())),
        ];
        // The owner labels go on the root, so that other modules' metrics registered there
        // (the outbound module's `switchboard_outbound_*`) carry them too; this module's own
        // metrics live under the `switchboard_worker` prefix.
        let mut root = Registry::with_labels(labels.into_iter());
        let registry = root.sub_registry_with_prefix("switchboard_worker");
        let m = Metrics {
            received: Family::default(),
            rejected: Family::default(),
            duplicates: Family::default(),
            accepted: Family::default(),
            filtered: Counter::default(),
            delivered: Family::default(),
            retried: Family::default(),
            delivery_failures: Family::default(),
            dead_lettered: Family::default(),
            circuit_state: Family::default(),
            queue_depth: Gauge::default(),
            dead_letters_pending: Gauge::default(),
            ready: Gauge::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            delivery_duration: Family::new_with_constructor(latency_histogram),
            event_latency: latency_histogram(),
            rows: Family::default(),
            watermark_timestamp: Gauge::default(),
            lineage_errors: Counter::default(),
            emails: Family::default(),
            health_check: Family::default(),
            certificate_expiry: Family::default(),
            registry: Registry::default(),
        };
        registry.register("received", "Inbound requests received", m.received.clone());
        registry.register("rejected", "Inbound requests refused, by reason", m.rejected.clone());
        registry.register(
            "duplicates",
            "Duplicate events acknowledged without processing",
            m.duplicates.clone(),
        );
        registry.register("accepted", "Events accepted (stored or delivered)", m.accepted.clone());
        registry.register("filtered", "Events dropped by the filter", m.filtered.clone());
        registry.register("delivered", "Successful deliveries per target", m.delivered.clone());
        registry.register("retried", "Delivery retries per target", m.retried.clone());
        registry.register(
            "delivery_failures",
            "Deliveries that failed after their retries, by reason",
            m.delivery_failures.clone(),
        );
        registry.register(
            "dead_lettered",
            "Events moved to the dead-letter store, by reason",
            m.dead_lettered.clone(),
        );
        registry.register(
            "circuit_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
            m.circuit_state.clone(),
        );
        registry.register(
            "queue_depth",
            "Events waiting in the durable queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "dead_letters_pending",
            "Dead letters not yet replayed",
            m.dead_letters_pending.clone(),
        );
        registry.register("ready", "1 when the worker is ready", m.ready.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer an inbound request",
            m.request_duration.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time to deliver to one target, retries included",
            m.delivery_duration.clone(),
        );
        registry.register(
            "event_latency_seconds",
            "Time from acceptance to delivery to every target",
            m.event_latency.clone(),
        );
        registry.register(
            "rows",
            "Rows of pulls, imports and database targets: read, created, updated, rejected",
            m.rows.clone(),
        );
        registry.register(
            "watermark_timestamp",
            "The database pull's watermark when it is a timestamp, in seconds since the epoch",
            m.watermark_timestamp.clone(),
        );
        registry.register(
            "lineage_errors",
            "OpenLineage run events the lineage endpoint did not accept",
            m.lineage_errors.clone(),
        );
        registry.register(
            "emails",
            "Inbound emails by result: handled, unmatched (left unread), failed (left for the next run)",
            m.emails.clone(),
        );
        registry.register(
            "health_check",
            "Synthetic health checks of external endpoints: 1 passing, 0 failing",
            m.health_check.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of checked server and client certificates, in Unix seconds",
            m.certificate_expiry.clone(),
        );
        Metrics { registry: root, ..m }
    }

    /// Count `n` rows with `result`.
    pub fn count_rows(&self, result: &str, n: u64) {
        if n > 0 {
            self.rows.get_or_create(&ResultLabels { result: result.into() }).inc_by(n);
        }
    }

    /// Record a timestamp watermark.
    pub fn set_watermark_timestamp(&self, seconds: f64) {
        self.watermark_timestamp.set(seconds);
    }

    /// The registry, to add metrics of other modules before serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Count a refused request.
    pub fn reject(&self, route: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels { route: route.into(), reason: reason.into() })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_owner_labels() {
        let m = Metrics::new("alerts", "ops", "noc");
        m.reject("/hook", "signature_mismatch");
        m.received.get_or_create(&RouteLabels { route: "/hook".into() }).inc();
        let text = m.encode();
        assert!(text.contains(
            r#"switchboard_worker_rejected_total{integration="alerts",namespace="ops",owner_team="noc",route="/hook",reason="signature_mismatch"} 1"#
        ), "{text}");
        assert!(text.contains("switchboard_worker_received_total"));
        assert!(text.contains("# TYPE switchboard_worker_queue_depth gauge"));
    }

    #[test]
    fn kept_series_count_into_their_family() {
        let m = Metrics::new("alerts", "ops", "noc");
        let route = RouteSeries::default();
        let target = TargetSeries::default();
        assert!(!m.encode().contains("route=\"/hook\""), "no series before it is counted");
        route.received(&m, "/hook").inc();
        route.received(&m, "/hook").inc();
        m.received.get_or_create(&RouteLabels { route: "/hook".into() }).inc();
        target.delivered(&m, "sink").inc();
        target.delivery_duration(&m, "sink").observe(0.001);
        let text = m.encode();
        assert!(text.contains(
            r#"switchboard_worker_received_total{integration="alerts",namespace="ops",owner_team="noc",route="/hook"} 3"#
        ), "{text}");
        assert!(text.contains(
            r#"switchboard_worker_delivered_total{integration="alerts",namespace="ops",owner_team="noc",target="sink"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"switchboard_worker_delivery_duration_seconds_count{integration="alerts",namespace="ops",owner_team="noc",target="sink"} 1"#
        ), "{text}");
        assert!(!text.contains("switchboard_worker_retried_total{"), "never counted: {text}");
    }
}
