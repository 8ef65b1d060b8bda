//! The run report of a scheduled pull or import: what was read, created, updated and
//! rejected, and why. Patched into the Integration's `status.lastRun` (same field names as the
//! CRD's `RunReport`) and summarised in the Job's termination message.
//!
//! A rejection carries the row number and a reason written by the worker (the rule's message,
//! the expression and failure category, the column or constraint): never the cell values of
//! the rejected row, never a secret.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Most rejections listed in a report (the counters count all of them).
pub const MAX_REJECTIONS: usize = 50;
/// Longest rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 256;

/// `Succeeded` or `Failed`.
pub const SUCCEEDED: &str = "Succeeded";
/// See [`SUCCEEDED`].
pub const FAILED: &str = "Failed";

/// One rejected row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Row number in the source, 1-based (a CSV header is not counted).
    pub row: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// The report of one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// When the run started (RFC 3339).
    pub start_time: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// [`SUCCEEDED`] or [`FAILED`].
    pub result: String,
    /// Rows or records read.
    pub read: u64,
    /// Rows written as new rows (and records delivered to targets that cannot tell new from
    /// updated, such as outbound messages).
    pub created: u64,
    /// Rows a database target updated on the coalesce keys.
    pub updated: u64,
    /// Rows rejected by a row rule, the mapping, or a target.
    pub rejected: u64,
    /// The first [`MAX_REJECTIONS`] rejections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

impl RunReport {
    /// A report for a run starting now.
    pub fn start(at: DateTime<Utc>) -> RunReport {
        RunReport {
            start_time: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            completion_time: None,
            result: FAILED.into(),
            read: 0,
            created: 0,
            updated: 0,
            rejected: 0,
            rejections: Vec::new(),
        }
    }

    /// Count a rejection, listing it while there is room.
    pub fn reject(&mut self, row: u64, reason: &str) {
        self.rejected += 1;
        if self.rejections.len() < MAX_REJECTIONS {
            let reason: String =
                crate::queue::sanitize_message(reason).chars().take(MAX_REASON_CHARS).collect();
            self.rejections.push(Rejection { row, reason });
        }
    }

    /// Close the report with its result.
    pub fn finish(&mut self, succeeded: bool) {
        self.completion_time = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true));
        self.result = if succeeded { SUCCEEDED } else { FAILED }.into();
    }

    /// One line for logs and the termination message.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}: read {}, created {}, updated {}, rejected {}",
            self.result, self.read, self.created, self.updated, self.rejected
        );
        if let Some(first) = self.rejections.first() {
            text.push_str(&format!("; first rejection: row {}: {}", first.row, first.reason));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_bounded_and_serialized_like_the_crd() {
        let mut report = RunReport::start(Utc::now());
        report.read = 200;
        for row in 1..=120 {
            report.reject(row, &"x".repeat(1000));
        }
        report.finish(false);
        assert_eq!(report.rejected, 120);
        assert_eq!(report.rejections.len(), MAX_REJECTIONS);
        assert!(report.rejections[0].reason.chars().count() <= MAX_REASON_CHARS);
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "startTime",
            "completionTime",
            "result",
            "read",
            "created",
            "updated",
            "rejected",
            "rejections",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(
            report.summary().starts_with("Failed: read 200, created 0, updated 0, rejected 120")
        );
    }
}
