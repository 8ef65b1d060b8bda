//! HTTP: routing of Kubernetes URLs, authentication, RBAC, content negotiation, watch
//! streaming, and the listener that serves plain HTTP and HTTPS on one port.
//!
//! ```text
//!  TCP ──peek──▶ TLS handshake? ──▶ hyper HTTP/1.1 ──▶ axum fallback ──▶ handle()
//!  handle: authenticate (bearer token, impersonation) ──▶ route (discovery | openapi | resource)
//!          resource: RBAC attributes ──▶ authorize ──▶ Core verb ──▶ JSON / Table / watch stream
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use crate::api::{
    Core, DeleteOptions, FieldValidation, ListOptions, PatchType, Propagation, Subresource,
    WriteOptions,
};
use crate::auth::{Tokens, UserInfo};
use crate::error::ApiError;
use crate::rbac::{Attributes, authorize};
use crate::resources::Resource;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, StoredObject};
use crate::table::{IncludeObject, wants_table};

/// Shared state of the HTTP layer.
pub struct AppState {
    /// The API.
    pub core: Arc<Core>,
    /// Token checks.
    pub tokens: Arc<Tokens>,
    /// `host:port` the server is reachable at.
    pub address: String,
    /// How often watches get a bookmark.
    pub bookmark_interval: Duration,
    /// Where the pod runner keeps Pod directories (for `pods/<name>/log`).
    pub pods_root: std::path::PathBuf,
}

type Query = HashMap<String, String>;

fn json_response(
    code: StatusCode,
    body: Bytes,
    content_type: &str,
    warnings: &[String],
) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", Value::String(w.clone()))) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

fn ok_json(v: &Value) -> Response {
    json_response(StatusCode::OK, Bytes::from(v.to_string()), "application/json", &[])
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, Bytes::from(e.status().to_string()), "application/json", &[])
}

/// The axum router.
pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Query = req.uri().query().map(url_decode_pairs).unwrap_or_default();
    let raw_query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::BadRequest(format!("reading the request body: {e}")));
        }
    };
    match route(&st, &method, &path, &query, raw_query.as_deref(), &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code(), "request failed");
            error_response(&e)
        }
    }
}

fn url_decode_pairs(q: &str) -> Query {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let auth = header_str(headers, "authorization");
    let token = auth.strip_prefix("Bearer ").ok_or(ApiError::Unauthorized)?;
    let user =
        st.tokens.authenticate(token.trim(), &st.core.store).ok_or(ApiError::Unauthorized)?;
    let imp = header_str(headers, "impersonate-user");
    if imp.is_empty() {
        return Ok(user);
    }
    if !user.is_admin() {
        return Err(ApiError::Forbidden {
            subject: crate::error::Subject {
                resource: "users".into(),
                name: imp.to_string(),
                ..Default::default()
            },
            detail: format!(
                "User {:?} cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                user.name
            ),
        });
    }
    let mut target =
        match imp.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
            Some((ns, name)) => UserInfo::service_account(ns, name),
            None => UserInfo { name: imp.to_string(), groups: vec!["system:authenticated".into()] },
        };
    for g in headers.get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok()) {
        if !target.groups.iter().any(|x| x == g) {
            target.groups.push(g.to_string());
        }
    }
    Ok(target)
}

fn non_resource_check(st: &AppState, user: &UserInfo, path: &str) -> Result<(), ApiError> {
    let a = Attributes { verb: "get".into(), path: path.to_string(), ..Default::default() };
    if authorize(&st.core.store, user, &a) {
        Ok(())
    } else {
        Err(ApiError::Forbidden { subject: Default::default(), detail: a.denial(user) })
    }
}

