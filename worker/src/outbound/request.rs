//! Building the HTTP request of one call from an [`OutboundCall`] and its variables.
//!
//! ```text
//!  endpoint.url (fixed scheme, host, port, base path — never templated)
//!    + method.path   rendered per segment  ──┐
//!    + method.query  rendered per component ─┼─▶ PreparedRequest ─▶ (delivery adds the
//!    + method.headers rendered, CR/LF refused┤      credential, Idempotency-Key and
//!    + method.body   JSON / XML / form / text┘      signature per attempt)
//!      (SOAP: wrapped in the 1.1 or 1.2 envelope, SOAPAction or action=)
//! ```
//!
//! A prepared request holds no credential, so it can be rendered once per delivery and
//! reused by every attempt; [`PreparedRequest::url`] adds what an API key placed in the
//! query or the URL needs at attempt time, and checks that the result still points at the
//! endpoint's scheme, host and port.

use std::collections::BTreeMap;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::soap::{self, SoapVersion};
use super::template::{Encoding, Template, TemplateError, Variables, header_forbidden};
use super::xml::{XmlError, XmlLimits, check_well_formed};
use crate::config::{MethodConfig, OutboundCall};

/// Headers a method may not set (connection management belongs to the client).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
];

/// Why a request could not be built. Messages never contain variable values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A template did not parse or render.
    #[error("{part}: {source}")]
    Template {
        /// Which part (`path`, `query "q"`, `header "X"`, `body`).
        part: String,
        /// What went wrong.
        source: TemplateError,
    },
    /// The endpoint URL is not usable.
    #[error("endpoint URL is invalid: {reason}")]
    Endpoint {
        /// What is wrong.
        reason: String,
    },
    /// The method is not usable (HTTP method, path, protocol, SOAP settings).
    #[error("method {method:?} is invalid: {reason}")]
    Method {
        /// Method name.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// A rendered XML or SOAP body is refused.
    #[error("rendered XML body is refused: {0}")]
    Xml(#[from] XmlError),
}

impl RequestError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            RequestError::Template { .. } => "template",
            RequestError::Xml(_) => "xml",
            RequestError::Endpoint { .. } | RequestError::Method { .. } => "config",
        }
    }
}

/// How the body was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON.
    Json,
    /// XML (plain).
    Xml,
    /// A SOAP envelope.
    Soap(SoapVersion),
    /// `application/x-www-form-urlencoded`.
    Form,
    /// Anything else.
    Text,
}

/// A rendered request, without credentials.
#[derive(Clone)]
pub struct PreparedRequest {
    /// HTTP method.
    pub method: reqwest::Method,
    /// The endpoint (fixed part).
    pub endpoint: url::Url,
    /// Rendered method path (starts with `/`).
    pub path: String,
    /// Rendered, encoded query pairs.
    pub query: Vec<(String, String)>,
    /// Rendered headers, including the content type.
    pub headers: HeaderMap,
    /// Rendered body.
    pub body: Option<Vec<u8>>,
    /// How the body is encoded.
    pub body_kind: Option<BodyKind>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Rendered values may carry personal data: only the shape is shown.
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint.as_str())
            .field("query_parameters", &self.query.len())
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("body_kind", &self.body_kind)
            .finish()
    }
}

