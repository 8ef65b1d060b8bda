//! The operator's Prometheus metrics, served at `/metrics` (OpenMetrics text).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `switchboard_reconcile_total` | counter | `kind`, `result` (`success`, `error`) |
//! | `switchboard_reconcile_errors_total` | counter | `kind`, `category` |
//! | `switchboard_reconcile_duration_seconds` | histogram | `kind` |
//! | `switchboard_objects` | gauge | `kind`, `condition`, `status`, `owner_team` |
//! | `switchboard_integration_condition` | gauge (1 True, 0 False) | `namespace`, `integration`, `owner_team`, `condition` |
//! | `switchboard_credential_certificate_expiry_timestamp_seconds` | gauge | `namespace`, `credential`, `owner_team` |
//! | `switchboard_alert_notifications_total` | counter | `route_kind`, `result` (`success` or a failure category) |
//!
//! `switchboard_objects` and the two per-object gauges are computed from the controllers'
//! caches at scrape time, so they are always consistent with what the operator sees and cost
//! nothing between scrapes. A condition whose status is Unknown has no
//! `switchboard_integration_condition` series (absent, not 0): the chart's alerts fire on 0.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of reconcile counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Kind reconciled.
    pub kind: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

/// Labels of error counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Kind reconciled.
    pub kind: &'static str,
    /// Short error category.
    pub category: &'static str,
}

/// Labels of duration histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind reconciled.
    pub kind: &'static str,
}

/// Labels of the objects gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Kind of object.
    pub kind: String,
    /// Condition type.
    pub condition: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Owning team (empty when the object names none).
    pub owner_team: String,
}

/// Labels of the per-integration condition gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct IntegrationConditionLabels {
    /// Namespace of the Integration.
    pub namespace: String,
    /// Name of the Integration.
    pub integration: String,
    /// Owning team.
    pub owner_team: String,
    /// Condition type.
    pub condition: String,
}

/// Labels of the certificate expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CredentialLabels {
    /// Namespace of the Credential.
    pub namespace: String,
    /// Name of the Credential.
    pub credential: String,
    /// Owning team (empty when the Credential names none).
    pub owner_team: String,
}

/// Labels of the alert notification counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `alertmanager`, `pagerduty`, `slack`, `teams`, `email`, `webhook` (or `unknown` for a
    /// route that could not be read).
    pub route_kind: &'static str,
    /// `success`, or the failure category (`timeout`, `status`, `egress`, `credential`, ...).
    pub result: &'static str,
}

/// Source of the gauges computed at scrape time: the cached objects.
pub trait ConditionSource: Send + Sync + 'static {
    /// Conditions of every object the operator caches.
    fn conditions(&self) -> Vec<ObjectLabels>;

    /// Every Integration's True (`true`) or False (`false`) conditions.
    fn integration_conditions(&self) -> Vec<(IntegrationConditionLabels, bool)> {
        Vec::new()
    }

    /// Every Credential's client certificate expiry, in Unix seconds.
    fn certificate_expiries(&self) -> Vec<(CredentialLabels, i64)> {
        Vec::new()
    }
}

/// The operator's metrics.
pub struct Metrics {
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile errors by kind and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration by kind.
    pub duration: Family<KindLabels, Histogram>,
    /// Alert notifications by route kind and result.
    pub alert_notifications: Family<NotificationLabels, Counter>,
    source: Arc<OnceLock<Box<dyn ConditionSource>>>,
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ObjectsCollector {
    source: Arc<OnceLock<Box<dyn ConditionSource>>>,
}

impl std::fmt::Debug for dyn ConditionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConditionSource")
    }
}

impl Collector for ObjectsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts: BTreeMap<ObjectLabels, i64> = BTreeMap::new();
        if let Some(source) = self.source.get() {
            for labels in source.conditions() {
                *counts.entry(labels).or_default() += 1;
            }
        }
        let family = Family::<ObjectLabels, Gauge>::default();
        for (labels, count) in counts {
            family.get_or_create(&labels).set(count);
        }
        let metric = encoder.encode_descriptor(
            "switchboard_objects",
            "Switchboard objects by kind, condition, status and owning team",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)?;

        let conditions = Family::<IntegrationConditionLabels, Gauge>::default();
        let expiries = Family::<CredentialLabels, Gauge>::default();
        if let Some(source) = self.source.get() {
            for (labels, holds) in source.integration_conditions() {
                conditions.get_or_create(&labels).set(i64::from(holds));
            }
            for (labels, seconds) in source.certificate_expiries() {
                expiries.get_or_create(&labels).set(seconds);
            }
        }
        let metric = encoder.encode_descriptor(
            "switchboard_integration_condition",
            "Whether a condition of an Integration holds (1) or not (0); absent while Unknown",
            None,
            conditions.metric_type(),
        )?;
        conditions.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "switchboard_credential_certificate_expiry_timestamp_seconds",
            "When the client certificate of a Credential expires, in Unix seconds",
            None,
            expiries.metric_type(),
        )?;
        expiries.encode(metric)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let source = Arc::new(OnceLock::new());
        let mut registry = Registry::default();
        registry.register(
            "switchboard_reconcile",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "switchboard_reconcile_errors",
            "Reconcile errors by kind and category",
            errors.clone(),
        );
        registry.register(
            "switchboard_reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let alert_notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "switchboard_alert_notifications",
            "Alert notifications sent to routes, by route kind and result",
            alert_notifications.clone(),
        );
        registry.register_collector(Box::new(ObjectsCollector { source: source.clone() }));
        Metrics { reconciles, errors, duration, alert_notifications, source, registry }
    }
}

