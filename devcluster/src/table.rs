//! The `Table` format (`application/json;as=Table;v=v1;g=meta.k8s.io`) that `kubectl get`
//! asks for: columns from a CRD's `additionalPrinterColumns` (evaluated with a JSONPath
//! subset), or per-kind columns for built-ins, with ages printed as kubectl expects.

use serde_json::{Value, json};

use crate::resources::Resource;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let a = first.replace(' ', "");
        a.contains("as=Table") && a.contains("g=meta.k8s.io")
    })
}

/// What a row carries in `object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

struct Column {
    name: String,
    kind: &'static str,
    priority: i64,
    description: String,
    cell: Cell,
}

enum Cell {
    Name,
    Age(String),
    Path(String, String),
    Fn(fn(&Value) -> Value),
}

/// Kubernetes' `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if d < 730 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

fn age_of(ts: Option<&str>) -> Value {
    match ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        None => json!("<unknown>"),
    }
}

/// Evaluates the JSONPath subset used by printer columns: `.a.b`, `[n]`, `[*]` and
/// `[?(@.k=="v")]`.
pub fn json_path<'v>(obj: &'v Value, path: &str) -> Vec<&'v Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    let mut current = vec![obj];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Vec::new() };
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                current = current.into_iter().filter_map(Value::as_array).flatten().collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                current = current.into_iter().filter_map(|v| v.get(i)).collect();
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let Some((field, want)) = filter.split_once("==") else { return Vec::new() };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                let field = field.trim();
                current = current
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| match item.get(field) {
                        Some(Value::String(s)) => s == want,
                        Some(Value::Number(n)) => n.to_string() == want,
                        Some(Value::Bool(b)) => b.to_string() == want,
                        Some(_) => false,
                        None => false,
                    })
                    .collect();
            } else {
                return Vec::new();
            }
        } else {
            return Vec::new();
        }
    }
    current
}

fn count(v: Option<&Value>) -> Value {
    json!(match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    })
}

