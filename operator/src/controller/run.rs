//! `switchboard operator`: wiring of the controllers, leader election, the health and metrics
//! endpoints and graceful shutdown.
//!
//! ```text
//!   start ─▶ /livez /readyz /metrics ─▶ elect (Lease) ─▶ leading: 4 controllers ─▶ SIGTERM: drain, exit 0
//!                                          │                      └─ lease lost: stop, exit 1
//!                                          └─ following: /readyz says standby
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::children;
use super::feed::{self, Feed};
use super::index::{
    Key, RefIndex, integration_references, outbound_message_references, schedule_references,
};
use super::leader::{Elector, LeaderGuard, Leadership, LeaseTiming};
use super::metrics::{
    ConditionSource, CredentialLabels, IntegrationConditionLabels, Metrics, ObjectLabels,
};
use super::object::Unchecked;
use super::{Context, Stores, credential, error_policy, integration, outbound_message, schedule};
use crate::api::{Credential, Integration, OutboundMessage, Schedule};
use crate::render::{LABEL_SCHEDULE, RenderSettings};

/// Settings of `switchboard operator`.
#[derive(Clone, Debug)]
pub struct OperatorSettings {
    /// Where `/livez`, `/readyz` and `/metrics` listen.
    pub metrics_addr: SocketAddr,
    /// Elect a leader on a Lease (off: this replica always acts).
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity on the Lease and on Events.
    pub identity: String,
    /// Election timing.
    pub timing: LeaseTiming,
    /// Image of the workers.
    pub worker_image: String,
    /// Reconciles in flight per controller.
    pub concurrency: u16,
    /// OpenLineage endpoint rendered into worker configs.
    pub lineage: Option<switchboard_worker::config::LineageConfig>,
    /// How the workers' runtime status is read.
    pub runtime: super::runtime::RuntimeSettings,
}

const STARTING: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;

#[derive(Clone)]
struct Health {
    state: Arc<AtomicU8>,
    metrics: Arc<Metrics>,
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    match health.state.load(Ordering::SeqCst) {
        READY => (StatusCode::OK, "ok: leading, caches synced"),
        STANDBY => (StatusCode::OK, "ok: standby, another replica leads"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting: caches not synced"),
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        health.metrics.encode(),
    )
}

/// The objects gauge reads the caches.
struct StoreConditions(Stores);

fn labels_of<K: Resource<DynamicType = ()>>(object: &Unchecked<K>, out: &mut Vec<ObjectLabels>) {
    let team = object.owner_team();
    for c in object.status_view().conditions {
        let status = if c.status.is_empty() { "Unknown".into() } else { c.status };
        out.push(ObjectLabels {
            kind: K::kind(&()).into_owned(),
            condition: c.type_,
            status,
            owner_team: team.clone(),
        });
    }
}

impl ConditionSource for StoreConditions {
    fn conditions(&self) -> Vec<ObjectLabels> {
        let mut out = Vec::new();
        self.0.integrations.state().iter().for_each(|o| labels_of(o.as_ref(), &mut out));
        self.0.credentials.state().iter().for_each(|o| labels_of(o.as_ref(), &mut out));
        self.0.outbound_messages.state().iter().for_each(|o| labels_of(o.as_ref(), &mut out));
        self.0.schedules.state().iter().for_each(|o| labels_of(o.as_ref(), &mut out));
        out
    }

    fn integration_conditions(&self) -> Vec<(IntegrationConditionLabels, bool)> {
        self.0.integrations.state().iter().flat_map(|o| integration_conditions(o)).collect()
    }

