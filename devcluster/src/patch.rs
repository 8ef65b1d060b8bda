//! JSON patch, JSON merge patch and strategic merge patch.
//!
//! JSON patch (RFC 6902) and merge patch (RFC 7386) come from the `json-patch` crate.
//! Strategic merge patch is Kubernetes-specific: lists named by a patch merge key are merged
//! element by element, and `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/...` and
//! `$setElementOrder/...` directives are honoured. The merge keys are chosen by field name
//! ([`merge_key`]) — the names Kubernetes types use for them — rather than from per-type
//! Go struct tags, which are not available here.

use serde_json::{Map, Value};

/// The merge key of a list field of built-in kinds, by field name. `ports` depends on whether
/// the entries are container ports or service ports.
pub fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "readinessGates" => "conditionType",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars that strategic merge patch merges as sets.
pub fn is_merged_scalar_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Patch failures.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not valid for its type.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed.
    #[error("the server rejected our request due to an error in our request: {0}")]
    Failed(String),
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &p).map_err(|e| PatchError::Failed(e.to_string()))
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed("merge patch must be a JSON object".into()));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// Applies a strategic merge patch.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed("strategic merge patch must be a JSON object".into()));
    }
    merge_object(target, patch);
    Ok(())
}

fn merge_object(target: &mut Value, patch: &Value) {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pmap.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = pmap.clone();
        replaced.remove("$patch");
        *target = Value::Object(strip_directives(replaced));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tmap = target.as_object_mut().expect("object");
    if let Some(keep) = pmap.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tmap.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in pmap {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) =
                (tmap.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                tmap.remove(k);
            }
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                tmap.remove(k);
            }
            Value::Object(_) => {
                let entry = tmap.entry(k.clone()).or_insert(Value::Null);
                merge_object(entry, v);
            }
            Value::Array(items) => {
                let merged = merge_list(k, tmap.get(k), items);
                tmap.insert(k.clone(), merged);
            }
            other => {
                tmap.insert(k.clone(), other.clone());
            }
        }
    }
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    m
}

fn merge_list(field: &str, current: Option<&Value>, patch: &[Value]) -> Value {
    if patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace")) {
        return Value::Array(patch.iter().filter(|p| p.get("$patch").is_none()).cloned().collect());
    }
    let current: Vec<Value> = current.and_then(Value::as_array).cloned().unwrap_or_default();
    if is_merged_scalar_list(field) {
        let mut out = current;
        for p in patch {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        return Value::Array(out);
    }
    let Some(key) = merge_key(field, patch.first().or(current.first())) else {
        return Value::Array(patch.iter().map(|p| strip_value(p.clone())).collect());
    };
    if !patch.iter().all(Value::is_object) {
        return Value::Array(patch.to_vec());
    }
    let mut out = current;
    for p in patch {
        let id = p.get(key);
        let pos = out.iter().position(|c| c.get(key) == id && id.is_some());
        if p.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => merge_object(&mut out[i], p),
            None => out.push(strip_value(p.clone())),
        }
    }
    Value::Array(out)
}

fn strip_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            strip_directives(m).into_iter().map(|(k, v)| (k, strip_value(v))).collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_env_by_name() {
        let mut target = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ], "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}]},
        "metadata": {"finalizers": ["f2"]}});
        strategic_merge_patch(&mut target, &patch).expect("patch");
        assert_eq!(
            target,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }

    #[test]
    fn strategic_directives() {
        let mut target = json!({"a": {"x": 1, "y": 2}, "args": ["1", "2"], "metadata": {"finalizers": ["f1", "f2"]}});
        let patch = json!({"a": {"$patch": "replace", "z": 3}, "args": ["3"],
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}});
        strategic_merge_patch(&mut target, &patch).expect("patch");
        assert_eq!(
            target,
            json!({"a": {"z": 3}, "args": ["3"], "metadata": {"finalizers": ["f2"]}})
        );
    }
}
