//! Validation of custom objects against a CustomResourceDefinition, the way the API server
//! does it.
//!
//! This module owns everything that happens to a custom object between "decoded JSON" and
//! "ready to store": pruning of fields the structural schema does not declare (or reporting
//! them, for `fieldValidation=Strict`), dropping `null`s on non-nullable fields, defaulting,
//! the OpenAPI structural checks, and the CEL `x-kubernetes-validations` rules (evaluated by
//! `kube-cel`, including transition rules that see `oldSelf`).
//!
//! ```text
//!  object ──▶ normalize (prune / strict unknown-field report, drop nulls, apply defaults)
//!                 │
//!                 ▼
//!            structural checks (type, enum, pattern, bounds, list-type, ...)
//!                 │  (type and enum errors block CEL, as in the API server)
//!                 ▼
//!            CEL rules (self, oldSelf) ──▶ Ok(defaulted + pruned object) | Err(causes)
//! ```
//!
//! It is generic: it knows CRDs, not any particular kind. The API server in this crate uses
//! [`CompiledCrd`] (compiled once per CRD and reused for every write); tools such as a linter
//! can call the one-shot [`validate`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

use crate::cel_rules::RuleTree;

/// How fields that the schema does not declare are handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// Remove them silently and report them in [`Validated::pruned`] (the API server default).
    #[default]
    Prune,
    /// Report each one as a [`CauseType::UnknownField`] cause (`fieldValidation=Strict`).
    Reject,
}

/// Options for [`validate`] and [`CompiledCrd::validate`].
#[derive(Clone, Debug, Default)]
pub struct ValidationOptions {
    /// What to do with fields the schema does not declare.
    pub unknown_fields: UnknownFields,
    /// Validate against this CRD version instead of the one named by the object's `apiVersion`.
    pub version: Option<String>,
}

impl ValidationOptions {
    /// Options for strict validation, as `kubectl --validate=strict` asks of the server.
    pub fn strict() -> Self {
        Self { unknown_fields: UnknownFields::Reject, version: None }
    }
}

/// The category of a [`Cause`], mirroring Kubernetes' `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CauseType {
    /// A required field is missing (`FieldValueRequired`).
    Required,
    /// A value is not acceptable (`FieldValueInvalid`).
    Invalid,
    /// A value has the wrong JSON type (`FieldValueTypeInvalid`).
    TypeInvalid,
    /// A value is not one of the enumerated ones (`FieldValueNotSupported`).
    NotSupported,
    /// A string is longer than allowed (`FieldValueTooLong`).
    TooLong,
    /// A list or map has too many entries (`FieldValueTooMany`).
    TooMany,
    /// A list entry repeats a set member or a map key (`FieldValueDuplicate`).
    Duplicate,
    /// A field may not be set (`FieldValueForbidden`).
    Forbidden,
    /// A field is not declared in the schema (strict field validation).
    UnknownField,
}

impl CauseType {
    /// The `reason` string of a Kubernetes `StatusCause`.
    pub fn reason(self) -> &'static str {
        match self {
            CauseType::Required => "FieldValueRequired",
            CauseType::Invalid => "FieldValueInvalid",
            CauseType::TypeInvalid => "FieldValueTypeInvalid",
            CauseType::NotSupported => "FieldValueNotSupported",
            CauseType::TooLong => "FieldValueTooLong",
            CauseType::TooMany => "FieldValueTooMany",
            CauseType::Duplicate => "FieldValueDuplicate",
            CauseType::Forbidden => "FieldValueForbidden",
            CauseType::UnknownField => "FieldValueUnknown",
        }
    }
}

/// One reason an object was rejected, shaped like a Kubernetes `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Field path such as `spec.owner.team` or `spec.items[2].name` (`<nil>` for the root).
    pub field: String,
    /// What kind of problem it is.
    pub kind: CauseType,
    /// The message without the field, e.g. `Required value` or
    /// `Invalid value: "object": must name an owner`.
    pub message: String,
}

impl Cause {
    fn new(field: &str, kind: CauseType, message: impl Into<String>) -> Self {
        let field = if field.is_empty() { "<nil>".to_string() } else { field.to_string() };
        Self { field, kind, message: message.into() }
    }

    /// The `reason` of the equivalent Kubernetes `StatusCause`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == CauseType::UnknownField {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The result of a successful validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The object after pruning and defaulting: what the API server would store.
    pub object: Value,
    /// Paths of the unknown fields that were pruned (empty in [`UnknownFields::Reject`] mode).
    pub pruned: Vec<String>,
}

/// Why a CRD could not be used for validation at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// The object's apiVersion names another group than the CRD's.
    #[error("apiVersion {api_version:?} does not belong to group {group:?}")]
    WrongGroup {
        /// The object's apiVersion.
        api_version: String,
        /// The CRD's group.
        group: String,
    },
    /// The CRD has no such version.
    #[error("version {0:?} is not defined by the CustomResourceDefinition")]
    UnknownVersion(String),
    /// The version has no `openAPIV3Schema`.
    #[error("version {0:?} has no openAPIV3Schema")]
    NoSchema(String),
}

impl From<SchemaError> for Vec<Cause> {
    fn from(e: SchemaError) -> Self {
        let field = match e {
            SchemaError::NoSchema(_) => "<nil>",
            _ => "apiVersion",
        };
        vec![Cause::new(field, CauseType::Invalid, e.to_string())]
    }
}