    fn certificate_expiries(&self) -> Vec<(CredentialLabels, i64)> {
        self.0.credentials.state().iter().filter_map(|o| certificate_expiry(o)).collect()
    }
}

/// The True/False conditions of one cached Integration, labelled for the per-object gauge.
pub fn integration_conditions(
    object: &Unchecked<Integration>,
) -> Vec<(IntegrationConditionLabels, bool)> {
    let team = object.owner_team();
    object
        .status_view()
        .conditions
        .into_iter()
        .filter_map(|c| {
            let holds = match c.status.as_str() {
                "True" => true,
                "False" => false,
                _ => return None,
            };
            let labels = IntegrationConditionLabels {
                namespace: object.namespace().unwrap_or_default(),
                integration: object.name_any(),
                owner_team: team.clone(),
                condition: c.type_,
            };
            Some((labels, holds))
        })
        .collect()
}

/// The client certificate expiry of one cached Credential (mtls), in Unix seconds.
pub fn certificate_expiry(object: &Unchecked<Credential>) -> Option<(CredentialLabels, i64)> {
    let text = object.status_view().certificate_not_after?;
    let seconds = text.parse::<k8s_openapi::jiff::Timestamp>().ok()?.as_second();
    let labels = CredentialLabels {
        namespace: object.namespace().unwrap_or_default(),
        credential: object.name_any(),
        owner_team: object.owner_team(),
    };
    Some((labels, seconds))
}

fn refs_to<K: Resource<DynamicType = ()>>(
    keys: impl IntoIterator<Item = Key>,
    kind: &str,
) -> Vec<ObjectRef<K>> {
    keys.into_iter()
        .filter(|k| k.kind == kind)
        .map(|k| ObjectRef::new(&k.name).within(&k.namespace))
        .collect()
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Run the operator until SIGTERM (Ok) or until leadership is lost (Err).
pub async fn run(client: Client, settings: OperatorSettings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AtomicU8::new(STARTING));
    let health = Health { state: state.clone(), metrics: metrics.clone() };
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr).await?;
    info!(addr = %listener.local_addr()?, "serving /livez, /readyz and /metrics");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            error!(%error, "health server stopped");
        }
    });

    let (leadership_tx, mut leadership) = watch::channel(Leadership::Following);
    let guard = if settings.leader_election {
        let elector = Elector::new(
            client.clone(),
            &settings.lease_namespace,
            &settings.lease_name,
            &settings.identity,
            settings.timing,
        );
        let guard = elector.guard();
        tokio::spawn(elector.run(leadership_tx));
        state.store(STANDBY, Ordering::SeqCst);
        info!(identity = %settings.identity, lease = %settings.lease_name, "waiting for the lease");
        tokio::select! {
            changed = leadership.wait_for(|l| *l != Leadership::Following) => { changed?; }
            _ = shutdown_signal() => { return Ok(()); }
        }
        state.store(STARTING, Ordering::SeqCst);
        guard
    } else {
        let _ = leadership_tx.send(Leadership::Leading);
        LeaderGuard::always()
    };

    let index = Arc::new(RefIndex::default());
    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=switchboard-operator");
    let (integrations, integrations_writer) = feed::cache::<Unchecked<Integration>>();
    let (credentials, credentials_writer) = feed::cache::<Unchecked<Credential>>();
    let (outbound_messages, outbound_messages_writer) = feed::cache::<Unchecked<OutboundMessage>>();
    let (schedules, schedules_writer) = feed::cache::<Unchecked<Schedule>>();
    let stores = Stores {
        integrations: integrations.clone(),
        credentials: credentials.clone(),
        outbound_messages: outbound_messages.clone(),
        schedules: schedules.clone(),
    };
    metrics.set_condition_source(Box::new(StoreConditions(stores.clone())));
    let reporter = Reporter {
        controller: "switchboard-operator".into(),
        instance: Some(settings.identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        RenderSettings { image: settings.worker_image.clone(), lineage: settings.lineage.clone() },
        guard,
        reporter,
        metrics.clone(),
        stores.clone(),
        index.clone(),
    ));
    let controller_config = kube::runtime::controller::Config::default()
        .concurrency(settings.concurrency)
        .debounce(std::time::Duration::from_millis(500));

    // One watch per kind, routed to the controllers that read it (see `feed`).
    let (to_integrations, integration_triggers) = mpsc::unbounded_channel();
    let (to_credentials, credential_triggers) = mpsc::unbounded_channel();
    let (to_messages, message_triggers) = mpsc::unbounded_channel();
    let (to_schedules, schedule_triggers) = mpsc::unbounded_channel();
    let cfg = watcher::Config::default().any_semantic();
    tokio::spawn(
        integration_feed(&index, &to_integrations, &to_credentials, &to_messages, &to_schedules)
            .run(Api::all(client.clone()), cfg.clone(), integrations_writer),
    );
    tokio::spawn(
        credential_feed(&index, &to_integrations, &to_credentials, &to_messages, &to_schedules)
            .run(Api::all(client.clone()), cfg.clone(), credentials_writer),
    );
    tokio::spawn(message_feed(&index, &to_integrations, &to_credentials, &to_messages).run(
        Api::all(client.clone()),
        cfg.clone(),
        outbound_messages_writer,
    ));
    tokio::spawn(schedule_feed(&index, &to_messages, &to_schedules).run(
        Api::all(client.clone()),
        cfg.clone(),
        schedules_writer,
    ));

    macro_rules! owned {
        ($controller:expr, $($child:ty),*) => {{
            let mut c = $controller;
            $( c = c.owns_stream(objects(Api::<PartialObjectMeta<$child>>::all(client.clone()), managed.clone())); )*
            c
        }};
    }

    // The Integrations' children: metadata is enough, except for the workloads' counts.
    macro_rules! children {
        ($controller:expr, $($child:ty),*) => {{
            let mut c = $controller;
            $( c = c.owns_stream(children::watch(Api::<$child>::all(client.clone()), managed.clone(), ctx.children.clone())); )*
            c
        }};
    }
    let integrations = children!(
        controller(integrations, integration_triggers),
        PartialObjectMeta<ConfigMap>,
        Deployment,
        StatefulSet,
        PartialObjectMeta<Service>,
        PartialObjectMeta<ServiceAccount>,
        PartialObjectMeta<Role>,
        PartialObjectMeta<RoleBinding>,
        PartialObjectMeta<PodDisruptionBudget>,
        PartialObjectMeta<Secret>
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(shutdown_signal())
    .run(integration::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});

    // Credentials: their Secret changed, or who uses them changed (for `consumers`).
    let c_index = index.clone();
    let credentials = controller(credentials, credential_triggers)
        .watches_stream(
            objects(
                Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                watcher::Config::default(),
            ),
            move |s| {
                let key = Key::new("Secret", &s.namespace().unwrap_or_default(), &s.name_any());
                refs_to::<Unchecked<Credential>>(c_index.consumers(&key), "Credential")
            },
        )
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown_signal())
        .run(credential::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let outbound_messages = controller(outbound_messages, message_triggers)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown_signal())
        .run(outbound_message::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let schedules = owned!(controller(schedules, schedule_triggers), CronJob, ConfigMap)
        .watches_stream(
            objects(
                Api::<PartialObjectMeta<Job>>::all(client.clone()),
                watcher::Config::default().labels(LABEL_SCHEDULE),
            ),
            |job| {
                let name = job.labels().get(LABEL_SCHEDULE).cloned();
                name.map(|n| ObjectRef::new(&n).within(&job.namespace().unwrap_or_default()))
                    .into_iter()
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller_config)
        .graceful_shutdown_on(shutdown_signal())
        .run(schedule::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    // Worker pods, for their addresses: the runtime status is read from them.
    let (pod_reader, pod_writer) =
        kube::runtime::reflector::store::<k8s_openapi::api::core::v1::Pod>();
    let worker_pods = watcher(
        Api::<k8s_openapi::api::core::v1::Pod>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/name=switchboard-worker,app.kubernetes.io/managed-by=switchboard-operator"),
    )
    .backoff(QuickBackoff::default())
    .modify(super::runtime::keep_address)
    .reflect(pod_writer)
    .for_each(|event| async move {
        if let Err(error) = event {
            warn!(%error, "watching worker pods failed; retrying");
        }
    });
    tokio::spawn(worker_pods);
    tokio::spawn(super::runtime::run(ctx.clone(), pod_reader, settings.runtime.clone()));

    let ready_state = state.clone();
    let ready_stores = stores.clone();
    tokio::spawn(async move {
        let synced = tokio::try_join!(
            until_ready(&ready_stores.integrations),
            until_ready(&ready_stores.credentials),
            until_ready(&ready_stores.outbound_messages),
            until_ready(&ready_stores.schedules),
        );
        if synced.is_ok() {
            info!("caches synced");
            ready_state.store(READY, Ordering::SeqCst);
        }
    });

    let controllers =
        async { tokio::join!(integrations, credentials, outbound_messages, schedules) };
    tokio::select! {
        _ = controllers => {
            info!("controllers stopped; shutting down");
            Ok(())
        }
        lost = leadership.wait_for(|l| *l == Leadership::Lost) => {
            lost?;
            anyhow::bail!("lost the lease to another replica; exiting so that a restart rejoins as a follower")
        }
    }
}

/// A watch whose failures back off on their own and never reach the controller.
///
/// A controller applies one backoff to all its trigger streams together, so after an API
/// server restart a dozen reconnecting watches would push it to its 30 s ceiling and keep it
/// there. Here each watch retries alone (0.5 s doubling to 5 s) and logs its errors; the
/// controller only ever sees objects.
fn objects<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher(api, config).backoff(QuickBackoff::default()).touched_objects().filter(|item| {
        if let Err(error) = item {
            warn!(%error, kind = %K::kind(&K::DynamicType::default()), "watch failed; retrying");
        }
        futures::future::ready(item.is_ok())
    })
}

/// The controller of one kind: its cache, filled by the kind's feed, and the objects the
/// feeds route to it.
fn controller<K>(
    store: kube::runtime::reflector::Store<Unchecked<K>>,
    mut triggers: mpsc::UnboundedReceiver<ObjectRef<Unchecked<K>>>,
) -> Controller<Unchecked<K>>
where
    K: Resource<DynamicType = ()> + 'static,
    Unchecked<K>: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Controller::for_stream(futures::stream::pending(), store)
        .reconcile_on(futures::stream::poll_fn(move |cx| triggers.poll_recv(cx)))
}

