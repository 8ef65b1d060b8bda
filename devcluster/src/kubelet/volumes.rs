//! Volumes, projected into the Pod's directory, and the mount links under its root.
//!
//! ```text
//!  <pod dir>/volumes/<volume>/             the volume's content
//!     ..2026_11_29_10_00_00.123_ab12/      one version of a Secret/ConfigMap/downward API
//!     ..data -> ..2026_11_29_...           swapped atomically on every change
//!     worker.yaml -> ..data/worker.yaml    what programs open
//!  <pod dir>/root/<mountPath> -> <pod dir>/volumes/<volume>[/<subPath>]
//! ```
//!
//! Secret, ConfigMap, downward API and projected volumes are written the way the kubelet's
//! atomic writer does, so a program re-reading a file sees either the old or the new content,
//! never a mix. They follow updates of their source objects. Secret files are never readable
//! by others or writable: their mode is the requested one masked to `0440` (at least
//! `0400`). `emptyDir` is a directory that lives as long as the Pod; `persistentVolumeClaim`
//! a directory per claim under the cluster directory that outlives Pods; `hostPath` a link
//! to the host path. Other volume types are refused.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::api::Core;
use crate::resources::ResourceKey;

/// Files of an atomically written volume: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Where a Pod's volumes live.
pub struct Layout<'a> {
    /// The Pod's directory.
    pub pod_dir: &'a Path,
    /// The Pod's root (mount paths are below it).
    pub root: &'a Path,
    /// The cluster's directory for claims.
    pub claims_dir: &'a Path,
}

/// Writes every volume of `pod` and links every mount; returns why it cannot (a missing
/// Secret or ConfigMap, an unsupported volume type).
pub fn project(core: &Core, pod: &Value, layout: &Layout<'_>) -> Result<(), String> {
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let volumes =
        pod.pointer("/spec/volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in &volumes {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let dir = layout.pod_dir.join("volumes").join(name);
        let target = if v.get("emptyDir").is_some() {
            ensure_dir(&dir)?;
            dir
        } else if let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) {
            PathBuf::from(path)
        } else if let Some(claim) =
            v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str)
        {
            let d = layout.claims_dir.join(ns).join(claim);
            ensure_dir(&d)?;
            d
        } else {
            let files = atomic_files(core, pod, ns, v)?;
            ensure_dir(&dir)?;
            write_atomic(&dir, &files).map_err(|e| format!("writing volume {name:?}: {e}"))?;
            dir
        };
        dirs.insert(name.to_string(), target);
    }
    for list in ["initContainers", "containers"] {
        for c in
            pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten()
        {
            for m in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
                let vol = m.get("name").and_then(Value::as_str).unwrap_or("");
                let path = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
                let Some(source) = dirs.get(vol) else {
                    return Err(format!("volumeMount {vol:?} names no volume of the pod"));
                };
                let source =
                    match m.get("subPath").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                        Some(sub) => {
                            let p = source.join(relative(sub)?);
                            if !p.exists() {
                                ensure_dir(&p)?;
                            }
                            p
                        }
                        None => source.clone(),
                    };
                link(&source, &under(layout.root, path)?)?;
            }
        }
    }
    Ok(())
}

/// `root` joined with an absolute container path (no `..`).
pub fn under(root: &Path, container_path: &str) -> Result<PathBuf, String> {
    Ok(root.join(relative(container_path)?))
}

fn relative(p: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(format!("path {p:?} must not contain '..'")),
        }
    }
    Ok(out)
}

fn ensure_dir(d: &Path) -> Result<(), String> {
    std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))
}

fn link(source: &Path, at: &Path) -> Result<(), String> {
    if std::fs::read_link(at).ok().as_deref() == Some(source) {
        return Ok(());
    }
    if let Some(parent) = at.parent() {
        ensure_dir(parent)?;
    }
    // An empty directory made for the Pod (its `tmp`) gives way to a mount.
    if std::fs::symlink_metadata(at).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir(at);
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(source, at).map_err(|e| format!("linking {}: {e}", at.display()))
}

fn get_object(core: &Core, resource: &str, ns: &str, name: &str) -> Option<Value> {
    core.store.get(&ResourceKey::new("", resource), ns, name).map(|o| o.value())
}