fn s(v: &Value, ptr: &str, default: &str) -> Value {
    match v.pointer(ptr) {
        Some(Value::String(s)) => json!(s),
        Some(Value::Null) | None => json!(default),
        Some(other) => json!(other.to_string()),
    }
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn builtin_columns(kind: &str) -> Vec<Column> {
    let col = |name: &str, f: fn(&Value) -> Value| Column {
        name: name.to_string(),
        kind: "string",
        priority: 0,
        description: String::new(),
        cell: Cell::Fn(f),
    };
    let wide = |mut c: Column| {
        c.priority = 1;
        c
    };
    let mut cols = vec![Column {
        name: "Name".into(),
        kind: "string",
        priority: 0,
        description: "Name must be unique within a namespace.".into(),
        cell: Cell::Name,
    }];
    match kind {
        "Namespace" => cols.push(col("Status", |v| s(v, "/status/phase", ""))),
        "Secret" => {
            cols.push(col("Type", |v| s(v, "/type", "")));
            cols.push(col("Data", |v| count(v.get("data"))));
        }
        "ConfigMap" => cols.push(col("Data", |v| json!(count(v.get("data")).as_u64().unwrap_or(0) + count(v.get("binaryData")).as_u64().unwrap_or(0)))),
        "ServiceAccount" => cols.push(col("Secrets", |v| count(v.get("secrets")))),
        "Service" => {
            cols.push(col("Type", |v| s(v, "/spec/type", "")));
            cols.push(col("Cluster-IP", |v| s(v, "/spec/clusterIP", "<none>")));
            cols.push(col("External-IP", |_| json!("<none>")));
            cols.push(col("Port(s)", |v| {
                let ports: Vec<String> = v
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|p| format!("{}/{}", n(p, "/port"), p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"))).collect())
                    .unwrap_or_default();
                json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") })
            }));
        }
        "Pod" => {
            cols.push(col("Ready", |v| {
                let total = v.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
                let ready = v
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map_or(0, |a| a.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
                json!(format!("{ready}/{total}"))
            }));
            cols.push(col("Status", |v| json!(pod_status(v))));
            cols.push(Column { kind: "integer", ..col("Restarts", |v| {
                json!(v.pointer("/status/containerStatuses").and_then(Value::as_array).map_or(0, |a| a.iter().map(|c| n(c, "/restartCount")).sum::<i64>()))
            }) });
            cols.push(wide(col("IP", |v| s(v, "/status/podIP", "<none>"))));
            cols.push(wide(col("Node", |v| s(v, "/spec/nodeName", "<none>"))));
        }
        "Deployment" => {
            cols.push(col("Ready", |v| json!(format!("{}/{}", n(v, "/status/readyReplicas"), n(v, "/spec/replicas")))));
            cols.push(Column { kind: "integer", ..col("Up-to-date", |v| json!(n(v, "/status/updatedReplicas"))) });
            cols.push(Column { kind: "integer", ..col("Available", |v| json!(n(v, "/status/availableReplicas"))) });
        }
        "ReplicaSet" => {
            cols.push(Column { kind: "integer", ..col("Desired", |v| json!(n(v, "/spec/replicas"))) });
            cols.push(Column { kind: "integer", ..col("Current", |v| json!(n(v, "/status/replicas"))) });
            cols.push(Column { kind: "integer", ..col("Ready", |v| json!(n(v, "/status/readyReplicas"))) });
        }
        "StatefulSet" => cols.push(col("Ready", |v| json!(format!("{}/{}", n(v, "/status/readyReplicas"), n(v, "/spec/replicas"))))),
        "Job" => {
            cols.push(col("Status", |v| {
                let conds = v.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                let has = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
                json!(if has("Complete") { "Complete" } else if has("Failed") { "Failed" } else if has("Suspended") { "Suspended" } else { "Running" })
            }));
            cols.push(col("Completions", |v| json!(format!("{}/{}", n(v, "/status/succeeded"), n(v, "/spec/completions").max(1)))));
        }
        "CronJob" => {
            cols.push(col("Schedule", |v| s(v, "/spec/schedule", "")));
            cols.push(col("Timezone", |v| s(v, "/spec/timeZone", "<none>")));
            cols.push(col("Suspend", |v| json!(v.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false).to_string().replace("false", "False").replace("true", "True"))));
            cols.push(Column { kind: "integer", ..col("Active", |v| count(v.pointer("/status/active"))) });
            cols.push(col("Last Schedule", |v| match v.pointer("/status/lastScheduleTime").and_then(Value::as_str) {
                Some(t) => age_of(Some(t)),
                None => json!("<none>"),
            }));
        }
        "PodDisruptionBudget" => {
            cols.push(col("Min Available", |v| s(v, "/spec/minAvailable", "N/A")));
            cols.push(col("Max Unavailable", |v| s(v, "/spec/maxUnavailable", "N/A")));
            cols.push(Column { kind: "integer", ..col("Allowed Disruptions", |v| json!(n(v, "/status/disruptionsAllowed"))) });
        }
        "Lease" => cols.push(col("Holder", |v| s(v, "/spec/holderIdentity", ""))),
        "RoleBinding" | "ClusterRoleBinding" => {
            cols.push(col("Role", |v| json!(format!("{}/{}", s(v, "/roleRef/kind", "").as_str().unwrap_or(""), s(v, "/roleRef/name", "").as_str().unwrap_or("")))));
        }
        "PersistentVolumeClaim" => {
            cols.push(col("Status", |v| s(v, "/status/phase", "Pending")));
            cols.push(col("Volume", |v| s(v, "/spec/volumeName", "")));
            cols.push(col("Capacity", |v| s(v, "/status/capacity/storage", "")));
            cols.push(col("Access Modes", |v| json!(v.pointer("/spec/accessModes").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(|m| match m { "ReadWriteOnce" => "RWO", "ReadOnlyMany" => "ROX", "ReadWriteMany" => "RWX", "ReadWriteOncePod" => "RWOP", o => o }).collect::<Vec<_>>().join(",")).unwrap_or_default())));
            cols.push(col("StorageClass", |v| s(v, "/spec/storageClassName", "<unset>")));
        }
        "NetworkPolicy" => cols.push(col("Pod-Selector", |v| {
            let sel = crate::selectors::labels_of(&json!({"metadata": {"labels": v.pointer("/spec/podSelector/matchLabels").cloned().unwrap_or(json!({}))}}));
            let parts: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!(if parts.is_empty() { "<none>".to_string() } else { parts.join(",") })
        })),
        "Event" => {
            cols.insert(0, col("Last Seen", |v| {
                let t = v.get("lastTimestamp").and_then(Value::as_str)
                    .or_else(|| v.get("eventTime").and_then(Value::as_str))
                    .or_else(|| v.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
                age_of(t)
            }));
            cols.push(col("Type", |v| s(v, "/type", "")));
            cols.push(col("Reason", |v| s(v, "/reason", "")));
            cols.push(col("Object", |v| {
                let o = v.get("involvedObject").or_else(|| v.get("regarding")).cloned().unwrap_or(json!({}));
                json!(format!("{}/{}", o.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase(), o.get("name").and_then(Value::as_str).unwrap_or("")))
            }));
            cols.push(col("Message", |v| s(v, "/message", "").as_str().map(|m| json!(m)).unwrap_or(json!(""))));
            cols.retain(|c| c.name != "Name");
            return cols;
        }
        "CustomResourceDefinition" | "Role" | "ClusterRole" => {
            cols.push(Column { name: "Created At".into(), kind: "date", priority: 0, description: String::new(), cell: Cell::Fn(|v| s(v, "/metadata/creationTimestamp", "")) });
            return cols;
        }
        _ => {}
    }
    cols.push(Column { name: "Age".into(), kind: "string", priority: 0, description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(), cell: Cell::Age(String::new()) });
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            cols.push(wide(col("Containers", |v| json!(names(v, "name")))));
            cols.push(wide(col("Images", |v| json!(names(v, "image")))));
        }
        "Service" => cols.push(wide(col("Selector", |v| {
            let parts: Vec<String> = v
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or(""))).collect()
                })
                .unwrap_or_default();
            json!(if parts.is_empty() { "<none>".to_string() } else { parts.join(",") })
        }))),
        _ => {}
    }
    cols
}