async fn route(
    st: &Arc<AppState>,
    method: &Method,
    path: &str,
    query: &Query,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    if matches!(segs.as_slice(), ["healthz"] | ["livez"] | ["readyz"]) {
        return Ok(json_response(StatusCode::OK, Bytes::from_static(b"ok"), "text/plain", &[]));
    }
    if segs.as_slice() == ["version"] {
        return Ok(ok_json(&crate::discovery::version()));
    }
    let user = authenticate(st, headers)?;
    if let Some(target) = crate::proxy::parse_pod_proxy(path) {
        return pod_proxy(st, &user, method, &target, raw_query, headers, body).await;
    }
    let accept = header_str(headers, "accept");
    let reg = &st.core.registry;
    match segs.as_slice() {
        ["api"] | ["apis"] => {
            non_resource_check(st, &user, path)?;
            let core = segs[0] == "api";
            if crate::discovery::wants_aggregated(accept) {
                let doc = crate::discovery::aggregated(reg, core);
                return Ok(json_response(
                    StatusCode::OK,
                    Bytes::from(doc.to_string()),
                    crate::discovery::AGGREGATED_V2,
                    &[],
                ));
            }
            let doc = if core {
                crate::discovery::core_versions(&st.address)
            } else {
                crate::discovery::group_list(reg)
            };
            Ok(ok_json(&doc))
        }
        ["apis", g] => {
            non_resource_check(st, &user, path)?;
            crate::discovery::group(reg, g).map(|d| ok_json(&d)).ok_or(ApiError::NoRoute)
        }
        ["api", v] | ["apis", _, v] if method == Method::GET => {
            non_resource_check(st, &user, path)?;
            let g = if segs[0] == "api" { "" } else { segs[1] };
            crate::discovery::resource_list(reg, g, v).map(|d| ok_json(&d)).ok_or(ApiError::NoRoute)
        }
        ["openapi", "v3"] => {
            non_resource_check(st, &user, path)?;
            Ok(ok_json(&crate::openapi::index(reg)))
        }
        ["openapi", "v3", "api", v] | ["openapi", "v3", "apis", _, v] => {
            non_resource_check(st, &user, path)?;
            let g = if segs[2] == "api" { "" } else { segs[3] };
            crate::openapi::document(reg, g, v).map(|d| ok_json(&d)).ok_or(ApiError::NoRoute)
        }
        ["api", "v1", rest @ ..] => {
            resource_request(st, &user, method, "", "v1", rest, query, headers, body).await
        }
        ["apis", g, v, rest @ ..] => {
            resource_request(st, &user, method, g, v, rest, query, headers, body).await
        }
        _ => {
            non_resource_check(st, &user, path)?;
            Err(ApiError::NoRoute)
        }
    }
}

struct Target<'a> {
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(rest: &'a [&'a str]) -> Option<Target<'a>> {
    let mut rest = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !matches!(rest[2], "status" | "finalize")
    {
        namespace = Some(rest[1]);
        rest = &rest[2..];
    }
    match rest {
        [resource] => Some(Target { namespace, resource, name: None, sub: None }),
        [resource, name] => Some(Target { namespace, resource, name: Some(name), sub: None }),
        [resource, name, sub] => {
            Some(Target { namespace, resource, name: Some(name), sub: Some(sub) })
        }
        _ => None,
    }
}

fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other}; must be one of Ignore, Warn or Strict"
            )));
        }
    };
    Ok(WriteOptions {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: q.get("fieldManager").cloned(),
        field_validation,
        force: q.get("force").is_some_and(|f| f == "true"),
    })
}

fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    Ok(ListOptions {
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::BadRequest)?,
        fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::BadRequest)?,
        limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

/// A YAML body, read as JSON when it is JSON (as clients such as kube-rs send apply patches):
/// JSON is YAML, and its own parser is several times faster.
fn yaml_or_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.trim_ascii_start().starts_with(b"{")
        && let Ok(value) = serde_json::from_slice(body)
    {
        return Ok(value);
    }
    yaml_serde::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let ct = header_str(headers, "content-type");
    if ct.contains("protobuf") {
        return crate::proto::decode_body(body)
            .map_err(|e| ApiError::UnsupportedMediaType(e.to_string()));
    }
    if ct.contains("yaml") {
        yaml_or_json(body)
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))
    }
}

