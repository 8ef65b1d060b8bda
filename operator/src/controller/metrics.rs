//! The operator's Prometheus metrics, served at `/metrics` (OpenMetrics text).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `switchboard_reconcile_total` | counter | `kind`, `result` (`success`, `error`) |
//! | `switchboard_reconcile_errors_total` | counter | `kind`, `category` |
//! | `switchboard_reconcile_duration_seconds` | histogram | `kind` |
//! | `switchboard_objects` | gauge | `kind`, `condition`, `status`, `owner_team` |
//!
//! `switchboard_objects` is computed from the controllers' caches at scrape time, so it is
//! always consistent with what the operator sees and costs nothing between scrapes.

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

/// Source of the objects gauge: every cached object's conditions.
pub trait ConditionSource: Send + Sync + 'static {
    /// Conditions of every object the operator caches.
    fn conditions(&self) -> Vec<ObjectLabels>;
}

/// The operator's metrics.
pub struct Metrics {
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile errors by kind and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration by kind.
    pub duration: Family<KindLabels, Histogram>,
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
        family.encode(metric)
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
        registry.register_collector(Box::new(ObjectsCollector { source: source.clone() }));
        Metrics { reconciles, errors, duration, source, registry }
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
    }
}
