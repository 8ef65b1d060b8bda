//! `switchboard dlq --integration` against workers the operator deploys, end to end.
//!
//! ```text
//!  devcluster (pods run the built binary) ── operator process (chart RBAC)
//!     Integration orders: webhook ─▶ 2 workers (StatefulSet, a queue per pod) ─▶ ledger (400)
//!     two events ─▶ Service ─▶ one per pod ─▶ dead-lettered (status_400)
//!  on-call (a ServiceAccount with only the documented permissions), no port-forward:
//!     dlq list   ─▶ API server pods/proxy ─▶ both pods, each entry with its pod
//!     ledger answers 200 ─▶ dlq replay ─▶ delivered
//!  admin token Secret deleted ─▶ operator creates a new one ─▶ the workers read the new file
//! ```
//!
//! The admin tokens must appear in no log, Event, status or command output.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;
use support::cluster::{Env, eventually};

const NS: &str = "dlq";
const WAIT: Duration = Duration::from_secs(120);
const SECRET: &str = "orders-worker-admin";

/// The ledger: answers every request with the current status and records the bodies.
struct Ledger {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<String>>>,
}

impl Ledger {
    async fn start(status: u16) -> Ledger {
        let status = Arc::new(AtomicU16::new(status));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (status.clone(), received.clone());
        let app = axum::Router::new().fallback(move |body: String| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                r.lock().unwrap().push(body);
                let code = axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                (code, "{}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Ledger { addr, status, received }
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

fn manifests(ledger: SocketAddr) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: OutboundMessage
metadata: {{name: ledger, namespace: {NS}}}
spec:
  endpoint: http://{ledger}
  insecureAllowHttp: true
  methods: [{{name: post, httpMethod: POST, path: /entries}}]
---
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {{name: orders, namespace: {NS}}}
spec:
  owner: {{team: finance-systems, contact: finance@acme.example}}
  dataFlow: {{sourceSystem: Shop, targetSystem: Ledger, classification: internal}}
  source: {{webhook: {{auth: {{type: none}}}}}}
  targets:
    - name: ledger
      outboundMessage: {{name: ledger, method: post}}
  egress: {{allowCidrs: [127.0.0.0/8]}}
  workers:
    replicas: 2
    queue: {{storage: persistentVolume, size: 1Gi}}
---
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {{name: idle, namespace: {NS}}}
spec:
  owner: {{team: finance-systems, contact: finance@acme.example}}
  dataFlow: {{sourceSystem: Shop, targetSystem: Ledger, classification: internal}}
  source: {{webhook: {{auth: {{type: none}}}}}}
  targets:
    - name: ledger
      outboundMessage: {{name: ledger, method: post}}
  workers: {{replicas: 0}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: oncall, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dead-letters, namespace: {NS}}}
rules:
  - apiGroups: [switchboard.dev]
    resources: [integrations]
    verbs: [get]
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [{SECRET}, idle-worker-admin]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods]
    verbs: [list]
  - apiGroups: [""]
    resources: [pods/proxy]
    verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: oncall-dead-letters, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dead-letters}}
subjects: [{{kind: ServiceAccount, name: oncall, namespace: {NS}}}]
"#
    )
}

/// Run `switchboard dlq ARGS` with a kubeconfig: (success, stdout, stderr).
fn dlq(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("dlq")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("SWITCHBOARD_ADMIN_URL")
        .env_remove("SWITCHBOARD_ADMIN_TOKEN_FILE")
        .output()
        .expect("switchboard runs");
    let (out, err) = support::text(&output);
    (output.status.success(), out, err)
}