/// Validates `obj` (and, for an update, its previous state `old`) against the CRD version
/// named by `obj.apiVersion` (or [`ValidationOptions::version`]).
///
/// Returns the pruned and defaulted object, or every cause found.
pub fn validate(
    crd: &CustomResourceDefinition,
    obj: &Value,
    old: Option<&Value>,
    opts: &ValidationOptions,
) -> Result<Value, Vec<Cause>> {
    let compiled = CompiledCrd::new(crd);
    compiled.validate(obj.clone(), old, opts).map(|v| v.object)
}

/// A CRD's version schemas prepared for repeated validation (CEL programs compiled once).
pub struct CompiledCrd {
    group: String,
    kind: String,
    versions: HashMap<String, Arc<CompiledVersion>>,
}

impl fmt::Debug for CompiledCrd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledCrd")
            .field("group", &self.group)
            .field("kind", &self.kind)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

struct CompiledVersion {
    schema: Option<Value>,
    rules: Option<RuleTree>,
    /// Whether the schema has checks that ratcheting never skips.
    unratcheted: bool,
    patterns: Mutex<HashMap<String, Option<regex::Regex>>>,
}

impl CompiledCrd {
    /// Prepares every version of `crd`.
    pub fn new(crd: &CustomResourceDefinition) -> Self {
        let mut versions = HashMap::new();
        for v in &crd.spec.versions {
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok());
            let rules = schema.as_ref().and_then(RuleTree::build);
            versions.insert(
                v.name.clone(),
                Arc::new(CompiledVersion {
                    unratcheted: schema.as_ref().is_some_and(has_unratcheted_checks),
                    schema,
                    rules,
                    patterns: Mutex::new(HashMap::new()),
                }),
            );
        }
        Self { group: crd.spec.group.clone(), kind: crd.spec.names.kind.clone(), versions }
    }

    /// The schema (as JSON) of a version, if it has one.
    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.versions.get(version).and_then(|v| v.schema.as_ref())
    }

    /// Validates, prunes and defaults `obj`; see [`validate`].
    pub fn validate(
        &self,
        obj: Value,
        old: Option<&Value>,
        opts: &ValidationOptions,
    ) -> Result<Validated, Vec<Cause>> {
        let version = match &opts.version {
            Some(v) => v.clone(),
            None => {
                let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                match api_version.split_once('/') {
                    Some((g, v)) if g == self.group => v.to_string(),
                    _ => {
                        return Err(SchemaError::WrongGroup {
                            api_version: api_version.to_string(),
                            group: self.group.clone(),
                        }
                        .into());
                    }
                }
            }
        };
        let compiled = self
            .versions
            .get(&version)
            .ok_or_else(|| SchemaError::UnknownVersion(version.clone()))?;
        let schema =
            compiled.schema.as_ref().ok_or_else(|| SchemaError::NoSchema(version.clone()))?;

        let mut causes = Vec::new();
        let mut pruned = Vec::new();
        let mut object = obj;
        normalize_root(schema, &mut object, opts.unknown_fields, &mut pruned, &mut causes);

        // On an update the old object is read as the API server reads it from storage:
        // pruned and defaulted by the current schema. Its subtrees are what ratcheting
        // compares against. It was normalized when it was stored, so it is copied only when
        // the schema has changed since.
        let old_normalized = old.map(|o| {
            if is_normalized_root(schema, o) {
                return Cow::Borrowed(o);
            }
            let mut o = o.clone();
            normalize_root(schema, &mut o, UnknownFields::Prune, &mut Vec::new(), &mut Vec::new());
            Cow::Owned(o)
        });
        let old_normalized = old_normalized.as_deref();

        let mut checker = Checker { version: compiled, causes: Vec::new(), blocking: false };
        checker.check_root(schema, &object, old_normalized);
        causes.append(&mut checker.causes);

        if !checker.blocking
            && let Some(rules) = &compiled.rules
        {
            let root = kube_cel::RootContext {
                api_version: format!("{}/{}", self.group, version),
                api_group: self.group.clone(),
                kind: self.kind.clone(),
            };
            for e in rules.validate_root(&object, old_normalized, &root) {
                causes.push(cel_cause(schema, &e));
            }
        }

        if causes.is_empty() { Ok(Validated { object, pruned }) } else { Err(causes) }
    }
}

/// Converts a kube-cel failure into the cause the API server would report.
fn cel_cause(root_schema: &Value, e: &kube_cel::ValidationError) -> Cause {
    let kind = if matches!(e.kind, kube_cel::ErrorKind::ValidationFailure) {
        match e.reason.as_deref() {
            Some("FieldValueForbidden") => CauseType::Forbidden,
            Some("FieldValueRequired") => CauseType::Required,
            Some("FieldValueDuplicate") => CauseType::Duplicate,
            _ => CauseType::Invalid,
        }
    } else {
        CauseType::Invalid
    };
    let type_name = schema_at_path(root_schema, &e.field_path)
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = match kind {
        CauseType::Forbidden => format!("Forbidden: {}", e.message),
        CauseType::Required => format!("Required value: {}", e.message),
        CauseType::Duplicate => format!("Duplicate value: {}", e.message),
        _ => format!("Invalid value: {}: {}", quote(&type_name), e.message),
    };
    Cause::new(&e.field_path, kind, message)
}