fn agent(headers: &HeaderMap) -> String {
    let ua = header_str(headers, "user-agent");
    let first = ua.split('/').next().unwrap_or("").trim();
    if first.is_empty() { "unknown".into() } else { first.to_string() }
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    st: &Arc<AppState>,
    user: &UserInfo,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = parse_target(rest).ok_or(ApiError::NoRoute)?;
    let res = st.core.registry.get(group, version, target.resource).ok_or(ApiError::NoRoute)?;
    let ns = if res.namespaced { target.namespace.unwrap_or("") } else { "" };
    if !res.namespaced && target.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, target.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watching => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::POST, true) if target.sub.is_some() => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let sub = target.sub.unwrap_or("");
    let attrs = Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: res.plural.clone(),
        subresource: sub.into(),
        name: target.name.unwrap_or("").into(),
        namespace: ns.into(),
        path: String::new(),
    };
    if !authorize(&st.core.store, user, &attrs) {
        let mut subject = res.subject(target.name.unwrap_or(""));
        if !sub.is_empty() {
            subject.resource = format!("{}/{sub}", res.plural);
        }
        return Err(ApiError::Forbidden { subject, detail: attrs.denial(user) });
    }
    if res.namespaced && ns.is_empty() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::NoRoute);
    }
    if !res.verbs.contains(&verb) {
        return Err(ApiError::MethodNotAllowed);
    }
    if crate::builtin::is_virtual(&res) {
        let body = parse_body(headers, &body)?;
        return review(st, user, &res, body);
    }
    let subresource = match sub {
        "" => Subresource::Main,
        "status" if res.status_subresource => Subresource::Status,
        "token" if res.kind == "ServiceAccount" && res.group.is_empty() && verb == "create" => {
            return token_request(st, ns, target.name.unwrap_or(""));
        }
        "log" if res.kind == "Pod" && res.group.is_empty() && verb == "get" => {
            return pod_log(st, ns, target.name.unwrap_or(""), q);
        }
        "scale" if res.scale_subresource => {
            return scale(st, &res, ns, target.name.unwrap_or(""), method, headers, &body, q, user);
        }
        _ => return Err(ApiError::NoRoute),
    };
    let core = &st.core;
    let accept = header_str(headers, "accept");
    let table = wants_table(accept);
    let include = match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    let agent = agent(headers);
    match verb {
        "get" => {
            let obj = core.get(&res, ns, target.name.unwrap_or(""))?;
            if table {
                let v = core.view(&res, &obj);
                let t = crate::table::table(&res, &[v], obj.rv, None, include);
                return Ok(ok_json(&t));
            }
            Ok(json_response(StatusCode::OK, core.present(&res, &obj), "application/json", &[]))
        }
        "list" => {
            let opts = list_options(q)?;
            let page = core.list(&res, target.namespace.filter(|_| res.namespaced), &opts)?;
            if table {
                let values: Vec<Value> = page.items.iter().map(|o| core.view(&res, o)).collect();
                let t = crate::table::table(
                    &res,
                    &values,
                    page.rv,
                    page.continue_token.as_deref(),
                    include,
                );
                return Ok(ok_json(&t));
            }
            Ok(json_response(StatusCode::OK, list_body(core, &res, &page), "application/json", &[]))
        }
        "watch" => Ok(watch(
            st.clone(),
            res.clone(),
            target.namespace.filter(|_| res.namespaced).map(str::to_string),
            q,
            table,
            include,
        )?),
        "create" => {
            let body = parse_body(headers, &body)?;
            let w = core.create(&res, ns, body, &write_options(q)?, &agent)?;
            Ok(json_response(StatusCode::CREATED, w.body(), "application/json", &w.warnings))
        }
        "update" => {
            let body = parse_body(headers, &body)?;
            let w = core.update(
                &res,
                ns,
                target.name.unwrap_or(""),
                body,
                &write_options(q)?,
                subresource,
                &agent,
            )?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(json_response(code, w.body(), "application/json", &w.warnings))
        }
        "patch" => {
            let ct = header_str(headers, "content-type");
            let kind = match ct.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" => PatchType::Apply,
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                    )));
                }
            };
            let patch: Value = if kind == PatchType::Apply {
                yaml_or_json(&body)?
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?
            };
            let w = core.patch(
                &res,
                ns,
                target.name.unwrap_or(""),
                kind,
                &patch,
                &write_options(q)?,
                subresource,
                &agent,
            )?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(json_response(code, w.body(), "application/json", &w.warnings))
        }
        "delete" => {
            let opts = delete_options(q, headers, &body)?;
            let (obj, pending) = core.delete(&res, ns, target.name.unwrap_or(""), &opts)?;
            let code = if pending { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok(json_response(code, Bytes::from(obj.to_string()), "application/json", &[]))
        }
        "deletecollection" => {
            let opts = delete_options(q, headers, &body)?;
            let deleted = core.delete_collection(
                &res,
                target.namespace.filter(|_| res.namespaced),
                &list_options(q)?,
                &opts,
            )?;
            let list = json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": {}, "items": deleted});
            Ok(ok_json(&list))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn list_body(core: &Core, res: &Resource, page: &crate::api::ListPage) -> Bytes {
    let mut meta = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let head = json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": meta})
        .to_string();
    let mut out = BytesMut::with_capacity(
        head.len() + page.items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 16,
    );
    out.put_slice(&head.as_bytes()[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&core.present(res, item));
    }
    out.put_slice(b"]}");
    out.freeze()
}

fn delete_options(q: &Query, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let b = parse_body(headers, body)?;
    let propagation = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| b.get("propagationPolicy").and_then(Value::as_str).map(str::to_string))
        .or_else(|| match b.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Some("Orphan".into()),
            _ => None,
        });
    let propagation = match propagation.as_deref() {
        None | Some("") => None,
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::BadRequest(format!("unsupported propagationPolicy {other:?}")));
        }
    };
    let dry = q.get("dryRun").is_some_and(|d| d == "All")
        || b.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|d| d == "All"));
    Ok(DeleteOptions {
        propagation,
        uid: b.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        resource_version: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry,
    })
}

