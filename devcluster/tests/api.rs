//! HTTP-level semantics of devcluster, checked over the wire with `kube::Client`.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

use devcluster::{Config, DevCluster};

async fn start(config: Config) -> (DevCluster, Client) {
    let cluster = DevCluster::start(config).await.expect("start");
    let client = cluster.client().await.expect("client");
    (cluster, client)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": name}}, "data": {"k": "v"}}),
    )
    .expect("cm")
}

/// Sends a raw request and returns (status, body).
async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(if body.is_null() { Vec::new() } else { body.to_string().into_bytes() })
        .expect("request");
    let resp = client.send(req.map(kube::client::Body::from)).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn errors_are_kubernetes_status_objects() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("a")).await.expect("create");
    let dup = api.create(&PostParams::default(), &cm("a")).await.expect_err("duplicate");
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );

    let mut stale = api.get("a").await.expect("get");
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "w"}})))
        .await
        .expect("patch");
    stale.data = Some([("k".to_string(), "x".to_string())].into());
    let conflict =
        api.replace("a", &PostParams::default(), &stale).await.expect_err("stale update");
    assert!(
        matches!(conflict, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"
        && s.message.contains("the object has been modified")),
        "{conflict:?}"
    );

    let missing = api.get("nope").await.expect_err("missing");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.message == r#"configmaps "nope" not found"#)
    );

    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-ns");
    let err =
        other.create(&PostParams::default(), &cm("x")).await.expect_err("namespace must exist");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.message.contains(r#"namespaces "no-such-ns" not found"#))
    );

    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let (c, _client) = start(Config::default()).await;
    let kubeconfig = c.kubeconfig("nobody", "wrong-token");
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    let client = Client::try_from(cfg).expect("client");
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let err = api.list(&ListParams::default()).await.expect_err("401");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 401), "{err:?}");
}

#[tokio::test]
async fn lists_paginate_and_filter() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for n in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &cm(n)).await.expect("create");
    }
    let page = api.list(&ListParams::default().limit(2)).await.expect("page 1");
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("continue");
    assert_eq!(page.metadata.remaining_item_count, Some(3));
    let page2 =
        api.list(&ListParams::default().limit(2).continue_token(&token)).await.expect("page 2");
    assert_eq!(page2.items[0].metadata.name.as_deref(), Some("c"));
    let sel = api.list(&ListParams::default().labels("app in (b,d)")).await.expect("labels");
    assert_eq!(sel.items.len(), 2);
    let by_name = api.list(&ListParams::default().fields("metadata.name=e")).await.expect("fields");
    assert_eq!(by_name.items.len(), 1);
    let not = api.list(&ListParams::default().labels("app!=a")).await.expect("not");
    assert_eq!(not.items.len(), 4);
}