fn token_of(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["token"].0.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_of_operator_workers_are_listed_and_replayed_through_the_api_server() {
    let ledger = Ledger::start(400).await;
    let env = Env::start_with_workers().await;
    let operator = env.operator_with("dlq-op", false, &["--status-interval=2s"]);
    let file = env.scratch().join("dlq.yaml");
    std::fs::write(&file, manifests(ledger.addr)).unwrap();
    env.kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let oncall: PathBuf = env.cluster.service_account_kubeconfig(NS, "oncall").unwrap();
    let mut outputs = Vec::new();

    // Two ready workers, each with its own store; the webhook Service on loopback.
    let pods: Api<Pod> = Api::namespaced(env.admin.clone(), NS);
    eventually("two ready orders workers", WAIT, || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|p| p.metadata.name.as_deref().unwrap_or("").starts_with("orders-worker-"))
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            (ready == 2).then_some(())
        }
    })
    .await;
    let webhook = eventually("the orders Service on loopback", WAIT, || async {
        let ports = env.cluster.service_addresses(NS, "orders");
        ports.first().map(|p| format!("http://{}/webhook", p.address))
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), NS);
    let first_token = token_of(&secrets.get(SECRET).await.unwrap());

    // The ledger refuses two orders for good: each is dead-lettered on the pod that took it.
    for order in ["order-A-1", "order-A-2"] {
        // A connection each: the Service proxy balances connections, round robin.
        let response = reqwest::Client::new()
            .post(&webhook)
            .header("content-type", "application/json")
            .header("webhook-id", format!("msg-{order}"))
            .body(format!(r#"{{"order": "{order}"}}"#))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let entries = eventually("two dead letters on the orders workers", WAIT, || async {
        let (ok, out, _) = dlq(&oncall, &["list", "--integration", "orders", "-n", NS, "--json"]);
        let items: Vec<Value> = serde_json::from_str::<Value>(&out).ok()?.as_array()?.clone();
        (ok && items.len() == 2).then_some(items)
    })
    .await;
    let mut on_pods: Vec<&str> = entries.iter().map(|e| e["pod"].as_str().unwrap()).collect();
    on_pods.sort();
    assert_eq!(on_pods, ["orders-worker-0", "orders-worker-1"], "the Service spreads the events");
    assert_eq!(ledger.requests(), 2, "a 400 is not retried");
    for entry in &entries {
        assert_eq!(entry["reason"], "status_400", "{entry}");
        assert_eq!(entry["state"], "pending");
    }
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let (ok, table, err) = dlq(&oncall, &["list", "--integration", "orders", "-n", NS]);
    assert!(ok, "{err}");
    assert!(table.starts_with("POD "), "{table}");
    assert!(ids.iter().all(|id| table.contains(id)), "{table}");
    outputs.push(table);
    let (ok, shown, err) = dlq(&oncall, &["show", ids[1], "--integration", "orders", "-n", NS]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["pod"], entries[1]["pod"]);
    assert!(shown["event"]["body"].as_str().unwrap().contains("order-A"));
    outputs.push(shown.to_string());

    // The ledger recovers: one replay command finds each entry on its pod; both arrive.
    ledger.status.store(200, Ordering::SeqCst);
    let (ok, replayed, err) = dlq(
        &oncall,
        &["replay", ids[0], ids[1], "--integration", "orders", "-n", NS, "--by", "alice"],
    );
    assert!(ok, "{err}");
    for entry in &entries {
        let line = format!(
            "replayed {} on {}",
            entry["id"].as_str().unwrap(),
            entry["pod"].as_str().unwrap()
        );
        assert!(replayed.contains(&line), "{replayed}");
    }
    outputs.push(replayed);
    // (Counted as requests: the method has no body template, so the ledger sees no order.)
    eventually("both orders delivered after the replay", WAIT, || async {
        (ledger.requests() == 4).then_some(())
    })
    .await;
    let (ok, out, err) =
        dlq(&oncall, &["list", "--all", "--integration", "orders", "-n", NS, "--json"]);
    assert!(ok, "{err}");
    let all: Value = serde_json::from_str(&out).unwrap();
    assert!(all.as_array().unwrap().iter().all(|e| e["state"] == "replayed"), "{all}");
    let (ok, pending, _) = dlq(&oncall, &["list", "--integration", "orders", "-n", NS, "--json"]);
    assert!(ok && serde_json::from_str::<Value>(&pending).unwrap() == serde_json::json!([]));

    // Clear errors: no such Integration, no running pod, a refused token.
    let (ok, _, err) = dlq(&oncall, &["list", "--integration", "nope", "-n", NS]);
    assert!(!ok && err.contains("Integration dlq/nope not found"), "{err}");
    eventually("the idle Integration's Secret", WAIT, || async {
        secrets.get_opt("idle-worker-admin").await.ok().flatten()
    })
    .await;
    let (ok, _, err) = dlq(&oncall, &["list", "--integration", "idle", "-n", NS]);
    assert!(!ok && err.contains("Integration dlq/idle has no running worker pod"), "{err}");
    let wrong = env.scratch().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let wrong = wrong.to_str().unwrap();
    let (ok, _, err) =
        dlq(&oncall, &["list", "--integration", "orders", "-n", NS, "--token-file", wrong]);
    assert!(!ok && err.contains("401 Unauthorized"), "{err}");

    // The token is never rotated by reconciles; deleted, it is created again with a new value,
    // and the running workers take the new file without a restart.
    let before = secrets.get(SECRET).await.unwrap();
    assert_eq!(token_of(&before), first_token, "reconciles kept the token");
    secrets.delete(SECRET, &DeleteParams::default()).await.unwrap();
    let second_token = eventually("a new admin token Secret", WAIT, || async {
        let secret = secrets.get_opt(SECRET).await.ok().flatten()?;
        (secret.metadata.uid != before.metadata.uid).then(|| token_of(&secret))
    })
    .await;
    assert_ne!(second_token, first_token);
    eventually("the workers accept the new token", WAIT, || async {
        let (ok, out, _) = dlq(&oncall, &["list", "--all", "--integration", "orders", "-n", NS]);
        ok.then_some(out)
    })
    .await;
    let restarts: i32 = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|p| p.status.as_ref()?.container_statuses.clone())
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    assert_eq!(restarts, 0, "a new token needs no restart");

    // Neither token appears in any log, Event, status or output.
    let mut everything = outputs.join("\n");
    everything.push_str(&operator.log_text());
    everything.push_str(&env.kubectl_ok(&["get", "events", "-A", "-o", "json"]));
    everything.push_str(&env.kubectl_ok(&["get", "integrations", "-n", NS, "-o", "json"]));
    for pod in ["orders-worker-0", "orders-worker-1"] {
        everything.push_str(&env.kubectl_ok(&["logs", "-n", NS, pod]));
    }
    for token in [&first_token, &second_token] {
        assert!(!everything.contains(token.as_str()), "an admin token leaked");
    }
}
