//! The admin port: `/livez`, `/readyz`, `/metrics`, `/status` and the dead-letter API.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /livez` | none | 200 while the process serves |
//! | `GET /readyz` | none | 200 `{"ready":true}`, or 503 with the reason |
//! | `GET /metrics` | none | Prometheus text |
//! | `GET /status` | none | [`WorkerStatus`] (counters, outcomes; no event content) |
//! | `GET /v1/dead-letters?state=pending\|all&limit=N` | admin token | summaries, newest first |
//! | `GET /v1/dead-letters/{id}` | admin token | one dead letter with its event and attempts |
//! | `POST /v1/dead-letters/{id}/replay` `{"by": "name"}` | admin token | re-queued; who and when recorded |
//!
//! Dead letters hold event bodies, which may be personal data, so their routes need
//! `Authorization: Bearer <token>` or `X-Switchboard-Admin-Token: <token>` matching the admin
//! token file (re-read on each request, so it can be rotated). Without a token file they answer
//! 403. The second header exists for requests through the Kubernetes API server's
//! `pods/proxy`: the API server consumes `Authorization` (its own credentials) and does not
//! forward it, but passes other headers on. The token is never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::health::Health;
use super::metrics::{Metrics, TargetLabels};
use crate::queue::{Queue, QueueError, StoreCounters};
use crate::status::{STATUS_API_VERSION, StatusCounters, WorkerStatus};

/// Environment variable naming the admin token file.
pub const ADMIN_TOKEN_FILE_ENV: &str = "SWITCHBOARD_ADMIN_TOKEN_FILE";
/// Header carrying the admin token where `Authorization` cannot (through an API server proxy).
pub const ADMIN_TOKEN_HEADER: &str = "x-switchboard-admin-token";

/// What the admin server reads.
pub struct AdminState {
    /// Subject kind, namespace, name.
    pub subject: (String, String, String),
    /// `durable` or `synchronous`.
    pub delivery_mode: String,
    /// Process start.
    pub started_at: DateTime<Utc>,
    /// Readiness and outcomes.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Counters (also without a queue, when the config failed).
    pub counters: Arc<StoreCounters>,
    /// The store, when it is open.
    pub queue: Option<Queue>,
    /// Circuit states.
    pub circuits: Option<Arc<dyn Fn() -> Vec<crate::status::CircuitInfo> + Send + Sync>>,
    /// Admin token file.
    pub token_file: Option<PathBuf>,
    /// Synthetic health checks, when the config has any.
    pub health_checks: Option<Arc<crate::health::HealthChecker>>,
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(crate::status::STATUS_PATH, get(status))
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/{id}", get(show_dead_letter))
        .route("/v1/dead-letters/{id}/replay", post(replay_dead_letter))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    match s.health.not_ready() {
        None => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "reason": reason})))
                .into_response()
        }
    }
}

fn refresh_gauges(s: &AdminState) -> Vec<crate::status::CircuitInfo> {
    let c = &s.counters;
    s.metrics.queue_depth.set(c.queue_depth.load(Ordering::Relaxed) as i64);
    s.metrics.dead_letters_pending.set(c.dead_letters_pending.load(Ordering::Relaxed) as i64);
    s.metrics.ready.set(i64::from(s.health.not_ready().is_none()));
    let circuits = s.circuits.as_ref().map(|f| f()).unwrap_or_default();
    for circuit in &circuits {
        let value = match circuit.state.as_str() {
            "open" => 2,
            "halfOpen" => 1,
            _ => 0,
        };
        s.metrics
            .circuit_state
            .get_or_create(&TargetLabels { target: circuit.target.clone() })
            .set(value);
    }
    circuits
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    refresh_gauges(&s);
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        s.metrics.encode(),
    )
        .into_response()
}

/// Build the status document.
pub fn status_document(s: &AdminState) -> WorkerStatus {
    let circuits = refresh_gauges(s);
    let c = s.counters.snapshot();
    let (last_success_time, last_failure, consecutive_failures) = s.health.outcomes();
    let not_ready = s.health.not_ready();
    WorkerStatus {
        api_version: STATUS_API_VERSION.into(),
        subject_kind: s.subject.0.clone(),
        namespace: s.subject.1.clone(),
        name: s.subject.2.clone(),
        started_at: s.started_at,
        ready: not_ready.is_none(),
        not_ready_reason: not_ready,
        delivery_mode: s.delivery_mode.clone(),
        counters: StatusCounters {
            received: c.received,
            rejected: c.rejected,
            duplicates: c.duplicates,
            accepted: c.accepted,
            filtered: c.filtered,
            delivered: c.delivered,
            retried: c.retried,
            dead_lettered: c.dead_lettered,
            dead_letters_pending: c.dead_letters_pending,
            dead_letters_dropped: c.dead_letters_dropped,
            replayed: c.replayed,
            queue_depth: c.queue_depth,
        },
        last_success_time,
        last_failure,
        consecutive_failures,
        circuits,
        health_checks: s.health_checks.as_ref().map(|h| h.statuses()).unwrap_or_default(),
    }
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    axum::Json(status_document(&s)).into_response()
}

