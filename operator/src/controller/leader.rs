//! Leader election on a `coordination.k8s.io/v1` Lease, with a write gate.
//!
//! ```text
//!   every retryPeriod:  get Lease ─┬─ holder is me ──▶ renew (update with resourceVersion)
//!                                  ├─ free or unchanged for leaseDuration ──▶ take over
//!                                  └─ held by another ──▶ follow
//!   is_leader() = holder is me AND last successful renew < renewDeadline ago (monotonic clock)
//! ```
//!
//! A competitor takes over only after seeing the Lease unchanged for `leaseDuration`, while the
//! leader stops acting `renewDeadline` (< `leaseDuration`) after its last successful renew. A
//! leader that was paused therefore finds its deadline passed when it resumes and writes
//! nothing: every API write of the operator asks [`LeaderGuard::is_leader`] first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Timing of the election.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// How long a Lease stays valid without renewal (what competitors wait for).
    pub lease_duration: Duration,
    /// How long after its last renewal the leader keeps acting.
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(12),
            renew_deadline: Duration::from_secs(8),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this process may act as the leader right now.
#[derive(Clone, Debug)]
pub struct LeaderGuard {
    last_renew: Arc<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
}

impl LeaderGuard {
    /// A guard that always allows writes (leader election disabled).
    pub fn always() -> Self {
        LeaderGuard { last_renew: Arc::new(Mutex::new(None)), renew_deadline: Duration::MAX }
    }

    /// Whether the last successful renewal is recent enough to act.
    pub fn is_leader(&self) -> bool {
        if self.renew_deadline == Duration::MAX {
            return true;
        }
        let last = *self.last_renew.lock().expect("leader state lock");
        last.is_some_and(|at| at.elapsed() < self.renew_deadline)
    }

    fn renewed(&self, at: Instant) {
        *self.last_renew.lock().expect("leader state lock") = Some(at);
    }

    fn lose(&self) {
        *self.last_renew.lock().expect("leader state lock") = None;
    }
}

/// The state of the election, as published to the rest of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Waiting for the Lease.
    Following,
    /// Holding the Lease.
    Leading,
    /// Held the Lease and lost it: the process must stop acting and exit.
    Lost,
}

/// Runs the election for one identity on one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    guard: LeaderGuard,
}

impl Elector {
    /// An elector for the Lease `namespace/name`, as `identity` (usually the pod name).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            guard: LeaderGuard {
                last_renew: Arc::new(Mutex::new(None)),
                renew_deadline: timing.renew_deadline,
            },
        }
    }

    /// The write gate shared with the controllers.
    pub fn guard(&self) -> LeaderGuard {
        self.guard.clone()
    }

    /// Run until leadership is lost (never returns while following or leading). The channel
    /// carries the state; it starts at `Following`.
    pub async fn run(self, state: watch::Sender<Leadership>) {
        let mut observed: Option<(String, Instant)> = None;
        let mut leading = false;
        loop {
            let step_started = Instant::now();
            match self.step(&mut observed).await {
                Ok(true) => {
                    self.guard.renewed(step_started);
                    if !leading {
                        info!(identity = %self.identity, lease = %self.name, "became the leader");
                        leading = true;
                        let _ = state.send(Leadership::Leading);
                    }
                }
                Ok(false) if leading => {
                    warn!(identity = %self.identity, "another replica holds the lease; stepping down");
                    self.guard.lose();
                    let _ = state.send(Leadership::Lost);
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    warn!(%error, "lease update failed");
                    if leading && !self.guard.is_leader() {
                        warn!(identity = %self.identity, "could not renew the lease in time; stepping down");
                        let _ = state.send(Leadership::Lost);
                        return;
                    }
                }
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// One round: returns whether this identity holds the Lease after it.
    async fn step(&self, observed: &mut Option<(String, Instant)>) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_seconds = self.timing.lease_duration.as_secs() as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // The record changes on every renewal; note when we last saw it change.
        let record = format!("{holder}/{:?}", spec.renew_time.as_ref().map(|t| t.0));
        let unchanged_since = match observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                *observed = Some((record, Instant::now()));
                Instant::now()
            }
        };
        let mine = holder == self.identity;
        let expired = holder.is_empty() || unchanged_since.elapsed() >= self.timing.lease_duration;
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_seconds);
        // The update carries the resourceVersion we read: a competitor's write makes it a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_expires_after_the_renew_deadline() {
        let guard = LeaderGuard {
            last_renew: Arc::new(Mutex::new(None)),
            renew_deadline: Duration::from_millis(50),
        };
        assert!(!guard.is_leader());
        guard.renewed(Instant::now());
        assert!(guard.is_leader());
        guard.renewed(Instant::now() - Duration::from_millis(60));
        assert!(!guard.is_leader(), "a renewal older than the deadline no longer allows writes");
        assert!(LeaderGuard::always().is_leader());
    }
}
