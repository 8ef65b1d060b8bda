//! Who references whom: a reverse index from Credentials, OutboundMessages and Integrations to
//! the objects that use them.
//!
//! Reconcilers record the references of the object they just read; watch mappers ask which
//! objects to reconcile when a referenced one changes (a rotated Secret's Credential → the
//! Integrations using it), and statuses list their consumers. Lookups are O(1), so a Secret
//! event costs nothing per unrelated integration.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::ResourceExt;

use crate::api::{Integration, OutboundMessage, Schedule};

/// An object by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// A key in a namespace.
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        Key { kind, namespace: namespace.into(), name: name.into() }
    }
}

#[derive(Default)]
struct Inner {
    forward: HashMap<Key, BTreeSet<Key>>,
    reverse: HashMap<Key, BTreeSet<Key>>,
}

/// The reverse index.
#[derive(Default)]
pub struct RefIndex {
    inner: Mutex<Inner>,
}

impl RefIndex {
    /// Record the complete set of references of `consumer`, replacing what was recorded.
    pub fn set(&self, consumer: Key, references: BTreeSet<Key>) {
        let mut inner = self.inner.lock().expect("index lock");
        if let Some(old) = inner.forward.remove(&consumer) {
            for target in old {
                if let Some(users) = inner.reverse.get_mut(&target) {
                    users.remove(&consumer);
                    if users.is_empty() {
                        inner.reverse.remove(&target);
                    }
                }
            }
        }
        for target in &references {
            inner.reverse.entry(target.clone()).or_default().insert(consumer.clone());
        }
        if !references.is_empty() {
            inner.forward.insert(consumer, references);
        }
    }

    /// Forget a deleted consumer.
    pub fn remove(&self, consumer: &Key) {
        self.set(consumer.clone(), BTreeSet::new());
    }

    /// What `consumer` references, as last recorded.
    pub fn references(&self, consumer: &Key) -> BTreeSet<Key> {
        self.inner.lock().expect("index lock").forward.get(consumer).cloned().unwrap_or_default()
    }

    /// The objects that reference `target` directly.
    pub fn consumers(&self, target: &Key) -> BTreeSet<Key> {
        self.inner.lock().expect("index lock").reverse.get(target).cloned().unwrap_or_default()
    }

    /// The objects that reference `target` directly or through an OutboundMessage.
    pub fn consumers_transitive(&self, target: &Key) -> BTreeSet<Key> {
        let direct = self.consumers(target);
        let mut all = direct.clone();
        for consumer in direct.iter().filter(|k| k.kind == "OutboundMessage") {
            all.extend(self.consumers(consumer));
        }
        all
    }
}

/// The Credentials and OutboundMessages an Integration names (not through its messages).
pub fn integration_references(integration: &Integration) -> BTreeSet<Key> {
    let namespace = integration.namespace().unwrap_or_default();
    let spec = &integration.spec;
    let mut credentials: Vec<&str> = Vec::new();
    let mut messages: Vec<&str> = Vec::new();
    let source = &spec.source;
    if let Some(w) = &source.webhook {
        credentials.extend(w.auth.credential_ref.as_ref().map(|c| c.name.as_str()));
    }
    if let Some(api) = &source.api {
        credentials.extend(
            api.routes
                .iter()
                .filter_map(|r| r.auth.credential_ref.as_ref().map(|c| c.name.as_str())),
        );
    }
    if let Some(rest) = &source.rest {
        messages.push(&rest.request.name);
    }
    if let Some(file) = &source.file {
        messages.push(&file.fetch.name);
    }
    if let Some(db) = &source.database {
        credentials.push(&db.connection.credential_ref.name);
    }
    if let Some(imap) = &source.imap {
        credentials.push(&imap.credential_ref.name);
    }
    for target in &spec.targets {
        messages.extend(target.outbound_message.as_ref().map(|o| o.name.as_str()));
        credentials
            .extend(target.database.as_ref().map(|d| d.connection.credential_ref.name.as_str()));
        credentials.extend(
            target
                .email
                .as_ref()
                .and_then(|e| e.smtp.credential_ref.as_ref())
                .map(|c| c.name.as_str()),
        );
    }
    for probe in spec.health_checks.iter().flat_map(|h| h.probes.iter().flatten()) {
        messages.push(&probe.call.name);
    }
    for route in spec.alerting.iter().flat_map(|a| a.routes.iter().flatten()) {
        let http =
            [&route.alertmanager, &route.pagerduty, &route.slack, &route.teams, &route.webhook];
        credentials.extend(
            http.into_iter()
                .flatten()
                .filter_map(|h| h.credential_ref.as_ref())
                .map(|c| c.name.as_str()),
        );
        credentials.extend(
            route
                .email
                .as_ref()
                .and_then(|e| e.smtp.credential_ref.as_ref())
                .map(|c| c.name.as_str()),
        );
    }
    credentials
        .into_iter()
        .map(|name| Key::new("Credential", &namespace, name))
        .chain(messages.into_iter().map(|name| Key::new("OutboundMessage", &namespace, name)))
        .collect()
}

/// The Credentials an OutboundMessage names.
pub fn outbound_message_references(message: &OutboundMessage) -> BTreeSet<Key> {
    let namespace = message.namespace().unwrap_or_default();
    let spec = &message.spec;
    spec.credential_ref
        .iter()
        .chain(spec.tls.iter().filter_map(|t| t.client_certificate_ref.as_ref()))
        .map(|c| Key::new("Credential", &namespace, &c.name))
        .collect()
}

/// The Integration or OutboundMessage a Schedule runs.
pub fn schedule_references(schedule: &Schedule) -> BTreeSet<Key> {
    let namespace = schedule.namespace().unwrap_or_default();
    let run = &schedule.spec.run;
    run.integration
        .iter()
        .map(|i| Key::new("Integration", &namespace, &i.name))
        .chain(
            run.outbound_message.iter().map(|o| Key::new("OutboundMessage", &namespace, &o.name)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_replace_and_resolve_through_messages() {
        let index = RefIndex::default();
        let integration = Key::new("Integration", "ns", "i");
        let message = Key::new("OutboundMessage", "ns", "m");
        let credential = Key::new("Credential", "ns", "c");
        index.set(integration.clone(), [message.clone()].into());
        index.set(message.clone(), [credential.clone()].into());
        assert_eq!(index.consumers(&credential), [message.clone()].into());
        assert_eq!(
            index.consumers_transitive(&credential),
            [message.clone(), integration.clone()].into()
        );
        index.set(integration.clone(), BTreeSet::new());
        assert_eq!(index.consumers_transitive(&credential), [message.clone()].into());
        index.remove(&message);
        assert!(index.consumers(&credential).is_empty());
    }
}
