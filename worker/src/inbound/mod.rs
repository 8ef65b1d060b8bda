//! Inbound: the webhook receiver and the versioned API routes, served by axum on the inbound
//! port.
//!
//! ```text
//!  request ─▶ size check (Content-Length, then while reading) ── 413
//!          ─▶ authenticate on the raw bytes (auth)             ── 401 / 503
//!          ─▶ parse: CloudEvent (binary | structured), JSON, XML, form ── 400
//!          ─▶ duplicate? (sender id: webhook-id, ce source+id, id header) ── 200 duplicate / 409 in flight
//!          ─▶ EventSink::accept
//!                durable:     stored with fsync (group commit) ── 202
//!                synchronous: transform + delivery             ── 200 / 422 / 502 / 503
//! ```
//!
//! Nothing unverified reaches the sink, and every refusal is counted under a precise
//! `reason` (see [`crate::runtime::metrics`]). Authentication headers are dropped before an
//! event is stored.

pub mod auth;
pub mod body;
pub mod cloudevents;
pub mod signature;
pub mod tls;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Extension, RawPathParams, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use chrono::Utc;
use serde_json::{Value, json};

use self::auth::{AuthError, Authenticator, PeerCertificates, SecretLookup};
use crate::config::{CredentialConfig, SourceConfig};
use crate::queue::{QueuedEvent, StoreCounters, StoredRequest};
use crate::runtime::metrics::{Metrics, RouteLabels, RouteSeries};

/// Headers never stored with an event.
const DROPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    signature::WEBHOOK_SIGNATURE,
    signature::GITHUB_SIGNATURE,
    "x-hub-signature",
    signature::STRIPE_SIGNATURE,
];

/// Why a route could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// Authentication config is unusable.
    #[error("route {route}: {source}")]
    Auth {
        /// Route.
        route: String,
        /// Cause.
        source: AuthError,
    },
    /// The source is not an inbound kind.
    #[error("source kind {0} does not receive requests")]
    NotInbound(&'static str),
    /// A route path or method is invalid.
    #[error("route {route}: {message}")]
    Route {
        /// Route.
        route: String,
        /// Cause.
        message: String,
    },
}

impl InboundError {
    /// Short category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            InboundError::Auth { .. } => "auth_config_invalid",
            InboundError::NotInbound(_) => "not_inbound",
            InboundError::Route { .. } => "route_invalid",
        }
    }
}

/// One served route.
#[derive(Debug)]
pub struct RouteSpec {
    /// Name for metrics and logs (webhook path, or API route name).
    pub name: String,
    /// Path served (axum syntax, `{param}` segments).
    pub path: String,
    /// Method served.
    pub method: Method,
    /// Authentication.
    pub auth: Authenticator,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Extra header with the sender's event id.
    pub id_header: Option<String>,
    /// Targets fed (empty: all).
    pub targets: Vec<String>,
    /// The route's metric series, kept once created.
    pub series: RouteSeries,
}

/// The routes of a source.
pub fn routes_for(
    source: &SourceConfig,
    credentials: &BTreeMap<String, CredentialConfig>,
) -> Result<Vec<RouteSpec>, InboundError> {
    match source {
        SourceConfig::Webhook(w) => {
            let auth = Authenticator::from_config(&w.auth, credentials)
                .map_err(|source| InboundError::Auth { route: w.path.clone(), source })?;
            if !w.path.starts_with('/') {
                return Err(InboundError::Route {
                    route: w.path.clone(),
                    message: "path must start with /".into(),
                });
            }
            Ok(vec![RouteSpec {
                name: w.path.clone(),
                path: w.path.clone(),
                method: Method::POST,
                auth,
                max_body_bytes: w.max_body_bytes as usize,
                id_header: w.id_header.as_ref().map(|h| h.to_ascii_lowercase()),
                targets: vec![],
                series: RouteSeries::default(),
            }])
        }
        SourceConfig::Api(api) => api
            .routes
            .iter()
            .map(|r| {
                let auth = Authenticator::from_config(&r.auth, credentials)
                    .map_err(|source| InboundError::Auth { route: r.name.clone(), source })?;
                let method =
                    Method::from_bytes(r.method.as_bytes()).map_err(|_| InboundError::Route {
                        route: r.name.clone(),
                        message: format!("invalid method {:?}", r.method),
                    })?;
                if !r.path.starts_with('/') || !r.version.starts_with('v') {
                    return Err(InboundError::Route {
                        route: r.name.clone(),
                        message: "version must be v<N> and path must start with /".into(),
                    });
                }
                Ok(RouteSpec {
                    name: r.name.clone(),
                    path: format!("/{}{}", r.version, r.path),
                    method,
                    auth,
                    max_body_bytes: api.max_body_bytes as usize,
                    id_header: None,
                    targets: r.targets.clone(),
                    series: RouteSeries::default(),
                })
            })
            .collect(),
        other => Err(InboundError::NotInbound(other.kind())),
    }
}

