//! Governance: the checks a platform team runs before merge (`lint`) and the auditor's view.

pub mod lint;
pub mod report;
