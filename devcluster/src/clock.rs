//! The cluster's wall clock, shared by the workload controllers and the pod runner.
//!
//! It is the system clock plus an offset that only grows. Tests move it forward with
//! [`Clock::advance`] to make a CronJob fire or a Job's deadline pass without waiting;
//! nothing else changes it, so in normal use it is the system clock. Timers that measure
//! durations (probe periods, restart back-off) use tokio's monotonic time instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A wall clock that tests can move forward.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The current time as a Kubernetes timestamp (RFC 3339, seconds, `Z`).
    pub fn timestamp(&self) -> String {
        format_time(self.now())
    }
}

/// A time as a Kubernetes timestamp (RFC 3339, seconds, `Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a Kubernetes timestamp.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_by_the_amount() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        let after = clock.now();
        let moved = (after - before).num_seconds();
        assert!((3600..3700).contains(&moved), "moved {moved}s");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_time("2026-11-29T10:00:00Z").unwrap();
        assert_eq!(format_time(t), "2026-11-29T10:00:00Z");
    }
}