fn review(
    st: &AppState,
    user: &UserInfo,
    res: &Resource,
    mut body: Value,
) -> Result<Response, ApiError> {
    let who = match res.kind.as_str() {
        "SubjectAccessReview" => UserInfo {
            name: body.pointer("/spec/user").and_then(Value::as_str).unwrap_or("").to_string(),
            groups: body
                .pointer("/spec/groups")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        },
        "SelfSubjectReview" => {
            let out = json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {"username": user.name, "groups": user.groups}}});
            return Ok(json_response(
                StatusCode::CREATED,
                Bytes::from(out.to_string()),
                "application/json",
                &[],
            ));
        }
        _ => user.clone(),
    };
    let attrs = if let Some(ra) = body.pointer("/spec/resourceAttributes") {
        let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Attributes {
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            name: s("name"),
            namespace: s("namespace"),
            path: String::new(),
        }
    } else if let Some(nra) = body.pointer("/spec/nonResourceAttributes") {
        Attributes {
            verb: nra.get("verb").and_then(Value::as_str).unwrap_or("").to_string(),
            path: nra.get("path").and_then(Value::as_str).unwrap_or("").to_string(),
            ..Default::default()
        }
    } else {
        return Err(ApiError::invalid(res.subject(""), vec![crate::schema::Cause {
            field: "spec.resourceAttributes".into(),
            kind: crate::schema::CauseType::Required,
            message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        }]));
    };
    let allowed = authorize(&st.core.store, &who, &attrs);
    let mut status = json!({"allowed": allowed});
    if allowed && !who.is_admin() {
        status["reason"] = json!("allowed by RBAC");
    }
    body["status"] = status;
    body["apiVersion"] = json!(res.api_version());
    body["kind"] = json!(res.kind);
    if body.get("metadata").is_none() {
        body["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(json_response(StatusCode::CREATED, Bytes::from(body.to_string()), "application/json", &[]))
}

/// `pods/<id>/proxy/...`: RBAC on the `proxy` subresource, then the request relayed to the pod.
async fn pod_proxy(
    st: &AppState,
    user: &UserInfo,
    method: &Method,
    target: &crate::proxy::PodProxyPath,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let verb = crate::proxy::proxy_verb(method).ok_or(ApiError::MethodNotAllowed)?;
    let pods = st.core.registry.get("", "v1", "pods").ok_or(ApiError::NoRoute)?;
    let attrs = Attributes {
        verb: verb.into(),
        group: String::new(),
        resource: "pods".into(),
        subresource: "proxy".into(),
        name: target.id.clone(),
        namespace: target.namespace.clone(),
        path: String::new(),
    };
    if !authorize(&st.core.store, user, &attrs) {
        let mut subject = pods.subject(&target.id);
        subject.resource = "pods/proxy".into();
        return Err(ApiError::Forbidden { subject, detail: attrs.denial(user) });
    }
    crate::proxy::pod_proxy(&st.core, target, method, raw_query, headers, body).await
}

/// `GET pods/<name>/log`: the container's output, whole or followed.
fn pod_log(st: &AppState, ns: &str, name: &str, q: &Query) -> Result<Response, ApiError> {
    let pods = st.core.registry.get("", "v1", "pods").ok_or(ApiError::NoRoute)?;
    let pod = st.core.get(&pods, ns, name)?.value();
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let since = match (number("sinceSeconds"), q.get("sinceTime")) {
        (Some(s), _) => Some(chrono::Utc::now() - chrono::Duration::seconds(s)),
        (None, Some(t)) => crate::clock::parse_time(t),
        _ => None,
    };
    let opts = crate::kubelet::logs::LogOptions {
        container: q.get("container").filter(|c| !c.is_empty()).cloned(),
        follow: flag("follow"),
        previous: flag("previous"),
        timestamps: flag("timestamps"),
        tail_lines: number("tailLines").and_then(|n| usize::try_from(n).ok()),
        limit_bytes: number("limitBytes").and_then(|n| usize::try_from(n).ok()),
        since,
    };
    let body = match crate::kubelet::logs::read(&st.core, &st.pods_root, &pod, opts)? {
        crate::kubelet::logs::LogBody::Whole(b) => Body::from(b),
        crate::kubelet::logs::LogBody::Stream(rx) => {
            Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
            }))
        }
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

