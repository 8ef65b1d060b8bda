//! Import sets and scheduled pulls: staging, row rules, mapping, coalescing, delivery to the
//! targets, and the run report.
//!
//! ```text
//!  file import (run-once)
//!    fetch (OutboundCall, ≤ maxBytes) ──▶ parse (csv | json | jsonLines | xml)
//!    ──▶ stage every row: row rules (CEL over `record`) ─false/error─▶ rejected (row, reason)
//!                         filter ─false─▶ skipped
//!                         fieldMap ─error─▶ rejected
//!                         coalesce on coalesceKeys (the last row of a key wins)
//!    ──▶ rejected > maxRejectedPercent of read?  yes: nothing is written, the run fails
//!    ──▶ each staged row to each target (its `when`): database (created | updated),
//!        outboundMessage (delivered)
//!    ──▶ RunReport ──▶ status.lastRun (run_state) + the Job's termination message
//!
//!  database pull (run-once)
//!    watermark from status.watermark (or the initial value) ──▶ database::pull batches
//!    ──▶ each row: filter, fieldMap, targets ──▶ after the batch: status.watermark = its greatest
//!        value (a row that could not be delivered for a transient reason stops the run first)
//! ```
//!
//! Expressions see one variable, `record`: the row's fields (CSV cells as strings, JSON values,
//! XML child elements, database columns). Row rules and the transform share the transform's
//! cost bounds. Rejection reasons are written here (rule messages, expression names and error
//! categories, column or constraint names) and never quote a cell value.

pub mod parse;
pub mod report;
pub mod run_state;
pub mod scheduled;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::config::{RetryConfig, RowRuleConfig, TargetConfig, TargetKind, WorkerConfig};
use crate::database::target::{DatabaseTarget, RowWrite};
use crate::database::{Database, DatabaseError};
use crate::outbound::egress::EgressPolicy;
use crate::runtime::delivery::Deliverer;
use crate::transform::{CelInput, Expression, Outcome, Transform, TransformError, Variables};
use report::RunReport;

/// Why an import or pull could not run (as opposed to rows it rejected).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The configuration cannot run.
    #[error("{0}")]
    Setup(String),
    /// The file could not be fetched.
    #[error("{0}")]
    Fetch(String),
    /// The file could not be parsed.
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// Too many rows were rejected: nothing was written.
    #[error("{rejected} of {read} rows rejected, more than {max_percent}%: nothing was written")]
    TooManyRejected {
        /// Rows read.
        read: u64,
        /// Rows rejected.
        rejected: u64,
        /// The threshold.
        max_percent: u32,
    },
    /// A target could not take a row for a reason that may pass (retries exhausted).
    #[error("row {row}: target {target}: {message}")]
    Delivery {
        /// Row number.
        row: u64,
        /// Target name.
        target: String,
        /// What happened.
        message: String,
    },
}

impl ImportError {
    /// Short category (the termination message's prefix and the failure reason).
    pub fn category(&self) -> &'static str {
        match self {
            ImportError::Setup(_) => "SetupFailed",
            ImportError::Fetch(_) => "FetchFailed",
            ImportError::Parse(_) => "MalformedFile",
            ImportError::Database(_) => "DatabaseFailed",
            ImportError::TooManyRejected { .. } => "TooManyRejected",
            ImportError::Delivery { .. } => "DeliveryFailed",
        }
    }
}

/// What delivering one row did.
#[derive(Debug, Clone, PartialEq)]
pub enum RowResult {
    /// The filter or every target's `when` left it out.
    Skipped,
    /// Written or delivered (`Updated` when a database target updated a coalesced row).
    Written(RowWrite),
    /// A target refused it for good (constraint, 4xx, mapping): a rejection.
    Rejected(String),
    /// A target could not take it for now (retries exhausted, circuit open).
    Transient {
        /// Target name.
        target: String,
        /// What happened.
        message: String,
    },
}

/// The targets of a config, as the import and pull paths use them: database targets written
/// directly (to know created from updated), others through the worker's [`Deliverer`].
pub struct RowTargets {
    targets: Vec<TargetConfig>,
    transform: Transform,
    deliverer: Arc<dyn Deliverer>,
    databases: BTreeMap<String, Arc<DatabaseTarget>>,
    retry: RetryConfig,
}

