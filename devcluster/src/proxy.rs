//! The `pods/proxy` subresource: HTTP requests relayed through the API server to a Pod's
//! address, as `kubectl get --raw /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH` and
//! client libraries use it to reach a pod without a port-forward.
//!
//! ```text
//!  /api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy[/path][?query]
//!    ─▶ authenticate ─▶ RBAC: verb from the HTTP method (GET/HEAD get, POST create, PUT update,
//!       PATCH patch, DELETE delete) on resource pods, subresource proxy, name as written
//!       (`name:port`, as the API server's request info has it)
//!    ─▶ the Pod (404 when absent) ─▶ http://{podIP}:{port}/path?query   (no port: the first
//!       container port; none at all: port 80)
//!    ─▶ the backend's status, headers and body, streamed back
//! ```
//!
//! As upstream, the request's `Authorization` (the caller's API credentials) and
//! `Impersonate-*` headers are consumed by the API server and not forwarded, hop-by-hop headers
//! are dropped, and a backend that cannot be reached is a `503 ServiceUnavailable` Status.
//! Differences: `https:` backends are refused (400; upstream dials TLS without verification),
//! loopback pod addresses are allowed (every devcluster pod has one; upstream refuses them),
//! redirects and HTML links in answers are passed through unchanged (upstream rewrites
//! `Location` and links to go through the proxy again), and upgrades (WebSockets) are not
//! relayed.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::api::Core;
use crate::error::ApiError;

/// How long connecting to a pod and waiting for its answer's head may take.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed `pods/{id}/proxy/...` request path.
#[derive(Debug, PartialEq, Eq)]
pub struct PodProxyPath {
    /// Namespace.
    pub namespace: String,
    /// The id segment as written: `name`, `name:port` or `scheme:name:port`.
    pub id: String,
    /// The path after `/proxy`, starting with `/` (just `/` when there is none).
    pub path: String,
}

/// Recognise `/api/v1/namespaces/{ns}/pods/{id}/proxy[/path]`, keeping the path as written
/// (a trailing slash matters to the backend).
pub fn parse_pod_proxy(raw_path: &str) -> Option<PodProxyPath> {
    let rest = raw_path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("pods/")?;
    let (id, rest) = rest.split_once('/')?;
    let path = match rest.strip_prefix("proxy")? {
        "" => "/",
        p if p.starts_with('/') => p,
        _ => return None,
    };
    if namespace.is_empty() || id.is_empty() {
        return None;
    }
    Some(PodProxyPath { namespace: namespace.into(), id: id.into(), path: path.into() })
}

/// Split `[scheme:]name[:port]` as the API server does: `(scheme, name, port)`.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some((scheme, name, port))
}

/// The RBAC verb of a proxied request.
pub fn proxy_verb(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => return None,
    })
}

/// Where to send a request for `id` of `pod`: `host:port`.
fn backend_address(pod: &Value, id: &str) -> Result<String, ApiError> {
    let (scheme, _, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid pod request {id:?}")))?;
    if scheme == "https" {
        return Err(ApiError::BadRequest(
            "devcluster proxies plain HTTP only; https: backends are not supported".into(),
        ));
    }
    let ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("");
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::BadRequest("address not allowed".into()));
    }
    let port = if port.is_empty() {
        let first = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64))
            .next();
        first.map(|p| p.to_string()).unwrap_or_else(|| "80".into())
    } else {
        port.to_string()
    };
    if port.parse::<u16>().is_err() {
        return Err(ApiError::ServiceUnavailable(format!(
            "error trying to reach service: dial tcp: address {ip}:{port}: unknown port"
        )));
    }
    Ok(format!("{ip}:{port}"))
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Relay one request to the pod named by `target` and answer with the pod's answer.
pub async fn pod_proxy(
    core: &Core,
    target: &PodProxyPath,
    method: &Method,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, name, _) = split_scheme_name_port(&target.id)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid pod request {:?}", target.id)))?;
    let pods = core.registry.get("", "v1", "pods").ok_or(ApiError::NoRoute)?;
    let pod = core.get(&pods, &target.namespace, name)?.value();
    let address = backend_address(&pod, &target.id)?;
    let uri = match raw_query {
        Some(q) if !q.is_empty() => format!("{}?{q}", target.path),
        _ => target.path.clone(),
    };
    let mut request = hyper::Request::builder().method(method.clone()).uri(&uri);
    for (name, value) in headers {
        let lower = name.as_str();
        if hop_by_hop(lower)
            || lower == "host"
            || lower == "authorization"
            || lower.starts_with("impersonate-")
        {
            continue;
        }
        request = request.header(name, value);
    }
    let request = request
        .header(header::HOST, &address)
        .body(http_body_util::Full::new(body))
        .map_err(|e| ApiError::BadRequest(format!("invalid proxied request: {e}")))?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::ServiceUnavailable(format!("error trying to reach service: {e}"))
    };
    let response = tokio::time::timeout(BACKEND_TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| unreachable(&format!("dial tcp {address}: {e}")))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender.send_request(request).await.map_err(|e| unreachable(&e))
    })
    .await
    .map_err(|_| unreachable(&format!("dial tcp {address}: i/o timeout")))??;
    let (parts, incoming) = response.into_parts();
    let mut out = Response::new(Body::new(incoming));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            out.headers_mut().append(name, value.clone());
        }
    }
    if !out.headers().contains_key(header::CONTENT_TYPE) {
        out.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_keep_the_id_and_the_rest_as_written() {
        assert_eq!(
            parse_pod_proxy("/api/v1/namespaces/ns/pods/web-0:9090/proxy/v1/items/"),
            Some(PodProxyPath {
                namespace: "ns".into(),
                id: "web-0:9090".into(),
                path: "/v1/items/".into()
            })
        );
        assert_eq!(parse_pod_proxy("/api/v1/namespaces/ns/pods/web/proxy").unwrap().path, "/");
        assert_eq!(parse_pod_proxy("/api/v1/namespaces/ns/pods/web/proxyx"), None);
        assert_eq!(parse_pod_proxy("/api/v1/namespaces/ns/pods/web/log"), None);
        assert_eq!(parse_pod_proxy("/api/v1/namespaces/ns/services/web/proxy"), None);
    }

    #[test]
    fn ids_split_into_scheme_name_and_port() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:8080"), Some(("", "web", "8080")));
        assert_eq!(split_scheme_name_port("http:web:8080"), Some(("http", "web", "8080")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn the_port_defaults_to_the_first_container_port() {
        let pod = serde_json::json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": 9090}]}]},
            "status": {"podIP": "127.1.0.7"},
        });
        assert_eq!(backend_address(&pod, "web").unwrap(), "127.1.0.7:9090");
        assert_eq!(backend_address(&pod, "web:8080").unwrap(), "127.1.0.7:8080");
        assert_eq!(backend_address(&pod, "web:admin").unwrap_err().code(), 503);
        let pending = serde_json::json!({"spec": {"containers": []}, "status": {}});
        assert_eq!(backend_address(&pending, "web:80").unwrap_err().code(), 400);
    }
}
