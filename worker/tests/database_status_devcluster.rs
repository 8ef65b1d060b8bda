//! The watermark and run report reach the Integration's status in a real API server
//! (devcluster), written by `switchboard worker run-once` as the worker's ServiceAccount with
//! exactly the Role that `switchboard render` produces: that Role suffices, and it allows
//! nothing beyond its own Integration.

mod database_support;

use database_support::*;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};

const NAMESPACE: &str = "acme";
const NAME: &str = "erp-mirror";
const MANIFEST: &str = include_str!("database_support/erp-mirror.yaml");

fn integrations(client: &kube::Client) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("switchboard.dev", "v1alpha1", "Integration"));
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

/// The worker's ServiceAccount, Role and RoleBinding, as `switchboard render` makes them.
fn rendered_rbac(dir: &std::path::Path) -> (ServiceAccount, Role, RoleBinding) {
    let manifest = dir.join("erp-mirror.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let out = std::process::Command::new(switchboard_bin())
        .args(["render", "-o", "json", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "render: {}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |kind: &str| {
        let mut item =
            list["items"].as_array().unwrap().iter().find(|i| i["kind"] == kind).unwrap().clone();
        // The rendered owner uid is the offline one; the API server would collect the object.
        item["metadata"].as_object_mut().unwrap().remove("ownerReferences");
        item
    };
    (
        serde_json::from_value(find("ServiceAccount")).unwrap(),
        serde_json::from_value(find("Role")).unwrap(),
        serde_json::from_value(find("RoleBinding")).unwrap(),
    )
}

fn worker_config(creds: &std::path::Path) -> String {
    let connection = postgres_connection_yaml("  ");
    format!(
        r#"{head}source:
  type: database
{connection}  query: SELECT id, name, updated_at FROM dc_customers WHERE updated_at > :watermark ORDER BY updated_at
  watermark: {{column: updated_at, initial: "2026-01-01T00:00:00Z"}}
  batchSize: 2
transform:
  fieldMap:
    id: record.id
    name: record.name
  coalesceKeys: [id]
targets:
- name: mirror
  type: database
{connection}  table: dc_mirror
{creds}"#,
        head = config_head_in(NAMESPACE, NAME),
        creds = credentials_yaml(creds)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_records_watermark_and_report_in_the_status_with_its_own_role() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    postgres_sql(
        "CREATE TABLE dc_customers (id integer PRIMARY KEY, name text, updated_at timestamptz)",
    );
    postgres_sql("CREATE TABLE dc_mirror (id integer PRIMARY KEY, name text)");
    postgres_sql(
        "INSERT INTO dc_customers SELECT i, 'c' || i, timestamptz '2026-05-01T00:00:00Z' + make_interval(mins => i) FROM generate_series(1, 5) i",
    );
    let cluster = devcluster::DevCluster::start(devcluster::Config::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crds/switchboard.dev_integrations.yaml"),
    )
    .unwrap();
    crds.create(&PostParams::default(), &yaml_serde::from_str(&crd_yaml).unwrap()).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let (service_account, role, binding) = rendered_rbac(work.path());
    let sa_name = service_account.metadata.name.clone().unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &service_account)
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let integration: serde_json::Value = MANIFEST
        .split("\n---\n")
        .map(|doc| yaml_serde::from_str::<serde_json::Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "Integration")
        .unwrap();
    let api = integrations(&client);
    api.create(&PostParams::default(), &serde_json::from_value(integration.clone()).unwrap())
        .await
        .unwrap();
    // A second Integration the worker must not be able to touch.
    let mut other = integration.clone();
    other["metadata"]["name"] = "someone-else".into();
    api.create(&PostParams::default(), &serde_json::from_value(other).unwrap()).await.unwrap();

    let kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, &sa_name).unwrap();
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let config = worker_config(&dir);
    let run = |data: std::path::PathBuf| {
        let config = config.clone();
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            let (mut cmd, termination) = run_once_command(&config, &data);
            let out = cmd.env("KUBECONFIG", &kubeconfig).output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                std::fs::read_to_string(termination).unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };

    let data = tempfile::tempdir().unwrap();
    let (code, message, log) = run(data.path().to_path_buf()).await.unwrap();
    assert_eq!(code, 0, "{message}\n{log}");
    assert!(message.starts_with("Succeeded: read 5, created 5, updated 0"), "{message}");
    // Kept in the cluster, not in the data directory.
    assert!(!data.path().join("run-state.json").exists());
    let status = api.get(NAME).await.unwrap().data["status"].clone();
    assert_eq!(status["watermark"], "2026-05-01T00:05:00Z");
    assert_eq!(status["lastRun"]["result"], "Succeeded");
    assert_eq!(status["lastRun"]["read"], 5);
    assert_eq!(status["lastRun"]["created"], 5);
    assert!(status["lastRun"]["completionTime"].is_string());

    // Rows updated at the source come again (newer updated_at) and are updates now.
    postgres_sql(
        "UPDATE dc_customers SET name = 'renamed', updated_at = updated_at + interval '1 day' WHERE id IN (2, 4)",
    );
    let (code, message, log) =
        run(tempfile::tempdir().unwrap().path().to_path_buf()).await.unwrap();
    assert_eq!(code, 0, "{message}\n{log}");
    assert!(message.starts_with("Succeeded: read 2, created 0, updated 2"), "{message}");
    let status = api.get(NAME).await.unwrap().data["status"].clone();
    assert_eq!(status["watermark"], "2026-05-02T00:04:00Z");
    assert_eq!(status["lastRun"]["updated"], 2);

    // The watermark only moves forward, even when a stale writer tries.
    let stale = serde_json::json!({"status": {"watermark": "2026-05-02T00:04:00Z"}});
    api.patch_status(NAME, &PatchParams::default(), &Patch::Merge(&stale)).await.unwrap();
    let (code, message, _) = run(tempfile::tempdir().unwrap().path().to_path_buf()).await.unwrap();
    assert_eq!(code, 0, "{message}");
    assert!(message.starts_with("Succeeded: read 0"), "{message}");
    assert_eq!(api.get(NAME).await.unwrap().data["status"]["watermark"], "2026-05-02T00:04:00Z");

    // The Role is scoped to its own Integration: the other one is out of reach.
    let worker = cluster.service_account_client(NAMESPACE, &sa_name).await.unwrap();
    let as_worker = integrations(&worker);
    assert!(as_worker.get("someone-else").await.is_err());
    let forbidden = as_worker
        .patch_status(
            "someone-else",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": {"watermark": "x"}})),
        )
        .await;
    assert!(matches!(forbidden, Err(kube::Error::Api(ref s)) if s.code == 403), "{forbidden:?}");
    assert!(as_worker.list(&Default::default()).await.is_err());

    let everything =
        format!("{message}{}", serde_json::to_string(&api.get(NAME).await.unwrap().data).unwrap());
    assert!(!everything.contains(CANARY_PASSWORD));
}
