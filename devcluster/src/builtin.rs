//! The built-in kinds: their names and verbs, their k8s-openapi types, and their defaults.
//!
//! Built-in objects are stored as JSON, but every write is decoded into the k8s-openapi type
//! and encoded again ([`Codec`]). That rejects wrongly typed fields the way the API server's
//! decoder does and drops fields the type does not know (reported in strict mode). The same
//! types provide the schemas of the OpenAPI documents.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::resources::{ALL_VERBS, Resource, Validation};

/// Typed decoding and schema generation for one built-in kind.
#[derive(Clone, Copy)]
pub struct Codec {
    /// Decodes into the typed struct and encodes back to JSON.
    pub roundtrip: fn(&Value) -> Result<Value, String>,
    /// Adds the kind's schema (and its dependencies) to an OpenAPI generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn roundtrip<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, String> {
    // Decoding from a borrowed value copies only the strings, where `from_value` would need
    // the caller to clone the whole tree first.
    let typed = T::deserialize(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn schema_of<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

fn codec<T: Serialize + DeserializeOwned + schemars::JsonSchema>() -> Codec {
    Codec { roundtrip: roundtrip::<T>, schema: schema_of::<T> }
}

struct Spec {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    validation: Validation,
    verbs: &'static [&'static str],
}

impl Spec {
    fn stored(
        group: &'static str,
        plural: &'static str,
        kind: &'static str,
        namespaced: bool,
        codec: Codec,
    ) -> Self {
        let version = "v1";
        Spec {
            group,
            version,
            plural,
            kind,
            namespaced,
            short: &[],
            categories: &[],
            status: false,
            scale: false,
            validation: Validation::Builtin(codec),
            verbs: ALL_VERBS,
        }
    }
    fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short = s;
        self
    }
    fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }
    fn status(mut self) -> Self {
        self.status = true;
        self
    }
    fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
}

/// Every built-in resource.
pub fn resources() -> Vec<Resource> {
    use k8s_openapi::api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        batch::v1 as batch, coordination::v1 as coord, core::v1 as core, events::v1 as events,
        networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let rbac_group = "rbac.authorization.k8s.io";
    let specs = vec![
        Spec::stored("", "namespaces", "Namespace", false, codec::<core::Namespace>())
            .short(&["ns"])
            .status(),
        Spec::stored("", "secrets", "Secret", true, codec::<core::Secret>()),
        Spec::stored("", "configmaps", "ConfigMap", true, codec::<core::ConfigMap>())
            .short(&["cm"]),
        Spec::stored(
            "",
            "serviceaccounts",
            "ServiceAccount",
            true,
            codec::<core::ServiceAccount>(),
        )
        .short(&["sa"]),
        Spec::stored("", "services", "Service", true, codec::<core::Service>())
            .short(&["svc"])
            .all()
            .status(),
        Spec::stored("", "events", "Event", true, codec::<core::Event>()).short(&["ev"]),
        Spec::stored("", "pods", "Pod", true, codec::<core::Pod>()).short(&["po"]).all().status(),
        Spec::stored(
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            codec::<core::PersistentVolumeClaim>(),
        )
        .short(&["pvc"])
        .status(),
        Spec::stored("apps", "deployments", "Deployment", true, codec::<apps::Deployment>())
            .short(&["deploy"])
            .all()
            .status()
            .scale(),
        Spec::stored("apps", "replicasets", "ReplicaSet", true, codec::<apps::ReplicaSet>())
            .short(&["rs"])
            .all()
            .status()
            .scale(),
        Spec::stored("apps", "statefulsets", "StatefulSet", true, codec::<apps::StatefulSet>())
            .short(&["sts"])
            .all()
            .status()
            .scale(),
        Spec::stored("batch", "jobs", "Job", true, codec::<batch::Job>()).all().status(),
        Spec::stored("batch", "cronjobs", "CronJob", true, codec::<batch::CronJob>())
            .short(&["cj"])
            .all()
            .status(),
        Spec::stored(
            "policy",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            codec::<policy::PodDisruptionBudget>(),
        )
        .short(&["pdb"])
        .status(),
        Spec::stored("coordination.k8s.io", "leases", "Lease", true, codec::<coord::Lease>()),
        Spec::stored(rbac_group, "roles", "Role", true, codec::<rbac::Role>()),
        Spec::stored(rbac_group, "rolebindings", "RoleBinding", true, codec::<rbac::RoleBinding>()),
        Spec::stored(
            rbac_group,
            "clusterroles",
            "ClusterRole",
            false,
            codec::<rbac::ClusterRole>(),
        ),
        Spec::stored(
            rbac_group,
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            codec::<rbac::ClusterRoleBinding>(),
        ),
        Spec::stored(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            codec::<apiext::CustomResourceDefinition>(),
        )
        .short(&["crd", "crds"])
        .status(),
        Spec::stored(
            "networking.k8s.io",
            "networkpolicies",
            "NetworkPolicy",
            true,
            codec::<net::NetworkPolicy>(),
        )
        .short(&["netpol"]),
        Spec::stored("events.k8s.io", "events", "Event", true, codec::<events::Event>())
            .short(&["ev"]),
        Spec {
            verbs: &["create"],
            validation: Validation::Builtin(codec::<authz::SelfSubjectAccessReview>()),
            ..Spec::stored(
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
                codec::<authz::SelfSubjectAccessReview>(),
            )
        },
        Spec {
            verbs: &["create"],
            ..Spec::stored(
                "authorization.k8s.io",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
                codec::<authz::SubjectAccessReview>(),
            )
        },
        Spec {
            verbs: &["create"],
            ..Spec::stored(
                "authentication.k8s.io",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
                codec::<authn::SelfSubjectReview>(),
            )
        },
    ];
    specs
        .into_iter()
        .map(|s| Resource {
            group: s.group.to_string(),
            version: s.version.to_string(),
            plural: s.plural.to_string(),
            singular: s.kind.to_lowercase(),
            kind: s.kind.to_string(),
            list_kind: format!("{}List", s.kind),
            namespaced: s.namespaced,
            short_names: s.short.iter().map(|x| x.to_string()).collect(),
            categories: s.categories.iter().map(|x| x.to_string()).collect(),
            verbs: s.verbs.to_vec(),
            status_subresource: s.status,
            scale_subresource: s.scale,
            storage_version: true,
            validation: if s.verbs == ALL_VERBS { s.validation } else { Validation::Virtual },
        })
        .collect()
}

