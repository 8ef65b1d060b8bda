//! `switchboard worker run-once`: what a Schedule's CronJob runs.
//!
//! ```text
//!  config.run (an OutboundMessage method) ──▶ Outbound::deliver (retries, breaker) ──▶ exit 0 / 1
//!  config.source = rest ──▶ pages (none | page | offset | cursor | link) ──▶ records
//!                           ──▶ transform ──▶ targets; exit 1 when a page or a record failed
//!  config.source = file ──▶ import::scheduled::run_file_import (staging, run report)
//!  config.source = database ──▶ import::scheduled::run_database_pull (watermark, run report)
//!  config.source = imap ──▶ refused with the reason (a later release)
//!  config.lineage ──▶ OpenLineage START before, COMPLETE or FAIL after (never fails the run)
//! ```
//!
//! The exit status is what a Kubernetes Job understands (0 success, 1 failure); the caller
//! writes the summary or the error to the termination log. IMAP pulls are not performed by
//! this build: the run says so and fails, rather than pretending to have pulled. `link`
//! pagination follows RFC 8288 `rel="next"` links on the endpoint's own host only, each
//! request passing the SSRF guard like the first.

use std::collections::BTreeMap;
use std::path::Path;

use std::sync::Arc;

use chrono::Utc;

use super::delivery::{Pipeline, PipelineResult};
use super::metrics::Metrics;
use crate::config::{OutboundCall, RestPullConfig, SourceConfig, VariableConfig, WorkerConfig};
use crate::delivery::{DeliveryOutcome, Outbound};
use crate::queue::{QueuedEvent, StoredRequest};
use crate::transform::Transform;

/// Variable that carries the page number, offset or cursor into the request's query.
const PAGE_VARIABLE: &str = "switchboard_page";

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunOnceError {
    /// The config cannot be loaded.
    #[error(transparent)]
    Config(#[from] super::RuntimeError),
    /// The outbound side cannot be set up.
    #[error("cannot set up the call: {0}")]
    Setup(String),
    /// The call failed.
    #[error("{reason}: {message}")]
    Failed {
        /// Short reason.
        reason: String,
        /// Sanitized message.
        message: String,
    },
    /// The config asks for something this build does not run.
    #[error("{0}")]
    Unsupported(String),
}

impl RunOnceError {
    /// Short category (also the termination message's prefix).
    pub fn category(&self) -> &'static str {
        match self {
            RunOnceError::Config(e) => e.category(),
            RunOnceError::Setup(_) => "SetupFailed",
            RunOnceError::Failed { .. } => "RunFailed",
            RunOnceError::Unsupported(_) => "Unsupported",
        }
    }
}

/// Run the config's call once; the summary on success.
pub async fn run_once(config_path: &Path) -> Result<String, RunOnceError> {
    run_once_in(config_path, None).await
}

/// [`run_once`] with the data directory (where a run without cluster access keeps its
/// watermark) overridden.
pub async fn run_once_in(
    config_path: &Path,
    data_dir: Option<&Path>,
) -> Result<String, RunOnceError> {
    let config = super::load_config(config_path)?;
    let metrics = Metrics::for_config(&config);
    let lineage = crate::lineage::Lineage::for_config(&config, metrics.lineage_errors.clone());
    let run = match &lineage {
        Some(lineage) => Some(lineage.start().await),
        None => None,
    };
    let data_dir =
        data_dir.map(Path::to_path_buf).unwrap_or_else(|| config.server.data_dir.clone().into());
    let result = run_config(&config, &data_dir, &metrics).await;
    if let (Some(lineage), Some(run)) = (&lineage, &run) {
        let error = result.as_ref().err().map(|e| format!("{}: {e}", e.category()));
        lineage.finish(run, error.as_deref()).await;
    }
    result
}

