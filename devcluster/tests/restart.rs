//! kube-runtime against devcluster across an API server restart with a state directory: a
//! reflector (watcher) and a Controller keep running, and see every change made around the
//! restart; resourceVersions continue after it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt as _, reflector, watcher};

use devcluster::{Config, DevCluster};

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"value": value}
    }))
    .expect("configmap")
}

type Seen = Arc<Mutex<BTreeMap<String, String>>>;

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_and_controller_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("devcluster-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        state_dir: Some(dir.clone()),
        bookmark_interval: Duration::from_millis(500),
        ..Config::default()
    };
    let mut cluster = DevCluster::start(config).await.expect("start");
    let client = cluster.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    api.create(&PostParams::default(), &cm("a", "1")).await.expect("create a");
    api.create(&PostParams::default(), &cm("c", "1")).await.expect("create c");

    // A reflector: the watcher's view of the world.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let reflector_task = tokio::spawn(async move {
        stream.for_each(|_| async {}).await;
    });

    // A controller recording the data it reconciled, per name.
    let reconciled: Seen = Arc::default();
    let ctx = reconciled.clone();
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            |obj: Arc<ConfigMap>, seen: Arc<Seen>| async move {
                let value =
                    obj.data.as_ref().and_then(|d| d.get("value")).cloned().unwrap_or_default();
                seen.lock()
                    .expect("lock")
                    .insert(obj.metadata.name.clone().unwrap_or_default(), value);
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_obj, _err, _ctx| Action::requeue(Duration::from_millis(200)),
            Arc::new(ctx),
        )
        .for_each(|_| async {});
    let controller_task = tokio::spawn(controller);

    let seen = reconciled.clone();
    wait_for("the controller to reconcile a", || {
        seen.lock().expect("lock").get("a").is_some_and(|v| v == "1")
    })
    .await;
    let r = reader.clone();
    wait_for("the reflector to hold a and c", || r.state().len() == 2).await;

    let rv_before: u64 = api
        .get("a")
        .await
        .expect("get")
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("number");
    cluster.restart().await.expect("restart");

    // Changes made right after the restart, through a fresh client, while the watchers are
    // still reconnecting.
    let fresh: Api<ConfigMap> = Api::namespaced(cluster.client().await.expect("client"), "default");
    fresh
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"value": "2"}})),
        )
        .await
        .expect("patch a");
    fresh.create(&PostParams::default(), &cm("b", "1")).await.expect("create b");
    fresh.delete("c", &DeleteParams::default()).await.expect("delete c");

    let after: u64 = fresh
        .get("b")
        .await
        .expect("get b")
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("number");
    assert!(
        after > rv_before,
        "resourceVersions continue after a restart ({rv_before} -> {after})"
    );

    wait_for("the controller to see a's new data and b", || {
        let s = seen.lock().expect("lock");
        s.get("a").is_some_and(|v| v == "2") && s.contains_key("b")
    })
    .await;
    let r = reader.clone();
    wait_for("the reflector to converge", || {
        let mut names: Vec<String> =
            r.state().iter().map(|o| o.metadata.name.clone().unwrap_or_default()).collect();
        names.sort();
        names == ["a", "b"]
            && r.state()
                .iter()
                .any(|o| o.data.as_ref().and_then(|d| d.get("value")).is_some_and(|v| v == "2"))
    })
    .await;

    reflector_task.abort();
    controller_task.abort();
    cluster.stop().await.expect("stop");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn state_is_reloaded_from_the_state_directory() {
    let dir = std::env::temp_dir().join(format!("devcluster-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config { state_dir: Some(dir.clone()), ..Config::default() };
    let rv = {
        let mut cluster = DevCluster::start(config.clone()).await.expect("start");
        let api: Api<ConfigMap> =
            Api::namespaced(cluster.client().await.expect("client"), "default");
        let created = api.create(&PostParams::default(), &cm("kept", "yes")).await.expect("create");
        cluster.stop().await.expect("stop");
        created.metadata.resource_version.expect("rv")
    };
    let cluster = DevCluster::start(config).await.expect("start again");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await.expect("client"), "default");
    let kept = api.get("kept").await.expect("reloaded");
    assert_eq!(kept.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let next = api.create(&PostParams::default(), &cm("next", "1")).await.expect("create");
    assert!(
        next.metadata.resource_version.expect("rv").parse::<u64>().expect("n")
            > rv.parse::<u64>().expect("n")
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
