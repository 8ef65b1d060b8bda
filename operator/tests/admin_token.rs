//! The workers' admin token Secret, against devcluster under the chart's RBAC: created once
//! (owned by the Integration, labelled), kept as it is by later reconciles, created again with a
//! new value after someone deletes it; and the operator may create Secrets but not change them.

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use support::cluster::{Env, OPERATOR_SA, SYSTEM, bare_context};
use switchboard::api::Integration;
use switchboard::controller::admin_token::{AdminToken, ensure_admin_token};

const NS: &str = "acme-integrations";
const NAME: &str = "monitoring-incident";

fn token_of(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["token"].0.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_is_created_once_kept_and_recreated_after_deletion() {
    let env = Env::start().await;
    env.kubectl_ok(&[
        "apply",
        "-f",
        "examples/00-namespace.yaml",
        "-f",
        "examples/10-monitoring-incident.yaml",
        "-f",
        "examples/05-servicenow.yaml",
    ]);
    // The operator's own identity: the chart's ClusterRole must allow what this does.
    let operator = env.cluster.service_account_client(SYSTEM, OPERATOR_SA).await.unwrap();
    let ctx = bare_context(operator);
    let integration =
        Api::<Integration>::namespaced(env.admin.clone(), NS).get(NAME).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), NS);
    let name = "monitoring-incident-worker-admin";

    assert_eq!(ensure_admin_token(&ctx, &integration).await.unwrap(), AdminToken::Created);
    let first = secrets.get(name).await.unwrap();
    let token = token_of(&first);
    assert_eq!(token.len(), 64, "256 bits, hex");
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, integration.metadata.uid.clone().unwrap());
    assert_eq!(owner.controller, Some(true));
    let labels = first.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["switchboard.dev/integration"], NAME);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "switchboard-operator");

    // Later reconciles keep it: same value, not even rewritten.
    for _ in 0..3 {
        assert_eq!(ensure_admin_token(&ctx, &integration).await.unwrap(), AdminToken::Kept);
    }
    let kept = secrets.get(name).await.unwrap();
    assert_eq!(token_of(&kept), token);
    assert_eq!(kept.metadata.resource_version, first.metadata.resource_version);

    // Deleted: the next reconcile creates it again, with a new value.
    secrets.delete(name, &DeleteParams::default()).await.unwrap();
    assert_eq!(ensure_admin_token(&ctx, &integration).await.unwrap(), AdminToken::Created);
    let again = secrets.get(name).await.unwrap();
    assert_ne!(token_of(&again), token);
    assert_ne!(again.metadata.uid, first.metadata.uid);

    // Least privilege: the operator may create Secrets, never change or delete them.
    for (verb, allowed) in
        [("create", "yes"), ("get", "yes"), ("patch", "no"), ("update", "no"), ("delete", "no")]
    {
        let output = env.kubectl_as_operator(&["auth", "can-i", verb, "secrets", "-n", NS]);
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert_eq!(answer, allowed, "can-i {verb} secrets");
    }
}
