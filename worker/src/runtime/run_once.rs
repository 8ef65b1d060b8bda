//! `switchboard worker run-once`: what a Schedule's CronJob runs.
//!
//! ```text
//!  config.run (an OutboundMessage method) ──▶ Outbound::deliver (retries, breaker) ──▶ exit 0 / 1
//!  config.source = rest ──▶ pages (none | page | offset | cursor) ──▶ records ──▶ transform
//!                           ──▶ targets; exit 1 when a page or a record failed
//!  config.source = imap ──▶ email::source::pull: actions ──▶ targets; handled mail updated,
//!                           failed mail dead-lettered (data dir) and left for the next run;
//!                           exit 1 when mail failed and none was handled, or IMAP failed
//!  config.source = database | file ──▶ refused with the reason (a later release)
//! ```
//!
//! The exit status is what a Kubernetes Job understands (0 success, 1 failure); the caller
//! writes the summary or the error to the termination log. Database and file pulls are not
//! performed by this build, and `link` pagination (which needs response headers) neither:
//! the run says so and fails, rather than pretending to have pulled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use chrono::Utc;

use super::delivery::{Pipeline, PipelineResult};
use super::metrics::Metrics;
use crate::config::{
    ImapConfig, OutboundCall, RestPullConfig, SourceConfig, VariableConfig, WorkerConfig,
};
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

/// Run the config's call once; the summary on success. With `root`, the config and the
/// paths it names are read below that directory (see `WorkerConfig::rebase`); `data_dir`
/// overrides the config's data directory (dead letters of a pull).
pub async fn run_once(
    config_path: &Path,
    root: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> Result<String, RunOnceError> {
    let config = super::load_rooted_config(config_path, root)?;
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(&config.server.data_dir));
    if let Some(call) = &config.run {
        let outbound = Outbound::new(&config).map_err(|e| RunOnceError::Setup(e.to_string()))?;
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
        Some(SourceConfig::Rest(rest)) => pull_rest(&config, rest).await,
        Some(SourceConfig::Imap(imap)) => pull_imap(&config, imap, data_dir).await,
        Some(source @ (SourceConfig::Database(_) | SourceConfig::File(_))) => {
            Err(RunOnceError::Unsupported(format!(
                "{} pulls are not implemented in this worker build; they come in a later release",
                source.kind()
            )))
        }
        Some(source) => Err(RunOnceError::Unsupported(format!(
            "a {} source receives requests; run `switchboard worker` instead of run-once",
            source.kind()
        ))),
        None => Err(RunOnceError::Unsupported(
            "the config has neither `run` nor a source to pull".into(),
        )),
    }
}

/// The request for one page: the configured call with the page parameter added to its query.
fn page_call(rest: &RestPullConfig) -> OutboundCall {
    let mut call = rest.request.clone();
    let p = &rest.pagination;
    if p.type_ != "none" {
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

/// One pull of a REST source: every page through the transform to the targets.
async fn pull_rest(config: &WorkerConfig, rest: &RestPullConfig) -> Result<String, RunOnceError> {
    let p = &rest.pagination;
    if !matches!(p.type_.as_str(), "none" | "page" | "offset" | "cursor") {
        return Err(RunOnceError::Unsupported(format!(
            "{} pagination is not supported by this worker build (none, page, offset and cursor are)",
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
    let call = page_call(rest);
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
        let mut vars = BTreeMap::new();
        if let Some(v) = &page_value {
            vars.insert(PAGE_VARIABLE.to_string(), v.clone());
        } else if p.type_ == "cursor" {
            // The first cursor page carries no cursor.
            vars.insert(PAGE_VARIABLE.to_string(), String::new());
        }
        let outcome = outbound.deliver(&call, &vars, &format!("{run_id}-page-{pages}")).await;
        let body = match &outcome {
            DeliveryOutcome::Delivered { body, .. } => body.clone(),
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

/// One pull of an IMAP source through the targets' deliverers.
async fn pull_imap(
    config: &WorkerConfig,
    imap: &ImapConfig,
    data_dir: PathBuf,
) -> Result<String, RunOnceError> {
    let deliverer = super::outbound::outbound_deliverer(config).map_err(RunOnceError::Setup)?;
    let transform = Transform::compile(
        &config.transform,
        config.targets.iter().map(|t| (t.name.as_str(), t.when.as_deref())),
    )
    .map_err(|e| RunOnceError::Setup(e.to_string()))?;
    let metrics = Arc::new(Metrics::for_config(config));
    let outbound = deliverer.outbound().clone();
    let pipeline = Pipeline::new(transform, config.targets.clone(), deliverer, metrics.clone());
    let (report, result) = crate::email::source::pull(
        config,
        imap,
        &pipeline,
        outbound.credentials(),
        &metrics,
        data_dir,
    )
    .await;
    tracing::info!(
        report = %serde_json::to_string(&report).unwrap_or_default(),
        "imap pull finished"
    );
    let summary = report.summary();
    if let Err(error) = result {
        return Err(RunOnceError::Failed {
            reason: error.category().into(),
            message: crate::queue::sanitize_message(&format!("{error}; {summary}")),
        });
    }
    if report.failed > 0 && report.handled == 0 {
        return Err(RunOnceError::Failed {
            reason: "emails_failed".into(),
            message: crate::queue::sanitize_message(&format!(
                "{summary}; first: {}",
                report.first_failure.as_deref().unwrap_or_default()
            )),
        });
    }
    Ok(summary)
}