async fn run_config(
    config: &WorkerConfig,
    data_dir: &Path,
    metrics: &Metrics,
) -> Result<String, RunOnceError> {
    if let Some(call) = &config.run {
        let outbound = Outbound::new(config).map_err(|e| RunOnceError::Setup(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let outcome = outbound.deliver(call, &BTreeMap::new(), &id).await;
        let attempts = outcome.attempts().len();
        return match &outcome {
            DeliveryOutcome::Delivered { status, .. } => Ok(format!(
                "{}.{} answered {status} after {attempts} attempt(s)",
                call.endpoint.name, call.method.name
            )),
            other => Err(RunOnceError::Failed {
                reason: super::outbound::failure_reason(other),
                message: crate::queue::sanitize_message(&format!(
                    "{}.{} failed after {attempts} attempt(s): {}",
                    call.endpoint.name,
                    call.method.name,
                    other.failure().map(|f| f.to_string()).unwrap_or_else(|| "circuit open".into())
                )),
            }),
        };
    }
    match &config.source {
        Some(SourceConfig::Rest(rest)) => pull_rest(config, rest).await,
        Some(SourceConfig::File(file)) => {
            let deliverer =
                super::outbound::outbound_deliverer(config).map_err(RunOnceError::Setup)?;
            let store = crate::import::scheduled::run_state_store(config, data_dir).await;
            let outcome =
                crate::import::scheduled::run_file_import(config, file, deliverer, &store, metrics)
                    .await;
            finished(outcome)
        }
        Some(SourceConfig::Database(pull)) => {
            let deliverer =
                super::outbound::outbound_deliverer(config).map_err(RunOnceError::Setup)?;
            let store = crate::import::scheduled::run_state_store(config, data_dir).await;
            let outcome = crate::import::scheduled::run_database_pull(
                config, pull, deliverer, &store, metrics,
            )
            .await;
            finished(outcome)
        }
        Some(source @ SourceConfig::Imap(_)) => Err(RunOnceError::Unsupported(format!(
            "{} pulls are not implemented in this worker build; they come in a later release",
            source.kind()
        ))),
        Some(source) => Err(RunOnceError::Unsupported(format!(
            "a {} source receives requests; run `switchboard worker` instead of run-once",
            source.kind()
        ))),
        None => Err(RunOnceError::Unsupported(
            "the config has neither `run` nor a source to pull".into(),
        )),
    }
}

/// The run's summary, or its failure with the report's summary in the message.
fn finished(outcome: crate::import::scheduled::RunOutcome) -> Result<String, RunOnceError> {
    let summary = outcome.report.summary();
    match &outcome.error {
        None if outcome.report.result == crate::import::report::SUCCEEDED => Ok(summary),
        None => Err(RunOnceError::Failed { reason: "RowsFailed".into(), message: summary }),
        Some(e) => Err(RunOnceError::Failed {
            reason: e.category().into(),
            message: format!("{e}; {summary}"),
        }),
    }
}

/// The request for one page: the configured call with the page parameter added to its query.
fn page_call(rest: &RestPullConfig) -> OutboundCall {
    let mut call = rest.request.clone();
    let p = &rest.pagination;
    if !matches!(p.type_.as_str(), "none" | "link") {
        call.method.query.insert(p.param.clone(), format!("${{{PAGE_VARIABLE}}}"));
        call.method.variables.push(VariableConfig {
            name: PAGE_VARIABLE.into(),
            default: None,
            max_length: 4096,
        });
        if let Some(size) = &p.size_param {
            call.method.query.insert(size.clone(), p.page_size.to_string());
        }
    }
    call
}

/// The URL of a call without its query (the base for relative links).
fn current_url(call: &OutboundCall) -> Option<url::Url> {
    url::Url::parse(&format!("{}{}", call.endpoint.url.trim_end_matches('/'), call.method.path))
        .ok()
}

/// The `rel="next"` target of an RFC 8288 `Link` header, resolved against `base`.
pub fn next_link(header: &str, base: &Option<url::Url>) -> Option<url::Url> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map(|i| close + i).unwrap_or(rest.len());
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else { return false };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return match base {
                Some(base) => base.join(target).ok(),
                None => url::Url::parse(target).ok(),
            };
        }
        rest = &rest[params_end..];
    }
    None
}

/// The call of a `next` link: same endpoint (scheme, host and port must match, so a link
/// cannot lead the pull to another host; the SSRF guard checks the address again), the link's
/// path as the fixed base and its query as bound variables (never parsed as templates).
pub fn link_call(
    first: &OutboundCall,
    next: &url::Url,
) -> Result<(OutboundCall, BTreeMap<String, String>), String> {
    let endpoint = url::Url::parse(&first.endpoint.url).map_err(|e| e.to_string())?;
    if next.scheme() != endpoint.scheme()
        || next.host_str() != endpoint.host_str()
        || next.port_or_known_default() != endpoint.port_or_known_default()
    {
        return Err(format!(
            "the next-page link leads to another host ({}://{}); only {}://{} is followed",
            next.scheme(),
            next.host_str().unwrap_or_default(),
            endpoint.scheme(),
            endpoint.host_str().unwrap_or_default()
        ));
    }
    let mut call = first.clone();
    let mut base = next.clone();
    base.set_query(None);
    base.set_fragment(None);
    call.endpoint.url = base.to_string();
    call.method.path = String::new();
    call.method.query.clear();
    call.method.variables.retain(|v| v.name != PAGE_VARIABLE);
    let mut vars = BTreeMap::new();
    for (i, (name, value)) in next.query_pairs().enumerate() {
        let variable = format!("switchboard_link_{i}");
        call.method.query.insert(name.into_owned(), format!("${{{variable}}}"));
        call.method.variables.push(VariableConfig {
            name: variable.clone(),
            default: None,
            max_length: 4096,
        });
        vars.insert(variable, value.into_owned());
    }
    Ok((call, vars))
}

