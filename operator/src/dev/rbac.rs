//! The operator's identity in `switchboard dev`: a ServiceAccount bound to the operator's
//! RBAC rules, the same single definition the Helm chart ships
//! (`charts/switchboard/files/operator-rules.yaml` for the ClusterRole,
//! `leader-election-rules.yaml` for the Role in the operator's namespace). A request the
//! chart does not allow is refused here too, so a missing permission shows up on a laptop
//! rather than in a customer's cluster.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The operator's cluster-wide rules, as the chart's ClusterRole includes them.
pub const OPERATOR_RULES: &str =
    include_str!("../../../charts/switchboard/files/operator-rules.yaml");
/// The operator's leader-election rules, for a Role in its namespace.
pub const LEADER_ELECTION_RULES: &str =
    include_str!("../../../charts/switchboard/files/leader-election-rules.yaml");
/// Name of the operator's ServiceAccount, ClusterRole and bindings.
pub const OPERATOR: &str = "switchboard-operator";
/// Field manager of everything `switchboard dev` applies.
pub const MANAGER: &str = "switchboard-dev";

/// Parses a rules file (a YAML list of PolicyRules).
pub fn parse_rules(text: &str) -> Result<Vec<PolicyRule>, yaml_serde::Error> {
    yaml_serde::from_str(text)
}

/// Creates the operator's namespace, ServiceAccount, ClusterRole, Role and bindings.
pub async fn install(client: &kube::Client, namespace: &str) -> Result<(), super::DevError> {
    let rules = parse_rules(OPERATOR_RULES).map_err(|e| super::DevError::Rules(e.to_string()))?;
    let lease_rules =
        parse_rules(LEADER_ELECTION_RULES).map_err(|e| super::DevError::Rules(e.to_string()))?;
    let pp = PatchParams::apply(MANAGER).force();
    let apply = |v: serde_json::Value| Patch::Apply(v);
    Api::<Namespace>::all(client.clone())
        .patch(
            namespace,
            &pp,
            &apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            ),
        )
        .await?;
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch(OPERATOR, &pp, &apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR}})))
        .await?;
    let subject = json!([{"kind": "ServiceAccount", "name": OPERATOR, "namespace": namespace}]);
    Api::<ClusterRole>::all(client.clone())
        .patch(
            OPERATOR,
            &pp,
            &apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": OPERATOR}, "rules": rules})),
        )
        .await?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            OPERATOR,
            &pp,
            &apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": OPERATOR},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR},
                "subjects": subject})),
        )
        .await?;
    let lease_role = format!("{OPERATOR}-leader-election");
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch(
            &lease_role,
            &pp,
            &apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": lease_role}, "rules": lease_rules})),
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch(
            &lease_role,
            &pp,
            &apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": lease_role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease_role},
                "subjects": subject})),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_rules_parse_and_grant_no_wildcards() {
        for text in [OPERATOR_RULES, LEADER_ELECTION_RULES] {
            let rules = parse_rules(text).unwrap();
            assert!(!rules.is_empty());
            for r in rules {
                assert!(!r.verbs.iter().any(|v| v == "*"));
                assert!(!r.resources.unwrap_or_default().iter().any(|v| v == "*"));
            }
        }
        let rules = parse_rules(OPERATOR_RULES).unwrap();
        assert!(
            rules.iter().any(|r| r
                .resources
                .as_ref()
                .is_some_and(|x| x.iter().any(|x| x == "integrations")))
        );
    }
}
