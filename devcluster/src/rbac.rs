//! Authorization: RBAC over Roles, ClusterRoles and their bindings, as the API server does it.
//!
//! Every request is described by [`Attributes`] (verb, group, resource, subresource, name,
//! namespace — or a non-resource path). [`authorize`] collects the rules of every binding
//! whose subjects include the user (by name, group or ServiceAccount) and allows the request
//! if one rule covers it. `system:masters` bypasses RBAC. Like the default
//! `system:discovery`/`system:basic-user` bindings, discovery paths and self reviews are open
//! to every authenticated user.

use serde_json::Value;

use crate::auth::UserInfo;
use crate::resources::ResourceKey;
use crate::store::Store;

/// What a request does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Verb (`get`, `list`, `watch`, `create`, ...).
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`), or empty.
    pub subresource: String,
    /// Object name, or empty.
    pub name: String,
    /// Namespace, or empty for cluster scope.
    pub namespace: String,
    /// Non-resource path, when `resource` is empty.
    pub path: String,
}

impl Attributes {
    /// The message after `is forbidden: ` for a denied request.
    pub fn denial(&self, user: &UserInfo) -> String {
        if self.resource.is_empty() {
            return format!("User {:?} cannot {} path {:?}", user.name, self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, self.verb, self.group
        )
    }
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule, "verbs");
    if !verbs.iter().any(|v| v == "*" || *v == a.verb) {
        return false;
    }
    if a.resource.is_empty() {
        return strings(rule, "nonResourceURLs").iter().any(|u| {
            u == "*"
                || *u == a.path
                || u.strip_suffix('*').is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    let groups = strings(rule, "apiGroups");
    if !groups.iter().any(|g| g == "*" || *g == a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = strings(rule, "resources");
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
            || (a.subresource.is_empty() && *r == a.resource)
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name))
}

fn role_rules(store: &Store, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let (key, ns) = match kind {
        "ClusterRole" => (ResourceKey::new("rbac.authorization.k8s.io", "clusterroles"), ""),
        "Role" => (ResourceKey::new("rbac.authorization.k8s.io", "roles"), binding_ns),
        _ => return Vec::new(),
    };
    store
        .get(&key, ns, name)
        .and_then(|r| r.value().get("rules").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Paths every authenticated user may read (the default discovery roles).
fn public_path(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz" | "/api" | "/apis")
        || path.starts_with("/api/")
        || path.starts_with("/apis/")
        || path.starts_with("/openapi/")
        || path.starts_with("/version/")
}

/// Whether `user` may do what `a` describes.
pub fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.is_admin() {
        return true;
    }
    if a.resource.is_empty() && a.verb == "get" && public_path(&a.path) {
        return true;
    }
    if a.verb == "create"
        && ((a.group == "authorization.k8s.io" && a.resource == "selfsubjectaccessreviews")
            || (a.group == "authentication.k8s.io" && a.resource == "selfsubjectreviews"))
    {
        return true;
    }
    let crb = ResourceKey::new("rbac.authorization.k8s.io", "clusterrolebindings");
    for (_, _, b) in store.list(&crb, None, None).1 {
        let b = b.value();
        let subjects = b.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, user, ""))
            && role_rules(store, &b["roleRef"], "").iter().any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    if a.namespace.is_empty() {
        return false;
    }
    let rb = ResourceKey::new("rbac.authorization.k8s.io", "rolebindings");
    for (_, _, b) in store.list(&rb, Some(&a.namespace), None).1 {
        let b = b.value();
        let subjects = b.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, user, &a.namespace))
            && role_rules(store, &b["roleRef"], &a.namespace).iter().any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    false
}
