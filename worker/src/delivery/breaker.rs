//! The circuit breaker of each target endpoint (RELIABILITY D5).
//!
//! ```text
//!            failures ≥ threshold               openFor elapsed
//!   Closed ───────────────────────▶ Open ───────────────────────▶ HalfOpen (one probe)
//!     ▲                               ▲                               │
//!     │ probe succeeds                └──────── probe fails ──────────┤
//!     └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! Only failures that say something about the target count: timeouts, connection errors,
//! resets, TLS failures, 408, 429, 5xx and SOAP receiver faults. Any other response closes
//! the count again (the target answered). While half-open exactly one probe is let through;
//! a probe that ends without reaching the target (for example a credential error) hands the
//! probe to the next caller. The clock is tokio's, so tests step through `openFor`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CircuitBreakerConfig;

/// The state of one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// One probe call is allowed.
    HalfOpen,
    /// Calls are refused.
    Open,
}

impl CircuitState {
    /// Value of the state gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Every breaker of a worker, by endpoint key.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    // Keys are shared with the permits, so a call allocates no key of its own.
    states: Mutex<HashMap<Arc<str>, State>>,
}

/// Permission to make one call; report its result with [`Permit::record`].
#[derive(Debug)]
pub(crate) struct Permit {
    breakers: Arc<Breakers>,
    key: Arc<str>,
    config: CircuitBreakerConfig,
    done: bool,
}

/// What a finished call tells the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The target answered.
    Success,
    /// The target failed.
    Failure,
    /// The call never reached the target.
    Neutral,
}

impl Breakers {
    /// A permit, or how long until the breaker lets a probe through.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        key: &str,
        config: &CircuitBreakerConfig,
    ) -> Result<Permit, Duration> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let shared = match states.get_key_value(key) {
            Some((shared, _)) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(key);
                states.insert(shared.clone(), State::Closed { failures: 0 });
                shared
            }
        };
        let allowed = if config.failure_threshold == 0 {
            Ok(())
        } else {
            let state = states.get_mut(key).expect("inserted above");
            let now = Instant::now();
            match state {
                State::Closed { .. } => Ok(()),
                State::Open { until } if now >= *until => {
                    *state = State::HalfOpen { probing: true };
                    tracing::info!(endpoint = key, "circuit half-open: sending one probe");
                    Ok(())
                }
                State::Open { until } => Err(*until - now),
                State::HalfOpen { probing: false } => {
                    *state = State::HalfOpen { probing: true };
                    Ok(())
                }
                State::HalfOpen { probing: true } => Err(Duration::from_millis(config.open_for_ms)),
            }
        };
        // The permit exists only once the lock is released: dropping one records a verdict,
        // which takes the lock.
        drop(states);
        allowed.map(|()| Permit {
            breakers: self.clone(),
            key: shared,
            config: config.clone(),
            done: false,
        })
    }

    /// The state of the breaker of `key` now.
    pub(crate) fn state(&self, key: &str) -> CircuitState {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get(key) {
            None | Some(State::Closed { .. }) => CircuitState::Closed,
            Some(State::Open { until }) if Instant::now() >= *until => CircuitState::HalfOpen,
            Some(State::Open { .. }) => CircuitState::Open,
            Some(State::HalfOpen { .. }) => CircuitState::HalfOpen,
        }
    }

    fn record(&self, key: &str, config: &CircuitBreakerConfig, verdict: Verdict) {
        if config.failure_threshold == 0 {
            return;
        }
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = match states.get_mut(key) {
            Some(state) => state,
            None => states.entry(Arc::from(key)).or_insert(State::Closed { failures: 0 }),
        };
        let open =
            || State::Open { until: Instant::now() + Duration::from_millis(config.open_for_ms) };
        let next = match (&*state, verdict) {
            (_, Verdict::Success) => State::Closed { failures: 0 },
            (State::Closed { failures }, Verdict::Failure) => {
                let failures = failures + 1;
                if failures >= config.failure_threshold {
                    tracing::warn!(endpoint = key, failures, "circuit opened");
                    open()
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { .. }, Verdict::Failure) => {
                tracing::warn!(endpoint = key, "probe failed: circuit open again");
                open()
            }
            (State::HalfOpen { .. }, Verdict::Neutral) => State::HalfOpen { probing: false },
            (State::Closed { failures }, Verdict::Neutral) => State::Closed { failures: *failures },
            (State::Open { until }, _) => State::Open { until: *until },
        };
        *state = next;
    }
}

impl Permit {
    /// Report the result of the call.
    pub(crate) fn record(mut self, verdict: Verdict) {
        self.done = true;
        self.breakers.record(&self.key, &self.config, verdict);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.breakers.record(&self.key, &self.config, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CircuitBreakerConfig {
        CircuitBreakerConfig { failure_threshold: 3, open_for_ms: 1000 }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_probes_once() {
        let breakers = Arc::new(Breakers::default());
        for _ in 0..2 {
            breakers.acquire("a", &config()).unwrap().record(Verdict::Failure);
        }
        assert_eq!(breakers.state("a"), CircuitState::Closed);
        breakers.acquire("a", &config()).unwrap().record(Verdict::Failure);
        assert_eq!(breakers.state("a"), CircuitState::Open);
        assert_eq!(breakers.acquire("a", &config()).unwrap_err(), Duration::from_millis(1000));
        assert_eq!(breakers.state("b"), CircuitState::Closed, "breakers are per endpoint");

        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(breakers.acquire("a", &config()).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = breakers.acquire("a", &config()).unwrap();
        assert!(breakers.acquire("a", &config()).is_err(), "only one probe while half-open");
        probe.record(Verdict::Failure);
        assert_eq!(breakers.state("a"), CircuitState::Open);

        tokio::time::advance(Duration::from_millis(1000)).await;
        let probe = breakers.acquire("a", &config()).unwrap();
        drop(probe);
        let probe = breakers.acquire("a", &config()).expect("a neutral probe hands over");
        probe.record(Verdict::Success);
        assert_eq!(breakers.state("a"), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let breakers = Arc::new(Breakers::default());
        for verdict in [
            Verdict::Failure,
            Verdict::Failure,
            Verdict::Success,
            Verdict::Failure,
            Verdict::Failure,
        ] {
            breakers.acquire("a", &config()).unwrap().record(verdict);
        }
        assert_eq!(breakers.state("a"), CircuitState::Closed);
    }
}
