//! The resource types the server serves: built-in kinds and those registered by CRDs.
//!
//! A [`Resource`] describes one group/version/resource: its kind, scope, names, verbs and
//! subresources, and how objects of it are validated ([`Validation`]). The [`Registry`] is the
//! lookup used by routing, discovery, OpenAPI and RBAC; CRD creation and deletion add and
//! remove entries at run time.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::schema::CompiledCrd;

/// Storage identity of a resource: group and plural (all versions share storage).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(group: &str, resource: &str) -> Self {
        Self { group: group.to_string(), resource: resource.to_string() }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// How objects of a resource are checked on write.
#[derive(Clone)]
pub enum Validation {
    /// A built-in kind: decoded into its k8s-openapi type and re-encoded.
    Builtin(crate::builtin::Codec),
    /// A custom resource: validated against its CRD schema.
    Custom(Arc<CustomInfo>),
    /// A virtual resource (reviews) that is never stored.
    Virtual,
}

/// What a CRD-backed resource carries beyond its names.
pub struct CustomInfo {
    /// The CRD as stored.
    pub crd: CustomResourceDefinition,
    /// Its compiled schemas.
    pub compiled: CompiledCrd,
}

/// One served group/version/resource.
#[derive(Clone)]
pub struct Resource {
    /// API group, empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Kind of the list.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`deploy`, `cm`, ...).
    pub short_names: Vec<String>,
    /// Categories (`all`, ...).
    pub categories: Vec<String>,
    /// Verbs the main resource supports.
    pub verbs: Vec<&'static str>,
    /// Has a `/status` subresource.
    pub status_subresource: bool,
    /// Has a `/scale` subresource.
    pub scale_subresource: bool,
    /// Whether this version is the preferred (storage) version of its group.
    pub storage_version: bool,
    /// Validation strategy.
    pub validation: Validation,
}

impl Resource {
    /// The storage key. `events.k8s.io` Events share the storage of core Events (see
    /// `events`).
    pub fn key(&self) -> ResourceKey {
        if crate::events::is_events_v1(self) {
            return crate::events::storage_key();
        }
        ResourceKey::new(&self.group, &self.plural)
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The custom resource info, for CRD-backed resources.
    pub fn custom(&self) -> Option<&Arc<CustomInfo>> {
        match &self.validation {
            Validation::Custom(c) => Some(c),
            _ => None,
        }
    }

    /// Subject for error messages about `name`.
    pub fn subject(&self, name: &str) -> crate::error::Subject {
        crate::error::Subject {
            group: self.group.clone(),
            resource: self.plural.clone(),
            kind: self.kind.clone(),
            name: name.to_string(),
        }
    }
}

/// All verbs of an ordinary stored resource.
pub const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The set of served resources, shared by the whole server.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<BTreeMap<(String, String, String), Arc<Resource>>>,
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub fn with_builtins() -> Self {
        let r = Registry::default();
        for res in crate::builtin::resources() {
            r.insert(res);
        }
        r
    }

    /// Adds or replaces a resource.
    pub fn insert(&self, res: Resource) {
        let key = (res.group.clone(), res.version.clone(), res.plural.clone());
        self.inner.write().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::new(res));
    }

    /// Removes every version of a group/plural.
    pub fn remove(&self, group: &str, plural: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Looks up a group/version/resource.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The storage-version resource for a key.
    pub fn by_key(&self, key: &ResourceKey) -> Option<Arc<Resource>> {
        let all = self.all();
        let mut matching =
            all.into_iter().filter(|r| r.group == key.group && r.plural == key.resource);
        let first = matching.next()?;
        if first.storage_version {
            return Some(first);
        }
        matching.find(|r| r.storage_version).or(Some(first))
    }

    /// Finds the resource serving a kind in an apiVersion.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.all().into_iter().find(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// Every served resource, ordered by group, version, plural.
    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Served groups with their versions (preferred first), core group excluded.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<(bool, String)>> = BTreeMap::new();
        for r in self.all() {
            if r.group.is_empty() {
                continue;
            }
            let versions = groups.entry(r.group.clone()).or_default();
            if let Some(existing) = versions.iter_mut().find(|(_, v)| *v == r.version) {
                existing.0 |= r.storage_version;
            } else {
                versions.push((r.storage_version, r.version.clone()));
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by(|a, b| {
                    b.0.cmp(&a.0).then_with(|| version_priority(&b.1).cmp(&version_priority(&a.1)))
                });
                (g, vs.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

/// Builds the served resources for a CRD (one per served version).
pub fn from_crd(crd: &CustomResourceDefinition) -> Vec<Resource> {
    let info = Arc::new(CustomInfo { crd: crd.clone(), compiled: CompiledCrd::new(crd) });
    let names = &crd.spec.names;
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let subresources = v.subresources.as_ref();
            Resource {
                group: crd.spec.group.clone(),
                version: v.name.clone(),
                plural: names.plural.clone(),
                singular: names.singular.clone().unwrap_or_else(|| names.kind.to_lowercase()),
                kind: names.kind.clone(),
                list_kind: names.list_kind.clone().unwrap_or_else(|| format!("{}List", names.kind)),
                namespaced: crd.spec.scope == "Namespaced",
                short_names: names.short_names.clone().unwrap_or_default(),
                categories: names.categories.clone().unwrap_or_default(),
                verbs: ALL_VERBS.to_vec(),
                status_subresource: subresources.is_some_and(|s| s.status.is_some()),
                scale_subresource: subresources.is_some_and(|s| s.scale.is_some()),
                storage_version: v.storage,
                validation: Validation::Custom(info.clone()),
            }
        })
        .collect()
}

/// The JSON schema of a CRD version, if any.
pub fn crd_version_schema(crd: &CustomResourceDefinition, version: &str) -> Option<Value> {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
}