/// An accepted event with its parsed content, handed to the [`EventSink`].
#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    /// The event as it is stored.
    pub event: QueuedEvent,
    /// The parsed body (`body` in expressions).
    pub body: Value,
}

/// What the sink made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkOutcome {
    /// Stored durably; delivery follows.
    Queued,
    /// Delivered to every target (synchronous mode).
    Delivered,
    /// Dropped by the filter.
    Filtered,
    /// Refused (for example a mapping error in synchronous mode).
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// Short reason.
        reason: String,
        /// Message for the sender.
        message: String,
    },
}

/// Boxed future returned by [`EventSink::accept`].
pub type SinkFuture = Pin<Box<dyn Future<Output = SinkOutcome> + Send>>;

/// Where accepted events go (the runtime's queue or synchronous pipeline).
pub trait EventSink: Send + Sync + 'static {
    /// Whether the sender id was seen recently.
    fn seen(&self, source_id: &str) -> bool;
    /// Take an event.
    fn accept(&self, event: AcceptedEvent) -> SinkFuture;
}

/// Shared state of the inbound server.
pub struct InboundState {
    /// Credential files.
    pub secrets: Arc<dyn SecretLookup>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Status counters.
    pub counters: Arc<StoreCounters>,
    /// False once shutdown started: new requests get 503.
    pub accepting: AtomicBool,
    in_flight: Mutex<HashSet<String>>,
}

impl InboundState {
    /// New state.
    pub fn new(
        secrets: Arc<dyn SecretLookup>,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        counters: Arc<StoreCounters>,
    ) -> Arc<InboundState> {
        Arc::new(InboundState {
            secrets,
            sink,
            metrics,
            counters,
            accepting: AtomicBool::new(true),
            in_flight: Mutex::new(HashSet::new()),
        })
    }
}

/// The axum router serving `routes`.
pub fn router(routes: Vec<RouteSpec>, state: Arc<InboundState>) -> Router {
    let mut router = Router::new();
    for route in routes {
        let route = Arc::new(route);
        let filter = MethodFilter::try_from(route.method.clone()).unwrap_or(MethodFilter::POST);
        let path = route.path.clone();
        let state = state.clone();
        router = router.route(
            &path,
            on(
                filter,
                move |params: RawPathParams,
                      peer: Option<Extension<PeerCertificates>>,
                      request: Request| {
                    let state = state.clone();
                    let route = route.clone();
                    async move {
                        handle(state, route, params, peer.map(|Extension(p)| p), request).await
                    }
                },
            ),
        );
    }
    router
}

