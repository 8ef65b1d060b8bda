//! Alert routing: a failing integration pages its owner's on-call (issue 7).
//!
//! ```text
//!   status aggregation (caller)                        this module
//!   ───────────────────────────                        ───────────
//!   Integration with fresh Healthy, failures ──▶ AlertRouter::evaluate ── pure ──▶ Option<AlertDecision>
//!                                                  (evaluate::evaluate + retry/refresh timers)
//!   decision ─────────────────────────────────▶ AlertRouter::notify
//!                                                  routes: own + namespace default + cluster default
//!                                                  resolve credentials (Credential → Secret, API)
//!                                                  send all routes at once, each ≤ routeDeadline,
//!                                                  ≤ maxInFlight sends in the whole operator
//!                                                  metric, Warning Event AlertRouteFailed per failure
//!   status.alert ◀── NotifyOutcome.state ◀──────┘
//! ```
//!
//! The caller owns the status write: it stores `NotifyOutcome::state` in `status.alert`. That
//! stored state is what deduplicates: a firing alert is not fired again while the problem
//! lasts — also after an operator restart — and is resolved exactly once when `Healthy`
//! returns to True ([`evaluate`]).
//!
//! A failing route never blocks: every route has its own time budget, failures are recorded
//! in `status.alert.failedRoutes`, counted in `switchboard_alert_notifications_total` and
//! published as a Warning Event `AlertRouteFailed` naming the route and the category, while
//! the other routes still get the alert. Failed routes are retried by later evaluations
//! (every `retryFailedEvery`), and Alertmanager routes of a firing alert are refreshed every
//! `alertmanagerRefreshEvery` (Alertmanager drops alerts that are not re-sent).
//!
//! Secret values (routing keys, webhook paths, passwords, signing keys) go only to their own
//! endpoint: they are redacted from the alert texts and from every error, and never logged.

pub mod evaluate;
pub mod http;
pub mod model;
pub mod routes;
pub mod senders;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;

use crate::api::{AlertState, Integration};
use crate::controller::leader::LeaderGuard;
use crate::controller::metrics::Metrics;
use evaluate::{Health, Threshold, Verdict, is_firing};
use http::{HttpTransport, RetrySettings, SendError};
use model::{Alert, AlertStatus, build_alert};
use routes::{Origin, RouteError, RouteKind, RouteSpec};
use senders::{SenderSettings, Transport, sender_for};

/// Event reason of a route that failed to take a notification.
pub const REASON_ROUTE_FAILED: &str = "AlertRouteFailed";
/// Event reason of an alert that fired.
pub const REASON_FIRING: &str = "AlertFiring";
/// Event reason of an alert that resolved.
pub const REASON_RESOLVED: &str = "AlertResolved";

/// Settings of the router.
#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// The operator's namespace: where the cluster default routes and their Credentials live.
    pub operator_namespace: String,
    /// Shared sender settings (links, Alertmanager hold time).
    pub senders: SenderSettings,
    /// Per-attempt timeout and retries of each route.
    pub retry: RetrySettings,
    /// Most time one route may take, retries and waiting for a send slot included.
    pub route_deadline: Duration,
    /// Most time reading routes and credentials may take.
    pub resolve_deadline: Duration,
    /// Sends in flight at once, over all integrations.
    pub max_in_flight: usize,
    /// How often failed routes are tried again while the alert state holds.
    pub retry_failed_every: Duration,
    /// How often a firing alert is re-posted to Alertmanager routes.
    pub alertmanager_refresh_every: Duration,
}

impl AlertSettings {
    /// Defaults, with the cluster default routes in `operator_namespace`.
    pub fn new(operator_namespace: impl Into<String>) -> AlertSettings {
        AlertSettings {
            operator_namespace: operator_namespace.into(),
            senders: SenderSettings::default(),
            retry: RetrySettings::default(),
            route_deadline: Duration::from_secs(20),
            resolve_deadline: Duration::from_secs(10),
            max_in_flight: 16,
            retry_failed_every: Duration::from_secs(300),
            alertmanager_refresh_every: Duration::from_secs(900),
        }
    }
}

