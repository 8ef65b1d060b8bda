//! End to end with the real `kubectl` against a devcluster: CRD registration, client-side and
//! server-side apply, printer columns, selectors, the three patch types, the status
//! subresource, explain, watch, cascading deletion, finalizers, RBAC through `auth can-i` and
//! ServiceAccount tokens, and CEL rejections.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use devcluster::{Config, DevCluster};

struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig).env_remove("KUBERNETES_SERVICE_HOST").args(args);
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl must be installed (/usr/bin/kubectl)");
        if let Some(input) = stdin {
            use std::io::Write as _;
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

const W1: &str = r#"
apiVersion: example.dev/v1
kind: Widget
metadata:
  name: w1
  labels: {tier: gold}
spec:
  size: 3
  parts: [{name: a, count: 1}]
"#;

const W2: &str = r#"
apiVersion: example.dev/v1
kind: Widget
metadata:
  name: w2
  labels: {tier: silver}
spec:
  size: 2
"#;

#[test]
fn kubectl_drives_devcluster() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cluster = rt.block_on(DevCluster::start(Config::default())).expect("start");
    let k = Kubectl { kubeconfig: cluster.kubeconfig_path() };

    // CRD registration and discovery.
    let crd = fixture("widgets-crd.yaml");
    k.ok(&["apply", "-f", crd.to_str().expect("path")]);
    k.ok(&["wait", "--for", "condition=Established", "crd/widgets.example.dev", "--timeout=20s"]);
    let resources = k.ok(&["api-resources", "--api-group=example.dev", "-o", "wide"]);
    assert!(
        resources.contains("wg") && resources.contains("gadgets"),
        "short names and categories: {resources}"
    );

    // Client-side apply, then server-side apply of another object.
    k.ok_stdin(&["apply", "-f", "-"], Some(W1));
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], Some(W2));
    let managers =
        k.ok(&["get", "widget", "w2", "-o", "jsonpath={.metadata.managedFields[*].manager}"]);
    assert_eq!(managers, "kubectl", "server-side apply records its field manager");

    // Printer columns (including defaulted values), short names, categories, selectors.
    let table = k.ok(&["get", "wg"]);
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]);
    assert!(
        table.lines().any(|l| l.starts_with("w1") && l.contains(" 3 ") && l.contains("red")),
        "{table}"
    );
    assert!(k.ok(&["get", "gadgets"]).contains("w2"));
    let gold = k.ok(&["get", "widgets", "-l", "tier=gold", "-o", "name"]);
    assert_eq!(gold.trim(), "widget.example.dev/w1");
    let yaml = k.ok(&["get", "widget", "w1", "-o", "yaml"]);
    assert!(
        yaml.contains("maxSize: 10") && yaml.contains("uid:") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );

    // Patches: merge, JSON, strategic (on a built-in), status subresource.
    k.ok(&["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"size":4}}"#]);
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":5}]"#,
    ]);
    assert_eq!(
        k.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}/{.metadata.generation}"]),
        "5/3"
    );
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Ready"},"spec":{"size":1}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.status.phase}/{.spec.size}/{.metadata.generation}"
        ]),
        "Ready/5/3",
        "status writes ignore spec and keep the generation"
    );
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.25", env: [{name: A, value: "1"}]}]
"#;
    k.ok_stdin(&["apply", "-f", "-"], Some(deployment));
    k.ok(&["patch", "deployment", "web", "--type", "strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}"#]);
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name}"
        ]),
        "A B",
        "strategic merge patch merges env by name"
    );

    // explain reads the CRD's OpenAPI.
    let explain = k.ok(&["explain", "widget.spec.size"]);
    assert!(explain.contains("How big the widget is, in units."), "{explain}");

    // get -w streams a change.
    let mut watch = k.cmd(&["get", "widget", "w2", "-w", "--output-watch-events"]);
    let mut child = watch.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("initial line").expect("read");
    let first =
        if first.contains("EVENT") { lines.next().expect("row").expect("read") } else { first };
    assert!(first.contains("ADDED") && first.contains("w2"), "{first}");
    k.ok(&["patch", "widget", "w2", "--type", "merge", "-p", r#"{"spec":{"size":7}}"#]);
    let second = lines.next().expect("change line").expect("read");
    assert!(
        second.contains("MODIFIED") && second.contains("w2") && second.contains(" 7 "),
        "{second}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // Invalid objects: CEL rule message, transition rule, strict unknown fields.
    let err = k.fails(
        &["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"size":50}}"#],
        None,
    );
    assert!(
        err.contains(r#"spec: Invalid value: "object": size must not exceed maxSize"#),
        "{err}"
    );
    let err = k.fails(
        &["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"color":"blue"}}"#],
        None,
    );
    assert!(err.contains("color is immutable"), "{err}");
    let err = k.fails(&["apply", "-f", "-"], Some("apiVersion: example.dev/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 1, bogus: true}\n"));
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");

    // Cascading deletion through ownerReferences.
    let owner_uid = k.ok(&["get", "widget", "w2", "-o", "jsonpath={.metadata.uid}"]);
    let dependent = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w2-config\n  ownerReferences: [{{apiVersion: example.dev/v1, kind: Widget, name: w2, uid: {owner_uid}}}]\ndata: {{a: b}}\n"
    );
    k.ok_stdin(&["apply", "-f", "-"], Some(&dependent));
    k.ok(&["delete", "widget", "w2"]);
    eventually("the dependent ConfigMap to be collected", || {
        !k.ok(&["get", "configmaps", "-o", "name"]).contains("w2-config")
    });

    // A finalizer holds deletion until it is removed.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.dev/hold"]}}"#,
    ]);
    k.ok(&["delete", "widget", "w1", "--wait=false"]);
    assert!(
        !k.ok(&["get", "widget", "w1", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty()
    );
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("w1 to be gone", || k.fails(&["get", "widget", "w1"], None).contains("NotFound"));

    // RBAC: a ServiceAccount allowed to read widgets and nothing else.
    k.ok(&["create", "serviceaccount", "bot"]);
    k.ok(&[
        "create",
        "role",
        "widget-reader",
        "--verb=get,list,watch",
        "--resource=widgets.example.dev",
    ]);
    k.ok(&[
        "create",
        "rolebinding",
        "bot-reads-widgets",
        "--role=widget-reader",
        "--serviceaccount=default:bot",
    ]);
    let sa = "--as=system:serviceaccount:default:bot";
    assert_eq!(k.ok(&["auth", "can-i", "list", "widgets.example.dev", sa]).trim(), "yes");
    let denied = k.run(&["auth", "can-i", "delete", "widgets.example.dev", sa], None);
    assert_eq!(String::from_utf8_lossy(&denied.stdout).trim(), "no");
    let token = k.ok(&["create", "token", "bot"]);
    let token_flag = format!("--token={}", token.trim());
    k.ok(&[token_flag.as_str(), "get", "widgets"]);
    let err = k.fails(&[token_flag.as_str(), "get", "secrets"], None);
    assert!(
        err.contains(r#"secrets is forbidden: User "system:serviceaccount:default:bot" cannot list resource "secrets" in API group "" in the namespace "default""#),
        "{err}"
    );
    let sa_kubeconfig =
        cluster.service_account_kubeconfig("default", "bot").expect("sa kubeconfig");
    let as_bot = Kubectl { kubeconfig: sa_kubeconfig };
    assert_eq!(as_bot.ok(&["auth", "can-i", "get", "widgets.example.dev"]).trim(), "yes");
    assert_eq!(
        String::from_utf8_lossy(
            &as_bot.run(&["auth", "can-i", "create", "widgets.example.dev"], None).stdout
        )
        .trim(),
        "no"
    );

    drop(cluster);
    rt.shutdown_timeout(Duration::from_secs(1));
}