/// The key → bytes content of a ConfigMap (`data` and `binaryData`) or Secret (`data`).
pub fn object_data(obj: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = obj.get("kind").and_then(Value::as_str) == Some("Secret");
    for (k, v) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
        let Some(s) = v.as_str() else { continue };
        let bytes = if secret { b64.decode(s).unwrap_or_default() } else { s.as_bytes().to_vec() };
        out.insert(k.clone(), bytes);
    }
    for (k, v) in obj.get("binaryData").and_then(Value::as_object).into_iter().flatten() {
        if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
            out.insert(k.clone(), bytes);
        }
    }
    out
}

fn mode_of(v: Option<&Value>, default: u32) -> u32 {
    v.and_then(Value::as_u64).map(|m| m as u32).unwrap_or(default)
}

/// Secret files: never writable, never readable by others.
fn secret_mode(mode: u32) -> u32 {
    (mode & 0o440) | 0o400
}

fn from_object(
    out: &mut Files,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Value>,
    default_mode: u32,
    secret: bool,
    what: &str,
) -> Result<(), String> {
    let fix = |m: u32| if secret { secret_mode(m) } else { m };
    match items.and_then(Value::as_array) {
        Some(items) => {
            for item in items {
                let key = item.get("key").and_then(Value::as_str).unwrap_or("");
                let path = item.get("path").and_then(Value::as_str).unwrap_or(key);
                let Some(bytes) = data.get(key) else {
                    return Err(format!("{what} has no key {key:?}"));
                };
                relative(path)?;
                out.insert(
                    path.to_string(),
                    (bytes.clone(), fix(mode_of(item.get("mode"), default_mode))),
                );
            }
        }
        None => {
            for (k, bytes) in data {
                out.insert(k.clone(), (bytes.clone(), fix(default_mode)));
            }
        }
    }
    Ok(())
}

fn source_files(
    core: &Core,
    pod: &Value,
    ns: &str,
    source: &Value,
    default_mode: u32,
    out: &mut Files,
) -> Result<(), String> {
    let object_source = [("configMap", "configmaps", "configmap"), ("secret", "secrets", "secret")]
        .into_iter()
        .find_map(|(field, resource, what)| source.get(field).map(|s| (s, resource, what)));
    if let Some((src, resource, what)) = object_source {
        // Secret volumes name their object `secretName`, projected sources `name`.
        let name =
            src.get("secretName").or_else(|| src.get("name")).and_then(Value::as_str).unwrap_or("");
        let optional = src.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let mode = mode_of(src.get("defaultMode"), default_mode);
        let label = format!("{what} {name:?}");
        match get_object(core, resource, ns, name) {
            Some(obj) => {
                let secret = resource == "secrets";
                from_object(out, &object_data(&obj), src.get("items"), mode, secret, &label)?
            }
            None if optional => {}
            None => return Err(format!("{label} not found")),
        }
    } else if let Some(downward) = source.get("downwardAPI") {
        for item in downward.get("items").and_then(Value::as_array).into_iter().flatten() {
            let path = item.get("path").and_then(Value::as_str).unwrap_or("");
            relative(path)?;
            let Some(field) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
                return Err(format!("downwardAPI item {path:?}: only fieldRef is supported"));
            };
            let value = super::env::field_value(pod, field)?;
            out.insert(
                path.to_string(),
                (value.into_bytes(), mode_of(item.get("mode"), default_mode)),
            );
        }
    } else if source.get("serviceAccountToken").is_some() {
        // Written by the pod runner with the Pod's token (see `kubelet::pod`).
    } else {
        return Err("unsupported projected volume source".into());
    }
    Ok(())
}