impl RowTargets {
    /// Build from the config; `deliverer` serves the outbound-message targets.
    pub fn new(
        config: &WorkerConfig,
        deliverer: Arc<dyn Deliverer>,
        databases: BTreeMap<String, Arc<DatabaseTarget>>,
    ) -> Result<RowTargets, ImportError> {
        let transform = Transform::compile(
            &config.transform,
            config.targets.iter().map(|t| (t.name.as_str(), t.when.as_deref())),
        )
        .map_err(|e| ImportError::Setup(e.to_string()))?;
        Ok(RowTargets {
            targets: config.targets.clone(),
            transform,
            deliverer,
            databases,
            retry: config.delivery.retry.clone(),
        })
    }

    /// Filter and map a record: `None` when filtered out.
    pub fn map(
        &self,
        input: &CelInput,
        record: &Value,
    ) -> Result<Option<Variables>, TransformError> {
        match self.transform.apply(input, record)? {
            Outcome::Filtered => Ok(None),
            Outcome::Mapped(vars) => Ok(Some(vars)),
        }
    }

    /// Deliver one mapped row to every target whose `when` takes it.
    pub async fn deliver(&self, input: &CelInput, vars: &Variables, id: &str) -> RowResult {
        let mut result = RowResult::Skipped;
        for target in &self.targets {
            match self.transform.target_accepts(&target.name, input) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return RowResult::Rejected(expression_reason(&e)),
            }
            let written = match &target.kind {
                TargetKind::Database(_) => {
                    let Some(table) = self.databases.get(&target.name) else {
                        return RowResult::Rejected(format!("target {}: not set up", target.name));
                    };
                    match table.write_with_retry(vars, &self.retry).await {
                        (Ok(write), _) => write,
                        (Err(e), _) if e.is_retryable() => {
                            return RowResult::Transient {
                                target: target.name.clone(),
                                message: e.to_string(),
                            };
                        }
                        (Err(e), _) => {
                            return RowResult::Rejected(format!("target {}: {e}", target.name));
                        }
                    }
                }
                _ => {
                    let outcome = self.deliverer.deliver(target, vars, id).await;
                    if !outcome.delivered {
                        let message = format!("{}: {}", outcome.reason, outcome.message);
                        return if ["retries_exhausted", "circuit_open"]
                            .contains(&outcome.reason.as_str())
                        {
                            RowResult::Transient { target: target.name.clone(), message }
                        } else {
                            RowResult::Rejected(format!("target {}: {message}", target.name))
                        };
                    }
                    RowWrite::Created
                }
            };
            result = match (result, written) {
                (RowResult::Written(RowWrite::Updated), _) | (_, RowWrite::Updated) => {
                    RowResult::Written(RowWrite::Updated)
                }
                _ => RowResult::Written(RowWrite::Created),
            };
        }
        result
    }
}

/// The database targets of a config, by target name.
pub fn database_targets(
    config: &WorkerConfig,
) -> Result<BTreeMap<String, Arc<DatabaseTarget>>, DatabaseError> {
    let policy = Arc::new(
        EgressPolicy::new(&config.egress).map_err(|e| DatabaseError::Config(e.to_string()))?,
    );
    let mut out = BTreeMap::new();
    for target in &config.targets {
        if let TargetKind::Database(db) = &target.kind {
            let credentials = crate::credentials::CredentialStore::new(&config.credentials)
                .map_err(|e| DatabaseError::Credential(e.to_string()))?;
            let database = Database::new(&db.connection, credentials, policy.clone())?;
            let table = DatabaseTarget::new(
                database,
                &db.table,
                config.transform.field_map.keys().cloned().collect(),
                config.transform.coalesce_keys.clone(),
            )
            .map_err(|e| match e {
                DatabaseError::Config(m) => {
                    DatabaseError::Config(format!("target {}: {m}", target.name))
                }
                other => other,
            })?;
            out.insert(target.name.clone(), Arc::new(table));
        }
    }
    Ok(out)
}

/// A rejection reason for an expression failure: the expression's name and category, and
/// CEL's message only when it names a missing field (other messages may quote values).
pub fn expression_reason(error: &TransformError) -> String {
    match error {
        TransformError::Evaluation { what, message }
            if message.starts_with("No such key")
                || message.starts_with("Undeclared reference") =>
        {
            format!("{what}: {}", message.chars().take(120).collect::<String>())
        }
        TransformError::Evaluation { what, .. }
        | TransformError::NotBool { what, .. }
        | TransformError::CostExceeded { what, .. }
        | TransformError::Compile { what, .. }
        | TransformError::TooComplex { what, .. } => format!("{what}: {}", error.category()),
    }
}