impl PreparedRequest {
    /// The full URL: endpoint, then `rest` (the secret rest of an incoming-webhook URL, path
    /// and optional query), then the method path (a bare `/` adds nothing after a `rest`),
    /// then the query with `extra` appended.
    pub fn url(
        &self,
        rest: Option<&str>,
        extra: Option<(&str, &str)>,
    ) -> Result<url::Url, RequestError> {
        let invalid = |reason: &str| RequestError::Endpoint { reason: reason.to_string() };
        let mut url = self.endpoint.clone();
        let base = self.endpoint.path().trim_end_matches('/');
        let mut path = base.to_string();
        let mut query: Vec<String> = Vec::new();
        if let Some(rest) = rest {
            let (rest_path, rest_query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let rest_path = rest_path.trim_end_matches('/');
            if !rest_path.is_empty() {
                if !rest_path.starts_with('/') {
                    path.push('/');
                }
                path.push_str(rest_path);
            }
            if let Some(q) = rest_query.filter(|q| !q.is_empty()) {
                query.push(q.to_string());
            }
            if self.path != "/" {
                path.push_str(&self.path);
            }
        } else {
            path.push_str(&self.path);
        }
        if path.is_empty() {
            path.push('/');
        }
        if path.contains("//")
            || path.contains('#')
            || path.contains('\\')
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
            || path.split('/').any(is_dot_segment)
            || query
                .iter()
                .any(|q| q.contains('#') || q.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid("the URL path or its secret rest has an unsafe shape"));
        }
        url.set_path(&path);
        for (k, v) in &self.query {
            query.push(format!("{k}={v}"));
        }
        if let Some((name, value)) = extra {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, super::template::COMPONENT).to_string()
            };
            query.push(format!("{}={}", enc(name), enc(value)));
        }
        let joined = query.join("&");
        url.set_query(if query.is_empty() { None } else { Some(&joined) });
        if url.scheme() != self.endpoint.scheme()
            || url.host() != self.endpoint.host()
            || url.port_or_known_default() != self.endpoint.port_or_known_default()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(invalid("the URL would leave the endpoint's scheme, host or port"));
        }
        Ok(url)
    }
}

fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    matches!(lower.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
}

/// Parse the endpoint URL and check that it is fixed (http/https, a host, nothing templated,
/// no user info, query or fragment).
pub fn parse_endpoint(url: &str) -> Result<url::Url, RequestError> {
    let invalid = |reason: &str| RequestError::Endpoint { reason: reason.to_string() };
    if url.contains("${") {
        return Err(invalid("the endpoint may not contain ${...} templates"));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host().is_none() {
        return Err(invalid("the endpoint has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("the endpoint may not carry user info"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("the endpoint may not carry a query or fragment"));
    }
    Ok(parsed)
}

/// The templates of one method, parsed.
struct MethodTemplates {
    path: Template,
    query: Vec<(String, Template)>,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Template>,
    content_type: Option<String>,
    body_kind: Option<BodyKind>,
    soap_action: Option<String>,
}

fn parse_method(call: &OutboundCall) -> Result<MethodTemplates, RequestError> {
    let method = &call.method;
    let bad = |reason: String| RequestError::Method { method: method.name.clone(), reason };
    let template = |part: String, source: &str, encoding: Encoding| {
        Template::parse(source, encoding, &method.variables)
            .map_err(|source| RequestError::Template { part, source })
    };
    if !method.path.starts_with('/')
        || method.path.starts_with("//")
        || method.path.contains("://")
        || method.path.contains('?')
        || method.path.contains('#')
        || method.path.contains('\\')
        || method.path.split('/').any(is_dot_segment)
    {
        return Err(bad(
            "path must start with a single / and hold no scheme, query, fragment or dot segment"
                .into(),
        ));
    }
    let path = template("path".into(), &method.path, Encoding::PathSegment)?;
    let mut query = Vec::new();
    for (name, value) in &method.query {
        if name.is_empty() || name.contains("${") {
            return Err(bad(format!("query parameter name {name:?} is invalid")));
        }
        query.push((
            name.clone(),
            template(format!("query {name:?}"), value, Encoding::QueryComponent)?,
        ));
    }
    let mut headers = Vec::new();
    let mut header_content_type = None;
    for (name, value) in &method.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("{name:?} is not a header name")))?;
        if FORBIDDEN_HEADERS.contains(&header.as_str()) {
            return Err(bad(format!("header {name:?} may not be set by a method")));
        }
        if header_forbidden(value).is_some() {
            return Err(bad(format!("header {name:?} holds a control character")));
        }
        if header == CONTENT_TYPE {
            header_content_type = Some(value.clone());
        }
        headers.push((header, template(format!("header {name:?}"), value, Encoding::HeaderValue)?));
    }

    let soap = match call.endpoint.protocol.as_str() {
        "rest" => None,
        "soap" => {
            Some(SoapVersion::from_config(call.endpoint.soap_version.as_deref()).map_err(bad)?)
        }
        other => return Err(bad(format!("unknown protocol {other:?} (rest or soap)"))),
    };
    if let Some(action) = &method.soap_action
        && (header_forbidden(action).is_some() || action.contains('"'))
    {
        return Err(bad("soapAction may not hold quotes or control characters".into()));
    }
    let (content_type, body_kind) = match (soap, &method.body) {
        (Some(version), Some(_)) => (
            Some(version.content_type(method.soap_action.as_deref())),
            Some(BodyKind::Soap(version)),
        ),
        (Some(_), None) => return Err(bad("a SOAP method needs a body".into())),
        (None, Some(_)) => {
            let content_type = method
                .content_type
                .clone()
                .or(header_content_type)
                .unwrap_or_else(|| "application/json".into());
            let kind = body_kind_of(&content_type);
            (Some(content_type), Some(kind))
        }
        (None, None) => (method.content_type.clone(), None),
    };
    if let Some(ct) = &content_type
        && header_forbidden(ct).is_some()
    {
        return Err(bad("content type holds a control character".into()));
    }
    let body = match (&method.body, body_kind) {
        (Some(source), Some(kind)) => {
            let encoding = match kind {
                BodyKind::Json => Encoding::Json,
                BodyKind::Xml | BodyKind::Soap(_) => Encoding::Xml,
                BodyKind::Form => Encoding::Form,
                BodyKind::Text => Encoding::Text,
            };
            Some(template("body".into(), source, encoding)?)
        }
        _ => None,
    };
    Ok(MethodTemplates {
        path,
        query,
        headers,
        body,
        content_type,
        body_kind,
        soap_action: method.soap_action.clone().filter(|_| soap == Some(SoapVersion::V11)),
    })
}

