//! Field ownership: `metadata.managedFields` and server-side apply.
//!
//! A field set is a set of paths; a path is a list of elements in the `fieldsV1` spelling:
//! `f:<field>` for an object field, `k:{"name":"x"}` for an element of a list with map keys,
//! `v:<json>` for a member of a set. A path that is both a member and a prefix of others is
//! written with `"."` in `fieldsV1`, exactly as Kubernetes does.
//!
//! ```text
//!  update / patch / create ──▶ [record_update]  fields that changed move to the writer
//!  apply (PATCH apply-patch+yaml) ──▶ [apply]
//!        conflicts: fields owned by others whose values the applier would change (409 unless force)
//!        merge: applied config merged into the live object (list maps by key, sets by value)
//!        prune: fields the applier owned before, no longer applies, and nobody else owns
//! ```
//!
//! List semantics come from the CRD schema (`x-kubernetes-list-type`, `-list-map-keys`,
//! `x-kubernetes-map-type`) or, for built-in kinds, from the merge keys of [`crate::patch`].

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A set of field paths.
pub type FieldSet = BTreeSet<Vec<String>>;

/// Where list semantics come from.
#[derive(Clone, Copy)]
pub enum Shape<'a> {
    /// A built-in kind: merge keys by field name.
    Builtin,
    /// A CRD schema node.
    Schema(Option<&'a Value>),
}

enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

impl<'a> Shape<'a> {
    fn child(self, key: &str) -> Shape<'a> {
        match self {
            Shape::Builtin => Shape::Builtin,
            Shape::Schema(s) => Shape::Schema(s.and_then(|s| {
                s.get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
            })),
        }
    }

    fn items(self) -> Shape<'a> {
        match self {
            Shape::Builtin => Shape::Builtin,
            Shape::Schema(s) => Shape::Schema(s.and_then(|s| s.get("items"))),
        }
    }

    fn atomic_map(self) -> bool {
        match self {
            Shape::Builtin => false,
            Shape::Schema(s) => {
                s.and_then(|s| s.get("x-kubernetes-map-type")).and_then(Value::as_str)
                    == Some("atomic")
            }
        }
    }

    fn list_type(self, field: &str, items: &[Value]) -> ListType {
        match self {
            Shape::Builtin => {
                if crate::patch::is_merged_scalar_list(field) {
                    return ListType::Set;
                }
                match crate::patch::merge_key(field, items.first()) {
                    Some("containerPort") => {
                        ListType::Map(vec!["containerPort".into(), "protocol".into()])
                    }
                    Some("port") => ListType::Map(vec!["port".into(), "protocol".into()]),
                    Some(k) if items.iter().all(Value::is_object) => ListType::Map(vec![k.into()]),
                    _ => ListType::Atomic,
                }
            }
            Shape::Schema(s) => {
                let s = s.unwrap_or(&Value::Null);
                match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => ListType::Map(
                        s.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|k| {
                                k.iter().filter_map(Value::as_str).map(str::to_string).collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => ListType::Atomic,
                }
            }
        }
    }
}

/// The value a list-map key field takes when it is omitted (the API server defaults it
/// before merging, e.g. a port's `protocol`).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// A key field of a list-map entry, defaulted.
fn key_value(item: &Value, key: &str) -> Option<Value> {
    item.get(key).cloned().or_else(|| key_default(key))
}