/// The Integration feed: the index of what each references, its own controller, and the
/// controllers that list it among consumers (Credentials, OutboundMessages) or run it
/// (Schedules).
fn integration_feed(
    index: &Arc<RefIndex>,
    integrations: &feed::Triggers<Integration>,
    credentials: &feed::Triggers<Credential>,
    messages: &feed::Triggers<OutboundMessage>,
    schedules: &feed::Triggers<Schedule>,
) -> Feed<Unchecked<Integration>> {
    let references = |i: &Unchecked<Integration>| {
        i.typed().map(|t| integration_references(&t)).unwrap_or_default()
    };
    let (index, index2, index3) = (index.clone(), index.clone(), index.clone());
    Feed::default()
        .on(feed::spec, move |i: &Unchecked<Integration>, deleted| {
            let key = Key::new("Integration", &i.namespace().unwrap_or_default(), &i.name_any());
            index.set(key, if deleted { Default::default() } else { references(i) });
        })
        .route(feed::own, integrations.clone(), |i| vec![ObjectRef::from_obj(i)])
        .route(feed::spec, credentials.clone(), move |i| {
            let direct = references(i);
            let via_messages: Vec<Key> = direct
                .iter()
                .filter(|k| k.kind == "OutboundMessage")
                .flat_map(|k| index2.references(k))
                .collect();
            refs_to(direct.into_iter().chain(via_messages), "Credential")
        })
        .route(feed::spec, messages.clone(), move |i| refs_to(references(i), "OutboundMessage"))
        .route(feed::spec, schedules.clone(), move |i| {
            let key = Key::new("Integration", &i.namespace().unwrap_or_default(), &i.name_any());
            refs_to(index3.consumers(&key), "Schedule")
        })
}