/// Finds the schema node for a dotted field path with `[i]` indexes.
fn schema_at_path<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = schema;
    if path.is_empty() {
        return Some(node);
    }
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], segment[i..].matches('[').count()),
            None => (segment, 0),
        };
        if !name.is_empty() {
            node = node
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?;
        }
        for _ in 0..indexes {
            node = node.get("items")?;
        }
    }
    Some(node)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Where a value sits, rendered (`spec.items[0].name`) only when a pruned field or a cause
/// names it: normalizing visits every field of every write, and almost none is reported.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    Root,
    Field(&'a FieldPath<'a>, &'a str),
    Index(&'a FieldPath<'a>, usize),
}

impl FieldPath<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        match self {
            FieldPath::Root => {}
            FieldPath::Field(parent, name) => {
                parent.write_to(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            FieldPath::Index(parent, i) => {
                parent.write_to(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// Pruning, null-dropping and defaulting of the whole object. `apiVersion`, `kind` and
/// `metadata` at the root are the API server's business, not the schema's.
fn normalize_root(
    schema: &Value,
    obj: &mut Value,
    mode: UnknownFields,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    if let Some(map) = obj.as_object_mut() {
        normalize_object(&Keys::root(schema), schema, map, &FieldPath::Root, mode, pruned, causes);
    }
}

/// An unknown field: dropped (and listed in `pruned`) or reported.
fn unknown(
    dropped: &mut Vec<String>,
    key: &str,
    path: &FieldPath<'_>,
    mode: UnknownFields,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    let field = path.render();
    match mode {
        UnknownFields::Prune => {
            dropped.push(key.to_string());
            pruned.push(field);
        }
        UnknownFields::Reject => {
            let message = format!("unknown field {}", quote(&field));
            causes.push(Cause::new(&field, CauseType::UnknownField, message));
        }
    }
}

fn apply_property_defaults(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &FieldPath<'_>,
    mode: UnknownFields,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, prop) in props {
        if map.contains_key(name) {
            continue;
        }
        if let Some(default) = prop.get("default") {
            let mut value = default.clone();
            normalize(prop, &mut value, &FieldPath::Field(path, name), mode, pruned, causes);
            map.insert(name.clone(), value);
        }
    }
}

/// What an object schema says of one of its keys.
enum Key<'s> {
    /// Declared (by `properties` or an `additionalProperties` schema): the value's schema.
    Schema(&'s Value),
    /// Not declared, but kept: unknown fields preserved, an open map, or the `apiVersion`,
    /// `kind` and `metadata` of an embedded resource.
    Kept,
    /// Not declared: pruned, or refused under strict field validation.
    Unknown,
}

/// How an object schema treats its keys; pruning ([`normalize`]) and its read-only check
/// ([`is_normalized`]) read it here, so they cannot disagree.
struct Keys<'s> {
    props: Option<&'s Map<String, Value>>,
    additional: Option<&'s Value>,
    preserve: bool,
    embedded: bool,
    open: bool,
    /// The object's root: its `apiVersion`, `kind` and `metadata` are the API server's,
    /// whatever the schema declares for them.
    root: bool,
}

impl<'s> Keys<'s> {
    fn of(schema: &'s Value) -> Self {
        Keys {
            props: schema.get("properties").and_then(Value::as_object),
            additional: schema.get("additionalProperties").filter(|a| a.is_object()),
            preserve: flag(schema, "x-kubernetes-preserve-unknown-fields"),
            embedded: flag(schema, "x-kubernetes-embedded-resource"),
            open: schema.get("additionalProperties") == Some(&Value::Bool(true)),
            root: false,
        }
    }

    /// The root schema, where only `properties` and preserve-unknown-fields count (a CRD's
    /// root has no `additionalProperties`).
    fn root(schema: &'s Value) -> Self {
        Keys { additional: None, embedded: false, open: false, root: true, ..Keys::of(schema) }
    }

    fn rule(&self, key: &str) -> Key<'s> {
        if self.root && matches!(key, "apiVersion" | "kind" | "metadata") {
            return Key::Kept;
        }
        match self.props.and_then(|p| p.get(key)).or(self.additional) {
            Some(schema) => Key::Schema(schema),
            None if self.preserve || self.open => Key::Kept,
            None if self.embedded && matches!(key, "apiVersion" | "kind" | "metadata") => Key::Kept,
            None => Key::Unknown,
        }
    }
}

fn normalize(
    schema: &Value,
    value: &mut Value,
    path: &FieldPath<'_>,
    mode: UnknownFields,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    match value {
        Value::Object(map) => {
            normalize_object(&Keys::of(schema), schema, map, path, mode, pruned, causes)
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    normalize(item_schema, item, &FieldPath::Index(path, i), mode, pruned, causes);
                }
            }
        }
        _ => {}
    }
}