fn token_request(st: &AppState, ns: &str, name: &str) -> Result<Response, ApiError> {
    let sa_res = st.core.registry.get("", "v1", "serviceaccounts").ok_or(ApiError::NoRoute)?;
    let sa = st.core.get(&sa_res, ns, name)?.value();
    let uid = sa.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let token = st.tokens.service_account_token(ns, name, uid);
    let expiry = (chrono::Utc::now() + chrono::Duration::days(365))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": 31536000},
        "status": {"token": token, "expirationTimestamp": expiry}
    });
    Ok(json_response(StatusCode::CREATED, Bytes::from(out.to_string()), "application/json", &[]))
}

#[allow(clippy::too_many_arguments)]
fn scale(
    st: &AppState,
    res: &Resource,
    ns: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    q: &Query,
    _user: &UserInfo,
) -> Result<Response, ApiError> {
    let core = &st.core;
    let to_scale = |obj: &Value| {
        let selector = obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": obj.pointer("/metadata/name"), "namespace": obj.pointer("/metadata/namespace"),
                "uid": obj.pointer("/metadata/uid"), "resourceVersion": obj.pointer("/metadata/resourceVersion"),
                "creationTimestamp": obj.pointer("/metadata/creationTimestamp")},
            "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
            "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}
        })
    };
    let current = core.get(res, ns, name)?.value();
    if method == Method::GET {
        return Ok(ok_json(&to_scale(&current)));
    }
    let mut scale_obj = to_scale(&current);
    let input = parse_body(headers, body)?;
    if method == Method::PUT {
        scale_obj = input;
    } else {
        let ct = header_str(headers, "content-type");
        let r = if ct.starts_with("application/json-patch+json") {
            crate::patch::json_patch(&mut scale_obj, &input)
        } else {
            crate::patch::merge_patch(&mut scale_obj, &input)
        };
        r.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let replicas = scale_obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    let patch = json!({"spec": {"replicas": replicas}});
    let w = core.patch(
        res,
        ns,
        name,
        PatchType::Merge,
        &patch,
        &write_options(q)?,
        Subresource::Main,
        &agent(headers),
    )?;
    Ok(ok_json(&to_scale(&w.object)))
}

/// Watch parameters.
struct WatchSpec {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    rv: Option<u64>,
    initial: bool,
    bookmarks: bool,
    timeout: Option<Duration>,
    table: bool,
    include: IncludeObject,
}

fn watch(
    st: Arc<AppState>,
    res: Arc<Resource>,
    namespace: Option<String>,
    q: &Query,
    table: bool,
    include: IncludeObject,
) -> Result<Response, ApiError> {
    let opts = list_options(q)?;
    let rv_param = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv = match rv_param {
        "" | "0" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {n}")))?,
        ),
    };
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let spec = WatchSpec {
        namespace,
        labels: opts.labels,
        fields: opts.fields,
        rv: if send_initial { None } else { rv },
        initial: send_initial || rv.is_none(),
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true") || send_initial,
        timeout: q.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs),
        table,
        include,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(run_watch(st, res, spec, send_initial, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(r)
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(object.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(object);
    b.put_slice(b"}\n");
    b.freeze()
}

fn render(st: &AppState, res: &Resource, spec: &WatchSpec, obj: &StoredObject) -> Bytes {
    if spec.table {
        let v = st.core.view(res, obj);
        let mut t = crate::table::table(res, &[v], obj.rv, None, spec.include);
        if let Some(m) = t.get_mut("metadata") {
            *m = json!({"resourceVersion": obj.rv.to_string()});
        }
        return Bytes::from(t.to_string());
    }
    st.core.present(res, obj)
}

fn bookmark(res: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta});
    event_line("BOOKMARK", obj.to_string().as_bytes())
}

