//! `switchboard worker run-once`: what a Schedule's CronJob runs.
//!
//! ```text
//!  config.run (an OutboundMessage method) ──▶ Outbound::deliver (retries, breaker) ──▶ exit 0 / 1
//!  config.source = rest ──▶ pages (none | page | offset | cursor | link) ──▶ records
//!                           ──▶ transform ──▶ targets; exit 1 when a page or a record failed
//!  config.source = file ──▶ import::scheduled::run_file_import (staging, run report)
//!  config.source = database ──▶ import::scheduled::run_database_pull (watermark, run report)
//!  config.source = imap ──▶ email::source::pull: actions ──▶ targets; handled mail updated,
//!                           failed mail dead-lettered (data dir) and left for the next run;
//!                           exit 1 when mail failed and none was handled, or IMAP failed
//!  config.lineage ──▶ OpenLineage START before, COMPLETE or FAIL after (never fails the run)
//! ```
//!
//! The exit status is what a Kubernetes Job understands (0 success, 1 failure); the caller
//! writes the summary or the error to the termination log. `link` pagination follows RFC 8288
//! `rel="next"` links on the endpoint's own host only, each request passing the SSRF guard
//! like the first.

use std::collections::BTreeMap;
use std::path::Path;

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
/// overrides the config's data directory (where a run without cluster access keeps its
/// watermark and run report, and an IMAP pull its dead letters).
pub async fn run_once(
    config_path: &Path,
    root: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<String, RunOnceError> {
    let config = super::load_rooted_config(config_path, root)?;
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
        Some(SourceConfig::Imap(imap)) => pull_imap(config, imap, data_dir).await,
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
///
/// Link values are split on commas outside `<…>` and quoted strings, and parameters on
/// semicolons outside quoted strings, so a comma or `<` inside a URI or a `title="…"` cannot
/// shift the parse. (Small enough to keep here rather than add a parser crate for it.)
pub fn next_link(header: &str, base: Option<&url::Url>) -> Option<url::Url> {
    split_outside_quotes(header, ',').into_iter().find_map(|link_value| {
        let (target, params) = link_value.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = split_outside_quotes(params, ';').into_iter().any(|param| {
            let Some((name, value)) = param.split_once('=') else { return false };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if !is_next {
            return None;
        }
        match base {
            Some(base) => base.join(target.trim()).ok(),
            None => url::Url::parse(target.trim()).ok(),
        }
    })
}

/// `text` split on `separator` where it stands outside `<…>` and outside quoted strings
/// (with `\` escapes inside them).
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut in_quotes, mut in_uri, mut escaped) = (false, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' if !in_uri => in_quotes = !in_quotes,
            '<' if !in_quotes => in_uri = true,
            '>' if !in_quotes => in_uri = false,
            c if c == separator && !in_quotes && !in_uri => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The call of a `next` link: same endpoint (scheme, host and port must match, so a link
/// cannot lead the pull to another host; the SSRF guard checks the address again), the link's
/// path as the method's fixed path and its query as bound variables (never parsed as
/// templates). A link that repeats a query parameter fails: the call's query is a map, and
/// dropping a value silently would fetch another page than the one linked.
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
    call.endpoint.url = next.origin().ascii_serialization();
    call.method.path = next.path().to_string();
    call.method.query.clear();
    call.method.variables.retain(|v| v.name != PAGE_VARIABLE);
    let mut vars = BTreeMap::new();
    for (i, (name, value)) in next.query_pairs().enumerate() {
        let variable = format!("switchboard_link_{i}");
        // Names are encoded when the request is prepared; one that looks like a template or
        // is empty would be refused there as a config error, so say what is wrong here.
        if name.is_empty() || name.contains("${") {
            return Err(format!(
                "the next-page link has an unusable query parameter name {name:?}"
            ));
        }
        if call.method.query.insert(name.to_string(), format!("${{{variable}}}")).is_some() {
            return Err(format!(
                "the next-page link repeats the query parameter {name:?}, which a pull cannot send twice"
            ));
        }
        call.method.variables.push(VariableConfig {
            name: variable.clone(),
            default: None,
            max_length: u32::try_from(value.len()).unwrap_or(u32::MAX).max(4096),
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
    let deliverer = super::outbound::deliverer_for(config).map_err(RunOnceError::Setup)?;
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
                match link.as_deref().and_then(|l| next_link(l, base.as_ref())) {
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

/// One pull of an IMAP source through the targets' deliverers.
async fn pull_imap(
    config: &WorkerConfig,
    imap: &ImapConfig,
    data_dir: &Path,
) -> Result<String, RunOnceError> {
    let deliverer = super::outbound::deliverer_for(config).map_err(RunOnceError::Setup)?;
    let transform = Transform::compile(
        &config.transform,
        config.targets.iter().map(|t| (t.name.as_str(), t.when.as_deref())),
    )
    .map_err(|e| RunOnceError::Setup(e.to_string()))?;
    let metrics = Arc::new(Metrics::for_config(config));
    let outbound = deliverer
        .outbound()
        .ok_or_else(|| RunOnceError::Setup("the targets have no outbound side".into()))?;
    let pipeline = Pipeline::new(transform, config.targets.clone(), deliverer, metrics.clone());
    let (report, result) = crate::email::source::pull(
        config,
        imap,
        &pipeline,
        outbound.credentials(),
        &metrics,
        data_dir.to_path_buf(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(url: &str) -> OutboundCall {
        serde_json::from_value(serde_json::json!({
            "endpoint": {"name": "api", "url": url, "protocol": "rest", "timeoutMs": 1000,
                "retry": {"maxAttempts": 1, "initialBackoffMs": 1, "maxBackoffMs": 1},
                "circuitBreaker": {"failureThreshold": 5, "openForMs": 1000}},
            "method": {"name": "list", "httpMethod": "GET", "path": "/items", "query": {"limit": "10"}}
        }))
        .unwrap()
    }

    #[test]
    fn next_links_are_found_among_other_relations() {
        let base = url::Url::parse("https://api.example/v1/items").unwrap();
        let base = Some(&base);
        let header = r#"<https://api.example/v1/items?page=1>; rel="first", <?page=3&x=y>; title="n"; rel="last next""#;
        assert_eq!(
            next_link(header, base).unwrap().as_str(),
            "https://api.example/v1/items?page=3&x=y"
        );
        let first = r#"<https://api.example/v1/items?page=2>; rel="next", <https://api.example/v1/items?page=1>; rel="first""#;
        assert_eq!(next_link(first, base).unwrap().as_str(), "https://api.example/v1/items?page=2");
        // Unquoted rel, and a comma, semicolon and `<` inside a title and inside a URI.
        let tricky = r#"<https://api.example/a?ids=1,2>; title="a, <b>; rel=next", <https://api.example/b?ids=3,4>; rel=next"#;
        assert_eq!(next_link(tricky, base).unwrap().as_str(), "https://api.example/b?ids=3,4");
        assert_eq!(next_link(r#"<https://api.example/a>; rel="prev""#, base), None);
        assert_eq!(next_link(r#"<https://api.example/a>; rel="nextpage""#, base), None);
        assert_eq!(next_link("garbage <", base), None);
        assert_eq!(next_link("", base), None);
        assert_eq!(next_link("<?page=2>; rel=next", None), None, "relative link without a base");
    }

    #[test]
    fn link_calls_stay_on_the_endpoint_host_and_bind_the_query() {
        let first = call("https://api.example/v1");
        let next =
            url::Url::parse("https://api.example/v1/items?cursor=%24%7Bsecret%7D&a%20b=2").unwrap();
        let (next_call, vars) = link_call(&first, &next).unwrap();
        assert_eq!(next_call.endpoint.url, "https://api.example");
        assert_eq!(next_call.method.path, "/v1/items");
        assert_eq!(
            next_call.method.query.get("cursor").map(String::as_str),
            Some("${switchboard_link_0}")
        );
        assert_eq!(
            next_call.method.query.get("a b").map(String::as_str),
            Some("${switchboard_link_1}")
        );
        assert_eq!(vars.get("switchboard_link_0").map(String::as_str), Some("${secret}"));
        assert!(!next_call.method.query.contains_key("limit"));
        // The call is one the request builder accepts, and the URL is the linked one.
        let prepared = crate::outbound::request::prepare(&next_call, &vars).unwrap();
        assert_eq!(
            prepared.url(None, None).unwrap().as_str(),
            "https://api.example/v1/items?a%20b=2&cursor=%24%7Bsecret%7D"
        );
        for other in [
            "https://evil.example/v1/items",
            "http://api.example/v1/items",
            "https://api.example:8443/v1",
        ] {
            assert!(link_call(&first, &url::Url::parse(other).unwrap()).is_err(), "{other}");
        }
        let repeated = url::Url::parse("https://api.example/v1/items?s=a&s=b").unwrap();
        assert!(link_call(&first, &repeated).unwrap_err().contains("repeats"));
        let templated = url::Url::parse("https://api.example/v1/items?%24%7Bx%7D=1").unwrap();
        assert!(link_call(&first, &templated).unwrap_err().contains("unusable"));
    }
}
