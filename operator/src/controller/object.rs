//! [`Unchecked`]: a custom resource as the API server stores it, before its spec is typed.
//!
//! The controllers watch `Unchecked<K>` rather than `K`, so that one object whose spec our
//! types cannot read (written by a newer version, or edited past validation) is reported on
//! that object — `Ready=False`, reason `InvalidSpec` — instead of failing the whole watch and
//! stalling the controller for every other object.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A custom resource of kind `K` whose spec and status are kept as JSON text.
///
/// Text rather than a `serde_json::Value` tree: the operator caches every Integration, and a
/// tree costs several times the text it came from (at 10,000 Integrations, most of the
/// operator's memory). Readers type the whole object ([`Self::typed`]) or read the few fields
/// they need ([`Self::owner_team`], [`Self::status_view`]).
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Unchecked<K> {
    /// Metadata, typed.
    pub metadata: ObjectMeta,
    /// The spec, as stored.
    #[serde(default = "null")]
    pub spec: Box<RawValue>,
    /// The status, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<RawValue>>,
    /// The typed object, read once on first use (cached objects are shared and immutable).
    #[serde(skip)]
    typed: OnceLock<Result<Arc<K>, String>>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// What the caches' readers look at in a status without typing the object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The conditions, as stored.
    #[serde(default)]
    pub conditions: Vec<ConditionView>,
    /// A Credential's or OutboundMessage's content hash.
    pub content_hash: Option<String>,
    /// An mTLS Credential's client certificate expiry (RFC 3339).
    pub certificate_not_after: Option<String>,
}

/// One stored condition, as far as the caches' readers look.
#[derive(Debug, Default, Deserialize)]
pub struct ConditionView {
    /// The condition's type.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// The reason, if any.
    #[serde(default)]
    pub reason: Option<String>,
}

impl<K> Unchecked<K> {
    /// `spec.owner.team`, or empty when the spec has none (or cannot be read).
    pub fn owner_team(&self) -> String {
        #[derive(Deserialize)]
        struct Spec {
            owner: Option<Owner>,
        }
        #[derive(Deserialize)]
        struct Owner {
            team: Option<String>,
        }
        serde_json::from_str::<Spec>(self.spec.get())
            .ok()
            .and_then(|s| s.owner?.team)
            .unwrap_or_default()
    }

    /// The status's conditions and hashes; empty when there is no status (or it cannot be
    /// read).
    pub fn status_view(&self) -> StatusView {
        self.status_as()
    }

    /// The status typed as `S`, or `S::default()` when there is none (or it cannot be read).
    pub fn status_as<S: DeserializeOwned + Default>(&self) -> S {
        let status = self.status.as_deref().map(RawValue::get);
        status.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
    }
}

impl<K> std::fmt::Debug for Unchecked<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unchecked").field("metadata", &self.metadata).finish_non_exhaustive()
    }
}

impl<K> Clone for Unchecked<K> {
    fn clone(&self) -> Self {
        Unchecked {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
            typed: OnceLock::new(),
            kind: PhantomData,
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Unchecked<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        // The typed copy would no longer match.
        self.typed = OnceLock::new();
        &mut self.metadata
    }
}

impl<K: Resource<DynamicType = ()> + DeserializeOwned + Clone> Unchecked<K> {
    /// The typed object, or a message naming the field that could not be read.
    pub fn typed(&self) -> Result<K, String> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct View<'a> {
            api_version: Cow<'a, str>,
            kind: Cow<'a, str>,
            metadata: &'a ObjectMeta,
            spec: &'a RawValue,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a RawValue>,
        }
        let view = View {
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            metadata: &self.metadata,
            spec: &self.spec,
            status: self.status.as_deref(),
        };
        let text = serde_json::to_vec(&view).map_err(|e| e.to_string())?;
        let mut deserializer = serde_json::Deserializer::from_slice(&text);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }

    /// [`Self::typed`], read once per object and then shared: for the few Credentials and
    /// OutboundMessages that every Integration reconcile looks up. (Not for Integrations:
    /// a typed copy of each would double the cache's memory.)
    pub fn typed_cached(&self) -> Result<Arc<K>, String> {
        let typed = self.typed.get_or_init(|| self.typed().map(Arc::new));
        typed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Credential;

    #[test]
    fn a_bad_spec_is_a_message_not_a_failed_watch() {
        let good: Unchecked<Credential> = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
            "metadata": {"name": "c"}, "spec": {"type": "bearer", "secretRef": {"name": "s"}}
        }))
        .unwrap();
        assert_eq!(good.typed().unwrap().spec.secret_ref.name, "s");
        let bad: Unchecked<Credential> = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
            "metadata": {"name": "c"}, "spec": {"type": "kerberos", "secretRef": {"name": "s"}}
        }))
        .unwrap();
        assert!(bad.typed().unwrap_err().starts_with("spec.type: unknown variant `kerberos`"));
        assert_eq!(<Unchecked<Credential> as Resource>::plural(&()), "credentials");
    }

    #[test]
    fn readers_take_what_they_need_from_the_stored_text() {
        let stored = r#"{"metadata": {"name": "i"},
            "spec": {"owner": {"team": "payments"}, "source": {"type": "webhook"}},
            "status": {"contentHash": "sha256:ab", "certificateNotAfter": "2027-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotFound",
                    "message": "m", "observedGeneration": 3}, {"type": "Healthy"}]}}"#;
        let object: Unchecked<Credential> = serde_json::from_str(stored).unwrap();
        assert_eq!(object.owner_team(), "payments");
        let status = object.status_view();
        assert_eq!(status.content_hash.as_deref(), Some("sha256:ab"));
        assert_eq!(status.certificate_not_after.as_deref(), Some("2027-01-01T00:00:00Z"));
        let ready = &status.conditions[0];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "False"));
        assert_eq!(ready.reason.as_deref(), Some("SecretNotFound"));
        assert_eq!(
            (status.conditions[1].type_.as_str(), status.conditions[1].status.as_str()),
            ("Healthy", "")
        );

        // No status, no owner, no spec at all: empty answers, and the typed read names the gap.
        let bare: Unchecked<Credential> =
            serde_json::from_str(r#"{"metadata": {"name": "b"}}"#).unwrap();
        assert_eq!(bare.owner_team(), "");
        assert!(bare.status_view().conditions.is_empty());
        assert!(
            bare.typed().unwrap_err().starts_with("spec: invalid type: null"),
            "{:?}",
            bare.typed()
        );
        // Written back, the stored text is what was read.
        let written = serde_json::to_value(&object).unwrap();
        assert_eq!(written["spec"]["source"]["type"], "webhook");
        assert_eq!(written["status"]["conditions"][0]["observedGeneration"], 3);
    }
}
