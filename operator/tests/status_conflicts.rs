//! K4: a status write based on a stale read meets a 409, reads again, and writes on top of
//! the newer object — never a blind overwrite.

mod support;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::cluster::{Env, bare_context};
use switchboard::api::{Integration, IntegrationStatus};
use switchboard::controller::conditions::Desired;
use switchboard::controller::object::Unchecked;
use switchboard::controller::status::write_status;

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_status_write_rereads_and_keeps_the_newer_object() {
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
    let ctx = bare_context(env.admin.clone());
    let raw: Api<Unchecked<Integration>> = Api::namespaced(env.admin.clone(), "acme-integrations");
    let stale = raw.get("monitoring-incident").await.unwrap();
    // Someone else writes in between: the stale copy's resourceVersion is now out of date.
    let typed: Api<Integration> = Api::namespaced(env.admin.clone(), "acme-integrations");
    let label = json!({"metadata": {"labels": {"audited": "yes"}}});
    typed
        .patch("monitoring-incident", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let other = json!({"status": {"sourceKind": "webhook"}});
    typed
        .patch_status("monitoring-incident", &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();

    let ready = Desired::no("Ready", "WorkersUnavailable", "0 of 2 workers available");
    write_status(&ctx, &stale, vec![ready], |status: &mut IntegrationStatus| {
        status.consecutive_failures = Some(0);
    })
    .await
    .expect("the write succeeds after re-reading");

    let now = typed.get("monitoring-incident").await.unwrap();
    assert_eq!(now.metadata.labels.unwrap()["audited"], "yes", "the concurrent write survived");
    let status = now.status.unwrap();
    assert_eq!(
        status.source_kind.as_deref(),
        Some("webhook"),
        "the other writer's status field survived"
    );
    assert_eq!(status.consecutive_failures, Some(0));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "WorkersUnavailable"));
}