#[tokio::test]
async fn watches_resume_bookmark_and_expire() {
    let (_c, client) = start(Config {
        history_limit: 5,
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let first = api.create(&PostParams::default(), &cm("w0")).await.expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");

    let mut stream = api
        .watch(&WatchParams { bookmarks: true, ..WatchParams::default() }, &rv)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &cm("w1")).await.expect("create");
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("w1")),
        other => panic!("expected ADDED w1, got {other:?}"),
    }
    let bookmark = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(WatchEvent::Bookmark(b)) = stream.try_next().await.expect("event") {
                return b;
            }
        }
    })
    .await
    .expect("a bookmark arrives");
    assert!(!bookmark.metadata.resource_version.is_empty());

    for i in 2..10 {
        api.create(&PostParams::default(), &cm(&format!("w{i}"))).await.expect("create");
    }
    let mut old = api.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    match old.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("s1")).await.expect("create");
    let mut stream =
        api.watch(&WatchParams::default().initial_events(), "").await.expect("watch").boxed();
    let mut names = Vec::new();
    loop {
        match stream.try_next().await.expect("event") {
            Some(WatchEvent::Added(o)) => names.push(o.metadata.name.unwrap_or_default()),
            Some(WatchEvent::Bookmark(b)) => {
                assert_eq!(
                    b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(names, ["s1"]);
}

#[tokio::test]
async fn generation_dry_run_and_server_side_apply() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let dry = api
        .create(&PostParams { dry_run: true, ..Default::default() }, &cm("dry"))
        .await
        .expect("dry run");
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.expect("get").is_none(), "dry run stores nothing");

    let apply = |manager: &str, force: bool| {
        let mut p = PatchParams::apply(manager);
        p.force = force;
        p
    };
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "1"}});
    api.patch("ssa", &apply("one", false), &Patch::Apply(&obj)).await.expect("create by apply");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}});
    let err =
        api.patch("ssa", &apply("two", false), &Patch::Apply(&other)).await.expect_err("conflict");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.message.contains(r#"conflict with "one""#) && s.message.contains(".data.a")),
        "{err:?}"
    );
    api.patch("ssa", &apply("two", true), &Patch::Apply(&other)).await.expect("force");
    // "one" stops applying b: it is removed since no one else owns it; a stays (owned by two).
    let shrink =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    api.patch("ssa", &apply("one", false), &Patch::Apply(&shrink)).await.expect("shrink");
    let now = api.get("ssa").await.expect("get");
    assert_eq!(now.data, Some([("a".to_string(), "2".to_string())].into()));
    // Applying the same configuration again is a no-op: no new resourceVersion, even though
    // the managedFields timestamp of the manager would move.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again =
        api.patch("ssa", &apply("one", false), &Patch::Apply(&shrink)).await.expect("again");
    assert_eq!(again.metadata.resource_version, now.metadata.resource_version);

    // Generation moves on spec changes only (custom resource with a status subresource).
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = yaml_serde::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/widgets-crd.yaml"
        ))
        .expect("fixture"),
    )
    .expect("yaml");
    crds.create(&PostParams::default(), &crd).await.expect("crd");
    let (code, body) = raw(&client, "POST", "/apis/example.dev/v1/namespaces/default/widgets", "application/json",
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "g"}, "spec": {"size": 1}})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["generation"], 1);
    let (_, body) = raw(
        &client,
        "PATCH",
        "/apis/example.dev/v1/namespaces/default/widgets/g",
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(body["metadata"]["generation"], 1, "metadata changes keep the generation");
    let (_, body) = raw(
        &client,
        "PATCH",
        "/apis/example.dev/v1/namespaces/default/widgets/g/status",
        "application/merge-patch+json",
        json!({"status": {"phase": "Up"}}),
    )
    .await;
    assert_eq!(body["metadata"]["generation"], 1, "status changes keep the generation");
    let (_, body) = raw(
        &client,
        "PATCH",
        "/apis/example.dev/v1/namespaces/default/widgets/g",
        "application/merge-patch+json",
        json!({"spec": {"size": 2}, "status": {"phase": "Ignored"}}),
    )
    .await;
    assert_eq!(body["metadata"]["generation"], 2);
    assert_eq!(body["status"]["phase"], "Up", "main resource writes ignore status");
}

#[tokio::test]
async fn foreground_and_orphan_deletion() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (owner, policy) in [("fg", DeleteParams::foreground()), ("or", DeleteParams::orphan())] {
        let o = api.create(&PostParams::default(), &cm(owner)).await.expect("owner");
        let mut dep = cm(&format!("{owner}-dep"));
        dep.metadata.owner_references =
            Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.into(),
                uid: o.metadata.uid.clone().expect("uid"),
                ..Default::default()
            }]);
        api.create(&PostParams::default(), &dep).await.expect("dependent");
        api.delete(owner, &policy).await.expect("delete");
        let mut gone = false;
        for _ in 0..50 {
            if api.get_opt(owner).await.expect("get").is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "{owner} is eventually deleted");
        let dep = api.get_opt(&format!("{owner}-dep")).await.expect("get");
        match owner {
            "fg" => assert!(dep.is_none(), "foreground deletes dependents first"),
            _ => assert!(
                dep.expect("orphan keeps the dependent").metadata.owner_references.is_none()
            ),
        }
    }

    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).expect("ns"),
    )
    .await
    .expect("ns");
    let in_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    in_ns.create(&PostParams::default(), &cm("inside")).await.expect("create");
    ns.delete("tmp", &DeleteParams::default()).await.expect("delete ns");
    for _ in 0..50 {
        if ns.get_opt("tmp").await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("namespace tmp was not removed");
}

#[tokio::test]
async fn discovery_openapi_and_tables() {
    let (_c, client) = start(Config::default()).await;
    let req = http::Request::builder()
        .uri("/apis")
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .expect("request");
    let resp = client.send(req.map(kube::client::Body::from)).await.expect("send");
    assert!(
        resp.headers()["content-type"].to_str().expect("ct").contains("as=APIGroupDiscoveryList")
    );
    let (_, index) = raw(&client, "GET", "/openapi/v3", "application/json", Value::Null).await;
    assert!(
        index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url")
            .starts_with("/openapi/v3/apis/apps/v1?hash=")
    );
    let (_, doc) =
        raw(&client, "GET", "/openapi/v3/apis/apps/v1", "application/json", Value::Null).await;
    let dep = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(dep["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
    assert_eq!(
        doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
        "name"
    );

    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("t")).await.expect("create");
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/default/configmaps")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(Vec::new())
        .expect("request");
    let body = client.request_text(req).await.expect("table");
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], 1);
}

