//! The four kinds of group `switchboard.dev`, version `v1alpha1`: their specs, statuses and
//! the single-object rules (CEL `x-kubernetes-validations`) that the API server enforces.
//!
//! These types do no I/O. Cross-object facts (does the referenced Secret exist?) are status
//! conditions set by the controllers, never admission failures.

pub mod common;
pub mod credential;
pub mod integration;
pub mod outbound_message;
pub mod schedule;

pub use common::*;
pub use credential::*;
pub use integration::*;
pub use outbound_message::*;
pub use schedule::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Switchboard kind.
pub const GROUP: &str = "switchboard.dev";
/// API version of every Switchboard kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Switchboard kind.
pub const API_VERSION: &str = "switchboard.dev/v1alpha1";

/// The CustomResourceDefinitions of all four kinds, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Credential::crd(), Integration::crd(), OutboundMessage::crd(), Schedule::crd()]
}