fn key_element(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = key_value(item, k) {
            m.insert(k.clone(), v);
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Whether `path` ends at a key field of the list-map entry it sits in.
fn is_key_field(path: &[String]) -> bool {
    let [.., parent, last] = path else { return false };
    let (Some(field), Some(keys)) = (last.strip_prefix("f:"), parent.strip_prefix("k:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|k| k.contains_key(field))
}

fn field_name(prefix: &[String]) -> &str {
    prefix.last().and_then(|e| e.strip_prefix("f:")).unwrap_or("")
}

fn collect(v: &Value, shape: Shape<'_>, prefix: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && !shape.atomic_map() => {
            for (k, child) in m {
                prefix.push(format!("f:{k}"));
                collect(child, shape.child(k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            match shape.list_type(field_name(prefix), items) {
                ListType::Atomic => {
                    out.insert(prefix.clone());
                }
                ListType::Set => {
                    for item in items {
                        let mut p = prefix.clone();
                        p.push(format!("v:{item}"));
                        out.insert(p);
                    }
                }
                ListType::Map(keys) => {
                    for item in items {
                        prefix.push(key_element(item, &keys));
                        out.insert(prefix.clone());
                        collect(item, shape.items(), prefix, out);
                        prefix.pop();
                    }
                }
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// Which part of an object a write manages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// The main resource (everything but status when the kind has a status subresource).
    Main {
        /// Whether status belongs to a subresource.
        status_subresource: bool,
    },
    /// The status subresource.
    Status,
}

/// The tracked fields of an object.
pub fn fields_of(obj: &Value, shape: Shape<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        let tracked = match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => false,
            ("status", Scope::Status) => true,
            (_, Scope::Status) => false,
            ("status", Scope::Main { status_subresource }) => !status_subresource,
            _ => true,
        };
        if !tracked {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = meta.get(mk) {
                        let mut prefix = vec!["f:metadata".to_string(), format!("f:{mk}")];
                        let shape = if mk == "ownerReferences" || mk == "finalizers" {
                            Shape::Builtin
                        } else {
                            shape.child("metadata").child(mk)
                        };
                        collect(mv, shape, &mut prefix, &mut out);
                    }
                }
            }
            continue;
        }
        let mut prefix = vec![format!("f:{k}")];
        collect(v, shape.child(k), &mut prefix, &mut out);
    }
    out
}

/// The value at a path, if present.
pub fn value_at<'v>(obj: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut node = obj;
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            node = node.get(f)?;
        } else if let Some(k) = el.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
            node = node.as_array()?.iter().find(|item| {
                keys.iter().all(|(kk, kv)| key_value(item, kk).as_ref() == Some(kv))
            })?;
        } else if let Some(v) = el.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            node = node.as_array()?.iter().find(|item| **item == want)?;
        } else {
            return None;
        }
    }
    Some(node)
}

