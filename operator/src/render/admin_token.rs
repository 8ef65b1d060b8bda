//! The admin token Secret of an Integration's workers: the token their dead-letter API
//! (`/v1/dead-letters` on the admin port) requires, and `switchboard dlq --integration` reads.
//!
//! ```text
//!  controller (only when the Secret is missing): random token ─▶ render_admin_token_secret
//!      ─▶ create ─▶ Secret <integration>-worker-admin {token}  (owned by the Integration)
//!  pod template: volume admin-token (optional) ─▶ /var/run/switchboard/admin/token
//!                env SWITCHBOARD_ADMIN_TOKEN_FILE=/var/run/switchboard/admin/token
//! ```
//!
//! Unlike every other child, the Secret is created once and never applied again: its value is
//! random, so rendering it on each reconcile would rotate it each time. The builder is pure;
//! the caller brings the token.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use secrecy::{ExposeSecret, SecretString};
use switchboard_worker::config::ADMIN_TOKEN_KEY;

use super::metadata::{child_meta, child_name, integration_labels};
use crate::api::Integration;

/// Name of the Secret holding the admin token of an Integration's workers.
pub fn admin_token_secret_name(integration: &str) -> String {
    child_name(integration, "worker-admin", 63)
}

/// The admin token Secret of an Integration's workers, holding `token`; labelled like the
/// other children and owned by the Integration, so it is deleted with it.
pub fn render_admin_token_secret(integration: &Integration, token: &SecretString) -> Secret {
    let name = integration.name_any();
    let labels = integration_labels(&name, &integration.spec.owner.team, "worker");
    Secret {
        metadata: child_meta(integration, admin_token_secret_name(&name), labels),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_string(),
            ByteString(token.expose_secret().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}