/// The Credential feed: its Secret in the index, its own controller, and everything that uses
/// it when its spec, content hash or readiness changes.
fn credential_feed(
    index: &Arc<RefIndex>,
    integrations: &feed::Triggers<Integration>,
    credentials: &feed::Triggers<Credential>,
    messages: &feed::Triggers<OutboundMessage>,
    schedules: &feed::Triggers<Schedule>,
) -> Feed<Unchecked<Credential>> {
    let key = |c: &Unchecked<Credential>| {
        Key::new("Credential", &c.namespace().unwrap_or_default(), &c.name_any())
    };
    let (index, index2, index3, index4) =
        (index.clone(), index.clone(), index.clone(), index.clone());
    Feed::default()
        .on(feed::spec, move |c: &Unchecked<Credential>, deleted| {
            let secret = c.typed().ok().filter(|_| !deleted).map(|t| {
                Key::new("Secret", &c.namespace().unwrap_or_default(), &t.spec.secret_ref.name)
            });
            index.set(key(c), secret.into_iter().collect());
        })
        .route(feed::own, credentials.clone(), |c| vec![ObjectRef::from_obj(c)])
        .route(feed::usable, integrations.clone(), move |c| {
            refs_to(index2.consumers_transitive(&key(c)), "Integration")
        })
        .route(feed::usable, messages.clone(), move |c| {
            refs_to(index3.consumers(&key(c)), "OutboundMessage")
        })
        .route(feed::usable, schedules.clone(), move |c| {
            let users = index4.consumers_transitive(&key(c));
            let via_integrations: Vec<Key> = users
                .iter()
                .filter(|k| k.kind == "Integration")
                .flat_map(|k| index4.consumers(k))
                .collect();
            refs_to(users.into_iter().chain(via_integrations), "Schedule")
        })
}