/// Whether a resource is a review that is computed, never stored.
pub fn is_virtual(res: &Resource) -> bool {
    matches!(res.validation, Validation::Virtual)
}

/// The codec of a virtual (review) resource, for its OpenAPI schema.
pub fn virtual_codec(kind: &str) -> Option<Codec> {
    use k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz};
    match kind {
        "SelfSubjectAccessReview" => Some(codec::<authz::SelfSubjectAccessReview>()),
        "SubjectAccessReview" => Some(codec::<authz::SubjectAccessReview>()),
        "SelfSubjectReview" => Some(codec::<authn::SelfSubjectReview>()),
        _ => None,
    }
}

fn set_default(obj: &mut Value, path: &[&str], value: Value) {
    let mut node = obj;
    for (i, p) in path.iter().enumerate() {
        let Some(map) = node.as_object_mut() else { return };
        if i + 1 == path.len() {
            map.entry(p.to_string()).or_insert(value);
            return;
        }
        node = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn for_each_item(obj: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else {
        if let Some(items) = obj.as_array_mut() {
            items.iter_mut().for_each(&mut *f);
        }
        return;
    };
    if let Some(child) = obj.get_mut(*first) {
        for_each_item(child, rest, f);
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["securityContext"], json!({}));
    for list in ["containers", "initContainers"] {
        for_each_item(spec, &[list], &mut |c| {
            set_default(c, &["terminationMessagePath"], json!("/dev/termination-log"));
            set_default(c, &["terminationMessagePolicy"], json!("File"));
            let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                let tag = i.rsplit('/').next().unwrap_or(i);
                !tag.contains(':') || tag.ends_with(":latest")
            });
            set_default(
                c,
                &["imagePullPolicy"],
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            set_default(c, &["resources"], json!({}));
            for_each_item(c, &["ports"], &mut |p| set_default(p, &["protocol"], json!("TCP")));
        });
    }
}

fn default_template(obj: &mut Value, path: &[&str]) {
    let mut node = &mut *obj;
    for p in path {
        match node.get_mut(*p) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(spec) = node.get_mut("spec") {
        default_pod_spec(spec);
    }
}

/// Applies the API server's defaults for built-in kinds (the subset clients rely on).
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            set_default(obj, &["status", "phase"], json!("Pending"));
        }
        "Deployment" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            set_default(
                obj,
                &["spec", "strategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            default_template(obj, &["spec", "template"]);
        }
        "ReplicaSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            default_template(obj, &["spec", "template"]);
        }
        "StatefulSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(
                obj,
                &["spec", "updateStrategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(obj, &["spec", "template"]);
        }
        "Job" => {
            default_job_selector(obj);
            set_default(obj, &["spec", "backoffLimit"], json!(6));
            set_default(obj, &["spec", "completions"], json!(1));
            set_default(obj, &["spec", "parallelism"], json!(1));
            set_default(obj, &["spec", "completionMode"], json!("NonIndexed"));
            set_default(obj, &["spec", "suspend"], json!(false));
            default_template(obj, &["spec", "template"]);
        }
        "CronJob" => {
            set_default(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
            set_default(obj, &["spec", "suspend"], json!(false));
            set_default(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
            set_default(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
            default_template(obj, &["spec", "jobTemplate", "spec", "template"]);
        }
        "Service" => {
            set_default(obj, &["spec", "type"], json!("ClusterIP"));
            set_default(obj, &["spec", "sessionAffinity"], json!("None"));
            if let Some(ip) = obj.pointer("/spec/clusterIP").cloned() {
                set_default(obj, &["spec", "clusterIPs"], json!([ip]));
            }
            for_each_item(obj, &["spec", "ports"], &mut |p| {
                set_default(p, &["protocol"], json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    set_default(p, &["targetPort"], port);
                }
            });
        }
        "Secret" => {
            set_default(obj, &["type"], json!("Opaque"));
            merge_string_data(obj);
        }
        "Namespace" => {
            set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            set_default(obj, &["status", "phase"], json!("Active"));
        }
        "PersistentVolumeClaim" => {
            set_default(obj, &["spec", "volumeMode"], json!("Filesystem"));
            set_default(obj, &["status", "phase"], json!("Pending"));
        }
        "PodDisruptionBudget" => {}
        _ => {}
    }
    if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string)
        && kind == "Namespace"
    {
        set_default(obj, &["metadata", "labels", "kubernetes.io/metadata.name"], json!(name));
    }
}

/// Jobs select their Pods by the Job's uid unless `spec.manualSelector` is set: the selector
/// and the template labels are generated from it (as the API server does on create).
fn default_job_selector(obj: &mut Value) {
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false);
    let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string)
    else {
        return;
    };
    if manual || obj.pointer("/spec/selector").is_some() || obj.pointer("/spec/template").is_none()
    {
        return;
    }
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        set_default(obj, &["spec", "template", "metadata", "labels", k], json!(v));
    }
}

