//! One scheduled run of a file import or a database pull (`switchboard worker run-once`):
//! set up the targets, run, record the watermark and the report, say how it went.
//!
//! ```text
//!  run_file_import:   fetch ─▶ parse ─▶ stage ─▶ threshold ─▶ deliver ─▶ report ─▶ status.lastRun
//!  run_database_pull: load watermark ─▶ { batch ─▶ deliver ─▶ status.watermark } … ─▶ report
//! ```
//!
//! The report is saved whatever the outcome (a failed run's report says how far it got); a
//! failure to save it is logged and does not change the run's result.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::report::RunReport;
use super::run_state::RunStateStore;
use super::{
    ImportError, RowResult, RowRules, RowTargets, deliver_staged, stage, within_threshold,
};
use crate::config::{DatabasePullConfig, FileImportConfig, WorkerConfig};
use crate::database::Database;
use crate::database::pull::{DatabasePull, WatermarkValue};
use crate::database::target::RowWrite;
use crate::delivery::{DeliveryOutcome, Outbound};
use crate::outbound::egress::EgressPolicy;
use crate::runtime::delivery::Deliverer;
use crate::runtime::metrics::Metrics;
use crate::transform::CelInput;

/// The outcome of a run: the report, and the error when it failed.
#[derive(Debug)]
pub struct RunOutcome {
    /// The report.
    pub report: RunReport,
    /// Why the run failed, if it did (rows rejected under the threshold do not fail a run).
    pub error: Option<ImportError>,
    /// The watermark after the run.
    pub watermark: Option<String>,
}

fn row_targets(
    config: &WorkerConfig,
    deliverer: Arc<dyn Deliverer>,
) -> Result<RowTargets, ImportError> {
    let databases = super::database_targets(config)?;
    RowTargets::new(config, deliverer, databases)
}

fn count_rows(metrics: &Metrics, report: &RunReport) {
    for (result, n) in [
        ("read", report.read),
        ("created", report.created),
        ("updated", report.updated),
        ("rejected", report.rejected),
    ] {
        metrics.count_rows(result, n);
    }
}

/// One file import.
pub async fn run_file_import(
    config: &WorkerConfig,
    file: &FileImportConfig,
    deliverer: Arc<dyn Deliverer>,
    store: &RunStateStore,
    metrics: &Metrics,
) -> RunOutcome {
    let mut report = RunReport::start(Utc::now());
    let error = import(config, file, deliverer, &mut report).await.err();
    // Rows rejected while staging (within the threshold) leave the run Succeeded; rows a
    // target refused make it Failed: they passed validation and still did not arrive.
    report.finish(error.is_none() && !delivery_rejections(&report));
    count_rows(metrics, &report);
    if let Err(e) = store.save(None, Some(&report)).await {
        tracing::warn!(error = %e, "the run report could not be recorded");
    }
    RunOutcome { report, error, watermark: None }
}

/// Whether any rejection came from a target (rather than staging): such a run is `Failed`.
fn delivery_rejections(report: &RunReport) -> bool {
    report.rejections.iter().any(|r| r.reason.starts_with("target "))
}

async fn import(
    config: &WorkerConfig,
    file: &FileImportConfig,
    deliverer: Arc<dyn Deliverer>,
    report: &mut RunReport,
) -> Result<(), ImportError> {
    let targets = row_targets(config, deliverer)?;
    let rules = RowRules::compile(&config.transform.row_rules)
        .map_err(|e| ImportError::Setup(e.to_string()))?;
    let outbound = Outbound::new(config).map_err(|e| ImportError::Setup(e.to_string()))?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let limit = usize::try_from(file.max_bytes).unwrap_or(usize::MAX);
    let outcome = outbound
        .deliver_with_limit(&file.fetch, &BTreeMap::new(), &format!("{run_id}-fetch"), Some(limit))
        .await;
    let body = match outcome {
        DeliveryOutcome::Delivered { body, .. } => body,
        other => {
            return Err(ImportError::Fetch(format!(
                "{}.{}: {}",
                file.fetch.endpoint.name,
                file.fetch.method.name,
                other.failure().map(|f| f.to_string()).unwrap_or_else(|| "circuit open".into())
            )));
        }
    };
    let rows = super::parse::parse_file(&body, file)?;
    drop(body);
    let staged = stage(rows, &rules, &targets, &config.transform.coalesce_keys, report);
    if !within_threshold(report, file.max_rejected_percent) {
        return Err(ImportError::TooManyRejected {
            read: report.read,
            rejected: report.rejected,
            max_percent: file.max_rejected_percent,
        });
    }
    deliver_staged(&staged, &targets, &run_id, report).await?;
    if delivery_rejections(report) {
        tracing::warn!(rejected = report.rejected, "targets refused some rows");
    }
    Ok(())
}

