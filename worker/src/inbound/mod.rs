//! Inbound: webhook and API receivers.
pub mod signature;
