//! Switchboard: a Kubernetes operator for governed integrations.
//!
//! `api` holds the four kinds; `render` turns them into the Kubernetes objects the operator
//! applies; `governance` holds lint and reports; `alerting` routes failing integrations' alerts
//! to their owners' on-call; `cli` is the `switchboard` command; `dev` runs it all on this
//! machine (`switchboard dev`).

pub mod alerting;
pub mod api;
pub mod cli;
pub mod controller;
pub mod dev;
pub mod dlq;
pub mod governance;
pub mod manifest;
pub mod render;
pub mod telemetry;