fn refuse(
    state: &InboundState,
    route: &str,
    status: StatusCode,
    reason: &str,
    message: &str,
) -> Response {
    state.metrics.reject(route, reason);
    state.counters.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::info!(route, reason, %status, message, "inbound request refused");
    let mut response =
        (status, axum::Json(json!({"error": reason, "message": message}))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

struct InFlight<'a> {
    state: &'a InboundState,
    id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

async fn handle(
    state: Arc<InboundState>,
    route: Arc<RouteSpec>,
    params: RawPathParams,
    peer: Option<PeerCertificates>,
    request: Request,
) -> Response {
    let started = Instant::now();
    route.series.received(&state.metrics, &route.name).inc();
    state.counters.received.fetch_add(1, Ordering::Relaxed);
    let response = handle_inner(&state, &route, params, peer, request).await;
    route
        .series
        .request_duration(&state.metrics, &route.name)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle_inner(
    state: &InboundState,
    route: &RouteSpec,
    params: RawPathParams,
    peer: Option<PeerCertificates>,
    request: Request,
) -> Response {
    let name = route.name.as_str();
    if !state.accepting.load(Ordering::Relaxed) {
        return refuse(
            state,
            name,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the worker is shutting down",
        );
    }
    let (parts, body_stream) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body_bytes as u64) {
        let msg = format!("body larger than {} bytes", route.max_body_bytes);
        return refuse(state, name, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &msg);
    }
    let raw = match body::read_limited(body_stream, route.max_body_bytes).await {
        Ok(raw) => raw,
        Err(e @ body::BodyError::TooLarge { .. }) => {
            return refuse(
                state,
                name,
                StatusCode::PAYLOAD_TOO_LARGE,
                e.category(),
                &e.to_string(),
            );
        }
        Err(e) => {
            return refuse(state, name, StatusCode::BAD_REQUEST, e.category(), &e.to_string());
        }
    };

    // Authenticate on the raw bytes, before anything parses them.
    let now = Utc::now().timestamp();
    let verified = match route.auth.authenticate(
        state.secrets.as_ref(),
        &parts.headers,
        &raw,
        peer.as_ref(),
        now,
    ) {
        Ok(v) => v,
        Err(e) if e.is_server_side() => {
            tracing::error!(route = name, error = %e, "cannot authenticate inbound requests");
            return refuse(
                state,
                name,
                StatusCode::SERVICE_UNAVAILABLE,
                e.category(),
                "the receiver cannot verify requests right now",
            );
        }
        Err(e @ AuthError::CertificateRejected(_)) => {
            return refuse(state, name, StatusCode::FORBIDDEN, e.category(), &e.to_string());
        }
        Err(e) => {
            let mut response =
                refuse(state, name, StatusCode::UNAUTHORIZED, e.category(), &e.to_string());
            let challenge = match route.auth.type_name() {
                "bearer" => Some("Bearer"),
                "basic" => Some("Basic realm=\"switchboard\""),
                _ => None,
            };
            if let Some(c) = challenge {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(c));
            }
            return response;
        }
    };

    // Parse: CloudEvents (binary or structured), else by content type.
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let media = body::media_type(content_type.as_deref());
    let (parsed, cloud_event, data_type) = if media == cloudevents::BATCH_MEDIA_TYPE {
        let e = cloudevents::CloudEventError::Batch;
        return refuse(state, name, StatusCode::BAD_REQUEST, e.category(), &e.to_string());
    } else if media == cloudevents::STRUCTURED_MEDIA_TYPE {
        match cloudevents::from_structured(&raw) {
            Ok(ev) => (ev.data.clone(), Some(ev), None),
            Err(e) => {
                return refuse(state, name, StatusCode::BAD_REQUEST, e.category(), &e.to_string());
            }
        }
    } else if cloudevents::is_binary(&parts.headers) {
        match cloudevents::from_binary(&parts.headers, content_type.as_deref(), &raw) {
            Ok(ev) => (ev.data.clone(), Some(ev), None),
            Err(e) => {
                return refuse(state, name, StatusCode::BAD_REQUEST, e.category(), &e.to_string());
            }
        }
    } else {
        match body::parse(&media, &raw) {
            Ok(v) => (v, None, content_type.clone()),
            Err(e) => {
                return refuse(state, name, StatusCode::BAD_REQUEST, e.category(), &e.to_string());
            }
        }
    };

    // The sender's id: configured header, webhook-id, CloudEvents source+id, GitHub delivery.
    let header_id = |h: &str| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let source_id = route
        .id_header
        .as_deref()
        .and_then(header_id)
        .or(verified.id.clone())
        .or_else(|| header_id(signature::WEBHOOK_ID))
        .or_else(|| cloud_event.as_ref().and_then(|c| c.identity()))
        .or_else(|| header_id(signature::GITHUB_DELIVERY))
        .map(|id| format!("{}\u{1f}{}", route.name, id));

    let _guard = match &source_id {
        Some(id) => {
            let inserted =
                state.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
            if !inserted {
                return refuse(
                    state,
                    name,
                    StatusCode::CONFLICT,
                    "in_flight",
                    "an event with this id is being processed; retry later",
                );
            }
            let guard = InFlight { state, id: id.clone() };
            if state.sink.seen(id) {
                state
                    .metrics
                    .duplicates
                    .get_or_create(&RouteLabels { route: route.name.clone() })
                    .inc();
                state.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return (StatusCode::OK, axum::Json(json!({"status": "duplicate"})))
                    .into_response();
            }
            Some(guard)
        }
        None => None,
    };

    let event = QueuedEvent {
        id: uuid::Uuid::new_v4().to_string(),
        source_id,
        received_at: Utc::now(),
        route: route.name.clone(),
        pending_targets: route.targets.clone(),
        request: StoredRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: stored_headers(&parts.headers),
            query: parts
                .uri
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cloud_event: cloud_event.as_ref().map(|c| c.attributes.clone()),
            content_type: match &cloud_event {
                // A structured event's data is stored as JSON (see `body` below).
                Some(_) if media == cloudevents::STRUCTURED_MEDIA_TYPE => {
                    Some("application/json".into())
                }
                Some(c) => c.data_content_type.clone(),
                None => data_type,
            },
        },
        attempts: vec![],
        replays: vec![],
        body: match &cloud_event {
            // Store the data, not the envelope: `body` is the data in both modes.
            Some(_) if media == cloudevents::STRUCTURED_MEDIA_TYPE => {
                serde_json::to_vec(&parsed).unwrap_or_default()
            }
            _ => raw.to_vec(),
        },
    };
    let id = event.id.clone();
    let outcome = state.sink.accept(AcceptedEvent { event, body: parsed }).await;
    let answer = match outcome {
        SinkOutcome::Queued => (StatusCode::ACCEPTED, "accepted"),
        SinkOutcome::Delivered => (StatusCode::OK, "delivered"),
        SinkOutcome::Filtered => (StatusCode::OK, "filtered"),
        SinkOutcome::Refused { status, reason, message } => {
            return refuse(state, name, status, &reason, &message);
        }
    };
    route.series.accepted(&state.metrics, name).inc();
    event_answer(answer, &id)
}