/// What a decision asks of the routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The alert fires: notify every route.
    Fire,
    /// The alert resolves: notify every route.
    Resolve,
    /// Try again the routes that failed to take the current state (ids as in `failedRoutes`).
    RetryFailed(Vec<String>),
    /// Re-post the firing alert to the Alertmanager routes.
    Refresh,
}

/// A decision to notify, from [`AlertRouter::evaluate`].
#[derive(Clone, Debug)]
pub struct AlertDecision {
    /// What to do.
    pub action: Action,
    /// The alert to send.
    pub alert: Alert,
    /// The integration (its routes, namespace and Events).
    pub integration: Integration,
    /// `status.alert` as it was.
    pub previous: Option<AlertState>,
}

/// Why one route did not take a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFailure {
    /// Short category (`timeout`, `status`, `egress`, `credential`, ...).
    pub category: &'static str,
    /// What happened, for logs (redacted, one line; no URL).
    pub message: String,
    /// Category with the HTTP status when there is one, for Events.
    pub short: String,
}

/// The result for one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOutcome {
    /// Route id (`name`, `namespace-default/name`, `cluster-default/name`).
    pub route: String,
    /// Its kind, when it could be read.
    pub kind: Option<RouteKind>,
    /// `None` when the route took the notification.
    pub failure: Option<RouteFailure>,
}

/// What [`AlertRouter::notify`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyOutcome {
    /// The state to store in `status.alert`.
    pub state: AlertState,
    /// Per route.
    pub routes: Vec<RouteOutcome>,
}

impl NotifyOutcome {
    /// Ids of the routes that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.routes.iter().filter(|r| r.failure.is_some()).map(|r| r.route.as_str()).collect()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    last_attempt: Option<Instant>,
    last_refresh: Option<Instant>,
}

/// Routes alerts of failing integrations to their owners' on-call.
pub struct AlertRouter {
    client: Client,
    metrics: Arc<Metrics>,
    leader: LeaderGuard,
    reporter: Reporter,
    settings: AlertSettings,
    transport: Transport,
    slots: Arc<Semaphore>,
    timers: Mutex<HashMap<String, Timers>>,
}

