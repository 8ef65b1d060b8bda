//! One set of Events, served as core/v1 and events.k8s.io/v1: what an operator publishes
//! through events.k8s.io shows in `kubectl describe`, and core Events read back as
//! events.k8s.io.

use devcluster::{Config, DevCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_in_either_version_are_read_in_both() {
    let cluster = DevCluster::start(Config::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "settings"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = cm.metadata.uid.unwrap();

    let new_events: Api<Event> = Api::namespaced(client.clone(), "default");
    let published: Event = serde_json::from_value(json!({
        "metadata": {"name": "settings.reconciled"},
        "eventTime": "2026-11-29T10:00:00.000000Z",
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "default", "uid": uid},
        "reason": "Reconciled", "note": "settings applied by the operator", "type": "Normal",
        "action": "Reconcile", "reportingController": "example.test/operator", "reportingInstance": "op-0",
    }))
    .unwrap();
    let created = new_events.create(&PostParams::default(), &published).await.unwrap();
    assert_eq!(created.note.as_deref(), Some("settings applied by the operator"));

    // The same Event through core/v1, found the way kubectl describe looks for it.
    let core_events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let found = core_events
        .list(
            &ListParams::default()
                .fields(&format!("involvedObject.name=settings,involvedObject.uid={uid}")),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.message.as_deref(), Some("settings applied by the operator"));
    assert_eq!(e.reporting_component.as_deref(), Some("example.test/operator"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));

    let describe = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["describe", "configmap", "settings"])
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(describe.status.success(), "{}", String::from_utf8_lossy(&describe.stderr));
    assert!(
        text.contains("Reconciled") && text.contains("settings applied by the operator"),
        "describe: {text}"
    );

    // A core Event reads back as events.k8s.io, and both lists hold both Events.
    let core: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "settings.legacy"},
        "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": "default"},
        "reason": "Legacy", "message": "written the old way", "type": "Warning",
        "firstTimestamp": "2026-11-29T10:00:00Z", "lastTimestamp": "2026-11-29T10:00:00Z", "count": 1,
        "source": {"component": "old-tool"},
    }))
    .unwrap();
    core_events.create(&PostParams::default(), &core).await.unwrap();
    let as_new = new_events.get("settings.legacy").await.unwrap();
    assert_eq!(as_new.note.as_deref(), Some("written the old way"));
    assert_eq!(as_new.regarding.unwrap().name.as_deref(), Some("settings"));
    assert_eq!(as_new.deprecated_count, Some(1));
    assert_eq!(new_events.list(&ListParams::default()).await.unwrap().items.len(), 2);
    assert_eq!(core_events.list(&ListParams::default()).await.unwrap().items.len(), 2);
}
