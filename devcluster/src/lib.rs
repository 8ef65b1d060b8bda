//! devcluster: an in-process Kubernetes API server for development and end-to-end tests.
//!
//! It knows Kubernetes, not any particular operator. See `README.md` for what is implemented
//! and where it knowingly differs from a real API server.
#![forbid(unsafe_code)]

pub mod schema;
