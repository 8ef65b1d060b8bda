//! The evaluator: from an integration's health and its previous alert state to a verdict.
//!
//! ```text
//!   previous status.alert ──┐
//!   Healthy, since, failures ┼─▶ evaluate ─▶ Fire | Resolve | Nothing
//!   threshold, now ─────────┘
//! ```
//!
//! | previous | health | verdict |
//! |---|---|---|
//! | none or resolved | Healthy=False and a threshold is met | Fire |
//! | none or resolved | anything else | Nothing |
//! | firing | Healthy=True | Resolve |
//! | firing | Healthy=False or Unknown or absent | Nothing (deduplicated) |
//!
//! The consecutive failures are those of deliveries and runs, or the failed rounds of a
//! failing synthetic health check (`status.healthChecks`), whichever is more: a certificate
//! about to expire alerts once its check has failed `consecutiveFailures` rounds in a row.
//!
//! A threshold is met when the consecutive failures reach `consecutiveFailures`, **or** when
//! `failingFor` is set and `Healthy` has been False for at least that long (measured from the
//! condition's `lastTransitionTime`). Either way fires: `failingFor` is the way to alert on
//! integrations that run rarely, where consecutive failures accumulate slowly.
//!
//! The previous state is `status.alert`, stored in the API server, so a restarted operator
//! continues where the last one stopped: a firing alert is not fired again and a resolved one
//! is not resolved again. Pure: no clock, no I/O.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{AlertState, Integration, condition, parse_duration};

/// What to do about an integration's alert now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The threshold is crossed and no alert is firing: notify the routes.
    Fire,
    /// An alert is firing and the integration is healthy again: notify the routes.
    Resolve,
    /// Nothing changes.
    Nothing,
}

/// When an alert fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threshold {
    /// Consecutive failures that fire the alert.
    pub consecutive_failures: u64,
    /// Alternatively, how long `Healthy` must have been False.
    pub failing_for: Option<Duration>,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold { consecutive_failures: 3, failing_for: None }
    }
}

/// The health facts of an integration, read from its status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Health {
    /// The `Healthy` condition: `Some(true)`, `Some(false)`, or `None` when absent or Unknown.
    pub healthy: Option<bool>,
    /// When `Healthy` last changed (the start of the failure when it is False).
    pub since: Option<Timestamp>,
    /// Failed runs or deliveries since the last success, or failed rounds of a failing
    /// health check, whichever is more.
    pub consecutive_failures: u64,
}

impl Health {
    /// The health facts of an integration's status.
    pub fn of(integration: &Integration) -> Health {
        let Some(status) = integration.status.as_ref() else { return Health::default() };
        let healthy = status.conditions.iter().find(|c| c.type_ == condition::HEALTHY);
        let failed_rounds = status
            .health_checks
            .iter()
            .filter(|c| c.status == "False")
            .filter_map(|c| c.consecutive_failures)
            .max()
            .unwrap_or(0);
        Health {
            healthy: healthy.and_then(|c| match c.status.as_str() {
                "True" => Some(true),
                "False" => Some(false),
                _ => None,
            }),
            since: healthy.map(|c| c.last_transition_time.0),
            consecutive_failures: status.consecutive_failures.unwrap_or(0).max(failed_rounds),
        }
    }
}

/// Why a threshold could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alerting.threshold.failingFor: {0}")]
pub struct ThresholdError(String);

impl ThresholdError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        "invalid-threshold"
    }
}

impl Threshold {
    /// The threshold of an integration (the defaults when it has no `alerting`).
    pub fn of(integration: &Integration) -> Result<Threshold, ThresholdError> {
        let Some(alerting) = integration.spec.alerting.as_ref() else {
            return Ok(Threshold::default());
        };
        let failing_for = alerting
            .threshold
            .failing_for
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(ThresholdError)?;
        Ok(Threshold {
            consecutive_failures: u64::from(alerting.threshold.consecutive_failures.max(1)),
            failing_for,
        })
    }

    /// Whether failing `health` has crossed this threshold at `now`.
    pub fn is_crossed(&self, health: &Health, now: Timestamp) -> bool {
        if health.healthy != Some(false) {
            return false;
        }
        let by_count = health.consecutive_failures >= self.consecutive_failures;
        let by_time = match (self.failing_for, health.since) {
            (Some(wait), Some(since)) => {
                let failing = now.duration_since(since);
                !failing.is_negative() && failing.unsigned_abs() >= wait
            }
            _ => false,
        };
        by_count || by_time
    }
}

/// Whether the stored alert state says firing.
pub fn is_firing(previous: Option<&AlertState>) -> bool {
    previous.is_some_and(|state| state.state == "firing")
}