/// The body kind a content type implies.
pub fn body_kind_of(content_type: &str) -> BodyKind {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media == "application/json" || media.ends_with("+json") {
        BodyKind::Json
    } else if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
        BodyKind::Xml
    } else if media == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Text
    }
}

/// Check a call's endpoint and templates without rendering (for config validation).
pub fn check_call(call: &OutboundCall) -> Result<(), RequestError> {
    parse_endpoint(&call.endpoint.url)?;
    http_method(&call.method)?;
    parse_method(call).map(|_| ())
}

fn http_method(method: &MethodConfig) -> Result<reqwest::Method, RequestError> {
    match method.http_method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => {
            Ok(reqwest::Method::from_bytes(m.as_bytes()).expect("a standard method"))
        }
        other => Err(RequestError::Method {
            method: method.name.clone(),
            reason: format!("unsupported HTTP method {other:?}"),
        }),
    }
}

/// Render a call with the event's variables (parsing it first; see [`CompiledCall`] to parse
/// once and render many times).
pub fn prepare(
    call: &OutboundCall,
    supplied: &BTreeMap<String, String>,
) -> Result<PreparedRequest, RequestError> {
    CompiledCall::compile(call)?.render(call, supplied)
}

/// A call's endpoint URL, HTTP method and templates, parsed and checked once (a target's at
/// start-up), then rendered for each delivery: parsing the URL and the templates again for
/// every event cost more than rendering them.
pub struct CompiledCall {
    endpoint: url::Url,
    method: reqwest::Method,
    templates: MethodTemplates,
}

impl CompiledCall {
    /// Parse and check `call`.
    pub fn compile(call: &OutboundCall) -> Result<CompiledCall, RequestError> {
        Ok(CompiledCall {
            endpoint: parse_endpoint(&call.endpoint.url)?,
            method: http_method(&call.method)?,
            templates: parse_method(call)?,
        })
    }