/// Pruning, null-dropping and defaulting of one object's fields, as `keys` rules them.
fn normalize_object(
    keys: &Keys<'_>,
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &FieldPath<'_>,
    mode: UnknownFields,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    let mut dropped = Vec::new();
    for (key, child) in map.iter_mut() {
        let child_path = FieldPath::Field(path, key);
        match keys.rule(key) {
            Key::Schema(cs) if child.is_null() && !flag(cs, "nullable") => {
                dropped.push(key.clone())
            }
            Key::Schema(cs) => normalize(cs, child, &child_path, mode, pruned, causes),
            Key::Kept => {}
            Key::Unknown => unknown(&mut dropped, key, &child_path, mode, pruned, causes),
        }
    }
    for key in &dropped {
        map.remove(key);
    }
    apply_property_defaults(schema, map, path, mode, pruned, causes);
}

/// Whether [`normalize_root`] (pruning) would leave `obj` as it is, as it does an object
/// stored under the same schema. It reads exactly what `normalize_root` changes.
fn is_normalized_root(schema: &Value, obj: &Value) -> bool {
    obj.as_object().is_none_or(|map| is_normalized_object(&Keys::root(schema), schema, map))
}

fn is_normalized(schema: &Value, value: &Value) -> bool {
    match value {
        Value::Object(map) => is_normalized_object(&Keys::of(schema), schema, map),
        Value::Array(items) => {
            schema.get("items").is_none_or(|s| items.iter().all(|item| is_normalized(s, item)))
        }
        _ => true,
    }
}

/// Whether [`normalize_object`] would leave `map` as it is.
fn is_normalized_object(keys: &Keys<'_>, schema: &Value, map: &Map<String, Value>) -> bool {
    let fields_kept = map.iter().all(|(key, child)| match keys.rule(key) {
        Key::Schema(cs) => (!child.is_null() || flag(cs, "nullable")) && is_normalized(cs, child),
        Key::Kept => true,
        Key::Unknown => false,
    });
    fields_kept && defaults_present(schema, map)
}

/// Whether every property with a default is present (defaulting would add the others).
fn defaults_present(schema: &Value, map: &Map<String, Value>) -> bool {
    schema.get("properties").and_then(Value::as_object).is_none_or(|props| {
        props.iter().all(|(name, prop)| map.contains_key(name) || prop.get("default").is_none())
    })
}

/// The structural (OpenAPI) checks. `blocking` records type and enum errors, which stop CEL
/// evaluation exactly as in the API server.
struct Checker<'a> {
    version: &'a CompiledVersion,
    causes: Vec<Cause>,
    blocking: bool,
}

