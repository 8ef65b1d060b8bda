//! `switchboard-worker`: the runtime inside Switchboard worker pods.
//!
//! [`config`] is the operator/worker contract: the typed, versioned configuration the operator
//! renders and the worker reads. The operator depends on this crate, never the reverse.
//! [`status`] is the other half of that contract: the document a worker serves on `/status`.
//!
//! ```text
//!  inbound (axum: verify → parse → dedup) ──▶ queue (redb, group commit) ──▶ runtime::delivery
//!                                                 │                              │ transform (CEL)
//!                                                 └── dead letters ◀── exhausted ┘ delivery::Outbound
//! ```
//!
//! The inbound half: [`inbound`] (webhook and API receivers, signature schemes, CloudEvents),
//! [`transform`] (CEL filter and field map), [`queue`] (durable queue and dead letters),
//! [`runtime`] (the worker process and its admin port), [`cli`] and [`dlq`] (the client of the
//! dead-letter API that `switchboard dlq` runs).
//!
//! The outbound half of the runtime:
//!
//! - [`delivery`] delivers one event to one target: [`delivery::Outbound`] with retries,
//!   backoff, `Retry-After`, a circuit breaker per endpoint and idempotency keys;
//! - [`outbound`] builds and sends the requests: templates, REST and SOAP, safe XML, the
//!   HTTP clients with TLS and the SSRF guard;
//! - [`credentials`] loads mounted Secret files and authenticates requests (basic, bearer,
//!   API key, OAuth2 client credentials, mTLS, HMAC signatures);
//! - [`email`] reads IMAP mailboxes (inbound email actions) and sends email targets over SMTP;
//! - [`health`] runs the synthetic health checks of external endpoints behind `/status`.
//!
//! The data connectors of scheduled runs: [`database`] (PostgreSQL and MySQL sources with a
//! watermark, tables as targets), [`import`] (file imports: parsing, staging, row rules,
//! coalescing, run reports, and where watermarks and reports are kept) and [`lineage`]
//! (OpenLineage run events).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod credentials;
pub mod database;
pub mod delivery;
pub mod dlq;
pub mod email;
pub mod health;
pub mod import;
pub mod inbound;
pub mod lineage;
pub mod outbound;
pub mod queue;
pub mod runtime;
pub mod status;
pub mod transform;