/// A refused admin request.
struct Denied(StatusCode, &'static str, String);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1, "message": self.2}))).into_response()
    }
}

fn check_token(s: &AdminState, headers: &HeaderMap) -> Result<(), Denied> {
    let deny = |status: StatusCode, reason: &'static str, message: &str| {
        Denied(status, reason, message.to_string())
    };
    let Some(path) = &s.token_file else {
        return Err(deny(
            StatusCode::FORBIDDEN,
            "admin_token_not_configured",
            "start the worker with --admin-token-file to enable the dead-letter API",
        ));
    };
    let expected = std::fs::read(path).map_err(|e| {
        tracing::error!(path = %path.display(), error = %e.kind(), "admin token file unreadable");
        deny(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_token_unreadable",
            "the admin token cannot be read",
        )
    })?;
    let expected = String::from_utf8_lossy(&expected).trim().to_string();
    let presented = presented_token(headers);
    if expected.is_empty()
        || presented.len() != expected.len()
        || !bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    {
        return Err(deny(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required",
        ));
    }
    Ok(())
}

/// The token a request presents: `Authorization: Bearer`, else the admin token header.
fn presented_token(headers: &HeaderMap) -> &str {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .or_else(|| headers.get(ADMIN_TOKEN_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .unwrap_or_default()
}

/// The dead-letter store, for a request that carries the admin token.
fn authorized_queue<'a>(s: &'a AdminState, headers: &HeaderMap) -> Result<&'a Queue, Denied> {
    check_token(s, headers)?;
    s.queue.as_ref().ok_or_else(|| {
        Denied(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the dead-letter store is not open".into(),
        )
    })
}

fn queue_error(e: QueueError) -> Response {
    let status = match e {
        QueueError::NotFound(_) => StatusCode::NOT_FOUND,
        QueueError::AlreadyReplayed(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(json!({"error": e.category(), "message": e.to_string()}))).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let queue = match authorized_queue(&s, &headers) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let pending_only = q.state.as_deref() != Some("all");
    match queue.list_dead_letters(pending_only, q.limit.unwrap_or(100).clamp(1, 10_000)) {
        Ok(list) => axum::Json(json!({"items": list})).into_response(),
        Err(e) => queue_error(e),
    }
}

async fn show_dead_letter(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let queue = match authorized_queue(&s, &headers) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    match queue.get_dead_letter(&id) {
        Ok(dead) => {
            let mut doc = serde_json::to_value(&dead).unwrap_or_default();
            // The body travels as text when it is UTF-8, else as base64.
            let (key, body) = match std::str::from_utf8(&dead.event.body) {
                Ok(text) => ("body", json!(text)),
                Err(_) => {
                    use base64::Engine as _;
                    (
                        "bodyBase64",
                        json!(base64::engine::general_purpose::STANDARD.encode(&dead.event.body)),
                    )
                }
            };
            doc["event"][key] = body;
            axum::Json(doc).into_response()
        }
        Err(e) => queue_error(e),
    }
}

#[derive(Deserialize, Default)]
struct ReplayRequest {
    by: Option<String>,
}

async fn replay_dead_letter(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<axum::Json<ReplayRequest>>,
) -> Response {
    let queue = match authorized_queue(&s, &headers) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let by = body
        .and_then(|b| b.0.by)
        .map(|b| crate::queue::sanitize_message(&b).chars().take(128).collect::<String>())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    match queue.replay(&id, &by).await {
        Ok(event_id) => {
            tracing::info!(dead_letter = %id, by = %by, event = %event_id, "dead letter replayed");
            axum::Json(json!({"id": id, "eventId": event_id, "by": by, "at": Utc::now()}))
                .into_response()
        }
        Err(e) => queue_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_bearer_or_the_admin_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers), "");
        headers.insert(ADMIN_TOKEN_HEADER, " via-proxy ".parse().unwrap());
        assert_eq!(presented_token(&headers), "via-proxy");
        headers.insert(header::AUTHORIZATION, "Bearer direct".parse().unwrap());
        assert_eq!(presented_token(&headers), "direct", "Authorization wins when present");
        headers.insert(header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        assert_eq!(presented_token(&headers), "via-proxy");
    }
}