/// The verdict for an integration whose previous alert state is `previous`.
pub fn evaluate(
    previous: Option<&AlertState>,
    health: &Health,
    threshold: &Threshold,
    now: Timestamp,
) -> Verdict {
    if is_firing(previous) {
        if health.healthy == Some(true) { Verdict::Resolve } else { Verdict::Nothing }
    } else if threshold.is_crossed(health, now) {
        Verdict::Fire
    } else {
        Verdict::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn failing(since: i64, failures: u64) -> Health {
        Health { healthy: Some(false), since: Some(at(since)), consecutive_failures: failures }
    }

    fn state(word: &str, since: i64) -> AlertState {
        AlertState { state: word.into(), since: Time(at(since)), failed_routes: Vec::new() }
    }

    fn count(n: u64) -> Threshold {
        Threshold { consecutive_failures: n, failing_for: None }
    }

    #[test]
    fn consecutive_failures_fire_at_the_threshold_and_not_before() {
        assert_eq!(evaluate(None, &failing(0, 2), &count(3), at(10)), Verdict::Nothing);
        assert_eq!(evaluate(None, &failing(0, 3), &count(3), at(10)), Verdict::Fire);
        assert_eq!(evaluate(None, &failing(0, 30), &count(3), at(10)), Verdict::Fire);
        let healthy_with_old_count =
            Health { healthy: Some(true), since: Some(at(0)), consecutive_failures: 9 };
        assert_eq!(evaluate(None, &healthy_with_old_count, &count(3), at(10)), Verdict::Nothing);
    }

    #[test]
    fn failing_for_is_measured_from_the_healthy_false_transition() {
        let threshold =
            Threshold { consecutive_failures: 100, failing_for: Some(Duration::from_secs(300)) };
        assert_eq!(evaluate(None, &failing(0, 1), &threshold, at(299)), Verdict::Nothing);
        assert_eq!(evaluate(None, &failing(0, 1), &threshold, at(300)), Verdict::Fire);
        // A transition in the future (clock skew) never counts as failing long enough.
        assert_eq!(evaluate(None, &failing(500, 1), &threshold, at(300)), Verdict::Nothing);
        // Without a transition time only the count can fire.
        let unknown_since = Health { since: None, ..failing(0, 1) };
        assert_eq!(evaluate(None, &unknown_since, &threshold, at(9999)), Verdict::Nothing);
        // The count still fires on its own.
        assert_eq!(evaluate(None, &failing(0, 100), &threshold, at(1)), Verdict::Fire);
    }

    #[test]
    fn a_firing_alert_is_not_fired_again_while_the_problem_lasts() {
        let firing = state("firing", 5);
        for failures in [3, 4, 50] {
            assert_eq!(
                evaluate(Some(&firing), &failing(0, failures), &count(3), at(60)),
                Verdict::Nothing
            );
        }
        let unknown = Health { healthy: None, since: None, consecutive_failures: 0 };
        assert_eq!(evaluate(Some(&firing), &unknown, &count(3), at(60)), Verdict::Nothing);
    }

    #[test]
    fn resolve_happens_once_when_healthy_returns() {
        let healthy = Health { healthy: Some(true), since: Some(at(100)), consecutive_failures: 0 };
        assert_eq!(
            evaluate(Some(&state("firing", 5)), &healthy, &count(3), at(101)),
            Verdict::Resolve
        );
        // The caller stored `resolved`: the next evaluations do nothing.
        let resolved = state("resolved", 101);
        assert_eq!(evaluate(Some(&resolved), &healthy, &count(3), at(102)), Verdict::Nothing);
        assert_eq!(evaluate(Some(&resolved), &healthy, &count(3), at(9999)), Verdict::Nothing);
        // Nothing to resolve when nothing fired.
        assert_eq!(evaluate(None, &healthy, &count(3), at(102)), Verdict::Nothing);
    }

    #[test]
    fn a_new_failure_after_resolve_fires_a_new_alert() {
        let resolved = state("resolved", 101);
        assert_eq!(evaluate(Some(&resolved), &failing(200, 3), &count(3), at(201)), Verdict::Fire);
    }

    #[test]
    fn a_restarted_operator_continues_from_the_stored_state() {
        // The stored state is all a new process has; evaluating it again and again gives one
        // Fire, then Nothing until health returns, then one Resolve.
        let mut stored: Option<AlertState> = None;
        let mut verdicts = Vec::new();
        let timeline = [
            failing(0, 1),
            failing(0, 3),
            failing(0, 4),
            failing(0, 5),
            Health { healthy: Some(true), since: Some(at(50)), consecutive_failures: 0 },
            Health { healthy: Some(true), since: Some(at(50)), consecutive_failures: 0 },
        ];
        for (i, health) in timeline.iter().enumerate() {
            // A "restart" between every step: only `stored` carries over.
            let verdict = evaluate(stored.as_ref(), health, &count(3), at(10 * i as i64));
            match verdict {
                Verdict::Fire => stored = Some(state("firing", 10 * i as i64)),
                Verdict::Resolve => stored = Some(state("resolved", 10 * i as i64)),
                Verdict::Nothing => {}
            }
            verdicts.push(verdict);
        }
        use Verdict::*;
        assert_eq!(verdicts, vec![Nothing, Fire, Nothing, Nothing, Resolve, Nothing]);
    }

    #[test]
    fn thresholds_read_from_the_spec() {
        let mut integration: Integration = yaml_serde::from_str(
            r#"
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {name: x, namespace: ns}
spec:
  owner: {team: sre, contact: sre@example.com}
  dataFlow: {sourceSystem: A, targetSystem: B, classification: internal}
  source: {webhook: {auth: {type: none}}}
  targets: [{name: t, outboundMessage: {name: m, method: post}}]
"#,
        )
        .unwrap();
        assert_eq!(Threshold::of(&integration).unwrap(), Threshold::default());
        integration.spec.alerting = Some(
            yaml_serde::from_str("threshold: {consecutiveFailures: 5, failingFor: 10m}").unwrap(),
        );
        assert_eq!(
            Threshold::of(&integration).unwrap(),
            Threshold { consecutive_failures: 5, failing_for: Some(Duration::from_secs(600)) }
        );
    }
}
