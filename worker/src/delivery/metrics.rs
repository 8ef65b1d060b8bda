//! Delivery metrics, registered into the worker's Prometheus registry.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `switchboard_outbound_attempts_total` | endpoint, method, result, category | attempts by result (`delivered`, `retryable`, `permanent`, `circuit_open`) and failure category |
//! | `switchboard_outbound_retries_total` | endpoint, method | attempts after the first of a delivery |
//! | `switchboard_outbound_deliveries_total` | endpoint, method, outcome | final outcomes of `deliver` |
//! | `switchboard_outbound_request_duration_seconds` | endpoint, method | time of each attempt that sent a request |
//! | `switchboard_outbound_circuit_state` | endpoint | 0 closed, 1 half-open, 2 open |
//! | `switchboard_oauth2_token_requests_total` | credential | token requests sent |
//!
//! Labels carry names from the config only, never values from events or credentials.

use std::hash::Hash;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::OutboundCall;
use crate::credentials::CredentialStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AttemptLabels {
    pub(crate) endpoint: String,
    pub(crate) method: String,
    pub(crate) result: String,
    pub(crate) category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub(crate) endpoint: String,
    pub(crate) method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) endpoint: String,
    pub(crate) method: String,
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabels {
    pub(crate) endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The delivery metrics of one worker.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryMetrics {
    pub(crate) attempts: Family<AttemptLabels, Counter>,
    pub(crate) retries: Family<MethodLabels, Counter>,
    pub(crate) deliveries: Family<OutcomeLabels, Counter>,
    pub(crate) duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub(crate) circuit_state: Family<EndpointLabels, Gauge>,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics {
            attempts: Family::default(),
            retries: Family::default(),
            deliveries: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            circuit_state: Family::default(),
        }
    }
}

impl DeliveryMetrics {
    pub(crate) fn register(&self, registry: &mut Registry, credentials: &CredentialStore) {
        registry.register(
            "switchboard_outbound_attempts",
            "Outbound attempts by result and failure category",
            self.attempts.clone(),
        );
        registry.register(
            "switchboard_outbound_retries",
            "Outbound attempts after the first of a delivery",
            self.retries.clone(),
        );
        registry.register(
            "switchboard_outbound_deliveries",
            "Final outcomes of outbound deliveries",
            self.deliveries.clone(),
        );
        registry.register(
            "switchboard_outbound_request_duration_seconds",
            "Duration of outbound attempts that sent a request",
            self.duration.clone(),
        );
        registry.register(
            "switchboard_outbound_circuit_state",
            "Circuit breaker state per endpoint: 0 closed, 1 half-open, 2 open",
            self.circuit_state.clone(),
        );
        registry.register_collector(Box::new(TokenRequestCollector {
            credentials: credentials
                .iter()
                .filter_map(|c| c.oauth2().map(|cache| (c.name().to_string(), cache.clone())))
                .collect(),
        }));
    }
}

/// One series of a labelled family, looked up on first use and then kept: a hot path (a
/// route's requests, a target's deliveries) counts into it without building its label strings
/// and hashing them into the family for every event. The series shares its value with the
/// family, so `/metrics` shows it exactly as before, and only once it was first counted.
pub struct Series<M> {
    cell: OnceLock<M>,
}

impl<M> Default for Series<M> {
    fn default() -> Self {
        Series { cell: OnceLock::new() }
    }
}

impl<M> std::fmt::Debug for Series<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series").field("created", &self.cell.get().is_some()).finish()
    }
}

impl<M: Clone> Series<M> {
    /// The series of `family` with the labels `labels()` builds (called once).
    pub fn of<S, C>(&self, family: &Family<S, M, C>, labels: impl FnOnce() -> S) -> &M
    where
        S: Clone + Hash + Eq,
        C: MetricConstructor<M>,
    {
        self.cell.get_or_init(|| family.get_or_create_owned(&labels()))
    }
}

/// The circuit-breaker key of a call's endpoint.
pub(crate) fn breaker_key(call: &OutboundCall) -> String {
    format!("{}|{}", call.endpoint.name, call.endpoint.url)
}

/// What every successful delivery of one call touches: its breaker key and its series of
/// the families above, each looked up on first use and then kept, so that a delivery builds
/// no label strings. Failures, rarer, count through the families.
#[derive(Debug)]
pub(crate) struct CallSeries {
    pub(crate) breaker_key: String,
    endpoint: String,
    method: String,
    duration: Series<Histogram>,
    attempts_delivered: Series<Counter>,
    deliveries_delivered: Series<Counter>,
    circuit_state: Series<Gauge>,
}

impl CallSeries {
    pub(crate) fn new(call: &OutboundCall) -> CallSeries {
        CallSeries {
            breaker_key: breaker_key(call),
            endpoint: call.endpoint.name.clone(),
            method: call.method.name.clone(),
            duration: Series::default(),
            attempts_delivered: Series::default(),
            deliveries_delivered: Series::default(),
            circuit_state: Series::default(),
        }
    }

    pub(crate) fn method_labels(&self) -> MethodLabels {
        MethodLabels { endpoint: self.endpoint.clone(), method: self.method.clone() }
    }

    pub(crate) fn duration(&self, metrics: &DeliveryMetrics) -> &Histogram {
        self.duration.of(&metrics.duration, || self.method_labels())
    }

    pub(crate) fn attempts_delivered(&self, metrics: &DeliveryMetrics) -> &Counter {
        self.attempts_delivered.of(&metrics.attempts, || self.attempt_labels("delivered", ""))
    }

    pub(crate) fn attempt_labels(&self, result: &str, category: &str) -> AttemptLabels {
        AttemptLabels {
            endpoint: self.endpoint.clone(),
            method: self.method.clone(),
            result: result.into(),
            category: category.into(),
        }
    }

    pub(crate) fn deliveries_delivered(&self, metrics: &DeliveryMetrics) -> &Counter {
        self.deliveries_delivered.of(&metrics.deliveries, || self.outcome_labels("delivered"))
    }

    pub(crate) fn outcome_labels(&self, outcome: &str) -> OutcomeLabels {
        OutcomeLabels {
            endpoint: self.endpoint.clone(),
            method: self.method.clone(),
            outcome: outcome.into(),
        }
    }

    pub(crate) fn circuit_state(&self, metrics: &DeliveryMetrics) -> &Gauge {
        self.circuit_state
            .of(&metrics.circuit_state, || EndpointLabels { endpoint: self.endpoint.clone() })
    }
}

/// Reads the token request counters of the OAuth2 caches at scrape time.
#[derive(Debug)]
struct TokenRequestCollector {
    credentials: Vec<(String, std::sync::Arc<crate::credentials::TokenCache>)>,
}

impl prometheus_client::collector::Collector for TokenRequestCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let family: Family<CredentialLabels, Counter> = Family::default();
        for (name, cache) in &self.credentials {
            family
                .get_or_create(&CredentialLabels { credential: name.clone() })
                .inner()
                .store(cache.token_requests(), std::sync::atomic::Ordering::Relaxed);
        }
        let metric_encoder = encoder.encode_descriptor(
            "switchboard_oauth2_token_requests",
            "OAuth2 token requests sent",
            None,
            family.metric_type(),
        )?;
        family.encode(metric_encoder)
    }
}
