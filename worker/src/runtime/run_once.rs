//! `switchboard worker run-once`: what a Schedule's CronJob runs.
//!
//! ```text
//!  config.run (an OutboundMessage method) ──▶ Outbound::deliver (retries, breaker) ──▶ exit 0 / 1
//!  config.source = rest | database | file | imap ──▶ refused with the reason (see below)
//! ```
//!
//! The exit status is what a Kubernetes Job understands (0 success, 1 failure); the caller
//! writes the summary or the error to the termination log. Pulls of a source (REST with
//! pagination, database, file, IMAP) are not performed by this build: the outbound module
//! does not hand response bodies back yet, and the other pulls belong to a later issue. The
//! run says so and fails, rather than pretending to have pulled.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::SourceConfig;
use crate::delivery::{DeliveryOutcome, Outbound};

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
    let config = super::load_config(config_path)?;
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
        Some(SourceConfig::Rest(_)) => Err(RunOnceError::Unsupported(
            "REST pulls are not run by this worker build (the outbound module does not return response bodies yet)".into(),
        )),
        Some(source @ (SourceConfig::Database(_) | SourceConfig::File(_) | SourceConfig::Imap(_))) => {
            Err(RunOnceError::Unsupported(format!(
                "{} pulls are not implemented in this worker build; they come in a later release",
                source.kind()
            )))
        }
        Some(source) => Err(RunOnceError::Unsupported(format!(
            "a {} source receives requests; run `switchboard worker` instead of run-once",
            source.kind()
        ))),
        None => Err(RunOnceError::Unsupported("the config has neither `run` nor a source to pull".into())),
    }
}