fn atomic_files(core: &Core, pod: &Value, ns: &str, volume: &Value) -> Result<Files, String> {
    let mut files = Files::new();
    let name = volume.get("name").and_then(Value::as_str).unwrap_or("");
    if let Some(cm) = volume.get("configMap") {
        let wrapped = serde_json::json!({"configMap": cm});
        source_files(core, pod, ns, &wrapped, mode_of(cm.get("defaultMode"), 0o644), &mut files)?;
    } else if let Some(s) = volume.get("secret") {
        let wrapped = serde_json::json!({"secret": s});
        source_files(core, pod, ns, &wrapped, mode_of(s.get("defaultMode"), 0o644), &mut files)?;
    } else if let Some(d) = volume.get("downwardAPI") {
        let wrapped = serde_json::json!({"downwardAPI": d});
        source_files(core, pod, ns, &wrapped, mode_of(d.get("defaultMode"), 0o644), &mut files)?;
    } else if let Some(p) = volume.get("projected") {
        let mode = mode_of(p.get("defaultMode"), 0o644);
        for source in p.get("sources").and_then(Value::as_array).into_iter().flatten() {
            source_files(core, pod, ns, source, mode, &mut files)?;
        }
    } else {
        let kind = volume
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
            .unwrap_or_else(|| "unknown".into());
        return Err(format!(
            "volume {name:?}: volume type {kind:?} is not supported by devcluster"
        ));
    }
    Ok(files)
}

/// Writes `files` into `dir` atomically (a new version directory, then one rename of the
/// `..data` link); does nothing when the content is unchanged.
pub fn write_atomic(dir: &Path, files: &Files) -> std::io::Result<()> {
    let data = dir.join("..data");
    if std::fs::read_link(&data).is_ok() && same_content(&data, files) {
        return Ok(());
    }
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f").to_string();
    let version_name = format!("..{stamp}_{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let version = dir.join(&version_name);
    std::fs::create_dir_all(&version)?;
    std::fs::set_permissions(&version, std::fs::Permissions::from_mode(0o755))?;
    for (path, (bytes, mode)) in files {
        let file = version.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version_name, &tmp)?;
    std::fs::rename(&tmp, &data)?;
    // Top-level names point through ..data; stale ones and old versions go.
    let tops: std::collections::BTreeSet<String> =
        files.keys().filter_map(|p| p.split('/').next().map(str::to_string)).collect();
    for top in &tops {
        let at = dir.join(top);
        let want = PathBuf::from("..data").join(top);
        if std::fs::read_link(&at).ok() != Some(want.clone()) {
            let _ = std::fs::remove_file(&at);
            std::os::unix::fs::symlink(&want, &at)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name == "..data" || name == version_name {
            continue;
        }
        if name.starts_with("..") {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn same_content(data: &Path, files: &Files) -> bool {
    let mut seen = 0;
    for (path, (bytes, mode)) in files {
        let p = data.join(path);
        let Ok(meta) = std::fs::metadata(&p) else { return false };
        if meta.permissions().mode() & 0o7777 != *mode {
            return false;
        }
        match std::fs::read(&p) {
            Ok(b) if b == *bytes => seen += 1,
            _ => return false,
        }
    }
    count_files(data) == seen
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { count_files(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str, u32)]) -> Files {
        pairs.iter().map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m))).collect()
    }

    #[test]
    fn atomic_writes_swap_content_and_drop_removed_keys() {
        let dir = tempdir();
        write_atomic(&dir, &files(&[("a", "1", 0o644), ("b", "2", 0o400)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let mode = std::fs::metadata(dir.join("b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        write_atomic(&dir, &files(&[("a", "1", 0o644), ("b", "2", 0o400)])).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("..data")).unwrap(),
            first,
            "unchanged content is not rewritten"
        );
        write_atomic(&dir, &files(&[("a", "3", 0o644)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(!dir.join("b").exists());
        let versions = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name().to_string_lossy().to_string();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(versions, 1, "old versions are removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_modes_are_never_writable_or_world_readable() {
        assert_eq!(secret_mode(0o644), 0o440);
        assert_eq!(secret_mode(0o600), 0o400);
        assert_eq!(secret_mode(0o777), 0o440);
        assert_eq!(secret_mode(0o000), 0o400);
    }

    #[test]
    fn paths_with_dot_dot_are_refused() {
        assert!(under(Path::new("/r"), "/etc/../x").is_err());
        assert_eq!(under(Path::new("/r"), "/etc/app").unwrap(), PathBuf::from("/r/etc/app"));
    }

    fn tempdir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("devcluster-vol-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
