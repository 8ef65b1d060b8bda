//! `switchboard-worker`: the runtime inside Switchboard worker pods.
//!
//! [`config`] is the operator/worker contract: the typed, versioned configuration the operator
//! renders and the worker reads. The operator depends on this crate, never the reverse.
//! [`status`] is the other half of that contract: the document a worker serves on `/status`.
//!
//! ```text
//!  inbound (axum: verify → parse → dedup) ──▶ queue (redb, group commit) ──▶ runtime::delivery
//!                                                 │                              │ transform (CEL)
//!                                                 └── dead letters ◀── exhausted ┘ outbound (targets)
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod inbound;
pub mod queue;
pub mod runtime;
pub mod status;
pub mod transform;