/// One database pull.
pub async fn run_database_pull(
    config: &WorkerConfig,
    pull: &DatabasePullConfig,
    deliverer: Arc<dyn Deliverer>,
    store: &RunStateStore,
    metrics: &Metrics,
) -> RunOutcome {
    let mut report = RunReport::start(Utc::now());
    let mut watermark = None;
    let error =
        pull_rows(config, pull, deliverer, store, metrics, &mut report, &mut watermark).await.err();
    report.finish(error.is_none() && report.rejected == 0);
    count_rows(metrics, &report);
    if let Err(e) = store.save(None, Some(&report)).await {
        tracing::warn!(error = %e, "the run report could not be recorded");
    }
    RunOutcome { report, error, watermark }
}

async fn pull_rows(
    config: &WorkerConfig,
    pull: &DatabasePullConfig,
    deliverer: Arc<dyn Deliverer>,
    store: &RunStateStore,
    metrics: &Metrics,
    report: &mut RunReport,
    watermark_out: &mut Option<String>,
) -> Result<(), ImportError> {
    let targets = row_targets(config, deliverer)?;
    let policy =
        Arc::new(EgressPolicy::new(&config.egress).map_err(|e| ImportError::Setup(e.to_string()))?);
    let credentials = crate::credentials::CredentialStore::new(&config.credentials)
        .map_err(|e| ImportError::Setup(e.to_string()))?;
    let database = Database::new(&pull.connection, credentials, policy)?;
    let source = DatabasePull::new(database, pull)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut row_number = 0u64;

    let Some(configured) = &pull.watermark else {
        let mut rows = source.stream_all().await?;
        while let Some(row) = rows.recv().await {
            row_number += 1;
            deliver_row(&targets, row?, row_number, &run_id, report).await?;
        }
        return Ok(());
    };
    let stored = store.load().await.map_err(|e| ImportError::Setup(e.to_string()))?;
    let mut watermark = stored.watermark.unwrap_or_else(|| configured.initial.clone());
    tracing::info!(watermark = %watermark, "database pull starts after the watermark");
    *watermark_out = Some(watermark.clone());
    loop {
        let batch = source.next_batch(&watermark).await?;
        let last = batch.last;
        let next = batch.watermark.clone();
        for row in batch.rows {
            row_number += 1;
            deliver_row(&targets, row, row_number, &run_id, report).await?;
        }
        if let Some(next) = next {
            // Every row up to `next` is delivered (or rejected and reported): safe to record.
            store.save(Some(&next), None).await.map_err(|e| {
                ImportError::Setup(format!(
                    "rows up to the watermark were delivered but it could not be recorded: {e}"
                ))
            })?;
            if let Some(seconds) = WatermarkValue::parse(&next).epoch_seconds() {
                metrics.set_watermark_timestamp(seconds);
            }
            watermark = next;
            *watermark_out = Some(watermark.clone());
        }
        if last {
            break;
        }
    }
    source.database().close().await;
    Ok(())
}

async fn deliver_row(
    targets: &RowTargets,
    row: serde_json::Map<String, Value>,
    number: u64,
    run_id: &str,
    report: &mut RunReport,
) -> Result<(), ImportError> {
    report.read += 1;
    let record = Value::Object(row);
    let input = CelInput::new(&[("record", &record)]);
    let vars = match targets.map(&input, &record) {
        Ok(Some(vars)) => vars,
        Ok(None) => return Ok(()),
        Err(e) => {
            report.reject(number, &super::expression_reason(&e));
            return Ok(());
        }
    };
    match targets.deliver(&input, &vars, &format!("{run_id}-{number}")).await {
        RowResult::Skipped => {}
        RowResult::Written(RowWrite::Created) => report.created += 1,
        RowResult::Written(RowWrite::Updated) => report.updated += 1,
        RowResult::Rejected(reason) => report.reject(number, &reason),
        RowResult::Transient { target, message } => {
            return Err(ImportError::Delivery { row: number, target, message });
        }
    }
    Ok(())
}

/// Where the run state lives for a config (the Integration's status, or the data directory).
pub async fn run_state_store(config: &WorkerConfig, data_dir: &Path) -> RunStateStore {
    RunStateStore::connect(&config.subject, data_dir).await
}
