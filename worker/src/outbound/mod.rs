//! The outbound side of a worker: everything between an [`OutboundCall`] and the bytes on
//! the wire, and back.
//!
//! ```text
//!  OutboundCall + variables
//!      │ template: ${var} encoded for JSON / XML / path / query / header (O2, O3)
//!      ▼
//!  request::prepare ──▶ PreparedRequest (REST, or SOAP 1.1/1.2 envelope)
//!      │  (delivery adds credential, Idempotency-Key, signature per attempt)
//!      ▼
//!  http::HttpClients ── rustls (ring) + client cert + egress::GuardedResolver (O1), no redirects
//!      ▼
//!  response ── xml (no DTD, no entities, limits: B2) ── soap faults ── captures by JSON Pointer
//! ```
//!
//! The retry loop, circuit breaker and outcome types live in [`crate::delivery`]; this module
//! has no policy of its own beyond safety.
//!
//! [`OutboundCall`]: crate::config::OutboundCall

pub mod egress;
pub mod http;
pub mod request;
pub mod soap;
pub mod tcp;
pub mod template;
pub mod xml;

pub use request::{PreparedRequest, RequestError, check_call, prepare};