impl Checker<'_> {
    fn check_root(&mut self, schema: &Value, obj: &Value, old: Option<&Value>) {
        let Some(map) = obj.as_object() else {
            self.type_error("", obj, "object");
            return;
        };
        self.check_required(schema, map, "");
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, value) in map {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(ps) = props.get(key) {
                    self.check(ps, value, old.and_then(|o| o.get(key)), key);
                }
            }
        }
    }

    fn push(&mut self, path: &str, kind: CauseType, message: String) {
        self.causes.push(Cause::new(path, kind, message));
    }

    fn type_error(&mut self, path: &str, value: &Value, expected: &str) {
        self.blocking = true;
        let actual = json_type(value);
        let body = if path.is_empty() { "body".to_string() } else { format!("{path} in body") };
        self.push(
            path,
            CauseType::TypeInvalid,
            format!(
                "Invalid value: {}: {body} must be of type {expected}: {}",
                quote(actual),
                quote(actual)
            ),
        );
    }

    fn check_required(&mut self, schema: &Value, map: &Map<String, Value>, path: &str) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    self.push(&join(path, r), CauseType::Required, "Required value".into());
                }
            }
        }
    }

    /// Checks `value` against `schema`. `old` is its correlated old value on an update: when
    /// the two are equal, the node's errors are ratcheted away (KEP-4008), except those the
    /// API server never ratchets (see [`Self::check_unratcheted`]).
    fn check(&mut self, schema: &Value, value: &Value, old: Option<&Value>, path: &str) {
        if old == Some(value) {
            if self.version.unratcheted {
                self.check_unratcheted(schema, value, path);
            }
            return;
        }
        if value.is_null() {
            if !flag(schema, "nullable") {
                let expected = schema.get("type").and_then(Value::as_str).unwrap_or("object");
                self.type_error(path, value, expected);
            }
            return;
        }
        if flag(schema, "x-kubernetes-int-or-string") {
            if !(is_integer(value) || value.is_string()) {
                self.type_error(path, value, "integer or string");
                return;
            }
        } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => is_integer(value),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                self.type_error(path, value, t);
                return;
            }
        }

        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.iter().any(|o| o == value)
        {
            self.blocking = true;
            let supported: Vec<String> = options.iter().map(go_value).collect();
            self.push(
                path,
                CauseType::NotSupported,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    go_value(value),
                    supported.join(", ")
                ),
            );
        }

        match value {
            Value::String(s) => self.check_string(schema, s, path),
            Value::Number(_) => self.check_number(schema, value, path),
            Value::Array(items) => self.check_array(schema, items, old, path),
            Value::Object(map) => self.check_object(schema, value, map, old, path),
            _ => {}
        }
    }

    fn check_string(&mut self, schema: &Value, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                CauseType::TooLong,
                format!("Too long: may not be more than {max} bytes"),
            );
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.push(
                path,
                CauseType::Invalid,
                format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    quote(s)
                ),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let matched = {
                let mut cache = self.version.patterns.lock().unwrap_or_else(|p| p.into_inner());
                let re = cache
                    .entry(pattern.to_string())
                    .or_insert_with(|| regex::Regex::new(pattern).ok());
                re.as_ref().map(|re| re.is_match(s))
            };
            if matched == Some(false) {
                self.push(
                    path,
                    CauseType::Invalid,
                    format!("Invalid value: {}: {path} in body should match '{pattern}'", quote(s)),
                );
            }
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !format_ok(format, s)
        {
            self.push(
                path,
                CauseType::Invalid,
                format!(
                    "Invalid value: {}: {path} in body must be of type {format}: {}",
                    quote(s),
                    quote(s)
                ),
            );
        }
    }

    fn check_number(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(n) = value.as_f64() else { return };
        let shown = value.to_string();
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if (exclusive && n <= min) || (!exclusive && n < min) {
                let op = if exclusive { "greater than" } else { "greater than or equal to" };
                let min = number_text(schema.get("minimum"));
                self.push(
                    path,
                    CauseType::Invalid,
                    format!("Invalid value: {shown}: {path} in body should be {op} {min}"),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if (exclusive && n >= max) || (!exclusive && n > max) {
                let op = if exclusive { "less than" } else { "less than or equal to" };
                let max = number_text(schema.get("maximum"));
                self.push(
                    path,
                    CauseType::Invalid,
                    format!("Invalid value: {shown}: {path} in body should be {op} {max}"),
                );
            }
        }
        if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
            && m > 0.0
            && (n / m).fract().abs() > f64::EPSILON
        {
            let m = number_text(schema.get("multipleOf"));
            self.push(
                path,
                CauseType::Invalid,
                format!("Invalid value: {shown}: {path} in body should be a multiple of {m}"),
            );
        }
    }

    fn check_array(&mut self, schema: &Value, items: &[Value], old: Option<&Value>, path: &str) {
        let len = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                CauseType::TooMany,
                format!("Too many: {len}: must have at most {max} items"),
            );
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            self.push(
                path,
                CauseType::Invalid,
                format!("Invalid value: {len}: {path} in body should have at least {min} items"),
            );
        }
        self.check_list_type(schema, items, path);
        if let Some(item_schema) = schema.get("items") {
            let map_keys = map_list_keys(schema);
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // Only the items of a map list correlate with old ones (by their keys).
                let old_item = match (&map_keys, old_items) {
                    (Some(keys), Some(olds)) => {
                        olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                    }
                    _ => None,
                };
                self.check(item_schema, item, old_item, &index(path, i));
            }
        }
    }

    /// The uniqueness of `listType: set` and `listType: map` items.
    fn check_list_type(&mut self, schema: &Value, items: &[Value], path: &str) {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    if !seen.insert(item.to_string()) {
                        self.push(
                            &index(path, i),
                            CauseType::Duplicate,
                            format!("Duplicate value: {}", go_value(item)),
                        );
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: BTreeMap<&str, &Value> =
                        keys.iter().filter_map(|k| item.get(*k).map(|v| (*k, v))).collect();
                    if !seen.insert(serde_json::to_string(&key).unwrap_or_default()) {
                        let shown = serde_json::to_string(&key).unwrap_or_default();
                        self.push(
                            &index(path, i),
                            CauseType::Duplicate,
                            format!("Duplicate value: {shown}"),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// What the API server checks even in an unchanged subtree: list-type uniqueness and the
    /// `apiVersion` and `kind` of embedded resources.
    fn check_unratcheted(&mut self, schema: &Value, value: &Value, path: &str) {
        match value {
            Value::Array(items) => {
                self.check_list_type(schema, items, path);
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check_unratcheted(item_schema, item, &index(path, i));
                    }
                }
            }
            Value::Object(map) => {
                self.check_embedded(schema, map, path);
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                for (key, value) in map {
                    if let Some(ps) = props.and_then(|p| p.get(key)).or(additional) {
                        self.check_unratcheted(ps, value, &join(path, key));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_embedded(&mut self, schema: &Value, map: &Map<String, Value>, path: &str) {
        if flag(schema, "x-kubernetes-embedded-resource") {
            for field in ["apiVersion", "kind"] {
                if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                    self.push(
                        &join(path, field),
                        CauseType::Required,
                        "Required value: must not be empty".into(),
                    );
                }
            }
        }
    }

    fn check_object(
        &mut self,
        schema: &Value,
        value: &Value,
        map: &Map<String, Value>,
        old: Option<&Value>,
        path: &str,
    ) {
        let len = map.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                CauseType::TooMany,
                format!("Too many: {len}: must have at most {max} items"),
            );
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && len < min
        {
            self.push(
                path,
                CauseType::Invalid,
                format!(
                    "Invalid value: {len}: {path} in body should have at least {min} properties"
                ),
            );
        }
        self.check_required(schema, map, path);
        self.check_embedded(schema, map, path);
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, value) in map {
            if let Some(ps) = props.and_then(|p| p.get(key)).or(additional) {
                self.check(ps, value, old.and_then(|o| o.get(key)), &join(path, key));
            }
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            self.check_junctor(schema, keyword, value, old, path);
        }
    }

    /// `allOf`/`anyOf`/`oneOf` in structural schemas only carry value validations.
    fn check_junctor(
        &mut self,
        schema: &Value,
        keyword: &str,
        value: &Value,
        old: Option<&Value>,
        path: &str,
    ) {
        let Some(branches) = schema.get(keyword).and_then(Value::as_array) else { return };
        let results: Vec<Vec<Cause>> = branches
            .iter()
            .map(|b| {
                let mut sub =
                    Checker { version: self.version, causes: Vec::new(), blocking: false };
                sub.check(b, value, old, path);
                sub.causes
            })
            .collect();
        let passing = results.iter().filter(|c| c.is_empty()).count();
        match keyword {
            "allOf" => results.into_iter().for_each(|mut c| self.causes.append(&mut c)),
            "anyOf" if passing == 0 => self.push(
                path,
                CauseType::Invalid,
                format!(
                    "Invalid value: {}: {path} in body must match at least one schema (anyOf)",
                    quote(json_type(value))
                ),
            ),
            "oneOf" if passing != 1 => self.push(
                path,
                CauseType::Invalid,
                format!(
                    "Invalid value: {}: {path} in body must match exactly one schema (oneOf)",
                    quote(json_type(value))
                ),
            ),
            _ => {}
        }
    }
}

/// The keys of a `listType: map` list schema.
fn map_list_keys(schema: &Value) -> Option<Vec<&str>> {
    (schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")).then(|| {
        schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    })
}

/// Whether a schema declares anything [`Checker::check_unratcheted`] looks at.
fn has_unratcheted_checks(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => {
            matches!(m.get("x-kubernetes-list-type").and_then(Value::as_str), Some("set" | "map"))
                || flag(schema, "x-kubernetes-embedded-resource")
                || m.values().any(has_unratcheted_checks)
        }
        Value::Array(a) => a.iter().any(has_unratcheted_checks),
        _ => false,
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn number_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        _ => String::new(),
    }
}

/// Go's `%q` for a string, which for the ASCII cases that matter equals JSON quoting.
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// How Kubernetes prints a value in a field error: strings quoted, scalars bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// The string formats the API server checks for CRDs (others are accepted as they are).
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "uuid" => uuid::Uuid::parse_str(s).is_ok() && s.len() == 36,
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "email" => s.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.')),
        "uri" => s.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        }),
        "duration" => go_duration_ok(s),
        _ => true,
    }
}