/// One pull of a REST source: every page through the transform to the targets.
async fn pull_rest(config: &WorkerConfig, rest: &RestPullConfig) -> Result<String, RunOnceError> {
    let p = &rest.pagination;
    if !matches!(p.type_.as_str(), "none" | "page" | "offset" | "cursor" | "link") {
        return Err(RunOnceError::Unsupported(format!(
            "{} pagination is not supported by this worker build (none, page, offset, cursor and link are)",
            p.type_
        )));
    }
    let outbound = Outbound::new(config).map_err(|e| RunOnceError::Setup(e.to_string()))?;
    let deliverer = super::outbound::outbound_deliverer(config).map_err(RunOnceError::Setup)?;
    let transform = Transform::compile(
        &config.transform,
        config.targets.iter().map(|t| (t.name.as_str(), t.when.as_deref())),
    )
    .map_err(|e| RunOnceError::Setup(e.to_string()))?;
    let metrics = Arc::new(Metrics::for_config(config));
    let pipeline = Pipeline::new(transform, config.targets.clone(), deliverer, metrics);
    let first_call = page_call(rest);
    let mut call = first_call.clone();
    let mut link_vars: Option<BTreeMap<String, String>> = None;
    let run_id = uuid::Uuid::new_v4().to_string();
    let (mut read, mut delivered, mut filtered, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let mut first_failure: Option<String> = None;
    let mut cursor: Option<String> = None;
    let mut pages = 0u32;
    while pages < p.max_pages.max(1) {
        let page_value = match p.type_.as_str() {
            "page" => Some((pages + 1).to_string()),
            "offset" => Some((u64::from(pages) * u64::from(p.page_size)).to_string()),
            "cursor" => cursor.clone(),
            _ => None,
        };
        let mut vars = link_vars.take().unwrap_or_default();
        if let Some(v) = &page_value {
            vars.insert(PAGE_VARIABLE.to_string(), v.clone());
        } else if p.type_ == "cursor" {
            // The first cursor page carries no cursor.
            vars.insert(PAGE_VARIABLE.to_string(), String::new());
        }
        let outcome = outbound.deliver(&call, &vars, &format!("{run_id}-page-{pages}")).await;
        let (body, link) = match &outcome {
            DeliveryOutcome::Delivered { body, link, .. } => (body.clone(), link.clone()),
            other => {
                return Err(RunOnceError::Failed {
                    reason: super::outbound::failure_reason(other),
                    message: format!(
                        "page {} of {}.{} failed after {read} records: {}",
                        pages + 1,
                        call.endpoint.name,
                        call.method.name,
                        other
                            .failure()
                            .map(|f| f.to_string())
                            .unwrap_or_else(|| "circuit open".into())
                    ),
                });
            }
        };
        pages += 1;
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| RunOnceError::Failed {
                reason: "invalid_response".into(),
                message: format!("page {pages} is not JSON: {e}"),
            })?;
        let records = match &rest.records_pointer {
            Some(pointer) if !pointer.is_empty() => document.pointer(pointer),
            _ => Some(&document),
        };
        let Some(serde_json::Value::Array(records)) = records else {
            return Err(RunOnceError::Failed {
                reason: "invalid_response".into(),
                message: format!(
                    "page {pages}: no array of records at {:?}",
                    rest.records_pointer.as_deref().unwrap_or("")
                ),
            });
        };
        for (i, record) in records.iter().enumerate() {
            read += 1;
            let mut event = QueuedEvent {
                id: format!("{run_id}-{}-{i}", pages - 1),
                source_id: None,
                received_at: Utc::now(),
                route: "rest".into(),
                pending_targets: vec![],
                request: StoredRequest::default(),
                attempts: vec![],
                replays: vec![],
                body: vec![],
            };
            match pipeline.process(&mut event, record).await {
                PipelineResult::Delivered { .. } => delivered += 1,
                PipelineResult::Filtered => filtered += 1,
                PipelineResult::MappingFailed(e) => {
                    failed += 1;
                    first_failure.get_or_insert_with(|| format!("record {read}: {e}"));
                }
                PipelineResult::Failed { reason, message, .. } => {
                    failed += 1;
                    first_failure
                        .get_or_insert_with(|| format!("record {read}: {reason}: {message}"));
                }
            }
        }
        let next = match p.type_.as_str() {
            "none" => None,
            "link" => {
                let base = current_url(&call);
                match link.as_deref().and_then(|l| next_link(l, &base)) {
                    Some(url) => {
                        let (next_call, next_vars) =
                            link_call(&first_call, &url).map_err(|message| {
                                RunOnceError::Failed { reason: "invalid_link".into(), message }
                            })?;
                        call = next_call;
                        link_vars = Some(next_vars);
                        Some(String::new())
                    }
                    None => None,
                }
            }
            "cursor" => {
                p.cursor_pointer.as_deref().and_then(|ptr| document.pointer(ptr)).and_then(|v| {
                    match v {
                        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }
                })
            }
            // Page and offset: a short page is the last one.
            _ => (records.len() as u64 >= u64::from(p.page_size) && !records.is_empty())
                .then(String::new),
        };
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let summary = format!(
        "pulled {read} records from {pages} page(s): {delivered} delivered, {filtered} filtered, {failed} failed"
    );
    match first_failure {
        None => Ok(summary),
        Some(first) => Err(RunOnceError::Failed {
            reason: "records_failed".into(),
            message: crate::queue::sanitize_message(&format!("{summary}; first: {first}")),
        }),
    }
}