/// The answer to an accepted event, `{"status": ..., "id": ...}`, written directly: the
/// status is one of a few words and the id is ours (a UUID), so neither needs escaping.
fn event_answer((status, word): (StatusCode, &'static str), id: &str) -> Response {
    let body = format!(r#"{{"status":"{word}","id":"{id}"}}"#);
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// Headers kept with an event: lower-case names, credentials removed.
pub fn stored_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if DROPPED_HEADERS.contains(&name) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        out.entry(name.to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    out
}

/// The JSON-like values expressions see for a stored event, among `body`, `headers`,
/// `query`, `params` and `event`: only those named in `wanted` are built. The body is
/// borrowed.
pub fn expression_inputs<'a>(
    event: &QueuedEvent,
    body: &'a Value,
    wanted: &[&'static str],
) -> Vec<(&'static str, std::borrow::Cow<'a, Value>)> {
    use std::borrow::Cow;
    let r = &event.request;
    let map = |m: &BTreeMap<String, String>| {
        Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    };
    wanted
        .iter()
        .map(|name| {
            let value = match *name {
                "body" => Cow::Borrowed(body),
                "headers" => Cow::Owned(map(&r.headers)),
                "query" => Cow::Owned(map(&r.query)),
                "params" => Cow::Owned(map(&r.params)),
                _ => Cow::Owned(Value::Object(
                    r.cloud_event.clone().unwrap_or_default().into_iter().collect(),
                )),
            };
            (*name, value)
        })
        .collect()
}

/// Parse a stored event's body again (delivery loop, replay).
pub fn parse_stored_body(event: &QueuedEvent) -> Result<Value, body::BodyError> {
    body::parse(&body::media_type(event.request.content_type.as_deref()), &event.body)
}
