//! OutboundMessage: templates consistent, Credential present, of a usable type and Ready →
//! status with the method list and consumers. It has no children.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::conditions::{self, Desired};
use super::index::Key;
use super::object::Unchecked;
use super::status::write_status;
use super::{Context, Error};
use crate::api::{CredentialType, OutboundMessage, OutboundMessageStatus, condition};

const KIND: &str = "OutboundMessage";

/// Reconcile one OutboundMessage.
pub async fn reconcile(
    object: Arc<Unchecked<OutboundMessage>>,
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

/// The Ready condition of an OutboundMessage, given a lookup of its Credentials.
pub fn readiness(
    message: &OutboundMessage,
    credential: impl Fn(&str) -> Option<std::sync::Arc<crate::api::Credential>>,
) -> Desired {
    let spec = &message.spec;
    let problems: Vec<String> = spec
        .methods
        .iter()
        .filter_map(|m| crate::render::method_problem(&message.name_any(), spec, m))
        .collect();
    if !problems.is_empty() {
        return Desired::no(condition::READY, "UndeclaredVariable", problems.join("; "));
    }
    let uses = spec.credential_ref.iter().map(|c| (c.name.as_str(), None)).chain(
        spec.tls
            .iter()
            .filter_map(|t| t.client_certificate_ref.as_ref())
            .map(|c| (c.name.as_str(), Some(CredentialType::Mtls))),
    );
    for (name, required) in uses {
        let Some(found) = credential(name) else {
            return Desired::no(
                condition::READY,
                "CredentialNotFound",
                format!("Credential {name:?} not found"),
            );
        };
        if let Some(required) = required.filter(|r| *r != found.spec.type_) {
            return Desired::no(
                condition::READY,
                "WrongCredentialType",
                format!(
                    "Credential {name:?} has type {}, a client certificate needs {}",
                    found.spec.type_.as_str(),
                    required.as_str()
                ),
            );
        }
        let ready = found
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, condition::READY));
        if !ready {
            return Desired::no(
                condition::READY,
                "CredentialNotReady",
                format!("Credential {name:?} is not Ready"),
            );
        }
    }
    Desired::yes(
        condition::READY,
        "Ready",
        format!("{} method(s), credentials ready", spec.methods.len()),
    )
}

async fn reconcile_inner(
    object: &Unchecked<OutboundMessage>,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let key = Key::new(KIND, &namespace, &object.name_any());
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let message = match object.typed() {
        Ok(message) => message,
        Err(text) => {
            let status = Desired::no(
                condition::READY,
                "InvalidSpec",
                format!("the spec cannot be read: {text}"),
            );
            write_status::<_, OutboundMessageStatus>(ctx, object, vec![status], |_| {}).await?;
            return Err(Error::InvalidSpec(text));
        }
    };
    let ready = readiness(&message, |name| ctx.stores.credential(&namespace, name));
    let methods: Vec<String> = message
        .spec
        .methods
        .iter()
        .map(|m| format!("{} ({} {})", m.name, m.http_method.as_str(), m.path))
        .collect();
    let (consumers, consumer_count) = super::credential::listed(ctx.index.consumers(&key));
    write_status(ctx, object, vec![ready], move |status: &mut OutboundMessageStatus| {
        status.methods = methods.clone();
        status.consumers = consumers.clone();
        status.consumer_count = Some(consumer_count);
    })
    .await?;
    Ok(Action::requeue(Duration::from_secs(600)))
}
