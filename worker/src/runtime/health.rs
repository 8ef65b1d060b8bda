//! Readiness and the outcome history behind `/readyz` and `/status`: last success, last
//! failure (time, reason, sanitized message), consecutive failures.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::queue::sanitize_message;
use crate::status::FailureInfo;

/// Shared health of the worker.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HealthState>,
}

#[derive(Debug, Default, Clone)]
struct HealthState {
    not_ready: Option<String>,
    last_success: Option<DateTime<Utc>>,
    last_failure: Option<FailureInfo>,
    consecutive_failures: u64,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark ready (`None`) or not ready with a reason.
    pub fn set_not_ready(&self, reason: Option<String>) {
        let mut s = self.lock();
        if s.not_ready != reason {
            match &reason {
                Some(r) => tracing::warn!(reason = %r, "worker not ready"),
                None => tracing::info!("worker ready"),
            }
        }
        s.not_ready = reason;
    }

    /// Why the worker is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        self.lock().not_ready.clone()
    }

    /// Record a success.
    pub fn success(&self) {
        let mut s = self.lock();
        s.last_success = Some(Utc::now());
        s.consecutive_failures = 0;
    }

    /// Record a failure.
    pub fn failure(&self, reason: &str, message: &str) {
        let mut s = self.lock();
        s.last_failure = Some(FailureInfo {
            time: Utc::now(),
            reason: reason.to_string(),
            message: sanitize_message(message),
        });
        s.consecutive_failures += 1;
    }

    /// Last success, last failure, consecutive failures.
    pub fn outcomes(&self) -> (Option<DateTime<Utc>>, Option<FailureInfo>, u64) {
        let s = self.lock();
        (s.last_success, s.last_failure.clone(), s.consecutive_failures)
    }
}
