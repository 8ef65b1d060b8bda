//! The bridge from the runtime's [`Deliverer`] to the outbound module's
//! [`Outbound::deliver`] (outboundMessage targets), to [`EmailTarget::deliver`] (email
//! targets, SMTP) and to database tables ([`TargetsDeliverer`]), and from the inbound side's
//! [`SecretLookup`] to the shared [`CredentialStore`] (files re-read when they change, so
//! rotation needs no restart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretSlice;

use super::delivery::{Deliverer, DeliveryFuture, TargetOutcome};
use crate::config::{RetryConfig, SecretRole, TargetConfig, TargetKind, WorkerConfig};
use crate::credentials::CredentialStore;
use crate::database::target::DatabaseTarget;
use crate::delivery::{AttemptResult, DeliveryOutcome, Outbound, TargetCall};
use crate::email::smtp::EmailTarget;
use crate::inbound::auth::SecretLookup;
use crate::queue::Attempt;
use crate::status::CircuitInfo;
use crate::transform::{Variables, variable_text};

impl SecretLookup for CredentialStore {
    fn secret(&self, credential: &str, role: SecretRole) -> Result<Arc<SecretSlice<u8>>, String> {
        self.get(credential).and_then(|c| c.secret(role)).map_err(|e| e.to_string())
    }
}

/// Delivers to OutboundMessage targets through [`Outbound`] and to email targets through
/// [`EmailTarget`].
pub struct OutboundDeliverer {
    outbound: Outbound,
    targets: Vec<TargetConfig>,
    /// Each outboundMessage target's call, parsed once.
    compiled: BTreeMap<String, TargetCall>,
    email: BTreeMap<String, EmailTarget>,
}

impl OutboundDeliverer {
    /// The outbound side (its credential store serves the inbound side too).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }
}

/// The deliverer of a config's outboundMessage and email targets. Database targets are
/// delivered by [`TargetsDeliverer`] (see [`deliverer_for`]).
pub fn outbound_deliverer(config: &WorkerConfig) -> Result<Arc<OutboundDeliverer>, String> {
    let outbound = Outbound::new(config).map_err(|e| e.to_string())?;
    let mut email = BTreeMap::new();
    let mut compiled = BTreeMap::new();
    for target in &config.targets {
        if let TargetKind::OutboundMessage(call) = &target.kind {
            let call =
                TargetCall::compile(call).map_err(|e| format!("target {:?}: {e}", target.name))?;
            compiled.insert(target.name.clone(), call);
        }
        if let TargetKind::Email(settings) = &target.kind {
            let egress = crate::outbound::egress::EgressPolicy::new(&config.egress)
                .map_err(|e| e.to_string())?;
            let sender = EmailTarget::new(
                &target.name,
                settings,
                outbound.clone(),
                Arc::new(egress),
                config.delivery.retry.clone(),
            )
            .map_err(|e| format!("target {:?}: {e}", target.name))?;
            email.insert(target.name.clone(), sender);
        }
    }
    Ok(Arc::new(OutboundDeliverer { outbound, targets: config.targets.clone(), compiled, email }))
}

/// The deliverer of every target of a config, as a trait object.
pub fn deliverer_for(config: &WorkerConfig) -> Result<Arc<dyn Deliverer>, String> {
    let outbound = outbound_deliverer(config)?;
    let databases = crate::import::database_targets(config).map_err(|e| e.to_string())?;
    if databases.is_empty() {
        return Ok(outbound as Arc<dyn Deliverer>);
    }
    Ok(Arc::new(TargetsDeliverer { outbound, databases, retry: config.delivery.retry.clone() }))
}

/// Delivers to database tables itself and to every other target through the
/// [`OutboundDeliverer`].
pub struct TargetsDeliverer {
    outbound: Arc<OutboundDeliverer>,
    databases: BTreeMap<String, Arc<DatabaseTarget>>,
    retry: RetryConfig,
}

impl Deliverer for TargetsDeliverer {
    fn deliver<'a>(
        &'a self,
        target: &'a TargetConfig,
        vars: &'a Variables,
        delivery_id: &'a str,
    ) -> DeliveryFuture<'a> {
        let Some(table) = self.databases.get(&target.name) else {
            return self.outbound.deliver(target, vars, delivery_id);
        };
        Box::pin(async move {
            let at = chrono::Utc::now();
            let started = Instant::now();
            let (result, attempts) = table.write_with_retry(vars, &self.retry).await;
            let (reason, message) = match &result {
                Ok(_) => (String::new(), String::new()),
                Err(e) if e.is_retryable() => ("retries_exhausted".to_string(), e.to_string()),
                Err(e) => (e.category().to_string(), e.to_string()),
            };
            TargetOutcome {
                delivered: result.is_ok(),
                attempts: vec![Attempt {
                    target: target.name.clone(),
                    at,
                    status: None,
                    reason: if result.is_ok() { "delivered".into() } else { reason.clone() },
                    message: message.clone(),
                    duration_ms: started.elapsed().as_millis() as u64,
                }],
                retries: u64::from(attempts.saturating_sub(1)),
                reason,
                message,
            }
        })
    }

    fn circuits(&self) -> Vec<CircuitInfo> {
        self.outbound.circuits()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.outbound.register_metrics(registry);
    }

    fn secrets(&self) -> Option<Arc<dyn SecretLookup>> {
        self.outbound.secrets()
    }

    fn outbound(&self) -> Option<Outbound> {
        Some(self.outbound.outbound().clone())
    }
}

