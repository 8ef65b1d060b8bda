//! `pods/proxy`: requests relayed through the API server to a running pod (`devcluster-testapp`
//! echoing what it receives), with RBAC on the subresource, the caller's credentials kept from
//! the backend, and the API server's errors for missing pods and unreachable ports.

use std::time::Duration;

use devcluster::kubelet::{ImageRule, PodRunnerConfig};
use devcluster::{Config, DevCluster};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const NS: &str = "px";

fn config() -> Config {
    Config {
        pods: PodRunnerConfig {
            images: vec![ImageRule {
                image: "example.test/testapp:*".into(),
                executable: Some(env!("CARGO_BIN_EXE_devcluster-testapp").into()),
                env: vec![],
            }],
            ..PodRunnerConfig::default()
        },
        ..Config::default()
    }
}

async fn create<K>(client: &kube::Client, object: Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
}

/// Send a raw request; (status, body as JSON or string).
async fn send(
    client: &kube::Client,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(kube::client::Body::from(body.as_bytes().to_vec())).unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_proxy_relays_requests_under_rbac_without_the_callers_credentials() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = DevCluster::start(config()).await.unwrap();
    let admin = cluster.client().await.unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    create::<Pod>(
        &admin,
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{
            "name": "app", "image": "example.test/testapp:1",
            "args": ["serve", "--port", "8080"],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        }]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods.get("web").await.unwrap();
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pod never became ready: {pod:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // GET: path (trailing slash kept), raw query and headers arrive; Authorization does not.
    let base = format!("/api/v1/namespaces/{NS}/pods/web:8080/proxy");
    let (status, echo) = send(
        &admin,
        "GET",
        &format!("{base}/echo/a/b/?x=1&y=%2F"),
        &[("x-switchboard-admin-token", "for-the-pod"), ("impersonate-group", "")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/echo/a/b/");
    assert_eq!(echo["query"], "x=1&y=%2F");
    assert_eq!(echo["headers"]["x-switchboard-admin-token"], "for-the-pod");
    assert!(echo["headers"].get("authorization").is_none(), "the caller's token leaked: {echo}");
    assert!(echo["headers"].get("impersonate-group").is_none());

    // POST with a body, and the backend's status; no port means the first container port.
    let (status, echo) = send(
        &admin,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods/web/proxy/echo/replay"),
        &[("content-type", "application/json")],
        r#"{"by":"alice"}"#,
    )
    .await;
    assert_eq!(status, 201, "{echo}");
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("POST"), Some(r#"{"by":"alice"}"#))
    );

    // The API server's errors: a missing pod, a port nothing listens on.
    let (status, missing) =
        send(&admin, "GET", &format!("/api/v1/namespaces/{NS}/pods/nope:8080/proxy/"), &[], "")
            .await;
    assert_eq!((status, missing["reason"].as_str()), (404, Some("NotFound")), "{missing}");
    assert_eq!(missing["message"], r#"pods "nope" not found"#);
    // (kube's client retries 503 up to 15 times with growing delays; ask once.)
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    let mut once =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    once.default_retry = false;
    let once = kube::Client::try_from(once).unwrap();
    let (status, closed) =
        send(&once, "GET", &format!("/api/v1/namespaces/{NS}/pods/web:1/proxy/"), &[], "").await;
    assert_eq!((status, closed["reason"].as_str()), (503, Some("ServiceUnavailable")), "{closed}");
    assert!(closed["message"].as_str().unwrap().starts_with("error trying to reach service"));

    // RBAC on pods/proxy: verbs from the HTTP method, names as written (`name:port`).
    create::<ServiceAccount>(&admin, json!({"metadata": {"name": "reader"}})).await;
    create::<Role>(
        &admin,
        json!({"metadata": {"name": "proxy-get"}, "rules": [{"apiGroups": [""],
            "resources": ["pods/proxy"], "verbs": ["get"], "resourceNames": ["web:8080"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        json!({"metadata": {"name": "proxy-get"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy-get"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}]}),
    )
    .await;
    let reader = cluster.service_account_client(NS, "reader").await.unwrap();
    let (status, _) = send(&reader, "GET", &format!("{base}/echo/ok"), &[], "").await;
    assert_eq!(status, 200);
    let (status, denied) = send(&reader, "POST", &format!("{base}/echo/ok"), &[], "{}").await;
    assert_eq!(status, 403, "{denied}");
    assert!(
        denied["message"].as_str().unwrap().contains(r#"cannot create resource "pods/proxy""#),
        "{denied}"
    );
    let (status, _) =
        send(&reader, "GET", &format!("/api/v1/namespaces/{NS}/pods/web/proxy/echo/ok"), &[], "")
            .await;
    assert_eq!(status, 403, "resourceNames name `web:8080`, not `web`");

    // Discovery lists the subresource, and kubectl reaches the pod through it.
    let (_, resources) = send(&admin, "GET", "/api/v1", &[], "").await;
    let proxy = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/proxy")
        .expect("pods/proxy in discovery");
    assert!(proxy["verbs"].as_array().unwrap().contains(&json!("create")));
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["get", "--raw", &format!("{base}/echo/kubectl")])
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let echo: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(echo["path"], "/echo/kubectl");
}
