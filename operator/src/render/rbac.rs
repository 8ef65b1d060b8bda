//! The worker's identity and its least-privilege Role.
//!
//! Workers need no Kubernetes API access to move data. The only thing they may do is read
//! their own Integration and write its status (run reports and the watermark of scheduled
//! pulls), each rule scoped to that one object by `resourceNames`.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::GROUP;

/// The ServiceAccount of an integration's workers.
pub(crate) fn render_service_account(meta: ObjectMeta) -> ServiceAccount {
    ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The worker Role: its own Integration, read-only, and its status.
pub(crate) fn render_role(meta: ObjectMeta, integration: &str) -> Role {
    Role {
        metadata: meta,
        rules: Some(vec![
            // Read the integration, to know the generation and the last watermark of a pull.
            PolicyRule {
                api_groups: Some(vec![GROUP.into()]),
                resources: Some(vec!["integrations".into()]),
                resource_names: Some(vec![integration.into()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
            // Report the result of scheduled runs (run report, watermark) into the status.
            PolicyRule {
                api_groups: Some(vec![GROUP.into()]),
                resources: Some(vec!["integrations/status".into()]),
                resource_names: Some(vec![integration.into()]),
                verbs: vec!["get".into(), "patch".into()],
                ..PolicyRule::default()
            },
        ]),
    }
}

/// Binds the worker Role to the worker ServiceAccount.
pub(crate) fn render_role_binding(
    meta: ObjectMeta,
    role: &str,
    service_account: &str,
    namespace: Option<String>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: service_account.into(),
            namespace,
            ..Subject::default()
        }]),
    }
}