/// Accepts Go-style durations such as `30s`, `1h30m`, `250ms`.
fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let re = regex_lite_duration();
    !s.is_empty() && re.is_match(s)
}

fn regex_lite_duration() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
            .expect("valid duration regex")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(schema: Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]
            }
        }))
        .expect("crd")
    }

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["owner"],
                    "x-kubernetes-validations": [
                        {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                        {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}
                    ],
                    "properties": {
                        "owner": {"type": "object", "required": ["team"], "properties": {
                            "team": {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^[a-z-]+$"}
                        }},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        "maxReplicas": {"type": "integer", "maximum": 10, "default": 5},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "ports": {"type": "array", "maxItems": 3, "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string"},
                                "port": {"x-kubernetes-int-or-string": true},
                                "settings": {"type": "object", "default": {}, "properties": {
                                    "timeout": {"type": "string", "format": "duration", "default": "30s"}
                                }}
                            }}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "note": {"type": "string", "nullable": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true},
                        "since": {"type": "string", "format": "date-time"}
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        })
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
    }

    fn messages(r: Result<Value, Vec<Cause>>) -> Vec<String> {
        r.expect_err("should be invalid").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_and_prunes() {
        let c = crd(widget_schema());
        let out = validate(
            &c,
            &widget(json!({"owner": {"team": "ops"}, "unknown": 1, "extra": {"free": true},
                "ports": [{"name": "http", "port": "web"}], "note": null, "replicas": null})),
            None,
            &ValidationOptions::default(),
        )
        .expect("valid");
        assert_eq!(out["spec"]["mode"], "a");
        assert_eq!(
            out["spec"]["replicas"], 1,
            "null on a non-nullable field is dropped then defaulted"
        );
        assert_eq!(out["spec"]["maxReplicas"], 5);
        assert_eq!(out["spec"]["ports"][0]["settings"]["timeout"], "30s", "defaults nest");
        assert!(out["spec"].get("unknown").is_none());
        assert_eq!(out["spec"]["extra"]["free"], true);
        assert_eq!(out["spec"]["note"], Value::Null, "nullable keeps null");
        assert_eq!(out["metadata"]["name"], "w");
    }

    #[test]
    fn reports_pruned_paths_and_strict_mode() {
        let c = CompiledCrd::new(&crd(widget_schema()));
        let obj = widget(json!({"owner": {"team": "ops", "bogus": 1}, "unknown": 1}));
        let ok = c.validate(obj.clone(), None, &ValidationOptions::default()).expect("valid");
        assert_eq!(ok.pruned, vec!["spec.owner.bogus".to_string(), "spec.unknown".to_string()]);
        let err = c.validate(obj, None, &ValidationOptions::strict()).expect_err("strict rejects");
        let shown: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![r#"unknown field "spec.owner.bogus""#, r#"unknown field "spec.unknown""#]
        );
        assert!(err.iter().all(|c| c.kind == CauseType::UnknownField));
    }

    #[test]
    fn structural_errors_have_kubernetes_messages() {
        let c = crd(widget_schema());
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {"team": "Bad Team Name"}, "mode": "x"})),
            None,
            &ValidationOptions::default(),
        ));
        assert!(
            got.contains(
                &r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#.to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.owner.team: Too long: may not be more than 10 bytes".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&r#"spec.owner.team: Invalid value: "Bad Team Name": spec.owner.team in body should match '^[a-z-]+$'"#.to_string()),
            "{got:?}"
        );
        let got = messages(validate(&c, &widget(json!({})), None, &ValidationOptions::default()));
        assert_eq!(got, vec!["spec.owner: Required value"]);
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {}, "replicas": "three", "maxReplicas": 11})),
            None,
            &ValidationOptions::default(),
        ));
        assert!(got.contains(&"spec.owner.team: Required value".to_string()), "{got:?}");
        assert!(
            got.contains(&r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#.to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.maxReplicas: Invalid value: 11: spec.maxReplicas in body should be less than or equal to 10".to_string()),
            "{got:?}"
        );
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {"team": "a"}, "replicas": -1})),
            None,
            &ValidationOptions::default(),
        ));
        assert!(
            got.contains(&"spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0".to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn list_types_int_or_string_embedded_and_formats() {
        let c = crd(widget_schema());
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {"team": "a"},
                "ports": [{"name": "a"}, {"name": "a"}, {"name": "b", "port": true}, {"name": "c"}],
                "tags": ["x", "y", "x"],
                "labels": {"k": 1},
                "template": {"kind": "Pod"},
                "since": "yesterday"})),
            None,
            &ValidationOptions::default(),
        ));
        for expected in [
            r#"spec.ports[1]: Duplicate value: {"name":"a"}"#,
            "spec.ports: Too many: 4: must have at most 3 items",
            r#"spec.ports[2].port: Invalid value: "boolean": spec.ports[2].port in body must be of type integer or string: "boolean""#,
            r#"spec.tags[2]: Duplicate value: "x""#,
            r#"spec.labels.k: Invalid value: "integer": spec.labels.k in body must be of type string: "integer""#,
            "spec.template.apiVersion: Required value: must not be empty",
            r#"spec.since: Invalid value: "yesterday": spec.since in body must be of type date-time: "yesterday""#,
        ] {
            assert!(got.contains(&expected.to_string()), "missing {expected:?} in {got:?}");
        }
        let ok = validate(
            &c,
            &widget(json!({"owner": {"team": "a"}, "ports": [{"name": "a", "port": 80}, {"name": "b", "port": "web"}],
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                "since": "2024-01-01T00:00:00Z"})),
            None,
            &ValidationOptions::default(),
        )
        .expect("valid");
        assert_eq!(ok["spec"]["template"]["metadata"]["name"], "p");
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let c = crd(widget_schema());
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {"team": "a"}, "replicas": 7, "maxReplicas": 5})),
            None,
            &ValidationOptions::default(),
        ));
        assert_eq!(
            got,
            vec![r#"spec: Invalid value: "object": replicas must not exceed maxReplicas"#]
        );

        let old = widget(json!({"owner": {"team": "a"}, "mode": "a"}));
        let new = widget(json!({"owner": {"team": "a"}, "mode": "b"}));
        assert!(
            validate(&c, &new, None, &ValidationOptions::default()).is_ok(),
            "no oldSelf on create"
        );
        let got = messages(validate(&c, &new, Some(&old), &ValidationOptions::default()));
        assert_eq!(got, vec![r#"spec: Invalid value: "object": mode is immutable"#]);
        // The old object is defaulted before comparison: an omitted mode was "a".
        let old_defaulted = widget(json!({"owner": {"team": "a"}}));
        assert!(validate(&c, &old, Some(&old_defaulted), &ValidationOptions::default()).is_ok());
    }

    /// A schema whose rules were tightened after objects were stored: `team` must now start
    /// with `t-` (CEL) and `code` must be short (OpenAPI).
    fn tightened_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.replicas <= 5", "message": "at most 5 replicas"}
                    ],
                    "properties": {
                        "replicas": {"type": "integer"},
                        "owner": {"type": "object",
                            "x-kubernetes-validations": [
                                {"rule": "self.team.startsWith('t-')", "message": "team must start with t-"}
                            ],
                            "properties": {
                                "team": {"type": "string"},
                                "code": {"type": "string", "maxLength": 3}
                            }},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"],
                                "x-kubernetes-validations": [
                                    {"rule": "self.port > 1024", "message": "port must be above 1024"}
                                ],
                                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                        "counter": {"type": "integer", "x-kubernetes-validations": [
                            {"rule": "self > oldSelf", "message": "counter must grow"}
                        ]}
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        })
    }

    fn cel_runs() -> usize {
        crate::cel_rules::NODE_EVALUATIONS.with(std::cell::Cell::get)
    }

    #[test]
    fn unchanged_subtrees_ratchet_their_errors() {
        let c = crd(tightened_schema());
        let opts = ValidationOptions::default();
        // Stored while the rules were looser.
        let old = widget(json!({"replicas": 2, "owner": {"team": "payments", "code": "toolong"},
            "ports": [{"name": "a", "port": 80}]}));
        assert_eq!(messages(validate(&c, &old, None, &opts)).len(), 3, "invalid as new");

        // A status write, and a write that changes only metadata: nothing of spec is checked.
        let mut status_only = old.clone();
        status_only["status"] = json!({"phase": "Ready"});
        status_only["metadata"]["labels"] = json!({"x": "y"});
        let before = cel_runs();
        validate(&c, &status_only, Some(&old), &opts).expect("spec unchanged: ratcheted");
        assert_eq!(cel_runs(), before, "no CEL program ran for the unchanged spec");

        // A changed sibling re-checks its own node (spec) but not the unchanged owner.
        let mut sibling = old.clone();
        sibling["spec"]["replicas"] = json!(3);
        validate(&c, &sibling, Some(&old), &opts).expect("owner unchanged: ratcheted");
        sibling["spec"]["replicas"] = json!(9);
        assert_eq!(
            messages(validate(&c, &sibling, Some(&old), &opts)),
            vec![r#"spec: Invalid value: "object": at most 5 replicas"#]
        );

        // A changed node is checked (its CEL rules, its OpenAPI checks); its unchanged
        // children stay ratcheted.
        let mut owner = old.clone();
        owner["spec"]["owner"]["team"] = json!("billing");
        assert_eq!(
            messages(validate(&c, &owner, Some(&old), &opts)),
            vec![r#"spec.owner: Invalid value: "object": team must start with t-"#]
        );
        owner["spec"]["owner"]["code"] = json!("stilltoolong");
        assert_eq!(
            messages(validate(&c, &owner, Some(&old), &opts)),
            vec![
                "spec.owner.code: Too long: may not be more than 3 bytes",
                r#"spec.owner: Invalid value: "object": team must start with t-"#
            ]
        );

        // Map-list items correlate by key: an added item is checked, the unchanged one is not.
        let mut ports = old.clone();
        ports["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"name": "b", "port": 81}]);
        assert_eq!(
            messages(validate(&c, &ports, Some(&old), &opts)),
            vec![r#"spec.ports[1]: Invalid value: "object": port must be above 1024"#]
        );
        ports["spec"]["ports"] = json!([{"name": "b", "port": 8080}, {"name": "a", "port": 80}]);
        validate(&c, &ports, Some(&old), &opts).expect("item a unchanged, wherever it sits");
    }

    #[test]
    fn transition_rules_are_not_ratcheted() {
        let c = crd(tightened_schema());
        let opts = ValidationOptions::default();
        let old = widget(json!({"replicas": 1, "counter": 1}));
        let mut status_only = old.clone();
        status_only["status"] = json!({"phase": "Ready"});
        assert_eq!(
            messages(validate(&c, &status_only, Some(&old), &opts)),
            vec![r#"spec.counter: Invalid value: "integer": counter must grow"#],
            "a rule reading oldSelf runs on an unchanged value, as in the API server"
        );
        let mut grown = old.clone();
        grown["spec"]["counter"] = json!(2);
        validate(&c, &grown, Some(&old), &opts).expect("grew");
        validate(&c, &old, None, &opts).expect("no oldSelf on create");
    }

    #[test]
    fn list_uniqueness_is_never_ratcheted() {
        let c = crd(widget_schema());
        let opts = ValidationOptions::default();
        let old = widget(json!({"owner": {"team": "a"}, "tags": ["x", "x"]}));
        let mut status_only = old.clone();
        status_only["status"] = json!({"phase": "Ready"});
        assert_eq!(
            messages(validate(&c, &status_only, Some(&old), &opts)),
            vec![r#"spec.tags[1]: Duplicate value: "x""#]
        );
    }

    #[test]
    fn type_errors_block_cel_like_the_api_server() {
        let c = crd(widget_schema());
        let got = messages(validate(
            &c,
            &widget(json!({"owner": {"team": "a"}, "replicas": "x", "maxReplicas": 5})),
            None,
            &ValidationOptions::default(),
        ));
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn cel_reasons_and_root_rules() {
        let schema = json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('w-')", "message": "name must start with w-"}],
            "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self != 'forbidden'", "reason": "FieldValueForbidden", "message": "may not be forbidden"},
                    {"rule": "self.size() < 3", "messageExpression": "'too long: ' + self"}
                ]}
            }}}
        });
        let c = crd(schema);
        let got = messages(validate(
            &c,
            &widget(json!({"a": "forbidden"})),
            None,
            &ValidationOptions::default(),
        ));
        assert!(
            got.contains(&r#"<nil>: Invalid value: "object": name must start with w-"#.to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"spec.a: Forbidden: may not be forbidden".to_string()), "{got:?}");
        assert!(
            got.contains(&r#"spec.a: Invalid value: "string": too long: forbidden"#.to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn wrong_group_and_version_are_reported() {
        let c = crd(widget_schema());
        let mut obj = widget(json!({"owner": {"team": "a"}}));
        obj["apiVersion"] = json!("other.io/v1");
        assert_eq!(
            validate(&c, &obj, None, &ValidationOptions::default()).expect_err("wrong group")[0]
                .field,
            "apiVersion"
        );
        obj["apiVersion"] = json!("example.com/v9");
        let err =
            validate(&c, &obj, None, &ValidationOptions::default()).expect_err("unknown version");
        assert!(err[0].message.contains("v9"));
        let opts = ValidationOptions { version: Some("v1".into()), ..Default::default() };
        assert!(validate(&c, &obj, None, &opts).is_ok(), "explicit version wins");
    }
}