impl std::fmt::Debug for AlertRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertRouter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AlertRouter {
    /// A router writing Events as `reporter` while `leader` allows.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        leader: LeaderGuard,
        reporter: Reporter,
        settings: AlertSettings,
    ) -> AlertRouter {
        let transport = Transport {
            http: HttpTransport::new(settings.retry.clone()),
            settings: settings.senders.clone(),
        };
        AlertRouter {
            slots: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            client,
            metrics,
            leader,
            reporter,
            settings,
            transport,
            timers: Mutex::new(HashMap::new()),
        }
    }

    /// A router sharing the controllers' client, metrics, leader guard and Event identity.
    pub fn from_context(ctx: &crate::controller::Context, settings: AlertSettings) -> AlertRouter {
        AlertRouter::new(
            ctx.client.clone(),
            ctx.metrics.clone(),
            ctx.leader.clone(),
            ctx.reporter.clone(),
            settings,
        )
    }

    fn key(integration: &Integration) -> String {
        format!("{}/{}", integration.namespace().unwrap_or_default(), integration.name_any())
    }

    /// What to do about `integration` (with its freshly aggregated `Healthy` condition and
    /// failure counts; `status.alert` as stored) at `now`. No I/O.
    pub fn evaluate(&self, integration: &Integration, now: Timestamp) -> Option<AlertDecision> {
        let previous = integration.status.as_ref().and_then(|s| s.alert.clone());
        let health = Health::of(integration);
        let threshold = Threshold::of(integration).unwrap_or_else(|error| {
            tracing::warn!(integration = %Self::key(integration), %error, "using the default alert threshold");
            Threshold::default()
        });
        let decision = |action: Action, alert: Alert| AlertDecision {
            action,
            alert,
            integration: integration.clone(),
            previous: previous.clone(),
        };
        match evaluate::evaluate(previous.as_ref(), &health, &threshold, now) {
            Verdict::Fire => {
                let starts_at = whole_seconds(health.since.filter(|s| *s <= now).unwrap_or(now));
                let alert = build_alert(integration, AlertStatus::Firing, starts_at, None);
                Some(decision(Action::Fire, alert))
            }
            Verdict::Resolve => {
                let starts_at = previous.as_ref().map(|p| p.since.0).unwrap_or(now);
                let ends_at = whole_seconds(
                    health.since.filter(|s| *s <= now && *s >= starts_at).unwrap_or(now),
                );
                let alert =
                    build_alert(integration, AlertStatus::Resolved, starts_at, Some(ends_at));
                Some(decision(Action::Resolve, alert))
            }
            Verdict::Nothing => {
                let previous_state = previous.as_ref()?;
                let timers = self.timers_of(integration);
                let due = |last: Option<Instant>, every: Duration| {
                    last.is_none_or(|at| at.elapsed() >= every)
                };
                let since = previous_state.since.0;
                let firing = is_firing(previous.as_ref());
                let alert = if firing {
                    build_alert(integration, AlertStatus::Firing, since, None)
                } else {
                    build_alert(integration, AlertStatus::Resolved, since, Some(since))
                };
                if !previous_state.failed_routes.is_empty()
                    && due(timers.last_attempt, self.settings.retry_failed_every)
                {
                    let ids = previous_state.failed_routes.clone();
                    return Some(decision(Action::RetryFailed(ids), alert));
                }
                if firing && due(timers.last_refresh, self.settings.alertmanager_refresh_every) {
                    return Some(decision(Action::Refresh, alert));
                }
                None
            }
        }
    }

    /// The decision for an integration being deleted: resolve a firing alert, so that no
    /// page stays open for an integration that no longer exists.
    pub fn evaluate_deletion(
        &self,
        integration: &Integration,
        now: Timestamp,
    ) -> Option<AlertDecision> {
        let previous = integration.status.as_ref().and_then(|s| s.alert.clone());
        if !is_firing(previous.as_ref()) {
            return None;
        }
        let starts_at = previous.as_ref().map(|p| p.since.0).unwrap_or(now);
        let alert =
            build_alert(integration, AlertStatus::Resolved, starts_at, Some(whole_seconds(now)));
        Some(AlertDecision {
            action: Action::Resolve,
            alert,
            integration: integration.clone(),
            previous,
        })
    }

    fn timers_of(&self, integration: &Integration) -> Timers {
        let timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        timers.get(&Self::key(integration)).copied().unwrap_or_default()
    }

    fn touch(&self, integration: &Integration, action: &Action) {
        let mut timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = timers.entry(Self::key(integration)).or_default();
        let now = Instant::now();
        entry.last_attempt = Some(now);
        if matches!(action, Action::Fire | Action::Refresh) {
            entry.last_refresh = Some(now);
        }
    }

    /// Forget the timers of a deleted integration.
    pub fn forget(&self, integration: &Integration) {
        self.timers.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::key(integration));
    }

    /// Evaluate and notify in one call: the new `status.alert` when it changes.
    pub async fn process(&self, integration: &Integration, now: Timestamp) -> Option<AlertState> {
        let decision = self.evaluate(integration, now)?;
        let previous = decision.previous.clone();
        let outcome = self.notify(decision).await?;
        (Some(&outcome.state) != previous.as_ref()).then_some(outcome.state)
    }

    /// Send a decision to its routes, each within its own time budget, and return the state
    /// to store in `status.alert`. Route failures are in the outcome, the metric, the log
    /// and Events. `None` when this replica does not lead: it sends nothing (a standby never
    /// pages anyone) and has nothing to store.
    pub async fn notify(&self, decision: AlertDecision) -> Option<NotifyOutcome> {
        if !self.leader.is_leader() {
            tracing::debug!(integration = %Self::key(&decision.integration), "not the leader: no alert sent");
            return None;
        }
        let integration = &decision.integration;
        let (specs, mut outcomes) = match tokio::time::timeout(
            self.settings.resolve_deadline,
            self.route_specs(integration),
        )
        .await
        {
            Ok(found) => found,
            Err(_) => (
                Vec::new(),
                vec![unreadable(
                    "namespace-default",
                    "api",
                    "reading the default routes timed out",
                )],
            ),
        };
        let all_ids: BTreeSet<String> = specs
            .iter()
            .map(RouteSpec::id)
            .chain(["namespace-default".to_string(), "cluster-default".to_string()])
            .collect();
        let selected: Vec<bool> = specs.iter().map(|s| selects(&decision.action, s)).collect();
        if matches!(decision.action, Action::Refresh) {
            outcomes.clear();
        } else if let Action::RetryFailed(ids) = &decision.action {
            outcomes.retain(|o| ids.contains(&o.route));
        }

        // Read every route's credentials, also those of routes not notified now: the alert's
        // texts are redacted of every secret value the integration's routes hold.
        let resolved = futures::future::join_all(specs.iter().map(|spec| async move {
            let read = tokio::time::timeout(
                self.settings.resolve_deadline,
                routes::resolve(&self.client, spec),
            )
            .await;
            match read {
                Ok(result) => (spec.id(), spec.kind(), result),
                Err(_) => (
                    spec.id(),
                    spec.kind(),
                    Err(RouteError::Api {
                        route: spec.id(),
                        reason: "reading the Credential timed out".into(),
                    }),
                ),
            }
        }))
        .await;
        let secrets: Vec<String> = resolved
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .flat_map(|r| r.secret_texts())
            .collect();
        let alert = decision.alert.clone().redacted(&secrets);

        let mut senders = Vec::new();
        let chosen =
            resolved.into_iter().zip(selected).filter_map(|(r, chosen)| chosen.then_some(r));
        for (id, kind, result) in chosen {
            match result {
                Ok(route) => senders.push((id, route.kind, sender_for(route))),
                Err(error) => outcomes.push(RouteOutcome {
                    route: id,
                    kind,
                    failure: Some(RouteFailure {
                        category: error.category(),
                        message: redact(&error.to_string(), &secrets),
                        short: error.category().to_string(),
                    }),
                }),
            }
        }
        let sent = futures::future::join_all(senders.iter().map(|(id, kind, sender)| {
            let (alert, secrets) = (&alert, &secrets);
            async move {
                let deadline = self.settings.route_deadline;
                let result = tokio::time::timeout(deadline, async {
                    let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
                    sender.send(alert, &self.transport).await
                })
                .await
                .unwrap_or(Err(SendError::Deadline(deadline)));
                RouteOutcome {
                    route: id.clone(),
                    kind: Some(*kind),
                    failure: result.err().map(|error| RouteFailure {
                        category: error.category(),
                        message: redact(&error.to_string(), secrets),
                        short: error.short(),
                    }),
                }
            }
        }))
        .await;
        outcomes.extend(sent);
        self.touch(integration, &decision.action);

        let state = next_state(&decision, &outcomes, &all_ids);
        self.report(&decision, &alert, &outcomes).await;
        Some(NotifyOutcome { state, routes: outcomes })
    }

    async fn route_specs(&self, integration: &Integration) -> (Vec<RouteSpec>, Vec<RouteOutcome>) {
        let namespace = integration.namespace().unwrap_or_default();
        let uses_defaults = integration.spec.alerting.as_ref().is_none_or(|a| a.use_default_routes);
        let mut problems = Vec::new();
        let mut read = |origin: &str, result: Result<Vec<_>, RouteError>| match result {
            Ok(routes) => routes,
            Err(error) => {
                problems.push(unreadable(origin, error.category(), &error.to_string()));
                Vec::new()
            }
        };
        let (namespace_defaults, cluster_defaults) = if uses_defaults {
            let own = routes::default_routes(&self.client, &namespace).await;
            let own = read("namespace-default", own);
            // In the operator's own namespace the two defaults are the same ConfigMap.
            let cluster = if namespace == self.settings.operator_namespace {
                Vec::new()
            } else {
                let cluster =
                    routes::default_routes(&self.client, &self.settings.operator_namespace).await;
                read("cluster-default", cluster)
            };
            (own, cluster)
        } else {
            (Vec::new(), Vec::new())
        };
        let specs = routes::routes_for(
            integration,
            &namespace_defaults,
            &cluster_defaults,
            &self.settings.operator_namespace,
        );
        (specs, problems)
    }

    async fn report(&self, decision: &AlertDecision, alert: &Alert, outcomes: &[RouteOutcome]) {
        let integration = &decision.integration;
        let key = Self::key(integration);
        let word = alert.status.as_str();
        for outcome in outcomes {
            let kind = outcome.kind.map_or("unknown", RouteKind::as_str);
            match &outcome.failure {
                None => {
                    self.metrics.alert_notification(kind, "success");
                    tracing::info!(integration = %key, route = %outcome.route, route_kind = kind, state = word, "alert notification sent");
                }
                Some(failure) => {
                    self.metrics.alert_notification(kind, failure.category);
                    tracing::warn!(integration = %key, route = %outcome.route, route_kind = kind, state = word,
                        category = failure.category, error = %failure.message, "alert route failed");
                    let note = format!(
                        "alert route {} ({kind}) did not take the {word} alert: {}",
                        outcome.route, failure.short
                    );
                    self.event(integration, EventType::Warning, REASON_ROUTE_FAILED, &note).await;
                }
            }
        }
        let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
        let (reason, type_) = match decision.action {
            Action::Fire => (REASON_FIRING, EventType::Warning),
            Action::Resolve => (REASON_RESOLVED, EventType::Normal),
            _ => return,
        };
        let note = format!(
            "{} alert {} sent to {} of {} routes ({})",
            word,
            model::ALERT_NAME,
            outcomes.len() - failed,
            outcomes.len(),
            alert.annotation("reason")
        );
        self.event(integration, type_, reason, &note).await;
    }

    async fn event(&self, integration: &Integration, type_: EventType, reason: &str, note: &str) {
        if !self.leader.is_leader() {
            return;
        }
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(crate::controller::conditions::truncate(note, 1024)),
            action: "Alert".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &integration.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish an Event");
        }
    }
}

