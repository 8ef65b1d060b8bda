//! Names, labels, owner references and content hashes shared by every child object.
//!
//! Every child carries the standard `app.kubernetes.io/*` labels plus
//! `switchboard.dev/integration` and `switchboard.dev/owner-team`, so that `kubectl get -l`
//! and cost or audit tooling can find an integration's objects by owner.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::CredentialSpec;

/// Label: the integration a child belongs to.
pub const LABEL_INTEGRATION: &str = "switchboard.dev/integration";
/// Label: the schedule a child belongs to.
pub const LABEL_SCHEDULE: &str = "switchboard.dev/schedule";
/// Label: the team that owns the integration.
pub const LABEL_OWNER_TEAM: &str = "switchboard.dev/owner-team";
/// Pod template annotation: hash of the rendered worker config.
pub const ANNOTATION_CONFIG_HASH: &str = "switchboard.dev/config-hash";
/// Prefix of the pod template annotations carrying each credential's content hash.
pub const ANNOTATION_CREDENTIAL_PREFIX: &str = "credential.switchboard.dev/";
/// The field manager the operator applies with.
pub const FIELD_MANAGER: &str = "switchboard-operator";

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name derived from `base` and `suffix` that fits in `max` characters and is a DNS-1035
/// label when `base` is: long bases are cut and given a short hash so they stay unique.
pub fn child_name(base: &str, suffix: &str, max: usize) -> String {
    let joined = if suffix.is_empty() { base.to_string() } else { format!("{base}-{suffix}") };
    let cleaned: String = joined.chars().map(|c| if c == '.' { '-' } else { c }).collect();
    if cleaned.len() <= max {
        return cleaned;
    }
    let hash = &sha256_hex(joined.as_bytes())[..8];
    let keep = max - hash.len() - 1;
    let cut = cleaned[..keep].trim_end_matches('-');
    format!("{cut}-{hash}")
}

/// A label value derived from `value`: at most 63 characters, alphanumeric at both ends.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        return value.to_string();
    }
    let hash = &sha256_hex(value.as_bytes())[..8];
    let cut = value[..54].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{cut}-{hash}")
}

/// The standard labels of an integration's children.
pub fn integration_labels(
    integration: &str,
    team: &str,
    component: &str,
) -> BTreeMap<String, String> {
    let mut labels = selector_labels(integration, component);
    labels.insert("app.kubernetes.io/part-of".into(), "switchboard".into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels.insert(LABEL_INTEGRATION.into(), label_value(integration));
    labels.insert(LABEL_OWNER_TEAM.into(), label_value(team));
    labels
}

/// The labels that select an integration's worker pods; never change them (selectors are
/// immutable).
pub fn selector_labels(instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "switchboard-worker".to_string()),
        ("app.kubernetes.io/instance".to_string(), label_value(instance)),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

/// Metadata of a child object: name, namespace, labels and a controller owner reference.
pub fn child_meta<K>(owner: &K, name: String, labels: BTreeMap<String, String>) -> ObjectMeta
where
    K: Resource<DynamicType = ()>,
{
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(owner)]),
        ..ObjectMeta::default()
    }
}

/// A controller owner reference to `owner`, so garbage collection removes the child with it.
///
/// Objects read from files have no uid; they get one derived from their kind, namespace and
/// name ([`offline_uid`]), which `switchboard render` states in its output.
pub fn owner_reference<K>(owner: &K) -> OwnerReference
where
    K: Resource<DynamicType = ()>,
{
    let uid = owner.meta().uid.clone().unwrap_or_else(|| {
        offline_uid(
            &K::kind(&()),
            owner.meta().namespace.as_deref().unwrap_or(""),
            &owner.name_any(),
        )
    });
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A stable UUID-shaped uid for an object that has not been created yet (version nibble 8,
/// "custom", so it can never be mistaken for an API server's random v4 uid).
pub fn offline_uid(kind: &str, namespace: &str, name: &str) -> String {
    let hex = sha256_hex(format!("{kind}/{namespace}/{name}").as_bytes());
    format!("{}-{}-8{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// Content hash of a Credential's Secret: SHA-256 over the keys the Credential reads, in a
/// stable order, with their values. Only the hash leaves this function, never a value.
/// Returns `None` when a required key is missing.
pub fn credential_content_hash(spec: &CredentialSpec, secret: &Secret) -> Option<String> {
    let mut hasher = Sha256::new();
    for (role, key, required) in spec.secret_keys() {
        let value = secret_value(secret, &key);
        match value {
            Some(bytes) => {
                hasher.update(role.file_name().as_bytes());
                hasher.update([0]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
            }
            None if required => return None,
            None => {}
        }
    }
    Some(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A Secret's value for a key, from `data` or `stringData`.
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.data.as_ref().and_then(|data| data.get(key)) {
        return Some(value.0.clone());
    }
    secret.string_data.as_ref().and_then(|data| data.get(key)).map(|v| v.as_bytes().to_vec())
}

/// Annotation key carrying the content hash of the named credential on a pod template.
pub fn credential_annotation(credential: &str) -> String {
    format!("{ANNOTATION_CREDENTIAL_PREFIX}{}", child_name(credential, "", 63))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_cut_with_a_hash() {
        assert_eq!(child_name("hr-import", "worker", 63), "hr-import-worker");
        assert_eq!(child_name("a.b", "worker", 63), "a-b-worker");
        let long = "x".repeat(80);
        let name = child_name(&long, "worker", 63);
        assert_eq!(name.len(), 63);
        assert_ne!(
            name,
            child_name(&"x".repeat(81), "worker", 63),
            "distinct inputs stay distinct"
        );
    }

    #[test]
    fn label_values_fit_kubernetes_limits() {
        assert_eq!(label_value("team-a"), "team-a");
        let value = label_value(&"a".repeat(100));
        assert!(value.len() <= 63);
        assert!(value.chars().last().unwrap().is_ascii_alphanumeric());
    }

    #[test]
    fn offline_uids_are_stable_and_uuid_shaped() {
        let a = offline_uid("Integration", "ns", "x");
        assert_eq!(a, offline_uid("Integration", "ns", "x"));
        assert_ne!(a, offline_uid("Integration", "ns", "y"));
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