/// Kind-specific checks beyond typing (the ones clients are known to rely on).
pub fn validate(kind: &str, obj: &Value) -> Vec<crate::schema::Cause> {
    use crate::schema::{Cause, CauseType};
    let mut causes = Vec::new();
    let mut require = |path: &str, field: &str| {
        let ptr = format!("/{}", path.replace('.', "/"));
        if obj.pointer(&ptr).is_none_or(Value::is_null) {
            causes.push(Cause {
                field: field.to_string(),
                kind: CauseType::Required,
                message: "Required value".into(),
            });
        }
    };
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            require("spec.selector", "spec.selector");
            require("spec.template.metadata.labels", "spec.template.metadata.labels");
        }
        "Pod" => require("spec.containers", "spec.containers"),
        "CronJob" => {
            require("spec.schedule", "spec.schedule");
            require("spec.jobTemplate", "spec.jobTemplate");
        }
        "Job" => require("spec.template.spec.containers", "spec.template.spec.containers"),
        "RoleBinding" | "ClusterRoleBinding" => require("roleRef", "roleRef"),
        _ => {}
    }
    if matches!(kind, "Deployment" | "ReplicaSet" | "StatefulSet")
        && let (Some(sel), Some(labels)) = (
            obj.pointer("/spec/selector/matchLabels").and_then(Value::as_object),
            obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object),
        )
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        causes.push(Cause {
            field: "spec.template.metadata.labels".into(),
            kind: CauseType::Invalid,
            message: format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                serde_json::to_string(labels).unwrap_or_default()
            ),
        });
    }
    if kind == "Pod" || matches!(kind, "Deployment" | "ReplicaSet" | "StatefulSet" | "Job") {
        let base = if kind == "Pod" { "/spec" } else { "/spec/template/spec" };
        if let Some(containers) =
            obj.pointer(&format!("{base}/containers")).and_then(Value::as_array)
        {
            let prefix = base.trim_start_matches('/').replace('/', ".");
            for (i, c) in containers.iter().enumerate() {
                for f in ["name", "image"] {
                    if c.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        causes.push(Cause {
                            field: format!("{prefix}.containers[{i}].{f}"),
                            kind: CauseType::Required,
                            message: "Required value".into(),
                        });
                    }
                }
            }
        }
    }
    causes
}

/// `stringData` is write-only: its entries are base64-encoded into `data` (overriding keys
/// there) and it is never stored, as the API server does.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(object) = secret.as_object_mut() else { return };
    let Some(Value::Object(strings)) = object.remove("stringData") else { return };
    let data = object.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

#[cfg(test)]
mod string_data_tests {
    use super::*;

    #[test]
    fn string_data_is_merged_into_data_and_not_stored() {
        let mut secret =
            json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "c": "x"}});
        apply_defaults("Secret", &mut secret);
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"a": "bmV3", "keep": "eA==", "c": "eA=="}})
        );
    }
}
