//! A container's process: which program runs, its arguments and its environment, with
//! container paths remapped into the Pod's root.
//!
//! **Program.** The pod runner's image rules map an image to a local executable that stands
//! for the image's entrypoint: with `command` set, `command[0]` (the program inside the
//! image) is replaced by that executable and `command[1..]` + `args` follow it; without
//! `command`, the executable runs with `args`. A rule without an executable runs `command[0]`
//! from the host's `PATH`.
//!
//! **Environment.** Nothing is inherited from the cluster's own process except `PATH`.
//! In order (later wins): `HOME`/`TMPDIR` in the root, `HOSTNAME`, `DEVCLUSTER_POD_ROOT`,
//! `DEVCLUSTER_POD_IP`, `KUBERNETES_SERVICE_HOST`/`_PORT`, `KUBECONFIG` (when the
//! ServiceAccount token is mounted), service links (`<NAME>_SERVICE_HOST`/`_PORT`), the
//! image rule's `env` (placeholders `{pod_ip}`, `{pod_root}`, `{pod_name}`, `{pod_namespace}`,
//! `{container}`), then the container's `envFrom` and `env` (`value` with `$(VAR)`
//! expansion, `secretKeyRef`, `configMapKeyRef`, `fieldRef`, `resourceFieldRef`).
//!
//! **Path remapping.** A program cannot see `/etc/switchboard`; it sees
//! `<root>/etc/switchboard`, a link to the volume. Every argument and every `env` value that
//! is an absolute path at or below a mount path (or the termination message path, or the
//! ServiceAccount token directory) is rewritten to the same path under the root; so is the
//! part after the first `=` of an argument such as `--config=/etc/app/app.yaml`. Paths inside
//! files are the program's business: it gets its root in `DEVCLUSTER_POD_ROOT`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::process::Launch;
use super::volumes::object_data;
use crate::api::Core;
use crate::resources::ResourceKey;

/// Where the ServiceAccount token and CA appear in a container.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything about a Pod that its containers' processes need.
pub struct PodEnv<'a> {
    /// The Pod object.
    pub pod: &'a Value,
    /// The Pod's root directory.
    pub root: &'a Path,
    /// The Pod's IP.
    pub ip: std::net::Ipv4Addr,
    /// Base environment (runner-provided variables, service links).
    pub base: &'a [(String, String)],
    /// The Pod's kubeconfig, when its ServiceAccount token is mounted.
    pub kubeconfig: Option<&'a Path>,
}

/// Builds the process of `container` with the image rule `rule`.
pub fn launch(
    core: &Core,
    env: &PodEnv<'_>,
    container: &Value,
    rule: &super::ImageRule,
) -> Result<Launch, String> {
    let pod = env.pod;
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let cname = container.get("name").and_then(Value::as_str).unwrap_or("");
    let root = env.root.to_string_lossy().to_string();
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".into(), root.clone()),
        ("TMPDIR".into(), env.root.join("tmp").to_string_lossy().to_string()),
        ("HOSTNAME".into(), pod_name.to_string()),
        ("DEVCLUSTER_POD_ROOT".into(), root.clone()),
        ("DEVCLUSTER_POD_IP".into(), env.ip.to_string()),
    ];
    vars.extend(env.base.iter().cloned());
    if let Some(kc) = env.kubeconfig {
        vars.push(("KUBECONFIG".into(), kc.to_string_lossy().to_string()));
    }
    for (k, template) in &rule.env {
        let v = template
            .replace("{pod_ip}", &env.ip.to_string())
            .replace("{pod_root}", &root)
            .replace("{pod_name}", pod_name)
            .replace("{pod_namespace}", ns)
            .replace("{container}", cname);
        vars.push((k.clone(), v));
    }

    let mounts = mount_paths(pod, container);
    let mut declared: Vec<(String, String)> = Vec::new();
    for from in container.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
        let prefix = from.get("prefix").and_then(Value::as_str).unwrap_or("");
        let (kind, what) = if let Some(r) = from.get("configMapRef") {
            ("configmaps", r)
        } else if let Some(r) = from.get("secretRef") {
            ("secrets", r)
        } else {
            continue;
        };
        let name = what.get("name").and_then(Value::as_str).unwrap_or("");
        let optional = what.get("optional").and_then(Value::as_bool).unwrap_or(false);
        match object(core, kind, ns, name) {
            Some(obj) => {
                for (k, bytes) in object_data(&obj) {
                    let key = format!("{prefix}{k}");
                    if valid_env_name(&key) {
                        declared.push((key, String::from_utf8_lossy(&bytes).into_owned()));
                    }
                }
            }
            None if optional => {}
            None => return Err(format!("{} {name:?} not found", singular(kind))),
        }
    }
    for e in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            let known: BTreeMap<&str, &str> =
                vars.iter().chain(declared.iter()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Some(rewrite(&expand(v, &known), &mounts, env.root))
        } else if let Some(from) = e.get("valueFrom") {
            value_from(core, pod, container, ns, from)?
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            declared.retain(|(k, _)| *k != name);
            declared.push((name, v));
        }
    }
    vars.extend(declared);
    // The last definition of a name wins.
    let mut env_map: Vec<(String, String)> = Vec::new();
    for (k, v) in vars {
        env_map.retain(|(x, _)| *x != k);
        env_map.push((k, v));
    }

    let known: BTreeMap<&str, &str> =
        env_map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let list = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| rewrite(&expand(s, &known), &mounts, env.root))
                    .collect()
            })
            .unwrap_or_default()
    };
    let command = list("command");
    let args = list("args");
    let (program, args) = match (&rule.executable, command.split_first()) {
        (Some(exe), Some((_, rest))) => (exe.clone(), rest.iter().cloned().chain(args).collect()),
        (Some(exe), None) => (exe.clone(), args),
        (None, Some((first, rest))) => (
            find_program(first, &known)
                .ok_or_else(|| format!("executable {first:?} not found on PATH"))?,
            rest.iter().cloned().chain(args).collect(),
        ),
        (None, None) => {
            return Err(
                "the container has no command and its image rule names no executable".into()
            );
        }
    };
    let cwd = match container.get("workingDir").and_then(Value::as_str).filter(|w| !w.is_empty()) {
        Some(w) => super::volumes::under(env.root, w)?,
        None => env.root.to_path_buf(),
    };
    Ok(Launch { program, args, env: env_map, cwd })
}