#[tokio::test]
async fn collections_warnings_reviews_and_scale() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for n in ["x1", "x2", "y1"] {
        api.create(&PostParams::default(), &cm(n)).await.expect("create");
    }
    let (code, _) = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/configmaps?labelSelector=app%20in%20(x1,x2)",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["y1"], "deletecollection honours the label selector");

    // Unknown fields are pruned with a warning by default.
    let req = http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "warned"}, "bogus": 1}).to_string().into_bytes())
        .expect("request");
    let resp = client.send(req.map(kube::client::Body::from)).await.expect("send");
    let warning =
        resp.headers().get("warning").expect("warning header").to_str().expect("ascii").to_string();
    assert!(warning.contains(r#"unknown field \"bogus\""#), "{warning}");
    assert!(api.get("warned").await.is_ok());

    // SubjectAccessReview and SelfSubjectReview.
    let (_, sar) = raw(&client, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "application/json",
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "someone", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}})).await;
    assert_eq!(sar["status"]["allowed"], false);
    let (_, me) = raw(
        &client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .await;
    assert_eq!(me["status"]["userInfo"]["username"], "admin");

    // The scale subresource reads and writes spec.replicas.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}});
    let (code, created) = raw(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        deploy,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["replicas"], 1, "defaulted");
    let (_, scale) = raw(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}}),
    )
    .await;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    let (_, d) = raw(
        &client,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/d",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 3);
}

#[tokio::test]
async fn crds_with_broken_cel_are_rejected() {
    let (_c, client) = start(Config::default()).await;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced", "names": {"kind": "Thing", "plural": "things"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self.spec.(("}]}}}]}});
    let (code, body) = raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        crd,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["details"]["causes"][0]["field"]
            .as_str()
            .expect("field")
            .contains("x-kubernetes-validations[0].rule"),
        "{body}"
    );
}

#[tokio::test]
async fn watches_follow_selector_transitions() {
    let (_c, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let created = api.create(&PostParams::default(), &cm("sel")).await.expect("create");
    let rv = created.metadata.resource_version.expect("rv");
    let mut stream =
        api.watch(&WatchParams::default().labels("app=sel"), &rv).await.expect("watch").boxed();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .expect("relabel");
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Deleted(o)) => assert_eq!(o.metadata.name.as_deref(), Some("sel")),
        other => panic!("leaving the selector is a DELETED event, got {other:?}"),
    }
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "sel"}}})),
    )
    .await
    .expect("relabel");
    assert!(
        matches!(stream.try_next().await.expect("event"), Some(WatchEvent::Added(_))),
        "entering it is ADDED"
    );
}

#[tokio::test]
async fn in_memory_restart_keeps_state_and_port() {
    let (mut cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("mem")).await.expect("create");
    let addr = cluster.addr();
    cluster.restart().await.expect("restart");
    assert_eq!(cluster.addr(), addr);
    let api: Api<ConfigMap> = Api::default_namespaced(cluster.client().await.expect("client"));
    assert!(api.get("mem").await.is_ok());
}

#[tokio::test]
async fn server_side_apply_merges_and_prunes_keyed_lists_of_built_ins() {
    let (_c, client) = start(Config::default()).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(client);
    let manifest = |env: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "env": env, "ports": [{"containerPort": 80}]}]}}}})
    };
    let params = PatchParams::apply("deployer");
    let two = manifest(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    deployments.patch("web", &params, &Patch::Apply(&two)).await.expect("apply");
    deployments.patch("web", &params, &Patch::Apply(&two)).await.expect("apply again");
    let one = manifest(json!([{"name": "A", "value": "1"}]));
    let d = deployments.patch("web", &params, &Patch::Apply(&one)).await.expect("apply without B");
    let c = &d.spec.expect("spec").template.spec.expect("pod spec").containers[0];
    let env: Vec<&str> = c.env.as_ref().expect("env").iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["A"], "an entry the manager stopped applying is removed whole");
    assert_eq!(
        c.ports.as_ref().expect("ports").len(),
        1,
        "a port without protocol matches the defaulted TCP entry"
    );
}