/// The OutboundMessage feed: the Credentials it names in the index, its own controller, the
/// Integrations that call it, and the Credentials that list it among consumers.
fn message_feed(
    index: &Arc<RefIndex>,
    integrations: &feed::Triggers<Integration>,
    credentials: &feed::Triggers<Credential>,
    messages: &feed::Triggers<OutboundMessage>,
) -> Feed<Unchecked<OutboundMessage>> {
    let key = |m: &Unchecked<OutboundMessage>| {
        Key::new("OutboundMessage", &m.namespace().unwrap_or_default(), &m.name_any())
    };
    let references = |m: &Unchecked<OutboundMessage>| {
        m.typed().map(|t| outbound_message_references(&t)).unwrap_or_default()
    };
    let (index, index2) = (index.clone(), index.clone());
    Feed::default()
        .on(feed::spec, move |m: &Unchecked<OutboundMessage>, deleted| {
            index.set(key(m), if deleted { Default::default() } else { references(m) });
        })
        .route(feed::own, messages.clone(), |m| vec![ObjectRef::from_obj(m)])
        .route(feed::usable, integrations.clone(), move |m| {
            refs_to(index2.consumers(&key(m)), "Integration")
        })
        .route(feed::spec, credentials.clone(), move |m| refs_to(references(m), "Credential"))
}

/// The Schedule feed: what it runs in the index, its own controller, and the OutboundMessages
/// that list it among consumers.
fn schedule_feed(
    index: &Arc<RefIndex>,
    messages: &feed::Triggers<OutboundMessage>,
    schedules: &feed::Triggers<Schedule>,
) -> Feed<Unchecked<Schedule>> {
    let references =
        |s: &Unchecked<Schedule>| s.typed().map(|t| schedule_references(&t)).unwrap_or_default();
    let index = index.clone();
    Feed::default()
        .on(feed::spec, move |s: &Unchecked<Schedule>, deleted| {
            let key = Key::new("Schedule", &s.namespace().unwrap_or_default(), &s.name_any());
            index.set(key, if deleted { Default::default() } else { references(s) });
        })
        .route(feed::own, schedules.clone(), |s| vec![ObjectRef::from_obj(s)])
        .route(feed::spec, messages.clone(), move |s| refs_to(references(s), "OutboundMessage"))
}

/// Exponential backoff from 0.5 s to 5 s, reset by the first success.
#[derive(Clone, Debug)]
pub(super) struct QuickBackoff {
    next: std::time::Duration,
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff { next: std::time::Duration::from_millis(500) }
    }
}

impl Iterator for QuickBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<std::time::Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(5));
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {
        *self = QuickBackoff::default();
    }
}

/// Wait until a cache has its first full list. The store's readiness signal wakes only its
/// most recent waiter (the controller also waits on it), so ask again every half second
/// rather than wait once.
async fn until_ready<K>(
    store: &kube::runtime::reflector::Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) =
            tokio::time::timeout(std::time::Duration::from_millis(500), store.wait_until_ready())
                .await
        {
            return result;
        }
    }
}

async fn metrics_handler(state: State<Health>) -> impl IntoResponse {
    metrics(state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchecked<K>(json: serde_json::Value) -> Unchecked<K> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn integration_conditions_are_one_or_zero_and_unknown_is_absent() {
        let object: Unchecked<Integration> = unchecked(serde_json::json!({
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"owner": {"team": "sre"}},
            "status": {"conditions": [
                {"type": "Healthy", "status": "False"},
                {"type": "Ready", "status": "True"},
                {"type": "WorkersAvailable", "status": "Unknown"},
            ]},
        }));
        let mut found = integration_conditions(&object);
        found.sort();
        let labels = |condition: &str| IntegrationConditionLabels {
            namespace: "shop".into(),
            integration: "orders".into(),
            owner_team: "sre".into(),
            condition: condition.into(),
        };
        assert_eq!(found, vec![(labels("Healthy"), false), (labels("Ready"), true)]);
    }

    #[test]
    fn certificate_expiry_comes_from_the_credential_status() {
        let object: Unchecked<Credential> = unchecked(serde_json::json!({
            "metadata": {"name": "client-cert", "namespace": "shop"},
            "spec": {"type": "mtls", "owner": {"team": "payments"}},
            "status": {"certificateNotAfter": "2030-01-02T03:04:05Z"},
        }));
        let (labels, seconds) = certificate_expiry(&object).unwrap();
        assert_eq!(labels.owner_team, "payments");
        assert_eq!(labels.credential, "client-cert");
        assert_eq!(seconds, 1_893_553_445);
        let without: Unchecked<Credential> = unchecked(serde_json::json!({
            "metadata": {"name": "token", "namespace": "shop"},
            "spec": {"type": "bearer"},
        }));
        assert_eq!(certificate_expiry(&without), None);
    }
}