/// Compiled row rules.
pub struct RowRules(Vec<(Expression, String)>);

impl RowRules {
    /// Compile `rules` (named `rowRules[i]` in errors).
    pub fn compile(rules: &[RowRuleConfig]) -> Result<RowRules, TransformError> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok((Expression::compile(&format!("rowRules[{i}]"), &r.rule)?, r.message.clone()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(RowRules)
    }

    /// The first broken rule's message, if any.
    pub fn check(&self, input: &CelInput) -> Option<String> {
        for (rule, message) in &self.0 {
            match rule.evaluate_bool(input) {
                Ok(true) => {}
                Ok(false) => return Some(message.clone()),
                Err(e) => return Some(format!("{message} ({})", expression_reason(&e))),
            }
        }
        None
    }
}

/// A row that passed staging.
#[derive(Debug, Clone)]
pub struct StagedRow {
    /// Row number in the file.
    pub row: u64,
    /// The record (for the targets' `when`).
    pub record: Value,
    /// The mapped variables.
    pub vars: Variables,
}

/// Stage parsed rows: rules, filter, mapping and coalescing, counting into `report`.
pub fn stage(
    rows: Vec<parse::ParsedRow>,
    rules: &RowRules,
    targets: &RowTargets,
    coalesce_keys: &[String],
    report: &mut RunReport,
) -> Vec<StagedRow> {
    let mut staged: Vec<StagedRow> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for parsed in rows {
        report.read += 1;
        let record = match parsed.record {
            Ok(map) => Value::Object(map),
            Err(reason) => {
                report.reject(parsed.row, &reason);
                continue;
            }
        };
        let input = CelInput::new(&[("record", &record)]);
        if let Some(reason) = rules.check(&input) {
            report.reject(parsed.row, &reason);
            continue;
        }
        let vars = match targets.map(&input, &record) {
            Ok(Some(vars)) => vars,
            Ok(None) => continue,
            Err(e) => {
                report.reject(parsed.row, &expression_reason(&e));
                continue;
            }
        };
        if coalesce_keys.is_empty() {
            staged.push(StagedRow { row: parsed.row, record, vars });
            continue;
        }
        let mut key = Vec::new();
        let mut missing = None;
        for k in coalesce_keys {
            match vars.get(k) {
                None | Some(Value::Null) => missing = Some(k.clone()),
                Some(Value::String(s)) if s.is_empty() => missing = Some(k.clone()),
                Some(v) => key.push(v.to_string()),
            }
        }
        if let Some(k) = missing {
            report.reject(parsed.row, &format!("coalesce key {k:?} is empty"));
            continue;
        }
        let key = key.join("\u{1f}");
        match by_key.get(&key) {
            // A later row of the same key replaces the earlier one: one write per key.
            Some(&index) => staged[index] = StagedRow { row: parsed.row, record, vars },
            None => {
                by_key.insert(key, staged.len());
                staged.push(StagedRow { row: parsed.row, record, vars });
            }
        }
    }
    staged
}

/// Whether the rejections stay within the threshold.
pub fn within_threshold(report: &RunReport, max_percent: u32) -> bool {
    report.read == 0 || report.rejected * 100 <= u64::from(max_percent) * report.read
}

/// Deliver staged rows in order, counting into `report`. Stops at the first transient failure.
pub async fn deliver_staged(
    staged: &[StagedRow],
    targets: &RowTargets,
    run_id: &str,
    report: &mut RunReport,
) -> Result<(), ImportError> {
    for row in staged {
        let input = CelInput::new(&[("record", &row.record)]);
        match targets.deliver(&input, &row.vars, &format!("{run_id}-{}", row.row)).await {
            RowResult::Skipped => {}
            RowResult::Written(RowWrite::Created) => report.created += 1,
            RowResult::Written(RowWrite::Updated) => report.updated += 1,
            RowResult::Rejected(reason) => report.reject(row.row, &reason),
            RowResult::Transient { target, message } => {
                return Err(ImportError::Delivery { row: row.row, target, message });
            }
        }
    }
    Ok(())
}