impl Metrics {
    /// Set where the objects gauge reads from (once the caches exist).
    pub fn set_condition_source(&self, source: Box<dyn ConditionSource>) {
        let _ = self.source.set(source);
    }

    /// Record one reconcile.
    pub fn observe(&self, kind: &'static str, seconds: f64, error: Option<&'static str>) {
        self.duration.get_or_create(&KindLabels { kind }).observe(seconds);
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles.get_or_create(&ReconcileLabels { kind, result }).inc();
        if let Some(category) = error {
            self.errors.get_or_create(&ErrorLabels { kind, category }).inc();
        }
    }

    /// Count one alert notification to a route of `route_kind`: `result` is `success` or the
    /// failure category.
    pub fn alert_notification(&self, route_kind: &'static str, result: &'static str) {
        self.alert_notifications.get_or_create(&NotificationLabels { route_kind, result }).inc();
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl ConditionSource for Fixed {
        fn conditions(&self) -> Vec<ObjectLabels> {
            let ready = |team: &str, status: &str| ObjectLabels {
                kind: "Integration".into(),
                condition: "Ready".into(),
                status: status.into(),
                owner_team: team.into(),
            };
            vec![ready("sre", "True"), ready("sre", "True"), ready("hr", "False")]
        }

        fn integration_conditions(&self) -> Vec<(IntegrationConditionLabels, bool)> {
            let labels = |name: &str, condition: &str| IntegrationConditionLabels {
                namespace: "shop".into(),
                integration: name.into(),
                owner_team: "sre".into(),
                condition: condition.into(),
            };
            vec![(labels("orders", "Healthy"), false), (labels("orders", "Ready"), true)]
        }

        fn certificate_expiries(&self) -> Vec<(CredentialLabels, i64)> {
            let labels = CredentialLabels {
                namespace: "shop".into(),
                credential: "client-cert".into(),
                owner_team: String::new(),
            };
            vec![(labels, 1_900_000_000)]
        }
    }

    #[test]
    fn metrics_are_named_and_labelled_as_documented() {
        let metrics = Metrics::default();
        metrics.set_condition_source(Box::new(Fixed));
        metrics.observe("Integration", 0.02, None);
        metrics.observe("Integration", 0.5, Some("api"));
        let text = metrics.encode();
        assert!(
            text.contains(r#"switchboard_reconcile_total{kind="Integration",result="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchboard_reconcile_errors_total{kind="Integration",category="api"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"switchboard_reconcile_duration_seconds_count{kind="Integration"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"switchboard_objects{kind="Integration",condition="Ready",status="True",owner_team="sre"} 2"#), "{text}");
        assert!(text.contains(r#"switchboard_objects{kind="Integration",condition="Ready",status="False",owner_team="hr"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_integration_condition{namespace="shop",integration="orders",owner_team="sre",condition="Healthy"} 0"#), "{text}");
        assert!(text.contains(r#"switchboard_integration_condition{namespace="shop",integration="orders",owner_team="sre",condition="Ready"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_credential_certificate_expiry_timestamp_seconds{namespace="shop",credential="client-cert",owner_team=""} 1900000000"#), "{text}");
    }

    #[test]
    fn alert_notifications_count_by_kind_and_result() {
        let metrics = Metrics::default();
        metrics.alert_notification("slack", "success");
        metrics.alert_notification("slack", "success");
        metrics.alert_notification("pagerduty", "timeout");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"switchboard_alert_notifications_total{route_kind="slack",result="success"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"switchboard_alert_notifications_total{route_kind="pagerduty",result="timeout"} 1"#), "{text}");
    }

    #[test]
    fn without_a_source_the_gauges_are_declared_but_empty() {
        let text = Metrics::default().encode();
        assert!(text.contains("# TYPE switchboard_integration_condition gauge"), "{text}");
        assert!(!text.contains("switchboard_integration_condition{"), "{text}");
    }
}
