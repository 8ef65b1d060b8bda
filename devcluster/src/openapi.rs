//! OpenAPI v3 documents: `/openapi/v3` (the index) and one document per group/version.
//!
//! Built-in schemas come from k8s-openapi's schemars implementations (named like upstream,
//! e.g. `io.k8s.api.apps.v1.Deployment`), annotated with `x-kubernetes-group-version-kind` and
//! with the patch merge keys of [`crate::patch::merge_key`]. CRD versions contribute their
//! `openAPIV3Schema` with `metadata` pointing at `ObjectMeta`. Each document also lists the
//! resource paths with their PATCH parameters, which is how kubectl learns that the server
//! validates fields itself (`fieldValidation`), and what `kubectl explain` reads.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, Resource, Validation};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The `/openapi/v3` index.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> =
        reg.all().iter().map(|r| (r.group.clone(), r.version.clone())).collect();
    gvs.dedup();
    for (g, v) in gvs {
        let p = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        let hash = document(reg, &g, &v).map(|d| short_hash(&d.to_string())).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn short_hash(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).iter().take(16).map(|b| format!("{b:02X}")).collect()
}

fn crd_schema_name(r: &Resource) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

fn gvk(r: &Resource) -> Value {
    json!([{"group": r.group, "version": r.version, "kind": r.kind}])
}

/// The document of one group/version.
pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<_> =
        reg.all().into_iter().filter(|r| r.group == group && r.version == version).collect();
    if resources.is_empty() {
        return None;
    }
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut top_names: Vec<(String, &Resource)> = Vec::new();
    let mut crd_schemas: Vec<(String, Value)> = Vec::new();
    for r in &resources {
        match &r.validation {
            Validation::Builtin(codec) => {
                let s = (codec.schema)(&mut generator);
                top_names.push((ref_name(s.as_value()), r));
            }
            Validation::Virtual => {
                if let Some(codec) = crate::builtin::virtual_codec(&r.kind) {
                    let s = (codec.schema)(&mut generator);
                    top_names.push((ref_name(s.as_value()), r));
                }
            }
            Validation::Custom(info) => {
                let _ = generator
                    .subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
                let mut schema = info.compiled.schema(&r.version).cloned().unwrap_or_else(
                    || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                );
                if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                    props.insert(
                        "metadata".into(),
                        json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
                    );
                    props.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                    props.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                }
                schema["x-kubernetes-group-version-kind"] = gvk(r);
                let name = crd_schema_name(r);
                crd_schemas.push((name.clone(), schema));
                top_names.push((name, r));
            }
        }
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (name, s) in crd_schemas {
        schemas.insert(name, s);
    }
    for (name, r) in &top_names {
        if let Some(s) = schemas.get_mut(name)
            && s.get("x-kubernetes-group-version-kind").is_none()
        {
            s["x-kubernetes-group-version-kind"] = gvk(r);
        }
    }
    for (name, s) in schemas.iter_mut() {
        if name.starts_with("io.k8s.") {
            annotate_merge_keys(s);
        }
    }
    let mut paths = Map::new();
    for (name, r) in &top_names {
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let schema_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        let response = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}});
        let gvk_one = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let write_params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let mut patch_params = write_params.as_array().cloned().unwrap_or_default();
        patch_params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
        if crate::builtin::is_virtual(r) {
            paths.insert(collection, json!({"post": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "post", "parameters": write_params, "responses": response}}));
            continue;
        }
        paths.insert(
            collection.clone(),
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "list", "responses": {"200": {"description": "OK"}}},
                "post": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "post", "parameters": write_params, "responses": response},
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "get", "responses": response},
                "put": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "put", "parameters": write_params, "responses": response},
                "patch": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "patch", "parameters": patch_params, "responses": response},
                "delete": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "delete", "responses": {"200": {"description": "OK"}}},
            }),
        );
        if r.status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"patch": {"x-kubernetes-group-version-kind": gvk_one, "x-kubernetes-action": "patch", "parameters": patch_params, "responses": response}}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn ref_name(v: &Value) -> String {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or("")
        .to_string()
}

/// Adds patch strategy, merge key and list-type hints to array properties of a built-in
/// schema, so clients compute strategic merge patches with the server's semantics.
fn annotate_merge_keys(schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, prop) in props.iter_mut() {
        if prop.get("type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        if crate::patch::is_merged_scalar_list(field) {
            prop["x-kubernetes-patch-strategy"] = json!("merge");
            prop["x-kubernetes-list-type"] = json!("set");
            continue;
        }
        let item_ref =
            prop.pointer("/items/$ref").and_then(Value::as_str).unwrap_or("").to_string();
        if item_ref.is_empty() {
            continue;
        }
        let sample = if item_ref.ends_with("ContainerPort") {
            json!({"containerPort": 0})
        } else {
            json!({})
        };
        if let Some(key) = crate::patch::merge_key(field, Some(&sample)) {
            prop["x-kubernetes-patch-merge-key"] = json!(key);
            prop["x-kubernetes-patch-strategy"] = json!("merge");
            prop["x-kubernetes-list-type"] = json!("map");
            let keys = match key {
                "containerPort" | "port" => json!([key, "protocol"]),
                k => json!([k]),
            };
            prop["x-kubernetes-list-map-keys"] = keys;
        }
    }
}