/// Attempt records of the outbound module as stored in events and dead letters.
pub fn attempts_of(target: &str, outcome: &DeliveryOutcome, total_ms: u64) -> Vec<Attempt> {
    let records = outcome.attempts();
    let failure = outcome.failure();
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let start = r.offset.as_millis() as u64;
            let end = records
                .get(i + 1)
                .map(|next| next.offset.as_millis() as u64)
                .unwrap_or(total_ms)
                .saturating_sub(r.delay.map(|d| d.as_millis() as u64).unwrap_or(0));
            let (status, reason) = match &r.result {
                AttemptResult::Status(s) if (200..300).contains(s) => {
                    (Some(*s), "delivered".to_string())
                }
                AttemptResult::Status(s) => (Some(*s), format!("status_{s}")),
                AttemptResult::Error(category) => (None, (*category).to_string()),
                AttemptResult::CircuitOpen => (None, "circuit_open".to_string()),
            };
            let last = i + 1 == records.len();
            let message = match (last, failure) {
                (true, Some(f)) => match &f.excerpt {
                    Some(excerpt) => format!("{f}; response: {excerpt}"),
                    None => f.to_string(),
                },
                _ => String::new(),
            };
            Attempt {
                target: target.to_string(),
                at: r.at,
                status,
                reason,
                message,
                duration_ms: end.saturating_sub(start),
            }
        })
        .collect()
}

/// Short reason of an outcome that did not deliver.
pub fn failure_reason(outcome: &DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Delivered { .. } => String::new(),
        DeliveryOutcome::Exhausted { .. } => "retries_exhausted".into(),
        DeliveryOutcome::CircuitOpen { .. } => "circuit_open".into(),
        DeliveryOutcome::Failed { failure, .. } => match failure.status {
            Some(s) => format!("status_{s}"),
            None => failure.kind.category().to_string(),
        },
    }
}

fn failure_message(outcome: &DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::CircuitOpen { retry_in, .. } => {
            format!("the target's circuit is open; next probe in {}s", retry_in.as_secs())
        }
        other => other.failure().map(|f| f.to_string()).unwrap_or_default(),
    }
}

impl Deliverer for OutboundDeliverer {
    fn deliver<'a>(
        &'a self,
        target: &'a TargetConfig,
        vars: &'a Variables,
        delivery_id: &'a str,
    ) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let text: BTreeMap<String, String> =
                vars.iter().map(|(k, v)| (k.clone(), variable_text(v))).collect();
            if let (TargetKind::Email(_), Some(sender)) =
                (&target.kind, self.email.get(&target.name))
            {
                let outcome = sender.deliver(&text, delivery_id).await;
                return TargetOutcome {
                    delivered: outcome.delivered,
                    retries: (outcome.attempts.len() as u64).saturating_sub(1),
                    attempts: outcome.attempts,
                    reason: outcome.reason,
                    message: outcome.message,
                };
            }
            let TargetKind::OutboundMessage(call) = &target.kind else {
                return TargetOutcome {
                    delivered: false,
                    attempts: vec![],
                    retries: 0,
                    reason: "unsupported_target".into(),
                    message: format!("target {:?} has no deliverer in this worker", target.name),
                };
            };
            let started = Instant::now();
            let outcome = match self.compiled.get(&target.name) {
                Some(compiled) => {
                    self.outbound.deliver_compiled(call, compiled, &text, delivery_id).await
                }
                None => self.outbound.deliver(call, &text, delivery_id).await,
            };
            let attempts =
                attempts_of(&target.name, &outcome, started.elapsed().as_millis() as u64);
            let sent = outcome
                .attempts()
                .iter()
                .filter(|a| !matches!(a.result, AttemptResult::CircuitOpen))
                .count() as u64;
            TargetOutcome {
                delivered: outcome.is_delivered(),
                retries: sent.saturating_sub(1),
                reason: failure_reason(&outcome),
                message: failure_message(&outcome),
                attempts,
            }
        })
    }

    fn circuits(&self) -> Vec<CircuitInfo> {
        self.targets
            .iter()
            .filter_map(|t| match &t.kind {
                TargetKind::OutboundMessage(call) => Some(CircuitInfo {
                    target: t.name.clone(),
                    state: match self.outbound.circuit_state(call) {
                        crate::delivery::CircuitState::Closed => "closed",
                        crate::delivery::CircuitState::HalfOpen => "halfOpen",
                        crate::delivery::CircuitState::Open => "open",
                    }
                    .into(),
                }),
                _ => None,
            })
            .collect()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.outbound.register_metrics(registry);
    }

    fn secrets(&self) -> Option<Arc<dyn SecretLookup>> {
        Some(Arc::new(OutboundSecrets(self.outbound.clone())))
    }

    fn outbound(&self) -> Option<Outbound> {
        Some(self.outbound.clone())
    }
}

/// The outbound module's credential store, shared with the inbound side.
struct OutboundSecrets(Outbound);

impl SecretLookup for OutboundSecrets {
    fn secret(&self, credential: &str, role: SecretRole) -> Result<Arc<SecretSlice<u8>>, String> {
        self.0.credentials().secret(credential, role)
    }
}
