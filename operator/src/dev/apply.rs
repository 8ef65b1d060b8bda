//! Applying what `switchboard dev` was given: the CRDs first, then the manifests in
//! dependency order (Namespaces, ConfigMaps and Secrets, Credentials, OutboundMessages,
//! Integrations, Schedules), each with server-side apply as the `switchboard-dev` field
//! manager, like `kubectl apply --server-side`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;

use super::rbac::MANAGER;
use crate::manifest::ObjectSet;

/// Installs (or updates) the four CRDs.
pub async fn install_crds(client: &kube::Client) -> Result<usize, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crds = crate::api::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(crd)).await?;
    }
    Ok(crds.len())
}

/// The objects of a set in the order they are applied.
pub fn ordered(set: &ObjectSet) -> Vec<Value> {
    let mut out = Vec::new();
    let others = |kind: &'static str| -> Vec<Value> {
        set.others
            .iter()
            .filter(|o| o.raw.get("kind").and_then(Value::as_str) == Some(kind))
            .map(|o| o.raw.clone())
            .collect()
    };
    out.extend(others("Namespace"));
    out.extend(others("ConfigMap"));
    out.extend(set.secrets.iter().filter_map(|s| serde_json::to_value(&s.object).ok()));
    out.extend(set.credentials.iter().map(|o| o.raw.clone()));
    out.extend(set.outbound_messages.iter().map(|o| o.raw.clone()));
    out.extend(set.integrations.iter().map(|o| o.raw.clone()));
    out.extend(set.schedules.iter().map(|o| o.raw.clone()));
    out
}

fn resource_of(obj: &Value) -> Option<(ApiResource, bool)> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "ConfigMap" => ("configmaps", true),
        "Secret" => ("secrets", true),
        "Credential" => ("credentials", true),
        "OutboundMessage" => ("outboundmessages", true),
        "Integration" => ("integrations", true),
        "Schedule" => ("schedules", true),
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

/// Applies objects in order; returns how many were applied and why others were refused.
pub async fn apply_all(client: &kube::Client, objects: &[Value]) -> (usize, Vec<String>) {
    let mut applied = 0;
    let mut errors = Vec::new();
    for obj in objects {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let Some((ar, namespaced)) = resource_of(obj) else {
            errors.push(format!("{kind} {name}: not a kind switchboard dev applies"));
            continue;
        };
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        match api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await {
            Ok(_) => applied += 1,
            Err(kube::Error::Api(e)) => errors.push(format!("{kind} {ns}/{name}: {}", e.message)),
            Err(e) => errors.push(format!("{kind} {ns}/{name}: {e}")),
        }
    }
    (applied, errors)
}
