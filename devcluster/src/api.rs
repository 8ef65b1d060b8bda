//! The verbs: get, list, create, update, patch (JSON, merge, strategic, apply), delete and
//! deletecollection, with the admission path every write goes through.
//!
//! ```text
//!  request ──▶ decode/patch ──▶ admit ────────────────────────────────▶ store.put
//!                               │ metadata: name, generateName, uid, timestamps, generation
//!                               │ scope: status subresource vs main resource
//!                               │ validation: CRD schema + CEL, or k8s-openapi typing + defaults
//!                               │ managedFields
//!                               └ side effects: CRD registration, namespace's default SA
//! ```
//!
//! [`Core`] is the in-process handle: the HTTP layer calls it after authentication and RBAC,
//! and in-process controllers (garbage collection, namespace cleanup, and later workload
//! controllers) call the same functions, so their writes are admitted exactly like a client's.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::managed::{self, Scope, Shape, Writer};
use crate::resources::{Registry, Resource, ResourceKey, Validation};
use crate::schema::{Cause, CauseType, UnknownFields, ValidationOptions};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Expect, Store, StoreError, StoredObject};

/// Which part of an object a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
}

/// `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them and warn (the default).
    #[default]
    Warn,
    /// Reject the request.
    Strict,
}

/// Options shared by writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (apply only).
    pub force: bool,
}

/// Patch formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

/// Deletion propagation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; dependents are collected afterwards.
    Background,
    /// Delete dependents first.
    Foreground,
    /// Leave dependents, removing their owner references.
    Orphan,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size (0 = all).
    pub limit: usize,
    /// Continue token.
    pub continue_token: Option<String>,
}

/// A page of a list.
pub struct ListPage {
    /// resourceVersion of the list.
    pub rv: u64,
    /// Items, serialized.
    pub items: Vec<Arc<StoredObject>>,
    /// Continue token for the next page.
    pub continue_token: Option<String>,
    /// Number of items after this page, when paginated.
    pub remaining: Option<u64>,
}

/// The result of a write.
pub struct Written {
    /// The object as stored (or as it would be, for dry runs).
    pub object: Value,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
    /// Whether the write created the object.
    pub created: bool,
    /// The stored serialization, when it is what the client should see.
    pub serialized: Option<Bytes>,
}

impl Written {
    /// The response body.
    pub fn body(&self) -> Bytes {
        self.serialized.clone().unwrap_or_else(|| Bytes::from(self.object.to_string()))
    }
}

/// The in-process API: store plus registry plus admission.
pub struct Core {
    /// The objects.
    pub store: Arc<Store>,
    /// The served resources.
    pub registry: Registry,
    /// Cluster IPs handed out to Services.
    pub cluster_ips: crate::services::ClusterIps,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn store_err(res: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists => ApiError::AlreadyExists(res.subject(name)),
        StoreError::NotFound => ApiError::NotFound(res.subject(name)),
        StoreError::Conflict => ApiError::Conflict {
            subject: res.subject(name),
            detail: "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        },
        other => ApiError::Internal(other.to_string()),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata object")
}

/// Finalizers of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

fn name_causes(res: &Resource, name: &str) -> Vec<Cause> {
    static SUB: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static LABEL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let invalid = |msg: String| {
        vec![Cause {
            field: "metadata.name".into(),
            kind: CauseType::Invalid,
            message: format!("Invalid value: {name:?}: {msg}"),
        }]
    };
    if res.group == "rbac.authorization.k8s.io" {
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            return invalid("may not contain '/' or '%' and may not be '.' or '..'".into());
        }
        return Vec::new();
    }
    let label = matches!(res.kind.as_str(), "Namespace" | "Service");
    if label {
        let re = LABEL.get_or_init(|| regex::Regex::new(DNS1123_LABEL).expect("regex"));
        if name.len() > 63 || !re.is_match(name) {
            return invalid(format!(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{}')",
                &DNS1123_LABEL[1..DNS1123_LABEL.len() - 1]
            ));
        }
    } else {
        let re = SUB.get_or_init(|| regex::Regex::new(DNS1123_SUBDOMAIN).expect("regex"));
        if name.len() > 253 || !re.is_match(name) {
            return invalid(format!(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{}')",
                &DNS1123_SUBDOMAIN[1..DNS1123_SUBDOMAIN.len() - 1]
            ));
        }
    }
    Vec::new()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The spec-ish content: everything except metadata and status.
/// Whether two objects agree on everything but metadata and status (what moves generation).
fn same_spec(a: &Value, b: &Value) -> bool {
    same_except(a, b, &["metadata", "status"])
}

/// Whether two objects of a map shape agree on every field but those in `skip`.
fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return a == b };
    let kept = |(k, _): &(&String, &Value)| !skip.contains(&k.as_str());
    a.iter().filter(kept).count() == b.iter().filter(kept).count()
        && a.iter().filter(kept).all(|(k, v)| b.get(k) == Some(v))
}

