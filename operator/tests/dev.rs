//! `switchboard dev examples/` end to end: the built binary starts a cluster, the operator
//! (as its ServiceAccount, under the chart's RBAC rules) and the examples; the live view
//! shows every integration reconciled; kubectl works through the printed KUBECONFIG; a
//! request the chart's rules do not grant is refused with 403; Ctrl-C leaves no process.

use std::collections::{HashMap, HashSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use rustix::process::{Pid, Signal};

const DEADLINE: Duration = Duration::from_secs(180);

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every process whose parent chain leads to `root`.
fn descendants(root: i32) -> HashSet<i32> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else { continue };
        if let Some(ppid) = rest.split(' ').nth(1).and_then(|p| p.parse().ok()) {
            parent.insert(pid, ppid);
        }
    }
    let mut out = HashSet::new();
    for &pid in parent.keys() {
        let mut p = pid;
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == root => {
                    out.insert(pid);
                    break;
                }
                Some(&pp) if pp > 1 => p = pp,
                _ => break,
            }
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

fn line_value(output: &str, prefix: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
}

async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[test]
fn switchboard_dev_runs_the_examples_and_stops_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("dev")
        .arg(&examples)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("switchboard dev starts");
    let pid = child.id() as i32;
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                let mut o = output.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    let text = || output.lock().unwrap().clone();

    // A steady view: every example integration reconciled by the operator.
    wait_for("the live view to show the six integrations reconciled", || {
        text().contains("6 integrations, 6 reconciled").then_some(())
    });
    let shown = text();
    for name in [
        "monitoring-incident",
        "hr-employee-import",
        "change-approval",
        "order-invoicing",
        "crm-account-sync",
        "vendor-email-intake",
    ] {
        assert!(
            shown.contains(&format!("acme-integrations/{name}")),
            "{name} missing from:\n{shown}"
        );
    }
    assert!(shown.contains("Request sink http://127.0.0.1:"), "{shown}");
    assert!(shown.contains("point at it"), "the rewrites are announced:\n{shown}");

    // A worker runs as a local process on its own address, behind its Service: an invoice
    // posted to the inbound URL the view prints is delivered, through the SOAP target, to the
    // request sink standing in for the billing system.
    let invoices = wait_for("the order-invoicing inbound URL", || {
        text().lines().rev().find_map(|l| {
            let rest = l.trim().strip_prefix("acme-integrations/order-invoicing  http://")?;
            Some(format!("http://{}v1/invoices", rest.split_whitespace().next()?))
        })
    });
    let delivered = wait_for("an invoice delivered through the worker", || {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-X", "POST", "-H", "content-type: application/json"])
            // The example's (fake) API token, from examples/40-legacy-billing-soap.yaml.
            .args(["-H", "Authorization: Bearer FAKE-webshop-token"])
            .args(["-d", r#"{"orderNumber":"o-1","customer":{"number":"c-9"},"total":{"amount":12.5,"currency":"EUR"}}"#])
            .arg(&invoices)
            .output()
            .ok()?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains("\"delivered\"").then_some(body)
    });
    assert!(delivered.contains("\"id\""), "{delivered}");
    wait_for("the sink to show the SOAP call", || {
        text()
            .contains("/billing.dc1.acme.example:8443/services/InvoiceService/  → 200 (soap)")
            .then_some(())
    });

    // kubectl through the printed KUBECONFIG.
    let kubeconfig =
        PathBuf::from(line_value(&shown, "export KUBECONFIG=").expect("a KUBECONFIG line"));
    let get = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["get", "integrations", "-A", "-o", "name"])
        .output()
        .expect("kubectl runs");
    assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
    let names = String::from_utf8_lossy(&get.stdout);
    assert_eq!(names.lines().count(), 6, "{names}");
    assert!(names.contains("integration.switchboard.dev/monitoring-incident"));

    // The operator's Events (events.k8s.io) show in kubectl describe.
    let describe = wait_for("the operator's events in kubectl describe", || {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .args(["describe", "integration", "-n", "acme-integrations", "monitoring-incident"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("CredentialsReady is True").then_some(text)
    });
    assert!(describe.contains("Events:"), "{describe}");

    // The operator runs under the chart's rules: what they grant works, the rest is 403.
    let operator_kubeconfig = PathBuf::from(
        line_value(&shown, "operator kubeconfig: ").expect("the operator's kubeconfig"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let operator = client_for(&operator_kubeconfig).await;
        let gvk = kube::api::GroupVersionKind::gvk("switchboard.dev", "v1alpha1", "Integration");
        let integrations: Api<kube::api::DynamicObject> = Api::all_with(
            operator.clone(),
            &kube::api::ApiResource::from_gvk_with_plural(&gvk, "integrations"),
        );
        assert_eq!(
            integrations.list(&ListParams::default()).await.unwrap().items.len(),
            6,
            "granted: list integrations"
        );
        let pods: Api<Pod> = Api::namespaced(operator.clone(), "acme-integrations");
        assert!(pods.list(&ListParams::default()).await.is_ok(), "granted: read worker pods");
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "intruder"},
            "spec": {"containers": [{"name": "c", "image": "example.test/x:1"}]}}))
        .unwrap();
        match pods.create(&Default::default(), &pod).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
            other => panic!("creating pods is not in the chart's rules, yet: {other:?}"),
        }
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(operator, "acme-integrations");
        match secrets.delete("servicenow-oauth", &Default::default()).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
            other => panic!("deleting a Secret is not in the chart's rules, yet: {other:?}"),
        }
    });

    // Ctrl-C: everything it started ends with it.
    let started = descendants(pid);
    assert!(!started.is_empty(), "the operator and the workers run as child processes");
    rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::INT).unwrap();
    let status = wait_for("switchboard dev to exit", || child.try_wait().unwrap());
    assert!(status.success(), "exit status {status}:\n{}", text());
    wait_for("no process it started to survive", || {
        started.iter().all(|p| !alive(*p)).then_some(())
    });
    assert!(text().contains("stopped"));
}
