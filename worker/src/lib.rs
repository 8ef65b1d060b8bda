//! `switchboard-worker`: the runtime inside Switchboard worker pods.
//!
//! [`config`] is the operator/worker contract: the typed, versioned configuration the operator
//! renders and the worker reads. The operator depends on this crate, never the reverse.

pub mod config;