/// Decodes a built-in object into its typed form and back: fields the type does not have
/// are dropped, and reported (or rejected) as `fieldValidation` asks.
fn decode_builtin(
    res: &Resource,
    codec: &crate::builtin::Codec,
    new: Value,
    field_validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let typed = (codec.roundtrip)(&new).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    let unknown = unknown_paths(&new, &typed);
    if !unknown.is_empty() {
        match field_validation {
            FieldValidation::Strict => {
                let list: Vec<String> =
                    unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect();
                return Err(ApiError::BadRequest(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    res.kind,
                    res.version,
                    res.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|p| format!("unknown field \"{p}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(typed)
}

/// Makes `new` a status write: everything but `status` (and, of the metadata, the
/// `managedFields` and `resourceVersion` the write carries) is the old object's. `new`
/// usually already agrees with `old` outside status (a patch starts from it), so fields are
/// compared and only those that differ are copied from `old`.
fn keep_only_status_changes(old: &Value, new: &mut Value) {
    let (Some(old_map), Some(new_map)) = (old.as_object(), new.as_object_mut()) else {
        *new = old.clone();
        return;
    };
    new_map.retain(|k, _| k == "status" || k == "metadata" || old_map.contains_key(k));
    for (k, old_field) in old_map.iter().filter(|(k, _)| *k != "status" && *k != "metadata") {
        if new_map.get(k) != Some(old_field) {
            new_map.insert(k.clone(), old_field.clone());
        }
    }
    let old_meta = old_map.get("metadata").and_then(Value::as_object);
    let Some(Value::Object(new_meta)) = new_map.get_mut("metadata") else {
        new_map.insert("metadata".into(), old_map.get("metadata").cloned().unwrap_or(Value::Null));
        return;
    };
    // The write's resourceVersion (a precondition) always; its managedFields when it has them.
    let has_managed = new_meta.contains_key("managedFields");
    new_meta.retain(|k, _| {
        k == "resourceVersion"
            || k == "managedFields"
            || old_meta.is_some_and(|m| m.contains_key(k))
    });
    if let Some(old_meta) = old_meta {
        for (k, old_field) in old_meta.iter() {
            let written = k == "resourceVersion" || (k == "managedFields" && has_managed);
            if !written && new_meta.get(k) != Some(old_field) {
                new_meta.insert(k.clone(), old_field.clone());
            }
        }
    }
    new_meta.entry("resourceVersion").or_insert(Value::Null);
}

/// The stored object a write replaces, with its value as served (parsed once per write).
pub(crate) struct Live {
    stored: Arc<StoredObject>,
    value: Value,
}

fn encode_continue(ns: &str, name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([ns, name]).to_string())
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    serde_json::from_slice::<(String, String)>(&raw).map_err(|_| bad())
}

impl Core {
    /// A core over a store with the built-in resources (and the CRDs found in the store).
    pub fn new(store: Arc<Store>) -> Self {
        let core =
            Core { store, registry: Registry::with_builtins(), cluster_ips: Default::default() };
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        for (_, _, obj) in core.store.list(&crd_key, None, None).1 {
            if let Ok(crd) = serde_json::from_value(obj.value()) {
                for r in crate::resources::from_crd(&crd) {
                    core.registry.insert(r);
                }
            }
        }
        core
    }

    /// Reads one object.
    pub fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Arc<StoredObject>, ApiError> {
        self.store.get(&res.key(), ns, name).ok_or_else(|| ApiError::NotFound(res.subject(name)))
    }

    /// Lists objects (namespace `None` = all namespaces).
    pub fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let after = opts.continue_token.as_deref().map(decode_continue).transpose()?;
        let (rv, all) = self.store.list(&res.key(), ns, after.as_ref());
        let filtering = !opts.labels.is_empty() || !opts.fields.is_empty();
        let mut items = Vec::new();
        let mut last = None;
        let mut iter = all.into_iter();
        for (n, name, obj) in iter.by_ref() {
            if filtering {
                let v = self.view(res, &obj);
                if !opts.labels.matches(&v) || !opts.fields.matches(&v) {
                    continue;
                }
            }
            items.push(obj);
            last = Some((n, name));
            if opts.limit > 0 && items.len() >= opts.limit {
                break;
            }
        }
        let rest = iter.count() as u64;
        let (continue_token, remaining) = match (opts.limit > 0 && rest > 0, last) {
            (true, Some((n, name))) => (Some(encode_continue(&n, &name)), Some(rest)),
            _ => (None, None),
        };
        Ok(ListPage { rv, items, continue_token, remaining })
    }

    /// A stored object as served at `res` (Events converted to `events.k8s.io/v1`).
    pub fn view(&self, res: &Resource, obj: &StoredObject) -> Value {
        self.as_served(res, obj.value())
    }

    fn live(&self, res: &Resource, stored: Arc<StoredObject>) -> Live {
        Live { value: self.view(res, &stored), stored }
    }

    fn as_served(&self, res: &Resource, v: Value) -> Value {
        if crate::events::is_events_v1(res) { crate::events::to_events_v1(&v) } else { v }
    }

    /// Serialized object as served at `res`'s version (CRD versions share storage unconverted).
    pub fn present(&self, res: &Resource, obj: &StoredObject) -> Bytes {
        if crate::events::is_events_v1(res) {
            return Bytes::from(serde_json::to_vec(&self.view(res, obj)).unwrap_or_default());
        }
        if res.custom().is_none() {
            return obj.json.clone();
        }
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "apiVersion", borrow)]
            api_version: Option<std::borrow::Cow<'a, str>>,
        }
        let head = serde_json::from_slice::<Head>(&obj.json).ok().and_then(|h| h.api_version);
        if head.as_deref() != Some(&res.api_version()) {
            let mut v = obj.value();
            v["apiVersion"] = json!(res.api_version());
            return Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        }
        obj.json.clone()
    }

    fn ensure_namespace(&self, res: &Resource, ns: &str, creating: bool) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let ns_res = self.registry.get("", "v1", "namespaces").expect("namespaces registered");
        match self.store.get(&ns_res.key(), "", ns) {
            None => Err(ApiError::NotFound(ns_res.subject(ns))),
            Some(n) if creating && n.is_deleting() => Err(ApiError::Forbidden {
                subject: res.subject(""),
                detail: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            }),
            Some(_) => Ok(()),
        }
    }

    fn manager(opts: &WriteOptions, fallback: &str) -> String {
        opts.field_manager.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| fallback.to_string())
    }

    /// Creates an object in namespace `ns` ("" for cluster-scoped).
    pub fn create(
        &self,
        res: &Resource,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
        agent: &str,
    ) -> Result<Written, ApiError> {
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request must be a JSON object".into(),
            ));
        }
        self.check_type(res, &body)?;
        let meta = meta_mut(&mut body);
        if res.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    name = format!("{g}{}", random_suffix());
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        res.subject(""),
                        vec![Cause {
                            field: "metadata.name".into(),
                            kind: CauseType::Required,
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            }
        }
        let causes = name_causes(res, &name);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res.subject(&name), causes));
        }
        self.ensure_namespace(res, ns, true)?;
        let meta = meta_mut(&mut body);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
        {
            meta.remove(f);
        }
        if res.status_subresource
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        let manager = Self::manager(opts, agent);
        self.admit(res, ns, &name, None, body, opts, Subresource::Main, Some(&manager))
    }

    fn check_type(&self, res: &Resource, body: &Value) -> Result<(), ApiError> {
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if (!kind.is_empty() && kind != res.kind)
            || (!api_version.is_empty() && api_version != res.api_version())
        {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                res.api_version()
            )));
        }
        Ok(())
    }

    /// Replaces an object (PUT), honouring `metadata.resourceVersion` as a precondition.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOptions,
        sub: Subresource,
        agent: &str,
    ) -> Result<Written, ApiError> {
        self.check_type(res, &body)?;
        if let Some(n) = meta_str(&body, "name")
            && n != name
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.get(res, ns, name)?;
        if let Some(rv) = meta_str(&body, "resourceVersion").filter(|s| !s.is_empty())
            && rv != old.rv.to_string()
        {
            return Err(store_err(res, name, StoreError::Conflict));
        }
        let manager = Self::manager(opts, agent);
        let old = self.live(res, old);
        self.admit(res, ns, name, Some(old), body, opts, sub, Some(&manager))
    }

    /// Patches an object; an apply patch creates it when missing.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        kind: PatchType,
        patch: &Value,
        opts: &WriteOptions,
        sub: Subresource,
        agent: &str,
    ) -> Result<Written, ApiError> {
        if kind == PatchType::Strategic && res.custom().is_some() {
            return Err(ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
            ));
        }
        if kind == PatchType::Apply && opts.field_manager.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                crate::error::Subject {
                    group: "meta.k8s.io".into(),
                    kind: "PatchOptions".into(),
                    ..Default::default()
                },
                vec![Cause {
                    field: "fieldManager".into(),
                    kind: CauseType::Required,
                    message: "Required value: is required for apply patch".into(),
                }],
            ));
        }
        for _attempt in 0..16 {
            let old = self.store.get(&res.key(), ns, name);
            let Some(old) = old else {
                if kind == PatchType::Apply {
                    let mut body = patch.clone();
                    meta_mut(&mut body).insert("name".into(), json!(name));
                    let manager = Self::manager(opts, agent);
                    let applied = self.apply_fields(res, None, &body, opts, sub, &manager)?;
                    let mut create_opts = opts.clone();
                    create_opts.field_manager = Some(manager.clone());
                    let mut created = self.create_applied(res, ns, applied, &create_opts)?;
                    created.created = true;
                    return Ok(created);
                }
                return Err(ApiError::NotFound(res.subject(name)));
            };
            let old = self.live(res, old);
            let manager = Self::manager(opts, agent);
            // The other patches change a copy of the old object; apply builds its result
            // itself (from the old object, which admission still needs unchanged).
            let patched =
                |apply: fn(&mut Value, &Value) -> Result<(), crate::patch::PatchError>| {
                    let mut new = old.value.clone();
                    apply(&mut new, patch).map(|_| (new, Some(manager.as_str())))
                };
            let result = match kind {
                PatchType::Json => patched(crate::patch::json_patch),
                PatchType::Merge => patched(crate::patch::merge_patch),
                PatchType::Strategic => patched(crate::patch::strategic_merge_patch),
                PatchType::Apply => {
                    self.check_type(res, patch)?;
                    let applied =
                        self.apply_fields(res, Some(&old.value), patch, opts, sub, &manager)?;
                    Ok((applied, None))
                }
            };
            let (body, manager_for_update) = match result {
                Ok(a) => a,
                Err(crate::patch::PatchError::Malformed(m)) => return Err(ApiError::BadRequest(m)),
                Err(e @ crate::patch::PatchError::Failed(_)) => {
                    return Err(ApiError::invalid(
                        res.subject(name),
                        vec![Cause {
                            field: "<nil>".into(),
                            kind: CauseType::Invalid,
                            message: e.to_string(),
                        }],
                    ));
                }
            };
            if let Some(rv) = meta_str(patch, "resourceVersion").filter(|s| !s.is_empty())
                && rv != old.stored.rv.to_string()
            {
                return Err(store_err(res, name, StoreError::Conflict));
            }
            let mut body = body;
            meta_mut(&mut body).insert("resourceVersion".into(), json!(old.stored.rv.to_string()));
            match self.admit(res, ns, name, Some(old), body, opts, sub, manager_for_update) {
                Err(ApiError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(store_err(res, name, StoreError::Conflict))
    }

    /// Where list and map semantics of `res` come from: its CRD schema, borrowed (it is
    /// large, and a write only reads it), or the built-in merge keys.
    fn shape<'r>(res: &'r Resource, version: &str) -> Shape<'r> {
        match res.custom() {
            Some(c) => Shape::Schema(c.compiled.schema(version)),
            None => Shape::Builtin,
        }
    }

    fn apply_fields(
        &self,
        res: &Resource,
        live: Option<&Value>,
        applied: &Value,
        opts: &WriteOptions,
        sub: Subresource,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let shape = Self::shape(res, &res.version);
        let scope = match sub {
            Subresource::Main => Scope::Main { status_subresource: res.status_subresource },
            Subresource::Status => Scope::Status,
        };
        let api_version = res.api_version();
        let ts = now();
        let w = Writer {
            manager,
            api_version: &api_version,
            subresource: if sub == Subresource::Status { "status" } else { "" },
            now: &ts,
        };
        managed::apply(live, applied, shape, scope, opts.force, &w).map_err(|c| {
            ApiError::ApplyConflict {
                subject: Box::new(res.subject(meta_str(applied, "name").unwrap_or(""))),
                message: c.message,
                conflicts: c.causes,
            }
        })
    }

    fn create_applied(
        &self,
        res: &Resource,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        body["apiVersion"] = json!(res.api_version());
        body["kind"] = json!(res.kind);
        let name = meta_str(&body, "name").unwrap_or("").to_string();
        let causes = name_causes(res, &name);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res.subject(&name), causes));
        }
        self.ensure_namespace(res, ns, true)?;
        let meta = meta_mut(&mut body);
        if res.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        if res.status_subresource
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        self.admit(res, ns, &name, None, body, opts, Subresource::Main, None)
    }

    /// The admission path shared by every write. `manager` is set for Update-style writes
    /// (managedFields are computed here); apply has computed them already.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        old: Option<Live>,
        mut new: Value,
        opts: &WriteOptions,
        sub: Subresource,
        manager: Option<&str>,
    ) -> Result<Written, ApiError> {
        let old_value = old.as_ref().map(|o| &o.value);
        let storage = if crate::events::is_events_v1(res) {
            // Converted to the core form only when stored (see below).
            Arc::new(res.clone())
        } else {
            self.registry.by_key(&res.key()).unwrap_or_else(|| Arc::new(res.clone()))
        };
        new["apiVersion"] = json!(storage.api_version());
        new["kind"] = json!(res.kind);
        if let Some(old_v) = old_value {
            // Identity and system fields cannot be changed by an update.
            let meta = meta_mut(&mut new);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_v.get("metadata").and_then(|m| m.get(f)) {
                    Some(v) => {
                        meta.insert(f.into(), v.clone());
                    }
                    None => {
                        meta.remove(f);
                    }
                }
            }
            match sub {
                Subresource::Status => keep_only_status_changes(old_v, &mut new),
                Subresource::Main if res.status_subresource => match old_v.get("status") {
                    // Usually the write carries the old status already (a patch or an apply
                    // starts from the old object): copy it only when it differs.
                    Some(s) if new.get("status") == Some(s) => {}
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                },
                Subresource::Main => {}
            }
        }

        // Validation, pruning and defaults.
        let mut warnings = Vec::new();
        match &res.validation {
            Validation::Custom(info) => {
                let vopts = ValidationOptions {
                    unknown_fields: if opts.field_validation == FieldValidation::Strict {
                        UnknownFields::Reject
                    } else {
                        UnknownFields::Prune
                    },
                    version: Some(storage.version.clone()),
                };
                match info.compiled.validate(new, old_value, &vopts) {
                    Ok(v) => {
                        if opts.field_validation == FieldValidation::Warn {
                            warnings
                                .extend(v.pruned.iter().map(|p| format!("unknown field \"{p}\"")));
                        }
                        new = v.object;
                    }
                    Err(causes) => {
                        let unknown: Vec<&Cause> =
                            causes.iter().filter(|c| c.kind == CauseType::UnknownField).collect();
                        if !unknown.is_empty() {
                            let list: Vec<String> =
                                unknown.iter().map(|c| c.message.clone()).collect();
                            return Err(ApiError::BadRequest(format!(
                                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                                res.kind,
                                storage.version,
                                res.kind,
                                list.join(", ")
                            )));
                        }
                        return Err(ApiError::invalid(res.subject(name), causes));
                    }
                }
            }
            Validation::Builtin(codec) => {
                if res.kind == "Service" && res.group.is_empty() {
                    self.assign_cluster_ip(old_value, &mut new);
                }
                crate::builtin::apply_defaults(&res.kind, &mut new);
                // A write that would change nothing but managedFields timestamps stores
                // nothing (see below), and the stored object was decoded, pruned and
                // validated when it was written: decoding it again would find the same.
                let unchanged = old_value.is_some_and(|o| same_but_managed_times(o, &new));
                if !unchanged {
                    new = decode_builtin(res, codec, new, opts.field_validation, &mut warnings)?;
                    let causes = crate::builtin::validate(&res.kind, &new);
                    if !causes.is_empty() {
                        return Err(ApiError::invalid(res.subject(name), causes));
                    }
                }
            }
            Validation::Virtual => return Err(ApiError::MethodNotAllowed),
        }
        if res.kind == "CustomResourceDefinition" {
            self.prepare_crd(res, name, &mut new)?;
        }

        // Generation moves only when the spec-ish content changes.
        if let Some(old_v) = old_value {
            let generation =
                old_v.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            let bumped = if same_spec(old_v, &new) { generation } else { generation + 1 };
            meta_mut(&mut new).insert("generation".into(), json!(bumped));
        }

        if let Some(manager) = manager {
            let shape = Self::shape(res, &storage.version);
            let scope = match sub {
                Subresource::Main => Scope::Main { status_subresource: res.status_subresource },
                Subresource::Status => Scope::Status,
            };
            let api_version = res.api_version();
            let ts = now();
            let w = Writer {
                manager,
                api_version: &api_version,
                subresource: if sub == Subresource::Status { "status" } else { "" },
                now: &ts,
            };
            managed::record_update(old_value, &mut new, shape, scope, &w);
        }

        let expect = match &old {
            Some(o) => Expect::Version(o.stored.rv),
            None => Expect::Absent,
        };
        if opts.dry_run {
            if old.is_none() && self.store.get(&res.key(), ns, name).is_some() {
                return Err(ApiError::AlreadyExists(res.subject(name)));
            }
            if let Some(o) = &old {
                meta_mut(&mut new).insert("resourceVersion".into(), json!(o.stored.rv.to_string()));
            } else {
                meta_mut(&mut new).remove("resourceVersion");
            }
            return Ok(Written { object: new, warnings, created: old.is_none(), serialized: None });
        }
        if old_value.is_some_and(|o| same_but_managed_times(o, &new)) {
            // A no-op write does not bump the resourceVersion (as in Kubernetes). As the API
            // server's IgnoreManagedFieldsTimestampsTransformer does, a write that would only
            // move managedFields timestamps counts as a no-op too.
            let o = old.expect("old present");
            // The answer is the stored object: its stored text, unless it is served converted.
            let serialized = (!crate::events::is_events_v1(res)
                && (res.custom().is_none() || storage.version == res.version))
                .then(|| o.stored.json.clone());
            return Ok(Written { object: o.value, warnings, created: false, serialized });
        }
        let created = old.is_none();
        if crate::events::is_events_v1(res) {
            // Stored once, as core/v1; answered in the version asked.
            let mut core_form = crate::events::to_core(&new);
            let stored = self
                .store
                .put(&res.key(), ns, name, &mut core_form, expect)
                .map_err(|e| store_err(res, name, e))?;
            return Ok(Written {
                object: self.view(res, &stored),
                warnings,
                created,
                serialized: None,
            });
        }
        let stored = self
            .store
            .put(&res.key(), ns, name, &mut new, expect)
            .map_err(|e| store_err(res, name, e))?;
        let object = new;
        self.after_write(res, ns, name, &object, created)?;
        let serialized =
            (res.custom().is_none() || storage.version == res.version).then(|| stored.json.clone());
        Ok(Written { object, warnings, created, serialized })
    }

    /// Side effects of a stored write.
    fn after_write(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        object: &Value,
        created: bool,
    ) -> Result<(), ApiError> {
        if object.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(object).is_empty()
            && res.kind != "Namespace"
        {
            // The last finalizer is gone: the object is deleted now.
            let rv: u64 =
                meta_str(object, "resourceVersion").and_then(|r| r.parse().ok()).unwrap_or(0);
            match self.store.delete(&res.key(), ns, name, Expect::Version(rv)) {
                Ok(_) | Err(StoreError::NotFound) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(ApiError::Internal(e.to_string())),
            }
            if res.kind == "CustomResourceDefinition" {
                self.unregister_crd(object);
            }
            return Ok(());
        }
        if res.kind == "CustomResourceDefinition" {
            if let Ok(crd) = serde_json::from_value(object.clone()) {
                let group = object.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
                let plural =
                    object.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
                self.registry.remove(group, plural);
                for r in crate::resources::from_crd(&crd) {
                    self.registry.insert(r);
                }
            }
        } else if res.kind == "Namespace" && created {
            let sa =
                self.registry.get("", "v1", "serviceaccounts").expect("serviceaccounts registered");
            let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            match self.create(&sa, name, body, &WriteOptions::default(), "devcluster") {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A Service keeps its cluster IP; a new one gets a free loopback address (see
    /// `services`), unless it is headless (`None`) or names its own.
    fn assign_cluster_ip(&self, old: Option<&Value>, new: &mut Value) {
        let current = new.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
        let external = new.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
        if !current.is_empty() || external {
            return;
        }
        let kept = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
        let ip = match kept {
            Some(ip) => ip,
            None => json!(crate::services::allocate_cluster_ip(self, new)),
        };
        if !new.get("spec").is_some_and(Value::is_object) {
            new["spec"] = json!({});
        }
        new["spec"]["clusterIP"] = ip.clone();
        if new.pointer("/spec/clusterIPs").is_none() {
            new["spec"]["clusterIPs"] = old
                .and_then(|o| o.pointer("/spec/clusterIPs"))
                .cloned()
                .unwrap_or_else(|| json!([ip]));
        }
    }

    fn prepare_crd(&self, res: &Resource, name: &str, crd: &mut Value) -> Result<(), ApiError> {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
        let plural =
            crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
        if name != format!("{plural}.{group}") {
            return Err(ApiError::invalid(
                res.subject(name),
                vec![Cause {
                    field: "metadata.name".into(),
                    kind: CauseType::Invalid,
                    message: format!(
                        "Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
                    ),
                }],
            ));
        }
        let versions =
            crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
        let storage: Vec<&Value> =
            versions.iter().filter(|v| v.get("storage") == Some(&json!(true))).collect();
        if storage.len() != 1 {
            return Err(ApiError::invalid(
                res.subject(name),
                vec![Cause {
                    field: "spec.versions".into(),
                    kind: CauseType::Invalid,
                    message: format!(
                        "Invalid value: {}: must have exactly one version marked as storage version",
                        json!(versions.iter().map(|v| v["name"].clone()).collect::<Vec<_>>())
                    ),
                }],
            ));
        }
        let mut causes = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                let compiled = kube_cel::compile_schema(schema);
                collect_cel_errors(
                    &compiled,
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    &mut causes,
                );
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(res.subject(name), causes));
        }
        let storage_name = storage[0].get("name").cloned().unwrap_or(Value::Null);
        let now = now();
        let conditions = json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
        ]);
        let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        if names.get("singular").is_none() {
            names["singular"] =
                json!(names.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase());
        }
        if names.get("listKind").is_none() {
            names["listKind"] =
                json!(format!("{}List", names.get("kind").and_then(Value::as_str).unwrap_or("")));
        }
        let mut stored_versions: Vec<Value> = crd
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !stored_versions.contains(&storage_name) {
            stored_versions.push(storage_name);
        }
        let keep_conditions = crd
            .pointer("/status/conditions")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
            .cloned();
        crd["status"] = json!({
            "conditions": keep_conditions.unwrap_or(conditions),
            "acceptedNames": names,
            "storedVersions": stored_versions,
        });
        Ok(())
    }

    fn unregister_crd(&self, crd: &Value) {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
        let plural =
            crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
        self.registry.remove(&group, &plural);
        let key = ResourceKey::new(&group, &plural);
        for (ns, name, _) in self.store.list(&key, None, None).1 {
            let _ = self.store.delete(&key, &ns, &name, Expect::Present);
        }
    }

    /// Deletes an object. Returns the object (its last state, or with `deletionTimestamp` set
    /// when finalizers hold it) and whether deletion is still pending.
    pub fn delete(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        for _ in 0..16 {
            let old = self.get(res, ns, name)?;
            let mut obj = old.value();
            if let Some(uid) = &opts.uid
                && meta_str(&obj, "uid") != Some(uid)
            {
                return Err(ApiError::Conflict {
                    subject: res.subject(name),
                    detail: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                });
            }
            if let Some(rv) = &opts.resource_version
                && *rv != old.rv.to_string()
            {
                return Err(ApiError::Conflict {
                    subject: res.subject(name),
                    detail: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old.rv
                    ),
                });
            }
            let mut fins = finalizers(&obj);
            match opts.propagation {
                Some(Propagation::Foreground)
                    if !fins.iter().any(|f| f == "foregroundDeletion") =>
                {
                    fins.push("foregroundDeletion".into())
                }
                Some(Propagation::Orphan) if !fins.iter().any(|f| f == "orphan") => {
                    fins.push("orphan".into())
                }
                _ => {}
            }
            let pending = !fins.is_empty() || res.kind == "Namespace";
            if opts.dry_run {
                return Ok((obj, pending));
            }
            if pending {
                let already = obj.pointer("/metadata/deletionTimestamp").is_some();
                if already && fins == finalizers(&obj) {
                    return Ok((obj, true));
                }
                let meta = meta_mut(&mut obj);
                if !already {
                    meta.insert("deletionTimestamp".into(), json!(now()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                if fins.is_empty() {
                    meta.remove("finalizers");
                } else {
                    meta.insert("finalizers".into(), json!(fins));
                }
                if res.kind == "Namespace" {
                    obj["status"] = json!({"phase": "Terminating"});
                }
                match self.store.put(&res.key(), ns, name, &mut obj, Expect::Version(old.rv)) {
                    Ok(_) => return Ok((obj, true)),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(store_err(res, name, e)),
                }
            }
            match self.store.delete(&res.key(), ns, name, Expect::Version(old.rv)) {
                Ok(stored) => {
                    let last = self.view(res, &stored);
                    if res.kind == "CustomResourceDefinition" {
                        self.unregister_crd(&last);
                    }
                    return Ok((last, false));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(store_err(res, name, e)),
            }
        }
        Err(store_err(res, name, StoreError::Conflict))
    }

    /// Deletes every object matching the list options.
    pub fn delete_collection(
        &self,
        res: &Resource,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let page =
            self.list(res, ns, &ListOptions { limit: 0, continue_token: None, ..list.clone() })?;
        let mut deleted = Vec::new();
        for obj in page.items {
            let v = obj.value();
            let n = meta_str(&v, "namespace").unwrap_or("").to_string();
            let name = meta_str(&v, "name").unwrap_or("").to_string();
            match self.delete(res, &n, &name, opts) {
                Ok((v, _)) => deleted.push(v),
                Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

fn collect_cel_errors(compiled: &kube_cel::CompiledSchema, path: &str, causes: &mut Vec<Cause>) {
    for (i, v) in compiled.validations.iter().enumerate() {
        if let Err(e) = v {
            causes.push(Cause {
                field: format!("{path}.x-kubernetes-validations[{i}].rule"),
                kind: CauseType::Invalid,
                message: format!("Invalid value: \"string\": compilation failed: {e}"),
            });
        }
    }
    for (k, child) in &compiled.properties {
        collect_cel_errors(child, &format!("{path}.properties[{k}]"), causes);
    }
    if let Some(items) = &compiled.items {
        collect_cel_errors(items, &format!("{path}.items"), causes);
    }
    if let Some(ap) = &compiled.additional_properties {
        collect_cel_errors(ap, &format!("{path}.additionalProperties"), causes);
    }
}

/// Paths present (non-null) in `input` but absent from the typed round trip `typed`.
fn unknown_paths(input: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(input, typed, &mut String::new(), &mut out);
    out
}

/// Adds to `out` the fields of `input` that `typed` lacks. `path` is one buffer extended and
/// cut back while walking: every field of every built-in write is visited, few are unknown.
fn collect_unknown(input: &Value, typed: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let known = b.get(k);
                if known.is_none() && v.is_null() {
                    continue;
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match known {
                    None => out.push(path.clone()),
                    Some(bv) => collect_unknown(v, bv, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                path.push_str(&format!("[{i}]"));
                collect_unknown(x, y, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The object with the `time` of every managedFields entry removed.
/// Whether two objects are equal but for the times of their managedFields entries.
fn same_but_managed_times(a: &Value, b: &Value) -> bool {
    let (meta_a, meta_b) = (&a["metadata"], &b["metadata"]);
    fn entries(meta: &Value) -> &[Value] {
        meta["managedFields"].as_array().map(Vec::as_slice).unwrap_or_default()
    }
    let (fields_a, fields_b) = (entries(meta_a), entries(meta_b));
    same_except(a, b, &["metadata"])
        && same_except(meta_a, meta_b, &["managedFields"])
        && meta_a.get("managedFields").is_some() == meta_b.get("managedFields").is_some()
        && fields_a.len() == fields_b.len()
        && fields_a.iter().zip(fields_b).all(|(x, y)| same_except(x, y, &["time"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(label: &str, manager: &str, time: &str, status: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"app": label},
                "managedFields": [{"manager": manager, "operation": "Apply", "time": time}]},
            "data": {"k": "v"},
            "status": {"phase": status},
        })
    }

    #[test]
    fn a_status_write_keeps_everything_of_the_old_object_but_status() {
        let old = json!({
            "apiVersion": "v1", "kind": "X", "spec": {"a": 1}, "data": "kept",
            "metadata": {"name": "x", "labels": {"l": "1"}, "resourceVersion": "5",
                "managedFields": [{"manager": "old"}]},
            "status": {"phase": "Old"}
        });
        let mut new = json!({
            "apiVersion": "v1", "kind": "X", "spec": {"a": 2}, "extra": true,
            "metadata": {"name": "x", "labels": {"l": "2"}, "annotations": {"n": "1"},
                "resourceVersion": "5", "managedFields": [{"manager": "new"}]},
            "status": {"phase": "New"}
        });
        keep_only_status_changes(&old, &mut new);
        assert_eq!(
            new,
            json!({
                "apiVersion": "v1", "kind": "X", "spec": {"a": 1}, "data": "kept",
                "metadata": {"name": "x", "labels": {"l": "1"}, "resourceVersion": "5",
                    "managedFields": [{"manager": "new"}]},
                "status": {"phase": "New"}
            })
        );

        // Without status, managedFields or resourceVersion in the write: status goes, the
        // old managedFields stay, and the write carries no precondition.
        let mut bare = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}});
        keep_only_status_changes(&old, &mut bare);
        assert_eq!(bare.get("status"), None);
        assert_eq!(bare["metadata"]["managedFields"], json!([{"manager": "old"}]));
        assert_eq!(bare["metadata"]["resourceVersion"], Value::Null);
        assert_eq!(bare["data"], "kept");
    }

    #[test]
    fn only_managed_field_times_make_a_write_a_no_op() {
        let base = object("a", "m", "2026-01-01T00:00:00Z", "x");
        assert!(same_but_managed_times(&base, &object("a", "m", "2026-02-02T00:00:00Z", "x")));
        assert!(!same_but_managed_times(&base, &object("b", "m", "2026-01-01T00:00:00Z", "x")));
        assert!(!same_but_managed_times(&base, &object("a", "n", "2026-01-01T00:00:00Z", "x")));
        assert!(!same_but_managed_times(&base, &object("a", "m", "2026-01-01T00:00:00Z", "y")));
        let mut more = base.clone();
        more["metadata"]["managedFields"].as_array_mut().unwrap().push(json!({"manager": "o"}));
        assert!(!same_but_managed_times(&base, &more));
        let mut none = base.clone();
        none["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert!(!same_but_managed_times(&base, &none));
        let mut extra = base.clone();
        extra["binaryData"] = json!({});
        assert!(!same_but_managed_times(&base, &extra));
    }

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let input = json!({"spec": {"a": 1, "gone": 2, "null": null,
            "list": [{"x": 1, "y": 2}, {"z": {"deep": 3}}]}, "extra": true});
        let typed = json!({"spec": {"a": 1, "list": [{"x": 1}, {"z": {}}]}});
        assert_eq!(
            unknown_paths(&input, &typed),
            ["spec.gone", "spec.list[0].y", "spec.list[1].z.deep", "extra"]
        );
    }

    #[test]
    fn generation_reads_everything_but_metadata_and_status() {
        let base = object("a", "m", "t", "x");
        assert!(same_spec(&base, &object("b", "n", "u", "y")));
        let mut data = base.clone();
        data["data"]["k"] = json!("w");
        assert!(!same_spec(&base, &data));
        let mut extra = base.clone();
        extra["spec"] = json!({});
        assert!(!same_spec(&base, &extra) && !same_spec(&extra, &base));
    }
}
