//! `switchboard-worker`: the runtime inside Switchboard worker pods.
//!
//! [`config`] is the operator/worker contract: the typed, versioned configuration the operator
//! renders and the worker reads. The operator depends on this crate, never the reverse.
//!
//! The outbound half of the runtime:
//!
//! - [`delivery`] delivers one event to one target: [`delivery::Outbound`] with retries,
//!   backoff, `Retry-After`, a circuit breaker per endpoint and idempotency keys;
//! - [`outbound`] builds and sends the requests: templates, REST and SOAP, safe XML, the
//!   HTTP clients with TLS and the SSRF guard;
//! - [`credentials`] loads mounted Secret files and authenticates requests (basic, bearer,
//!   API key, OAuth2 client credentials, mTLS, HMAC signatures).

#![forbid(unsafe_code)]

pub mod config;
pub mod credentials;
pub mod delivery;
pub mod outbound;
