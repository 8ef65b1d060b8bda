//! `switchboard report` against a live API server (devcluster): the CRDs from `crds/`, the
//! examples and a status written through the status subresource, then the real binary with
//! `KUBECONFIG` pointing at the cluster. Runtime findings come from that status.

mod support;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard::manifest::ObjectSet;

use support::workspace;

const NOW: &str = "2026-11-28T09:00:00Z";
const NAMESPACE: &str = "acme-integrations";

async fn create<K>(client: &Client, object: &K)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap());
    api.create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", object.name_any()));
}

async fn patch_status<K>(client: &Client, name: &str, status: serde_json::Value)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot write the status of {name}: {e}"));
}

/// Run the binary against the cluster; blocking, so it runs off the runtime's thread.
async fn run_report(kubeconfig: std::path::PathBuf, args: &[&str]) -> serde_json::Value {
    let mut all =
        vec!["report".to_string(), "-o".into(), "json".into(), "--now".into(), NOW.into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&all)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("the switchboard binary runs")
    })
    .await
    .unwrap();
    let (stdout, stderr) = support::text(&output);
    assert!(output.status.success(), "report failed: {stderr}");
    serde_json::from_str(&stdout).expect("the JSON report parses")
}

fn rules_for<'a>(report: &'a serde_json::Value, object: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["object"] == object)
        .map(|f| f["rule"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_live_report_adds_runtime_findings_from_statuses() {
    let cluster = devcluster::DevCluster::start(devcluster::Config::default()).await.unwrap();
    let client = cluster.client().await.unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for entry in std::fs::read_dir(workspace().join("crds")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: CustomResourceDefinition = yaml_serde::from_str(&text).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let (set, errors) = ObjectSet::load(&[workspace().join("examples")], "default");
    assert!(errors.is_empty(), "{errors:?}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    for secret in &set.secrets {
        create::<Secret>(&client, &secret.object).await;
    }
    for o in &set.credentials {
        create(&client, &o.object).await;
    }
    for o in &set.outbound_messages {
        create(&client, &o.object).await;
    }
    for o in &set.integrations {
        create(&client, &o.object).await;
    }
    for o in &set.schedules {
        create(&client, &o.object).await;
    }

    // What the operator and the workers would have written.
    patch_status::<switchboard::api::Integration>(
        &client,
        "monitoring-incident",
        serde_json::json!({
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-11-01T00:00:00Z"},
                {"type": "Healthy", "status": "False", "reason": "TargetUnavailable", "message": "ServiceNow answered 503", "lastTransitionTime": "2026-11-20T09:00:00Z"}
            ],
            "lastFailure": {"time": "2026-11-28T08:00:00Z", "reason": "TargetUnavailable", "message": "ServiceNow answered 503"},
            "consecutiveFailures": 311,
            "counters": {"received": 400, "rejected": 0, "filtered": 89, "delivered": 0, "retried": 1500, "deadLettered": 311, "deadLettersPending": 311}
        }),
    )
    .await;
    patch_status::<switchboard::api::Credential>(
        &client,
        "servicenow-oauth",
        serde_json::json!({
            "lastRotated": "2026-06-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-06-01T00:00:00Z"}]
        }),
    )
    .await;

    let kubeconfig = cluster.kubeconfig_path();
    let report = run_report(kubeconfig.clone(), &["-n", NAMESPACE]).await;
    assert_eq!(report["source"]["mode"], "live");
    assert_eq!(report["source"]["namespace"], NAMESPACE);
    assert_eq!(report["summary"]["integrations"], 6);
    assert_eq!(report["summary"]["unhealthy"], 1);

    let incident = "Integration acme-integrations/monitoring-incident";
    assert_eq!(rules_for(&report, incident), ["unhealthy", "dead-letters-pending"]);
    let unhealthy =
        report["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "unhealthy").unwrap();
    assert_eq!(unhealthy["basis"], "observed");
    assert!(
        unhealthy["message"]
            .as_str()
            .unwrap()
            .starts_with("unhealthy for 8 days (since 2026-11-20T09:00:00Z)"),
        "{unhealthy}"
    );
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("docs/report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator =
        jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "the live report does not validate: {errors:?}");
    let oauth = "Credential acme-integrations/servicenow-oauth";
    assert_eq!(rules_for(&report, oauth), ["rotation-overdue"]);
    // Secrets are not listed live, so lint's file-based rule stays out; no finding has a file.
    for finding in report["findings"].as_array().unwrap() {
        assert_ne!(finding["rule"], "missing-secret", "{finding}");
        assert!(finding.get("file").is_none(), "{finding}");
    }
    let integrations = report["integrations"].as_array().unwrap();
    let entry = integrations.iter().find(|i| i["name"] == "monitoring-incident").unwrap();
    assert_eq!(entry["health"]["summary"], "unhealthy for 8 days (TargetUnavailable)");
    assert_eq!(entry["health"]["ready"], "True");
    assert_eq!(entry["lastFailure"]["message"], "ServiceNow answered 503");
    assert_eq!(entry["deadLettersPending"], 311);
    let credential = entry["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "servicenow-oauth")
        .unwrap();
    assert_eq!(credential["ageDays"], 180, "the age comes from status.lastRotated");
    let other = integrations.iter().find(|i| i["name"] == "crm-account-sync").unwrap();
    assert_eq!(other["health"]["summary"], "unknown (not reported yet)");

    // -A lists every namespace; the admin context's own namespace holds none of them.
    let all = run_report(kubeconfig.clone(), &["-A"]).await;
    assert_eq!(all["summary"]["integrations"], 6);
    assert!(all["source"].get("namespace").is_none());
    let default = run_report(kubeconfig.clone(), &[]).await;
    assert_eq!(default["summary"]["integrations"], 0);
    assert_eq!(default["source"]["namespace"], "default");

    // --kubeconfig and --context name the cluster explicitly (KUBECONFIG points nowhere).
    let context = kube::config::Kubeconfig::read_from(&kubeconfig)
        .unwrap()
        .current_context
        .expect("devcluster's kubeconfig has a current context");
    let path = kubeconfig.to_str().unwrap().to_string();
    let explicit = run_report(
        std::path::PathBuf::from("/nonexistent/kubeconfig"),
        &["--kubeconfig", &path, "--context", &context, "-n", NAMESPACE],
    )
    .await;
    assert_eq!(explicit["source"]["context"], context.as_str());
    assert_eq!(explicit["summary"]["integrations"], 6);
}