fn matches(core: &Core, res: &Resource, spec: &WatchSpec, ns: &str, obj: &StoredObject) -> bool {
    if spec.namespace.as_deref().is_some_and(|n| n != ns) {
        return false;
    }
    if spec.labels.is_empty() && spec.fields.is_empty() {
        return true;
    }
    if spec.fields.is_empty() {
        // Labels are kept with the stored object: no need to parse all of it per watcher.
        return spec.labels.matches_labels(obj.labels());
    }
    let v = core.view(res, obj);
    spec.labels.matches(&v) && spec.fields.matches(&v)
}

async fn run_watch(
    st: Arc<AppState>,
    res: Arc<Resource>,
    spec: WatchSpec,
    initial_bookmark: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let store = st.core.store.clone();
    let mut notify = store.subscribe();
    let key = res.key();
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut cursor = match spec.rv {
        Some(rv) => rv,
        None => {
            let (rv, items) = store.list(&key, spec.namespace.as_deref(), None);
            for (ns, _, obj) in items {
                if matches(&st.core, &res, &spec, &ns, &obj)
                    && tx.send(event_line("ADDED", &render(&st, &res, &spec, &obj))).await.is_err()
                {
                    return;
                }
            }
            if initial_bookmark && tx.send(bookmark(&res, rv, true)).await.is_err() {
                return;
            }
            rv
        }
    };
    let _ = spec.initial;
    loop {
        let events = match store.events_since(cursor) {
            Ok(e) => e,
            Err(floor) => {
                let err = ApiError::Gone(format!("too old resource version: {cursor} ({floor})"));
                let _ = tx.send(event_line("ERROR", err.status().to_string().as_bytes())).await;
                return;
            }
        };
        for e in events {
            cursor = e.rv;
            if e.key != key {
                continue;
            }
            let now_matches = matches(&st.core, &res, &spec, &e.namespace, &e.object);
            let before = e
                .previous
                .as_ref()
                .is_some_and(|p| matches(&st.core, &res, &spec, &e.namespace, p));
            let kind = match e.kind {
                EventType::Added if now_matches => "ADDED",
                EventType::Modified if now_matches && before => "MODIFIED",
                EventType::Modified if now_matches => "ADDED",
                EventType::Modified if before => "DELETED",
                EventType::Deleted if before || now_matches => "DELETED",
                _ => continue,
            };
            if tx.send(event_line(kind, &render(&st, &res, &spec, &e.object))).await.is_err() {
                return;
            }
        }
        let sleep = tokio::time::sleep(st.bookmark_interval);
        tokio::select! {
            changed = notify.changed() => {
                if changed.is_err() { return; }
            }
            _ = sleep => {
                if spec.bookmarks && tx.send(bookmark(&res, cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return,
            _ = tx.closed() => return,
        }
    }
}

/// Serves `router` on `listener` (plain HTTP and TLS, detected per connection) until
/// `shutdown` turns true; then every open connection, including watches, is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let router = router.clone();
                connections.spawn(async move {
                    let mut first = [0u8; 1];
                    let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let builder = hyper::server::conn::http1::Builder::new();
                    if is_tls {
                        let Ok(tls_stream) = acceptor.accept(stream).await else { return };
                        let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls_stream), service).with_upgrades().await;
                    } else {
                        let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades().await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_bodies_are_yaml_whether_or_not_they_are_json() {
        let json = yaml_or_json(br#" {"metadata": {"name": "a"}, "data": {"n": 1}}"#).unwrap();
        assert_eq!(json, serde_json::json!({"metadata": {"name": "a"}, "data": {"n": 1}}));
        // Flow-style YAML that is not JSON still reads as YAML.
        let flow = yaml_or_json(b"{metadata: {name: a}, data: {n: 1}}").unwrap();
        assert_eq!(flow, json);
        let block = yaml_or_json(b"metadata:\n  name: a\ndata:\n  n: 1\n").unwrap();
        assert_eq!(block, json);
        let bad = yaml_or_json(b"{metadata: [").unwrap_err();
        assert!(matches!(&bad, ApiError::BadRequest(m) if m.starts_with("error decoding YAML")));
    }
}