    /// Render the call with the event's variables; `call` must be the one compiled.
    pub fn render(
        &self,
        call: &OutboundCall,
        supplied: &BTreeMap<String, String>,
    ) -> Result<PreparedRequest, RequestError> {
        let templates = &self.templates;
        let vars = Variables::new(&call.method.variables, &call.variables, supplied);
        let render = |part: &str, template: &Template| {
            template
                .render(&vars)
                .map_err(|source| RequestError::Template { part: part.to_string(), source })
        };

        let path = render("path", &templates.path)?;
        let mut query = Vec::new();
        for (name, template) in &templates.query {
            let key =
                percent_encoding::utf8_percent_encode(name, super::template::COMPONENT).to_string();
            query.push((key, render(&format!("query {name:?}"), template)?));
        }
        let mut headers = HeaderMap::new();
        for (name, template) in &templates.headers {
            let value = render(&format!("header {:?}", name.as_str()), template)?;
            let value = HeaderValue::from_str(&value).map_err(|_| RequestError::Template {
                part: format!("header {:?}", name.as_str()),
                source: TemplateError::ForbiddenCharacter {
                    name: name.as_str().to_string(),
                    context: "header",
                    what: "character not allowed in a header",
                },
            })?;
            headers.insert(name.clone(), value);
        }
        if let Some(content_type) = &templates.content_type {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(content_type).map_err(|_| RequestError::Method {
                    method: call.method.name.clone(),
                    reason: "content type is not a header value".into(),
                })?,
            );
        }
        if let Some(action) = &templates.soap_action {
            headers.insert(
                HeaderName::from_static("soapaction"),
                HeaderValue::from_str(&format!("\"{action}\"")).map_err(|_| {
                    RequestError::Method {
                        method: call.method.name.clone(),
                        reason: "soapAction is not a header value".into(),
                    }
                })?,
            );
        }
        let body = match (&templates.body, templates.body_kind) {
            (Some(template), Some(kind)) => {
                let rendered = render("body", template)?;
                let bytes = match kind {
                    BodyKind::Soap(version) => {
                        let envelope = soap::envelope(version, &rendered);
                        check_well_formed(envelope.as_bytes(), &XmlLimits::default())?;
                        envelope.into_bytes()
                    }
                    BodyKind::Xml => {
                        check_well_formed(rendered.as_bytes(), &XmlLimits::default())?;
                        rendered.into_bytes()
                    }
                    _ => rendered.into_bytes(),
                };
                Some(bytes)
            }
            _ => None,
        };
        Ok(PreparedRequest {
            method: self.method.clone(),
            endpoint: self.endpoint.clone(),
            path,
            query,
            headers,
            body,
            body_kind: templates.body_kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CircuitBreakerConfig, EndpointConfig, RetryConfig, VariableConfig};

    pub(crate) fn call(url: &str, protocol: &str, method: MethodConfig) -> OutboundCall {
        OutboundCall {
            endpoint: EndpointConfig {
                name: "ep".into(),
                url: url.into(),
                protocol: protocol.into(),
                soap_version: None,
                credential: None,
                client_certificate: None,
                ca_file: None,
                server_name: None,
                timeout_ms: 1000,
                retry: RetryConfig { max_attempts: 1, initial_backoff_ms: 1, max_backoff_ms: 1 },
                circuit_breaker: CircuitBreakerConfig { failure_threshold: 5, open_for_ms: 1000 },
            },
            method,
            variables: BTreeMap::new(),
        }
    }

    fn method(path: &str, body: Option<&str>) -> MethodConfig {
        MethodConfig {
            name: "m".into(),
            http_method: "POST".into(),
            path: path.into(),
            query: BTreeMap::from([("q".to_string(), "${v}".to_string())]),
            headers: BTreeMap::from([("X-Trace".to_string(), "t-${v}".to_string())]),
            body: body.map(Into::into),
            content_type: None,
            soap_action: Some("urn:act".into()),
            variables: vec![VariableConfig { name: "v".into(), default: None, max_length: 100 }],
            expected_statuses: vec![],
            capture: BTreeMap::new(),
        }
    }

    #[test]
    fn rest_request_shape() {
        let c = call(
            "https://api.example.com/v2/",
            "rest",
            method("/items/${v}", Some(r#"{"v":"${v}"}"#)),
        );
        let vars = BTreeMap::from([("v".to_string(), "a b".to_string())]);
        let p = prepare(&c, &vars).unwrap();
        assert_eq!(
            p.url(None, None).unwrap().as_str(),
            "https://api.example.com/v2/items/a%20b?q=a%20b"
        );
        assert_eq!(p.headers["x-trace"], "t-a b");
        assert_eq!(p.headers["content-type"], "application/json");
        assert!(!p.headers.contains_key("soapaction"));
        assert_eq!(p.body.as_deref(), Some(&br#"{"v":"a b"}"#[..]));
        assert_eq!(
            p.url(None, Some(("api key", "k&1"))).unwrap().as_str(),
            "https://api.example.com/v2/items/a%20b?q=a%20b&api%20key=k%261"
        );
    }

    #[test]
    fn a_compiled_call_renders_each_event_like_a_fresh_prepare() {
        let c = call(
            "https://api.example.com/v2/",
            "rest",
            method("/items/${v}", Some(r#"{"v":"${v}"}"#)),
        );
        let compiled = CompiledCall::compile(&c).unwrap();
        for value in ["a b", "x\"y", "ü/?#"] {
            let vars = BTreeMap::from([("v".to_string(), value.to_string())]);
            let (once, fresh) = (compiled.render(&c, &vars).unwrap(), prepare(&c, &vars).unwrap());
            assert_eq!(once.url(None, None).unwrap(), fresh.url(None, None).unwrap());
            assert_eq!(once.headers, fresh.headers);
            assert_eq!(once.body, fresh.body);
            assert_eq!(once.method, fresh.method);
        }
        // A value the template refuses is refused per event, as before.
        let vars = BTreeMap::from([("v".to_string(), "a\r\nX-Evil: 1".to_string())]);
        assert_eq!(compiled.render(&c, &vars).err(), prepare(&c, &vars).err());
        assert!(compiled.render(&c, &vars).is_err());
    }

    #[test]
    fn secret_url_rest_stays_on_the_endpoint() {
        let c = call("https://hooks.example.com", "rest", method("/", Some("{}")));
        let vars = BTreeMap::from([("v".to_string(), "x".to_string())]);
        let p = prepare(&c, &vars).unwrap();
        assert_eq!(
            p.url(Some("/services/T0/B0/XYZ?sig=1"), None).unwrap().as_str(),
            "https://hooks.example.com/services/T0/B0/XYZ?sig=1&q=x"
        );
        for bad in ["//evil.example.com/x", "/a/../b", "/a b", "/a#b"] {
            assert!(p.url(Some(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn soap_envelopes() {
        let mut c = call(
            "https://soap.example.com/svc",
            "soap",
            method("/", Some("<m:Get xmlns:m=\"urn:m\">${v}</m:Get>")),
        );
        let vars = BTreeMap::from([("v".to_string(), "</m:Get><evil/>".to_string())]);
        let p = prepare(&c, &vars).unwrap();
        assert_eq!(p.headers["content-type"], "text/xml; charset=utf-8");
        assert_eq!(p.headers["soapaction"], "\"urn:act\"");
        let body = String::from_utf8(p.body.unwrap()).unwrap();
        assert!(body.contains("&lt;/m:Get&gt;&lt;evil/&gt;"));
        c.endpoint.soap_version = Some("1.2".into());
        let p = prepare(&c, &vars).unwrap();
        assert_eq!(
            p.headers["content-type"],
            "application/soap+xml; charset=utf-8; action=\"urn:act\""
        );
        assert!(!p.headers.contains_key("soapaction"));
    }

    #[test]
    fn endpoint_and_method_checks() {
        for bad in ["ftp://x", "https://u:p@x", "https://x/?a", "https://${h}/", "nope"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        for bad_path in ["items", "//x", "/a?b", "/a/../b", "/a/%2e%2e/b", "https://x"] {
            let c = call("https://x", "rest", method(bad_path, None));
            assert!(check_call(&c).is_err(), "{bad_path}");
        }
        let mut m = method("/", None);
        m.headers.insert("Host".into(), "evil".into());
        assert!(check_call(&call("https://x", "rest", m)).is_err());
        let mut m = method("/${undeclared}", None);
        m.query.clear();
        assert!(matches!(
            check_call(&call("https://x", "rest", m)),
            Err(RequestError::Template { source: TemplateError::Undeclared { .. }, .. })
        ));
    }
}