fn singular(kind: &str) -> &str {
    if kind == "secrets" { "secret" } else { "configmap" }
}

fn object(core: &Core, resource: &str, ns: &str, name: &str) -> Option<Value> {
    core.store.get(&ResourceKey::new("", resource), ns, name).map(|o| o.value())
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn value_from(
    core: &Core,
    pod: &Value,
    container: &Value,
    ns: &str,
    from: &Value,
) -> Result<Option<String>, String> {
    for (field, resource) in [("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")] {
        let Some(r) = from.get(field) else { continue };
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let key = r.get("key").and_then(Value::as_str).unwrap_or("");
        let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let Some(obj) = object(core, resource, ns, name) else {
            return if optional {
                Ok(None)
            } else {
                Err(format!("{} {name:?} not found", singular(resource)))
            };
        };
        return match object_data(&obj).remove(key) {
            Some(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {} {ns}/{name}", singular(resource))),
        };
    }
    if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        return field_value(pod, path).map(Some);
    }
    if let Some(r) = from.get("resourceFieldRef") {
        return resource_value(container, r).map(Some);
    }
    Err("unsupported valueFrom".into())
}

/// The downward API value of a Pod field.
pub fn field_value(pod: &Value, path: &str) -> Result<String, String> {
    let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let bracket = |prefix: &str, map: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            pod.pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    let map_text = |map: &str| -> String {
        pod.pointer(&format!("/metadata/{map}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        format!("{k}={}", Value::String(v.as_str().unwrap_or("").to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "metadata.labels" => map_text("labels"),
        "metadata.annotations" => map_text("annotations"),
        "spec.nodeName" => s("/spec/nodeName"),
        "spec.serviceAccountName" => s("/spec/serviceAccountName"),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".into(),
        "status.podIP" | "status.podIPs" => s("/status/podIP"),
        _ => {
            if let Some(v) = bracket("metadata.labels['", "labels") {
                v
            } else if let Some(v) = bracket("metadata.annotations['", "annotations") {
                v
            } else {
                return Err(format!("unsupported fieldPath {path:?}"));
            }
        }
    })
}

/// `resourceFieldRef`: the container's request or limit, in units of the divisor.
fn resource_value(container: &Value, r: &Value) -> Result<String, String> {
    let resource = r.get("resource").and_then(Value::as_str).unwrap_or("");
    let (kind, name) =
        resource.split_once('.').ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let section = match kind {
        "limits" => "limits",
        "requests" => "requests",
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let quantity = container
        .pointer(&format!("/resources/{section}/{name}"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let divisor = r.get("divisor").and_then(Value::as_str).unwrap_or("1");
    let value = match (name, quantity) {
        ("cpu", Some(q)) => parse_quantity(&q) / parse_quantity(divisor),
        ("cpu", None) => 1.0 / parse_quantity(divisor).max(f64::MIN_POSITIVE),
        (_, Some(q)) => parse_quantity(&q) / parse_quantity(divisor),
        (_, None) => 0.0,
    };
    Ok(format!("{}", value.ceil() as i64))
}

fn parse_quantity(q: &str) -> f64 {
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (s, f) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().unwrap_or(0.0) * f;
        }
    }
    q.parse().unwrap_or(0.0)
}

/// `$(VAR)` expansion as Kubernetes does it: known variables are replaced, unknown ones are
/// left as written, `$$` is a literal `$`.
pub fn expand(s: &str, known: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match known.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container paths that are remapped into the root: mount paths, the termination
/// message path and the ServiceAccount token directory, longest first.
pub fn mount_paths(pod: &Value, container: &Value) -> Vec<String> {
    let mut out: Vec<String> = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("mountPath").and_then(Value::as_str))
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    out.push(
        container
            .get("terminationMessagePath")
            .and_then(Value::as_str)
            .unwrap_or("/dev/termination-log")
            .to_string(),
    );
    if super::pod::automount(pod) {
        out.push(TOKEN_DIR.to_string());
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out
}

/// Rewrites a value naming a path at or below one of `mounts` to the same path under
/// `root` (also after the first `=`, as in `--config=/etc/app/app.yaml`).
pub fn rewrite(value: &str, mounts: &[String], root: &Path) -> String {
    if let Some(p) = rewrite_path(value, mounts, root) {
        return p;
    }
    if let Some((k, v)) = value.split_once('=')
        && let Some(p) = rewrite_path(v, mounts, root)
    {
        return format!("{k}={p}");
    }
    value.to_string()
}

fn rewrite_path(value: &str, mounts: &[String], root: &Path) -> Option<String> {
    if !value.starts_with('/') {
        return None;
    }
    mounts.iter().find(|m| {
        !m.is_empty()
            && (value == m.as_str()
                || value.strip_prefix(m.as_str()).is_some_and(|r| r.starts_with('/')))
    })?;
    Some(root.join(value.trim_start_matches('/')).to_string_lossy().to_string())
}

fn find_program(name: &str, env: &BTreeMap<&str, &str>) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = env.get("PATH").copied().unwrap_or("/usr/bin:/bin");
    path.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_under_mounts_are_remapped_and_others_kept() {
        let mounts = vec!["/etc/switchboard".to_string(), "/dev/termination-log".to_string()];
        let root = Path::new("/tmp/pods/p/root");
        assert_eq!(
            rewrite("/etc/switchboard/worker.yaml", &mounts, root),
            "/tmp/pods/p/root/etc/switchboard/worker.yaml"
        );
        assert_eq!(rewrite("/etc/switchboard", &mounts, root), "/tmp/pods/p/root/etc/switchboard");
        assert_eq!(
            rewrite("--config=/etc/switchboard/w.yaml", &mounts, root),
            "--config=/tmp/pods/p/root/etc/switchboard/w.yaml"
        );
        assert_eq!(rewrite("/etc/switchboardx/w.yaml", &mounts, root), "/etc/switchboardx/w.yaml");
        assert_eq!(rewrite("/usr/bin/env", &mounts, root), "/usr/bin/env");
        assert_eq!(rewrite("worker", &mounts, root), "worker");
        assert_eq!(
            rewrite("/dev/termination-log", &mounts, root),
            "/tmp/pods/p/root/dev/termination-log"
        );
    }

    #[test]
    fn dollar_parens_expand_like_kubernetes() {
        let known = BTreeMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &known), "1-two");
        assert_eq!(expand("$(C) stays", &known), "$(C) stays");
        assert_eq!(expand("$$(A) is escaped", &known), "$(A) is escaped");
        assert_eq!(expand("cost $5", &known), "cost $5");
    }

    #[test]
    fn downward_api_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
            "status": {"podIP": "127.1.0.9"}});
        assert_eq!(field_value(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(field_value(&pod, "status.podIP").unwrap(), "127.1.0.9");
        assert_eq!(field_value(&pod, "metadata.labels['app']").unwrap(), "x");
        assert_eq!(field_value(&pod, "metadata.labels").unwrap(), "app=\"x\"");
        assert!(field_value(&pod, "spec.nope").is_err());
    }

    #[test]
    fn resource_fields_use_the_divisor() {
        let c = json!({"resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}});
        assert_eq!(
            resource_value(&c, &json!({"resource": "limits.cpu", "divisor": "1m"})).unwrap(),
            "500"
        );
        assert_eq!(resource_value(&c, &json!({"resource": "limits.cpu"})).unwrap(), "1");
        assert_eq!(
            resource_value(&c, &json!({"resource": "limits.memory", "divisor": "1Mi"})).unwrap(),
            "256"
        );
    }
}
