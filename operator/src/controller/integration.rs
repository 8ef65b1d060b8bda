//! Integration: fetch references → validate → render → apply children → status.
//!
//! Children no longer wanted (a Service after the source stops being inbound, a
//! PodDisruptionBudget at one replica, the Deployment after a switch to a persistent queue) are
//! removed. Problems with references keep the running workers as they are and say why in the
//! status; they are retried when a referenced object changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use switchboard_worker::config::{SourceConfig, TargetKind};

use super::apply::{apply_changed, remove_owned};
use super::children;
use super::conditions::{self, Desired};
use super::index::{Key, integration_references};
use super::object::Unchecked;
use super::status::write_status;
use super::{Context, Error};
use crate::api::{
    Credential, Integration, IntegrationStatus, ResolvedCredential, ResolvedDataFlow,
    ResolvedTarget, WorkerCounts, condition,
};
use crate::render::{self, IntegrationChildren, References, Workload};

const KIND: &str = "Integration";

/// Reconcile one Integration.
pub async fn reconcile(
    object: Arc<Unchecked<Integration>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics.observe(
        KIND,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok() {
        ctx.succeeded(&super::object_key(object.as_ref()));
    }
    result
}

async fn reconcile_inner(object: &Unchecked<Integration>, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let integration = match object.typed() {
        Ok(integration) => integration,
        Err(message) => {
            let status = Desired::no(
                condition::READY,
                "InvalidSpec",
                format!("the spec cannot be read: {message}"),
            );
            write_status::<_, IntegrationStatus>(ctx, object, vec![status], |_| {}).await?;
            return Err(Error::InvalidSpec(message));
        }
    };
    let references = integration_references(&integration);

    // Fetch: the referenced objects, from the caches.
    let refs = resolve(ctx, &namespace, &references);
    let credentials_ready = credentials_condition(&references, &refs);

    // Validate and build.
    let children = match render::render_integration(&integration, &refs, &ctx.settings) {
        Ok(children) => children,
        Err(errors) => {
            let first = &errors.0[0];
            let ready = Desired::no(condition::READY, first.reason.as_str(), errors.to_string());
            write_status(
                ctx,
                object,
                vec![ready, credentials_ready],
                |status: &mut IntegrationStatus| {
                    status.source_kind = Some(integration.spec.source.kind().into());
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
    };

    // Apply.
    let applied = apply_children(ctx, &integration, children).await?;

    // Status.
    let workers_available = if applied.counts.available >= applied.counts.desired
        && applied.counts.desired > 0
    {
        Desired::yes(
            condition::WORKERS_AVAILABLE,
            "WorkersAvailable",
            format!("{} of {} workers available", applied.counts.available, applied.counts.desired),
        )
    } else if applied.counts.desired == 0 {
        Desired::no(condition::WORKERS_AVAILABLE, "ScaledToZero", "workers.replicas is 0")
    } else {
        Desired::no(
            condition::WORKERS_AVAILABLE,
            "WorkersUnavailable",
            format!(
                "{} of {} workers available, {} ready",
                applied.counts.available, applied.counts.desired, applied.counts.ready
            ),
        )
    };
    let ready = if !credentials_ready.status {
        Desired::no(
            condition::READY,
            credentials_ready.reason.clone(),
            credentials_ready.message.clone(),
        )
    } else if !workers_available.status {
        Desired::no(
            condition::READY,
            workers_available.reason.clone(),
            workers_available.message.clone(),
        )
    } else {
        Desired::yes(
            condition::READY,
            "Ready",
            "children applied, credentials ready and workers available",
        )
    };
    let waiting = !ready.status;
    let data_flow = resolved_data_flow(&integration, &applied.config, &refs);
    let inbound_url = applied.inbound_url.clone();
    write_status(
        ctx,
        object,
        vec![ready, credentials_ready, workers_available],
        move |status: &mut IntegrationStatus| {
            status.source_kind = Some(integration.spec.source.kind().into());
            status.data_flow = Some(data_flow.clone());
            status.workers = Some(applied.counts.clone());
            status.inbound_url = inbound_url.clone();
        },
    )
    .await?;
    Ok(Action::requeue(if waiting { Duration::from_secs(30) } else { Duration::from_secs(600) }))
}

/// The references of an Integration (and of its OutboundMessages) from the caches.
pub fn resolve(ctx: &Context, namespace: &str, references: &BTreeSet<Key>) -> References {
    let mut refs = References::default();
    let mut credentials: BTreeSet<String> = BTreeSet::new();
    for key in references {
        match key.kind {
            "Credential" => {
                credentials.insert(key.name.clone());
            }
            "OutboundMessage" => {
                if let Some(message) = ctx.stores.outbound_message(namespace, &key.name) {
                    credentials.extend(
                        super::index::outbound_message_references(&message)
                            .into_iter()
                            .map(|k| k.name),
                    );
                    refs.outbound_messages.insert(key.name.clone(), message);
                }
            }
            _ => {}
        }
    }
    for name in credentials {
        if let Some(credential) = ctx.stores.credential(namespace, &name) {
            if let Some(hash) = credential.status.as_ref().and_then(|s| s.content_hash.clone()) {
                refs.credential_hashes.insert(name.clone(), hash);
            }
            refs.credentials.insert(name, credential);
        }
    }
    refs
}

/// `CredentialsReady`: every Credential the Integration names (directly, or through its
/// OutboundMessages) exists and is Ready.
fn credentials_condition(references: &BTreeSet<Key>, refs: &References) -> Desired {
    let mut wanted: BTreeSet<String> = references
        .iter()
        .filter(|k| k.kind == "Credential")
        .map(|k| k.name.clone())
        .chain(refs.credentials.keys().cloned())
        .collect();
    for message in refs.outbound_messages.values() {
        wanted
            .extend(super::index::outbound_message_references(message).into_iter().map(|k| k.name));
    }
    let missing: Vec<&str> =
        wanted.iter().filter(|n| !refs.credentials.contains_key(*n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Desired::no(
            condition::CREDENTIALS_READY,
            "CredentialNotFound",
            format!("Credential {} not found", missing.join(", ")),
        );
    }
    let not_ready: Vec<String> = refs
        .credentials
        .iter()
        .filter(|(_, c)| !credential_ready(c))
        .map(|(name, c)| {
            let why = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|x| x.type_ == condition::READY))
                .map(|x| x.reason.clone());
            format!("{name} ({})", why.unwrap_or_else(|| "not yet checked".into()))
        })
        .collect();
    if !not_ready.is_empty() {
        return Desired::no(
            condition::CREDENTIALS_READY,
            "CredentialNotReady",
            format!("Credential {} not Ready", not_ready.join(", ")),
        );
    }
    Desired::yes(
        condition::CREDENTIALS_READY,
        "CredentialsReady",
        format!("{} credential(s) ready", refs.credentials.len()),
    )
}

fn credential_ready(credential: &Credential) -> bool {
    credential.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, condition::READY))
}

/// What applying produced.
struct Applied {
    config: switchboard_worker::config::WorkerConfig,
    counts: WorkerCounts,
    inbound_url: Option<String>,
}

async fn apply_children(
    ctx: &Context,
    integration: &Integration,
    children: IntegrationChildren,
) -> Result<Applied, Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let uid = integration.uid().unwrap_or_default();
    let name = integration.name_any();
    // Destructured without `..`: a child kind that is built must be applied here too.
    let IntegrationChildren {
        config,
        config_map,
        workload,
        service,
        service_account,
        role,
        role_binding,
        pod_disruption_budget,
    } = children;
    super::admin_token::ensure_admin_token(ctx, integration).await?;
    apply_changed(ctx, &service_account).await?;
    apply_changed(ctx, &role).await?;
    apply_changed(ctx, &role_binding).await?;
    apply_changed(ctx, &config_map).await?;
    let worker_name = render::worker_name(&name);
    let unknown = WorkerCounts { desired: workload.replicas(), ready: 0, available: 0 };
    let counts = match workload {
        Workload::Deployment(deployment) => {
            let applied = apply_changed(ctx, deployment.as_ref()).await?;
            remove_owned::<StatefulSet>(ctx, &namespace, &worker_name, &uid).await?;
            applied
                .map(|d| children::deployment_counts(&d))
                .or_else(|| ctx.children.counts("Deployment", &namespace, &worker_name))
        }
        Workload::StatefulSet(set) => {
            let applied = apply_changed(ctx, set.as_ref()).await?;
            remove_owned::<Deployment>(ctx, &namespace, &worker_name, &uid).await?;
            applied
                .map(|s| children::stateful_set_counts(&s))
                .or_else(|| ctx.children.counts("StatefulSet", &namespace, &worker_name))
        }
    }
    .unwrap_or(unknown);
    let service_name = render::service_name(&name);
    let inbound_url = match service {
        Some(service) => {
            apply_changed(ctx, &service).await?;
            let path = match &config.source {
                Some(SourceConfig::Webhook(w)) => w.path.clone(),
                _ => "/".into(),
            };
            Some(format!("http://{service_name}.{namespace}.svc{path}"))
        }
        None => {
            remove_owned::<Service>(ctx, &namespace, &service_name, &uid).await?;
            None
        }
    };
    match pod_disruption_budget {
        Some(pdb) => {
            apply_changed(ctx, &pdb).await?;
        }
        None => {
            remove_owned::<PodDisruptionBudget>(ctx, &namespace, &worker_name, &uid).await?;
        }
    }
    Ok(Applied { config, counts, inbound_url })
}

