//! The CEL `x-kubernetes-validations` rules of a CRD version, evaluated node by node with
//! validation ratcheting (KEP-4008, on by default since Kubernetes 1.30).
//!
//! `kube-cel` evaluates a whole schema tree at once, converting every subtree to CEL at every
//! level. The API server instead walks the object beside its old state and, on an update,
//! ignores the failures of rules that do not use `oldSelf` on a node that is unchanged from
//! its correlated old value. This module does the walk itself and gives `kube-cel` one node
//! at a time, so an unchanged subtree costs one equality check instead of a CEL run:
//!
//! ```text
//!  RuleTree (built once per CRD version): only the nodes with rules beneath them
//!     │
//!     ▼  walk(value, old)
//!  node unchanged? ── yes ──▶ evaluate only its transition rules (and descend only
//!     │ no                    where transition rules live)
//!     ▼
//!  evaluate its rules (kube-cel, on a schema whose descendants carry no rules)
//!     │
//!     ▼
//!  descend: properties and map values by key, items of `listType: map` lists by their
//!  keys, items of other lists uncorrelated (as in the API server)
//! ```
//!
//! Where this differs from the API server: a ratcheted rule is not run at all, so the
//! warning the API server returns for a ratcheted failure is not returned here.

use std::collections::{HashMap, HashSet};

use kube_cel::{CompiledSchema, RootContext, ValidationError};
use serde_json::Value;

#[cfg(test)]
use std::cell::Cell;

const RULES: &str = "x-kubernetes-validations";

/// The rules of one schema node and of the nodes beneath it that have rules.
pub(crate) struct RuleTree {
    /// This node's rules (and those of its `allOf`/`anyOf`/`oneOf` branches), compiled over
    /// the node's schema with every descendant's rules removed.
    own: Option<CompiledSchema>,
    /// Only this node's transition rules (those that read `oldSelf`): the ones that still
    /// run when the node is unchanged.
    transitions: Option<CompiledSchema>,
    properties: HashMap<String, RuleTree>,
    /// Declared property names, which `additionalProperties` does not cover.
    declared: HashSet<String>,
    items: Option<Box<RuleTree>>,
    additional: Option<Box<RuleTree>>,
    /// The keys of a `listType: map` list, by which its items correlate with the old ones.
    map_keys: Option<Vec<String>>,
    /// Whether a transition rule lives at or beneath this node.
    has_transitions: bool,
}

#[cfg(test)]
thread_local! {
    /// How many times a node's rules were handed to kube-cel on this thread (tests only).
    pub(crate) static NODE_EVALUATIONS: Cell<usize> = const { Cell::new(0) };
}

impl RuleTree {
    /// The rule tree of `schema`, or `None` when it has no rules anywhere.
    pub(crate) fn build(schema: &Value) -> Option<RuleTree> {
        let child = |s: Option<&Value>| s.and_then(RuleTree::build).map(Box::new);
        let properties: HashMap<String, RuleTree> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().filter_map(|(k, s)| Some((k.clone(), RuleTree::build(s)?))).collect())
            .unwrap_or_default();
        let items = child(schema.get("items"));
        let preserve =
            schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let additional = if preserve {
            None
        } else {
            child(schema.get("additionalProperties").filter(|a| a.is_object()))
        };
        let own_rules = schema.get(RULES).and_then(Value::as_array).is_some_and(|r| !r.is_empty())
            || ["allOf", "anyOf", "oneOf"]
                .iter()
                .filter_map(|k| schema.get(*k))
                .any(contains_rules);
        if !own_rules && properties.is_empty() && items.is_none() && additional.is_none() {
            return None;
        }
        let (own, transitions) = if own_rules { compile_own(schema) } else { (None, None) };
        let has_transitions = transitions.is_some()
            || properties.values().any(|p| p.has_transitions)
            || items.as_ref().is_some_and(|i| i.has_transitions)
            || additional.as_ref().is_some_and(|a| a.has_transitions);
        let declared = if additional.is_some() {
            schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            HashSet::new()
        };
        let map_keys = (schema.get("x-kubernetes-list-type").and_then(Value::as_str)
            == Some("map"))
        .then(|| {
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default()
        });
        Some(RuleTree {
            own,
            transitions,
            properties,
            declared,
            items,
            additional,
            map_keys,
            has_transitions,
        })
    }

    /// Evaluates the rules of `object` (pruned and defaulted), with `old` the old object
    /// (likewise normalized) for an update.
    pub(crate) fn validate_root(
        &self,
        object: &Value,
        old: Option<&Value>,
        root: &RootContext,
    ) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        // The root correlates as the whole object, metadata included, as in the API server.
        let unchanged = old.is_some_and(|o| o == object);
        if self.own.is_some() || self.properties.contains_key("metadata") {
            let old_view = old.map(cel_view);
            self.walk_node(
                &cel_view(object),
                old_view.as_ref(),
                unchanged,
                "",
                Some(root),
                &mut errors,
            );
        } else {
            self.walk_node(object, old, unchanged, "", Some(root), &mut errors);
        }
        errors
    }

    fn walk(
        &self,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        errors: &mut Vec<ValidationError>,
    ) {
        let unchanged = old.is_some_and(|o| o == value);
        self.walk_node(value, old, unchanged, path, None, errors);
    }

    fn walk_node(
        &self,
        value: &Value,
        old: Option<&Value>,
        unchanged: bool,
        path: &str,
        root: Option<&RootContext>,
        errors: &mut Vec<ValidationError>,
    ) {
        if unchanged && !self.has_transitions {
            return;
        }
        let rules = if unchanged { self.transitions.as_ref() } else { self.own.as_ref() };
        if let Some(rules) = rules {
            evaluate(rules, value, old, path, root, errors);
        }
        match value {
            Value::Object(map) => {
                for (key, child) in &self.properties {
                    if let Some(v) = map.get(key) {
                        let old_child = old.and_then(|o| o.get(key));
                        child.walk(v, old_child, &join(path, key), errors);
                    }
                }
                if let Some(child) = &self.additional {
                    for (key, v) in map.iter().filter(|(k, _)| !self.declared.contains(*k)) {
                        let old_child = old.and_then(|o| o.get(key));
                        child.walk(v, old_child, &join(path, key), errors);
                    }
                }
            }
            Value::Array(items) => {
                let Some(child) = &self.items else { return };
                let old_items = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = match (&self.map_keys, old_items) {
                        (Some(keys), Some(olds)) => {
                            olds.iter().find(|o| keys.iter().all(|k| o.get(k) == item.get(k)))
                        }
                        _ => None,
                    };
                    child.walk(item, old_item, &format!("{path}[{i}]"), errors);
                }
            }
            _ => {}
        }
    }
}

