//! Status writes shared by the four controllers: compute from the latest object, skip when
//! nothing changed, patch conditioned on the resourceVersion read, re-read and retry on 409,
//! and publish Events for the condition transitions (see [`conditions::notices`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::{event, patch_status};
use super::conditions::{self, Desired};
use super::object::Unchecked;
use super::{Context, Error};
use crate::api::{CredentialStatus, IntegrationStatus, OutboundMessageStatus, ScheduleStatus};

/// A status with conditions and an observed generation.
pub trait StatusFields: Default + Clone + PartialEq + Serialize + DeserializeOwned {
    /// The conditions.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Set the generation the status describes.
    fn set_observed_generation(&mut self, generation: i64);
}

macro_rules! status_fields {
    ($($status:ty),*) => {$(
        impl StatusFields for $status {
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: i64) {
                self.observed_generation = Some(generation);
            }
        }
    )*};
}
status_fields!(IntegrationStatus, CredentialStatus, OutboundMessageStatus, ScheduleStatus);

/// Write the status of `object`: `desired` conditions merged into the existing ones, other
/// fields set by `fill` (which sees the latest stored status).
pub async fn write_status<K, S>(
    ctx: &Context,
    object: &Unchecked<K>,
    desired: Vec<Desired>,
    fill: impl Fn(&mut S),
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
    Unchecked<K>: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    S: StatusFields,
{
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<Unchecked<K>> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = object.clone();
    for attempt in 0..5 {
        let old: S = current.status_as();
        let mut status = old.clone();
        fill(&mut status);
        let generation = current.metadata.generation.unwrap_or(0);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let existing = old.clone().conditions_mut().clone();
        let (merged, transitions) = conditions::merge(&existing, &desired, generation, &now);
        *status.conditions_mut() = merged;
        status.set_observed_generation(generation);
        if status == old {
            return Ok(());
        }
        let value = serde_json::to_value(&status).expect("statuses serialize");
        let version = current.resource_version().unwrap_or_default();
        match patch_status(&api, ctx, &current.name_any(), &version, &value).await {
            Ok(()) => {
                for notice in conditions::notices(&transitions) {
                    let type_ = if notice.warning { EventType::Warning } else { EventType::Normal };
                    event(ctx, &current, type_, &notice.reason, &notice.note, "Reconcile").await;
                }
                return Ok(());
            }
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && attempt < 4 => {
                // Someone wrote in between: read again and recompute, never write blind.
                current = api.get(&current.name_any()).await?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