/// `time` without its fraction of a second: `status.alert.since` is stored in whole seconds,
/// and the alert's times must read back the same after a restart.
fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

fn unreadable(route: &str, category: &'static str, message: &str) -> RouteOutcome {
    RouteOutcome {
        route: route.into(),
        kind: None,
        failure: Some(RouteFailure {
            category,
            message: model::one_line(message, 512),
            short: category.to_string(),
        }),
    }
}

fn selects(action: &Action, spec: &RouteSpec) -> bool {
    match action {
        Action::Fire | Action::Resolve => true,
        Action::Refresh => spec.kind() == Some(RouteKind::Alertmanager),
        Action::RetryFailed(ids) => {
            let marker = match spec.origin {
                Origin::Integration => None,
                Origin::NamespaceDefault => Some("namespace-default"),
                Origin::ClusterDefault => Some("cluster-default"),
            };
            ids.contains(&spec.id()) || marker.is_some_and(|m| ids.iter().any(|id| id == m))
        }
    }
}

fn redact(text: &str, secrets: &[String]) -> String {
    switchboard_worker::outbound::http::sanitize_excerpt(text.as_bytes(), 512, secrets)
}

/// The `status.alert` after `outcomes` of `decision`: a new state for Fire and Resolve,
/// the same state with updated failed routes otherwise. Pure.
pub fn next_state(
    decision: &AlertDecision,
    outcomes: &[RouteOutcome],
    current_ids: &BTreeSet<String>,
) -> AlertState {
    let failed_now: BTreeSet<String> =
        outcomes.iter().filter(|o| o.failure.is_some()).map(|o| o.route.clone()).collect();
    let attempted: BTreeSet<&str> = outcomes.iter().map(|o| o.route.as_str()).collect();
    let (state, since, carried) = match (&decision.action, &decision.previous) {
        (Action::Fire, _) | (Action::Resolve, _) | (_, None) => {
            let since = match decision.alert.status {
                AlertStatus::Firing => decision.alert.starts_at,
                AlertStatus::Resolved => decision.alert.ends_at.unwrap_or(decision.alert.starts_at),
            };
            (decision.alert.status.as_str().to_string(), Time(since), BTreeSet::new())
        }
        (action, Some(previous)) => {
            let retried: BTreeSet<&str> = match action {
                Action::RetryFailed(ids) => ids.iter().map(String::as_str).collect(),
                _ => BTreeSet::new(),
            };
            let carried = previous
                .failed_routes
                .iter()
                .filter(|id| !attempted.contains(id.as_str()) && !retried.contains(id.as_str()))
                .filter(|id| current_ids.contains(*id))
                .cloned()
                .collect();
            (previous.state.clone(), previous.since.clone(), carried)
        }
    };
    let failed_routes = carried.union(&failed_now).cloned().collect();
    AlertState { state, since, failed_routes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration() -> Integration {
        yaml_serde::from_str(
            r#"
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {name: orders, namespace: shop}
spec:
  owner: {team: sre, contact: sre@example.com, onCall: sre-primary}
  dataFlow: {sourceSystem: Shop, targetSystem: ERP, classification: confidential}
  source: {webhook: {auth: {type: none}}}
  targets: [{name: t, outboundMessage: {name: m, method: post}}]
"#,
        )
        .unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn decision(
        action: Action,
        status: AlertStatus,
        previous: Option<AlertState>,
    ) -> AlertDecision {
        AlertDecision {
            action,
            alert: build_alert(
                &integration(),
                status,
                at(0),
                (status == AlertStatus::Resolved).then(|| at(50)),
            ),
            integration: integration(),
            previous,
        }
    }

    fn outcome(route: &str, ok: bool) -> RouteOutcome {
        RouteOutcome {
            route: route.into(),
            kind: Some(RouteKind::Slack),
            failure: (!ok).then(|| RouteFailure {
                category: "timeout",
                message: "x".into(),
                short: "timeout".into(),
            }),
        }
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter()
            .map(|s| s.to_string())
            .chain(["namespace-default".into(), "cluster-default".into()])
            .collect()
    }

    #[test]
    fn firing_and_resolving_start_new_states_with_the_failed_routes() {
        let fired = next_state(
            &decision(Action::Fire, AlertStatus::Firing, None),
            &[outcome("a", true), outcome("b", false)],
            &ids(&["a", "b"]),
        );
        assert_eq!((fired.state.as_str(), fired.since.0), ("firing", at(0)));
        assert_eq!(fired.failed_routes, vec!["b".to_string()]);
        let resolved = next_state(
            &decision(Action::Resolve, AlertStatus::Resolved, Some(fired)),
            &[outcome("a", true), outcome("b", true)],
            &ids(&["a", "b"]),
        );
        assert_eq!((resolved.state.as_str(), resolved.since.0), ("resolved", at(50)));
        assert!(resolved.failed_routes.is_empty());
    }

    #[test]
    fn retries_keep_the_state_and_clear_routes_that_now_succeed_or_are_gone() {
        let previous = AlertState {
            state: "firing".into(),
            since: Time(at(0)),
            failed_routes: vec!["a".into(), "b".into(), "removed".into()],
        };
        let retried = next_state(
            &decision(
                Action::RetryFailed(previous.failed_routes.clone()),
                AlertStatus::Firing,
                Some(previous.clone()),
            ),
            &[outcome("a", true), outcome("b", false)],
            &ids(&["a", "b", "c"]),
        );
        assert_eq!(retried.state, "firing");
        assert_eq!(retried.since, previous.since);
        assert_eq!(retried.failed_routes, vec!["b".to_string()]);

        let refreshed = next_state(
            &decision(Action::Refresh, AlertStatus::Firing, Some(previous.clone())),
            &[outcome("am", false)],
            &ids(&["a", "b", "am"]),
        );
        assert_eq!(
            refreshed.failed_routes,
            vec!["a".to_string(), "am".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn retries_select_failed_routes_and_default_markers() {
        let spec = |origin: Origin, name: &str| RouteSpec {
            origin,
            namespace: "shop".into(),
            route: yaml_serde::from_str(&format!(
                "{{name: {name}, webhook: {{url: 'https://x.example.com'}}}}"
            ))
            .unwrap(),
        };
        let action = Action::RetryFailed(vec!["a".into(), "cluster-default".into()]);
        assert!(selects(&action, &spec(Origin::Integration, "a")));
        assert!(!selects(&action, &spec(Origin::Integration, "b")));
        assert!(selects(&action, &spec(Origin::ClusterDefault, "b")));
        assert!(!selects(&action, &spec(Origin::NamespaceDefault, "b")));
        assert!(!selects(&Action::Refresh, &spec(Origin::Integration, "a")));
    }
}