/// Removes the value at a path (no-op when absent).
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = obj;
    for el in parents {
        let next = if let Some(f) = el.strip_prefix("f:") {
            node.get_mut(f)
        } else if let Some(k) = el.strip_prefix("k:") {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(k) else { return };
            node.as_array_mut().and_then(|a| {
                a.iter_mut().find(|item| {
                    keys.iter().all(|(kk, kv)| key_value(item, kk).as_ref() == Some(kv))
                })
            })
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(keys), Some(a)) =
            (serde_json::from_str::<Map<String, Value>>(k), node.as_array_mut())
        {
            a.retain(|item| !keys.iter().all(|(kk, kv)| key_value(item, kk).as_ref() == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), node.as_array_mut())
    {
        a.retain(|item| *item != want);
    }
}

/// Encodes a field set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for el in path {
            let entry = node.entry(el.clone()).or_insert_with(|| json!({}));
            node = entry.as_object_mut().expect("object");
        }
    }
    // Mark members that also have children with ".".
    fn mark(node: &mut Map<String, Value>, prefix: &mut Vec<String>, set: &FieldSet) {
        for (k, v) in node.iter_mut() {
            prefix.push(k.clone());
            if let Some(child) = v.as_object_mut()
                && !child.is_empty()
            {
                mark(child, prefix, set);
                if set.contains(prefix) {
                    child.insert(".".into(), json!({}));
                }
            }
            prefix.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

/// Decodes `fieldsV1`.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut Vec<String>, out: &mut FieldSet) {
        for (k, v) in node {
            if k == "." {
                out.insert(prefix.clone());
                continue;
            }
            prefix.push(k.clone());
            match v.as_object() {
                Some(child) if !child.is_empty() => walk(child, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

/// Human form of a path, as conflict messages print it: `.spec.containers[name="c"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were written with.
    pub api_version: String,
    /// Last change.
    pub time: String,
    /// Subresource (`status`) or empty.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(read_entry).collect())
        .unwrap_or_default()
}

fn read_entry(e: &Value) -> Entry {
    Entry {
        manager: str_field(e, "manager").to_string(),
        operation: str_field(e, "operation").to_string(),
        api_version: str_field(e, "apiVersion").to_string(),
        time: str_field(e, "time").to_string(),
        subresource: str_field(e, "subresource").to_string(),
        fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
    }
}

fn str_field<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Writes `metadata.managedFields`.
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list = entries.iter().filter(|e| !e.fields.is_empty()).map(write_entry).collect();
    set_entries(obj, list);
}

fn write_entry(e: &Entry) -> Value {
    let mut m = json!({
        "manager": e.manager,
        "operation": e.operation,
        "apiVersion": e.api_version,
        "time": e.time,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(&e.fields),
    });
    if !e.subresource.is_empty() {
        m["subresource"] = json!(e.subresource);
    }
    m
}

fn set_entries(obj: &mut Value, list: Vec<Value>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing.
pub struct Writer<'a> {
    /// Field manager name.
    pub manager: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// `status` or empty.
    pub subresource: &'a str,
    /// Current time (RFC 3339).
    pub now: &'a str,
}

/// Records an Update-style write (create, update, patch) of `new` over `old`.
///
/// Fields that changed or went away leave the entries that owned them, and the changed ones
/// move to the writer's entry. Most writes touch few fields (a status patch, a label), so an
/// entry owning none of them is kept as stored rather than decoded and encoded again.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    shape: Shape<'_>,
    scope: Scope,
    w: &Writer<'_>,
) {
    let new_fields = fields_of(new, shape, scope);
    let old_fields = old.map(|o| fields_of(o, shape, scope)).unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .cloned()
        .collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    let stored: &[Value] = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A patch starts from the old object, so its managedFields are usually the stored ones.
    let carried = match new.pointer_mut("/metadata/managedFields") {
        Some(v) if v.as_array().is_some_and(|a| a.as_slice() == stored) => match v.take() {
            Value::Array(a) => a,
            _ => Vec::new(),
        },
        _ => stored.to_vec(),
    };
    let mut entries = Vec::with_capacity(carried.len() + 1);
    // Whether the changed fields still wait for the writer's entry.
    let mut unclaimed = !changed.is_empty();
    for raw in carried {
        let is_mine = str_field(&raw, "manager") == w.manager
            && str_field(&raw, "operation") == "Update"
            && str_field(&raw, "subresource") == w.subresource;
        let claims = is_mine && unclaimed;
        let fields_v1 = raw.get("fieldsV1");
        let touched = changed.iter().chain(&removed).any(|p| owns(fields_v1, p));
        if !touched && !claims {
            if fields_v1.and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
                entries.push(raw);
            }
            continue;
        }
        let mut entry = read_entry(&raw);
        entry.fields.retain(|p| !changed.contains(p) && !removed.contains(p));
        if claims {
            entry.fields.extend(changed.iter().cloned());
            entry.time = w.now.to_string();
            entry.api_version = w.api_version.to_string();
            unclaimed = false;
        }
        if !entry.fields.is_empty() {
            entries.push(write_entry(&entry));
        }
    }
    if unclaimed {
        entries.push(write_entry(&Entry {
            manager: w.manager.to_string(),
            operation: "Update".into(),
            api_version: w.api_version.to_string(),
            time: w.now.to_string(),
            subresource: w.subresource.to_string(),
            fields: changed,
        }));
    }
    set_entries(new, entries);
}

/// Whether a `fieldsV1` tree has `path` as a member.
fn owns(fields_v1: Option<&Value>, path: &[String]) -> bool {
    let mut node = fields_v1;
    for el in path {
        node = node.and_then(|n| n.get(el));
    }
    match node.and_then(Value::as_object) {
        Some(m) => m.is_empty() || m.contains_key("."),
        None => false,
    }
}

/// A server-side apply conflict: `(message, field)` pairs and the overall message.
#[derive(Debug)]
pub struct Conflicts {
    /// Overall message.
    pub message: String,
    /// Per-field causes.
    pub causes: Vec<(String, String)>,
}

/// Applies `applied` (a partial object) to `live` for `w.manager`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    shape: Shape<'_>,
    scope: Scope,
    force: bool,
    w: &Writer<'_>,
) -> Result<Value, Conflicts> {
    let mut entries = live.map(read_entries).unwrap_or_default();
    let mut applied_scoped = applied.clone();
    if let Some(m) = applied_scoped.as_object_mut() {
        match scope {
            Scope::Main { status_subresource: true } => {
                m.remove("status");
            }
            Scope::Status => {
                m.retain(|k, _| matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata"))
            }
            _ => {}
        }
    }
    let new_set = fields_of(&applied_scoped, shape, scope);
    let empty = Value::Object(Map::new());
    let base = live.unwrap_or(&empty);
    let is_mine = |e: &Entry| {
        e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource
    };

    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut conflict_managers: Vec<(String, String)> = Vec::new();
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        let overlapping: Vec<Vec<String>> = e
            .fields
            .iter()
            .filter(|p| new_set.contains(*p) && value_at(base, p) != value_at(&applied_scoped, p))
            .cloned()
            .collect();
        if overlapping.is_empty() {
            continue;
        }
        if force {
            e.fields.retain(|p| !overlapping.contains(p));
        } else {
            let who = format!("conflict with {:?} using {}", e.manager, e.api_version);
            conflict_managers.push((who.clone(), e.manager.clone()));
            for p in overlapping {
                conflicts.push((who.clone(), display_path(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        let n = conflicts.len();
        let plural = if n == 1 { "conflict" } else { "conflicts" };
        let message = if n == 1 {
            format!("Apply failed with 1 conflict: {}: {}", conflicts[0].0, conflicts[0].1)
        } else {
            let mut m = format!("Apply failed with {n} {plural}:");
            for (who, field) in &conflicts {
                m.push_str(&format!(" {who}: {field};"));
            }
            m.trim_end_matches(';').to_string()
        };
        return Err(Conflicts { message, causes: conflicts });
    }

    // The one copy of the live object: the applied configuration moves into it.
    let mut merged = base.clone();
    merge_into(&mut merged, applied_scoped, shape, &mut Vec::new());

    let previous: FieldSet =
        entries.iter().filter(|e| is_mine(e)).flat_map(|e| e.fields.clone()).collect();
    let others: FieldSet =
        entries.iter().filter(|e| !is_mine(e)).flat_map(|e| e.fields.clone()).collect();
    let mut dropped: Vec<Vec<String>> = previous
        .iter()
        .filter(|p| {
            !new_set.contains(*p)
                && !others.contains(*p)
                && !others.iter().any(|o| o.starts_with(p))
                && !is_key_field(p)
        })
        .cloned()
        .collect();
    // Parents first: removing an entry removes its fields, and a field removed first could
    // no longer be found under a key that changed.
    dropped.sort_by_key(Vec::len);
    for p in dropped {
        remove_at(&mut merged, &p);
    }
    prune_empty_parents(&mut merged, &previous, &new_set);

    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: w.manager.to_string(),
        operation: "Apply".into(),
        api_version: w.api_version.to_string(),
        time: w.now.to_string(),
        subresource: w.subresource.to_string(),
        fields: new_set,
    });
    // Update entries of others keep their fields; apply also takes over fields it changed.
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Removes objects that became empty only because the applier stopped managing their fields.
fn prune_empty_parents(obj: &mut Value, previous: &FieldSet, now: &FieldSet) {
    let mut parents: BTreeSet<Vec<String>> = BTreeSet::new();
    for p in previous.difference(now) {
        for i in 1..p.len() {
            parents.insert(p[..i].to_vec());
        }
    }
    let mut parents: Vec<_> = parents.into_iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in parents {
        if p.len() <= 1 && p.first().is_some_and(|f| f == "f:metadata") {
            continue;
        }
        if value_at(obj, &p).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
            && !now.iter().any(|n| n.starts_with(&p))
        {
            remove_at(obj, &p);
        }
    }
}

/// Merges `applied` into `live`, moving its values instead of copying them.
fn merge_into(live: &mut Value, applied: Value, shape: Shape<'_>, prefix: &mut Vec<String>) {
    match applied {
        Value::Object(am) if !shape.atomic_map() => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            let lm = live.as_object_mut().expect("object");
            for (k, av) in am {
                let child_shape = if prefix.is_empty() && k == "metadata" {
                    Shape::Builtin
                } else {
                    shape.child(&k)
                };
                prefix.push(format!("f:{k}"));
                let lv = lm.entry(k).or_insert(Value::Null);
                merge_into(lv, av, child_shape, prefix);
                prefix.pop();
            }
        }
        Value::Array(items) => match shape.list_type(field_name(prefix), &items) {
            ListType::Atomic => *live = Value::Array(items),
            ListType::Set => {
                let mut out = take_list(live);
                for i in items {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
                *live = Value::Array(out);
            }
            ListType::Map(keys) => {
                let mut out = take_list(live);
                for item in items {
                    let key: Vec<Option<Value>> =
                        keys.iter().map(|k| key_value(&item, k)).collect();
                    let matches =
                        |c: &Value| keys.iter().zip(&key).all(|(k, v)| key_value(c, k) == *v);
                    match out.iter_mut().find(|c| matches(c)) {
                        Some(existing) => merge_into(existing, item, shape.items(), prefix),
                        None => out.push(item),
                    }
                }
                *live = Value::Array(out);
            }
        },
        other => *live = other,
    }
}

/// The items of a live list (none when it is not a list), taken out to be merged into.
fn take_list(live: &mut Value) -> Vec<Value> {
    match live.take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_roundtrip_with_dot_members() {
        let obj = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "replicas": 1},
            "metadata": {"labels": {"app": "x"}, "name": "n"}});
        let set = fields_of(&obj, Shape::Builtin, Scope::Main { status_subresource: true });
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {},
                "f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:image": {}}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    fn entry(manager: &str, operation: &str, sub: &str, time: &str, fields: Value) -> Value {
        let mut e = json!({"manager": manager, "operation": operation, "apiVersion": "v1",
            "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields});
        if !sub.is_empty() {
            e["subresource"] = json!(sub);
        }
        e
    }

    #[test]
    fn an_update_moves_only_the_fields_it_touches() {
        let applied = entry("op", "Apply", "", "t0", json!({"f:spec": {"f:x": {}}}));
        let status = entry(
            "ctl",
            "Update",
            "status",
            "t0",
            json!({"f:status": {"f:phase": {}, "f:count": {}}}),
        );
        let old = json!({"metadata": {"name": "a", "managedFields": [applied, status]},
            "spec": {"x": 1}, "status": {"phase": "A", "count": 1}});
        let w = |manager| Writer { manager, api_version: "v1", subresource: "status", now: "t1" };

        // The writer's own entry takes the change, loses the removed field and gets the new
        // time; the Apply entry owns none of them and stays as stored.
        let mut new = old.clone();
        new["status"] = json!({"phase": "B", "ready": true});
        record_update(Some(&old), &mut new, Shape::Builtin, Scope::Status, &w("ctl"));
        let mine = entry(
            "ctl",
            "Update",
            "status",
            "t1",
            json!({"f:status": {"f:phase": {}, "f:ready": {}}}),
        );
        assert_eq!(new["metadata"]["managedFields"], json!([applied, mine]));

        // Another writer takes the changed field from the entry that had it; an entry left
        // with no fields goes away.
        let mut new = old.clone();
        new["status"] = json!({"phase": "C"});
        record_update(Some(&old), &mut new, Shape::Builtin, Scope::Status, &w("other"));
        let theirs = entry("other", "Update", "status", "t1", json!({"f:status": {"f:phase": {}}}));
        assert_eq!(new["metadata"]["managedFields"], json!([applied, theirs]));

        // A write that changes nothing leaves every entry, and its time, as stored.
        let mut new = old.clone();
        record_update(Some(&old), &mut new, Shape::Builtin, Scope::Status, &w("ctl"));
        assert_eq!(new["metadata"]["managedFields"], old["metadata"]["managedFields"]);
    }
}