/// The data flow with endpoints and credentials resolved, for auditors.
fn resolved_data_flow(
    integration: &Integration,
    config: &switchboard_worker::config::WorkerConfig,
    refs: &References,
) -> ResolvedDataFlow {
    let flow = &integration.spec.data_flow;
    let source_endpoint = config.source.as_ref().map(|source| match source {
        SourceConfig::Webhook(w) => format!("inbound webhook {}", w.path),
        SourceConfig::Api(api) => format!(
            "inbound API {}",
            api.routes
                .iter()
                .map(|r| format!("{} /{}{}", r.method, r.version, r.path))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        SourceConfig::Rest(rest) => {
            format!("{}{}", rest.request.endpoint.url, rest.request.method.path)
        }
        SourceConfig::File(file) => {
            format!("{}{}", file.fetch.endpoint.url, file.fetch.method.path)
        }
        SourceConfig::Database(db) => db.connection.endpoint.clone(),
        SourceConfig::Imap(imap) => format!("{}/{}", imap.server, imap.mailbox),
    });
    let targets = config
        .targets
        .iter()
        .map(|t| {
            let (kind, endpoint) = match &t.kind {
                TargetKind::OutboundMessage(call) => (
                    "outboundMessage",
                    format!(
                        "{} {}{}",
                        call.method.http_method, call.endpoint.url, call.method.path
                    ),
                ),
                TargetKind::Database(db) => {
                    ("database", format!("{}#{}", db.connection.endpoint, db.table))
                }
                TargetKind::Email(email) => {
                    ("email", format!("{} to {}", email.smtp.server, email.to.join(", ")))
                }
            };
            ResolvedTarget { name: t.name.clone(), kind: kind.into(), endpoint }
        })
        .collect();
    let mut credentials: Vec<ResolvedCredential> = config
        .credentials
        .iter()
        .map(|(name, c)| ResolvedCredential {
            name: name.clone(),
            type_: c.type_.clone(),
            used_for: credential_use(name, config),
        })
        .collect();
    for (name, credential) in &refs.credentials {
        if !config.credentials.contains_key(name) {
            credentials.push(ResolvedCredential {
                name: name.clone(),
                type_: credential.spec.type_.as_str().into(),
                used_for: "alerting".into(),
            });
        }
    }
    credentials.sort();
    ResolvedDataFlow {
        source_system: flow.source_system.clone(),
        target_system: flow.target_system.clone(),
        classification: flow.classification.as_str().into(),
        source_endpoint,
        targets,
        credentials,
    }
}

/// What a credential is used for in a worker config.
fn credential_use(name: &str, config: &switchboard_worker::config::WorkerConfig) -> String {
    let mut uses = Vec::new();
    let source_uses = match &config.source {
        Some(SourceConfig::Webhook(w)) => w.auth.credential.as_deref() == Some(name),
        Some(SourceConfig::Api(api)) => {
            api.routes.iter().any(|r| r.auth.credential.as_deref() == Some(name))
        }
        Some(SourceConfig::Database(db)) => db.connection.credential == name,
        Some(SourceConfig::Imap(imap)) => imap.credential == name,
        Some(SourceConfig::Rest(rest)) => rest.request.endpoint.credential.as_deref() == Some(name),
        Some(SourceConfig::File(file)) => file.fetch.endpoint.credential.as_deref() == Some(name),
        None => false,
    };
    if source_uses {
        uses.push("source".to_string());
    }
    for target in &config.targets {
        let used = match &target.kind {
            TargetKind::OutboundMessage(call) => {
                call.endpoint.credential.as_deref() == Some(name)
                    || call.endpoint.client_certificate.as_deref() == Some(name)
            }
            TargetKind::Database(db) => db.connection.credential == name,
            TargetKind::Email(email) => email.smtp.credential.as_deref() == Some(name),
        };
        if used {
            uses.push(format!("target {}", target.name));
        }
    }
    if uses.is_empty() { "health checks".into() } else { uses.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_credential(name: &str) -> crate::api::Credential {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"type": "bearer", "secretRef": {"name": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Valid",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_named_credential_missing_from_the_cache_is_not_ready() {
        let references: BTreeSet<Key> =
            ["mailbox", "ticketing"].iter().map(|n| Key::new("Credential", "ns", n)).collect();
        let mut refs = References::default();
        refs.credentials.insert("ticketing".into(), ready_credential("ticketing").into());
        let missing = credentials_condition(&references, &refs);
        assert!(!missing.status);
        assert_eq!(missing.reason, "CredentialNotFound");
        assert!(missing.message.contains("mailbox"), "{}", missing.message);

        refs.credentials.insert("mailbox".into(), ready_credential("mailbox").into());
        let ready = credentials_condition(&references, &refs);
        assert!(ready.status, "{ready:?}");
        assert_eq!(ready.message, "2 credential(s) ready");
    }
}