fn names(v: &Value, field: &str) -> String {
    containers(v)
        .iter()
        .map(|c| c.get(field).and_then(Value::as_str).unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn containers(v: &Value) -> Vec<Value> {
    v.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn columns(res: &Resource) -> Vec<Column> {
    let Some(info) = res.custom() else { return builtin_columns(&res.kind) };
    let version = info.crd.spec.versions.iter().find(|v| v.name == res.version);
    let printer = version.and_then(|v| v.additional_printer_columns.clone()).unwrap_or_default();
    let mut cols = vec![Column {
        name: "Name".into(),
        kind: "string",
        priority: 0,
        description: "Name must be unique within a namespace.".into(),
        cell: Cell::Name,
    }];
    if printer.is_empty() {
        cols.push(Column {
            name: "Age".into(),
            kind: "date",
            priority: 0,
            description: String::new(),
            cell: Cell::Age(String::new()),
        });
        return cols;
    }
    for p in printer {
        let name = p.name.clone();
        let kind: &'static str = match p.type_.as_str() {
            "integer" => "integer",
            "number" => "number",
            "boolean" => "boolean",
            "date" => "date",
            _ => "string",
        };
        let cell = if kind == "date" {
            Cell::Age(p.json_path.clone())
        } else {
            Cell::Path(p.json_path.clone(), kind.to_string())
        };
        cols.push(Column {
            name,
            kind,
            priority: i64::from(p.priority.unwrap_or(0)),
            description: p.description.clone().unwrap_or_default(),
            cell,
        });
    }
    cols
}

fn cell_value(cell: &Cell, obj: &Value) -> Value {
    match cell {
        Cell::Name => obj.pointer("/metadata/name").cloned().unwrap_or(json!("")),
        Cell::Age(path) => {
            let ts = if path.is_empty() {
                obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str)
            } else {
                json_path(obj, path).first().and_then(|v| v.as_str())
            };
            if ts.is_none() && !path.is_empty() { Value::Null } else { age_of(ts) }
        }
        Cell::Path(path, kind) => match json_path(obj, path).first() {
            Some(v) => match (kind.as_str(), v) {
                ("string", Value::String(_)) => (*v).clone(),
                ("string", other) => json!(other.to_string()),
                _ => (*v).clone(),
            },
            None => Value::Null,
        },
        Cell::Fn(f) => f(obj),
    }
}

/// The column definitions of a resource's table.
pub fn column_definitions(res: &Resource) -> Value {
    let defs: Vec<Value> = columns(res)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if matches!(c.cell, Cell::Name) { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    Value::Array(defs)
}

/// One row for an object.
pub fn row(res: &Resource, obj: &Value, include: IncludeObject) -> Value {
    let cells: Vec<Value> = columns(res).iter().map(|c| cell_value(&c.cell, obj)).collect();
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => r["object"] = obj.clone(),
        IncludeObject::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    r
}

/// A whole table.
pub fn table(
    res: &Resource,
    objects: &[Value],
    rv: u64,
    cont: Option<&str>,
    include: IncludeObject,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(res),
        "rows": objects.iter().map(|o| row(res, o, include)).collect::<Vec<_>>(),
    })
}

/// The STATUS column of a Pod as kubectl prints it: the phase, or the reason a container
/// waits or ended (`CrashLoopBackOff`, `ErrImagePull`, `Completed`, `Error`), or
/// `Terminating`.
fn pod_status(v: &Value) -> String {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = v
        .pointer("/status/reason")
        .or_else(|| v.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    let statuses = |list: &str| -> Vec<Value> {
        v.pointer(&format!("/status/{list}")).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    for (i, c) in statuses("initContainerStatuses").iter().enumerate() {
        let code = c.pointer("/state/terminated/exitCode").and_then(Value::as_i64);
        if code == Some(0) {
            continue;
        }
        let total = statuses("initContainerStatuses").len();
        reason = match (c.pointer("/state/waiting/reason").and_then(Value::as_str), code) {
            (Some(w), _) if w != "PodInitializing" => format!("Init:{w}"),
            (_, Some(code)) => format!("Init:ExitCode:{code}"),
            _ => format!("Init:{i}/{total}"),
        };
        return reason;
    }
    let mut running = false;
    for c in statuses("containerStatuses").iter().rev() {
        if let Some(w) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = w.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            reason = match t.get("reason").and_then(Value::as_str) {
                Some(r) => r.to_string(),
                None => {
                    format!("ExitCode:{}", t.get("exitCode").and_then(Value::as_i64).unwrap_or(0))
                }
            };
        } else if c.get("ready") == Some(&json!(true)) && c.pointer("/state/running").is_some() {
            running = true;
        }
    }
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    reason
}
