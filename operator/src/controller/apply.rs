//! Every API write of the operator: server-side apply of children, removal of children no
//! longer wanted, status patches with optimistic concurrency, and Events. Each write first
//! asks the leader guard, so a deposed leader writes nothing.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error};
use crate::render::FIELD_MANAGER;

/// A namespaced object the operator applies.
pub trait Applied:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl<K> Applied for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
{
}

/// Server-side apply a child object (field manager `switchboard-operator`, forced).
pub async fn apply<K: Applied>(ctx: &Context, object: &K) -> Result<K, Error> {
    ctx.require_leader()?;
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    tracing::debug!(kind = %K::kind(&()), %namespace, name = %object.name_any(), "api write: apply");
    Ok(api.patch(&object.name_any(), &params, &Patch::Apply(object)).await?)
}

/// Server-side apply a child unless it is unchanged since this operator last applied the same
/// rendering (see [`super::children`]); `None` when skipped.
pub async fn apply_changed<K: Applied>(ctx: &Context, object: &K) -> Result<Option<K>, Error> {
    let rendering = super::children::rendering(object);
    if ctx.children.unchanged(object, rendering) {
        return Ok(None);
    }
    let applied = apply(ctx, object).await?;
    ctx.children.applied(&applied, rendering);
    Ok(Some(applied))
}

/// Delete a child that is no longer wanted, if the children's watch shows it and `owner_uid`
/// controls it.
pub async fn remove_owned<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner_uid: &str,
) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    if !ctx.children.controlled_by(&K::kind(&()), namespace, name, owner_uid) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    ctx.require_leader()?;
    tracing::debug!(kind = %K::kind(&()), %namespace, %name, "api write: delete");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Merge-patch the status subresource, conditioned on the resourceVersion that was read: a
/// concurrent write turns into a 409, which the caller answers by reading again.
pub async fn patch_status<K>(
    api: &Api<K>,
    ctx: &Context,
    name: &str,
    resource_version: &str,
    status: &serde_json::Value,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    ctx.require_leader()?;
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    tracing::debug!(kind = %K::kind(&()), %name, "api write: status");
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Publish an Event about an object (never a secret value: messages come from conditions).
pub async fn event<K>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) where
    K: Resource<DynamicType = ()>,
{
    if ctx.require_leader().is_err() {
        return;
    }
    tracing::debug!(kind = %K::kind(&()), name = ?object.meta().name, reason, "api write: event");
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(super::conditions::truncate(note, 1024)),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an Event");
    }
}