/// Runs one node's compiled rules and places their failures under the node's path.
fn evaluate(
    rules: &CompiledSchema,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    root: Option<&RootContext>,
    errors: &mut Vec<ValidationError>,
) {
    #[cfg(test)]
    NODE_EVALUATIONS.with(|n| n.set(n.get() + 1));
    let result = CEL_VALIDATOR.with(|v| v.validate_compiled_with_context(rules, value, old, root));
    if let Err(failures) = result {
        for mut e in failures {
            e.field_path = rebase(path, &e.field_path);
            errors.push(e);
        }
    }
}

thread_local! {
    /// Registering every Kubernetes CEL function is costly; do it once per thread.
    static CEL_VALIDATOR: kube_cel::Validator = kube_cel::Validator::new();
}

/// CEL only sees `metadata.name` and `metadata.generateName` of the object's metadata.
fn cel_view(obj: &Value) -> Value {
    let mut view = obj.clone();
    if let Some(meta) = view.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k == "name" || k == "generateName");
    }
    view
}

/// A path kube-cel reported relative to a node, made absolute.
fn rebase(node: &str, relative: &str) -> String {
    if node.is_empty() {
        relative.to_string()
    } else if relative.is_empty() {
        node.to_string()
    } else if relative.starts_with(['.', '[']) {
        format!("{node}{relative}")
    } else {
        format!("{node}.{relative}")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn contains_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key(RULES) || m.values().any(contains_rules),
        Value::Array(a) => a.iter().any(contains_rules),
        _ => false,
    }
}

/// Compiles a node's own rules (all of them, and the transition rules alone) over its schema
/// with the rules of every property, item and additional-property schema beneath removed.
/// The descendants' schemas stay: they give `self` its types (formats, maps).
fn compile_own(schema: &Value) -> (Option<CompiledSchema>, Option<CompiledSchema>) {
    let mut shallow = schema.clone();
    if let Some(map) = shallow.as_object_mut() {
        if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
            props.values_mut().for_each(strip_rules);
        }
        for key in ["items", "additionalProperties"] {
            if let Some(s) = map.get_mut(key) {
                strip_rules(s);
            }
        }
    }
    let rules: Vec<Value> =
        schema.get(RULES).and_then(Value::as_array).cloned().unwrap_or_default();
    let transition: Vec<Value> = rules.iter().filter(|r| is_transition_rule(r)).cloned().collect();
    let transitions = (!transition.is_empty()).then(|| {
        let mut only = shallow.clone();
        if let Some(map) = only.as_object_mut() {
            for key in ["allOf", "anyOf", "oneOf"] {
                if let Some(s) = map.get_mut(key) {
                    strip_rules(s);
                }
            }
            map.insert(RULES.into(), Value::Array(transition));
        }
        kube_cel::compile_schema(&only)
    });
    (Some(kube_cel::compile_schema(&shallow)), transitions)
}

/// Whether a rule reads `oldSelf` (as kube-cel decides it, from the compiled program).
fn is_transition_rule(rule: &Value) -> bool {
    let probe = serde_json::json!({ RULES: [rule] });
    kube_cel::compile_schema(&probe)
        .validations
        .iter()
        .any(|v| v.as_ref().is_ok_and(|c| c.is_transition_rule))
}

fn strip_rules(schema: &mut Value) {
    match schema {
        Value::Object(m) => {
            m.remove(RULES);
            m.values_mut().for_each(strip_rules);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_rules),
        _ => {}
    }
}
