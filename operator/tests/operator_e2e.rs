//! The operator end to end: devcluster with the chart installed, the operator as a process
//! under the chart's ServiceAccount (RBAC enforced), `kubectl` as the user.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::cluster::{Env, SYSTEM, eventually};
use switchboard::api::{Credential, Integration, OutboundMessage, Schedule};

const NS: &str = "acme-integrations";
const WAIT: Duration = Duration::from_secs(60);

fn condition(status: Option<&Value>, type_: &str) -> Option<(String, String, String)> {
    let conditions = status?.get("conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.into(),
        c["reason"].as_str()?.into(),
        c["message"].as_str().unwrap_or_default().into(),
    ))
}

/// The status of an object as stored (read untyped: a spec our types refuse still shows).
async fn status_of<K>(client: &Client, name: &str) -> Option<Value>
where
    K: kube::Resource<DynamicType = ()>,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), NS, &resource);
    let object = api.get_opt(name).await.ok()??;
    object.data.get("status").cloned()
}

fn pod_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

async fn apply_examples(env: &Env) {
    env.kubectl_ok(&["apply", "-f", "examples/"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_lints_strictly_and_grants_no_wildcards() {
    let output = std::process::Command::new(support::peer("python"))
        .arg(support::workspace().join("scripts/helm.py"))
        .args(["lint", "charts/switchboard"])
        .current_dir(support::workspace())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "strict lint failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let rendered = support::cluster::render_chart(
        r#"{"replicaCount": 2, "metrics": {"serviceMonitor": {"enabled": true}, "podMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}}, "networkPolicy": {"enabled": true}}"#,
    );
    for kind in [
        "Deployment",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "CustomResourceDefinition",
    ] {
        assert!(rendered.contains(&format!("kind: {kind}\n")), "the chart renders no {kind}");
    }
    assert!(rendered.contains("replicas: 2"));
    assert!(!rendered.contains("\"*\""), "no wildcard in any rule");
    // The network policy still lets the operator read the workers' /status and alert.
    let policy: serde_json::Value = rendered
        .split("\n---\n")
        .map(|doc| yaml_serde::from_str(doc).unwrap())
        .find(|doc: &serde_json::Value| doc["kind"] == "NetworkPolicy")
        .unwrap();
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let opens = |port: u64| {
        egress.iter().any(|rule| {
            rule["ports"].as_array().is_some_and(|p| p.iter().any(|p| p["port"] == port))
        })
    };
    for port in [443, 9090, 9093, 465, 587] {
        assert!(opens(port), "egress to port {port} is allowed: {policy}");
    }
    let status_rule = egress.iter().find(|r| r["ports"][0]["port"] == 9090).unwrap();
    assert_eq!(
        status_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "switchboard-worker"
    );
    let rules = std::fs::read_to_string(
        support::workspace().join("charts/switchboard/files/operator-rules.yaml"),
    )
    .unwrap();
    let mut previous_was_comment = false;
    for line in rules.lines() {
        if line.starts_with("- apiGroups") {
            assert!(previous_was_comment, "every rule has a comment above it: {line}");
        }
        if !line.trim().is_empty() {
            previous_was_comment = line.starts_with('#');
        }
    }
}

#[test]
fn chart_passes_the_openlineage_settings_to_the_operator() {
    let flags = ["--openlineage-url", "--openlineage-namespace"];
    let without = support::cluster::render_chart("{}");
    for flag in flags {
        assert!(!without.contains(flag), "{flag} is rendered without a value");
    }
    let with = support::cluster::render_chart(
        r#"{"lineage": {"url": "http://marquez.lineage:5000/api/v1/lineage", "namespace": "acme prod"}}"#,
    );
    assert!(with.contains(r#"- "--openlineage-url=http://marquez.lineage:5000/api/v1/lineage""#));
    assert!(with.contains(r#"- "--openlineage-namespace=acme prod""#));
    // The rendered flags are the operator's own.
    let help = support::switchboard(&["operator", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in flags {
        assert!(help.contains(flag), "`switchboard operator` has no {flag}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_reconcile_into_owned_children_and_honest_status() {
    let env = Env::start_with_workers().await;
    let operator = env.operator("operator-0", false);
    apply_examples(&env).await;
    let client = env.admin.clone();

    // Every Integration gets its children, owned, with the config hash on the pod template.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let names = [
        "change-approval",
        "crm-account-sync",
        "hr-employee-import",
        "monitoring-incident",
        "vendor-email-intake",
    ];
    for name in names {
        let deployment = eventually(&format!("Deployment of {name}"), WAIT, || {
            let deployments = deployments.clone();
            async move { deployments.get_opt(&format!("{name}-worker")).await.ok().flatten() }
        })
        .await;
        let owner = &deployment.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Integration", name, Some(true))
        );
        let integration: Integration = Api::namespaced(client.clone(), NS).get(name).await.unwrap();
        assert_eq!(owner.uid, integration.uid().unwrap(), "the live uid, not an offline one");
        assert_eq!(pod_annotations(&deployment)["switchboard.dev/config-hash"].len(), 64);
    }
    let set: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    eventually("the StatefulSet of order-invoicing", WAIT, || {
        let set = set.clone();
        async move { set.get_opt("order-invoicing-worker").await.ok().flatten() }
    })
    .await;

    // Credential hashes reach the pod templates once the Credentials are Ready.
    let annotated = eventually("credential hashes on monitoring-incident's pods", WAIT, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("monitoring-incident-worker").await.ok()?;
            let a = pod_annotations(&d);
            (a.contains_key("credential.switchboard.dev/servicenow-oauth")
                && a.contains_key("credential.switchboard.dev/monitoring-webhook-signing"))
            .then_some(a)
        }
    })
    .await;
    assert_eq!(annotated["credential.switchboard.dev/servicenow-oauth"].len(), 64);

    // Statuses tell the truth, with observedGeneration.
    for credential in ["servicenow-oauth", "billing-client-cert", "slack-release-bot"] {
        let status = eventually(&format!("Credential {credential} Ready"), WAIT, || {
            let client = client.clone();
            async move {
                let status = status_of::<Credential>(&client, credential).await?;
                (condition(Some(&status), "Ready")?.0 == "True").then_some(status)
            }
        })
        .await;
        assert_eq!(status["contentHash"].as_str().unwrap().len(), 64);
        assert!(status["lastRotated"].is_string());
        assert_eq!(status["conditions"][0]["observedGeneration"], 1);
    }
    // Consumers follow the index, which fills as Integrations are reconciled.
    eventually("servicenow-oauth's consumers", WAIT, || {
        let client = client.clone();
        async move {
            let servicenow = status_of::<Credential>(&client, "servicenow-oauth").await?;
            let consumers: Vec<String> = servicenow["consumers"]
                .as_array()?
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
            (consumers.iter().any(|c| c == "servicenow-table")
                && consumers.iter().any(|c| c == "monitoring-incident"))
            .then_some(())
        }
    })
    .await;
    let billing = status_of::<Credential>(&client, "billing-client-cert").await.unwrap();
    assert!(billing["certificateNotAfter"].is_string(), "{billing}");
    let message = eventually("OutboundMessage legacy-billing Ready", WAIT, || {
        let client = client.clone();
        async move {
            let status = status_of::<OutboundMessage>(&client, "legacy-billing").await?;
            (condition(Some(&status), "Ready")?.0 == "True").then_some(status)
        }
    })
    .await;
    assert_eq!(message["methods"][0], "create-invoice (POST /)");
    let schedule = eventually("Schedule hr-nightly scheduled", WAIT, || {
        let client = client.clone();
        async move {
            let status = status_of::<Schedule>(&client, "hr-nightly").await?;
            status.get("nextScheduleTime").is_some().then_some(status)
        }
    })
    .await;
    assert_eq!(condition(Some(&schedule), "Ready").unwrap().1, "Scheduled");
    let integration = eventually("monitoring-incident's resolved data flow", WAIT, || {
        let client = client.clone();
        async move {
            let status = status_of::<Integration>(&client, "monitoring-incident").await?;
            (condition(Some(&status), "CredentialsReady")?.0 == "True").then_some(status)
        }
    })
    .await;
    assert_eq!(
        integration["dataFlow"]["targets"][0]["endpoint"],
        "POST https://acme.service-now.com/api/now/table/incident"
    );
    assert_eq!(
        integration["inboundUrl"],
        "http://monitoring-incident.acme-integrations.svc/alerts"
    );
    assert_eq!(integration["sourceKind"], "webhook");

    // The workers run (as local processes) and become Ready, and so do the Integrations.
    let integrations: Api<Integration> = Api::namespaced(client.clone(), NS);
    let all = support::EXAMPLE_INTEGRATIONS;
    let ready = |i: &Integration| {
        i.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                && s.workers.as_ref().is_some_and(|w| w.ready == w.desired && w.desired > 0)
        })
    };
    let started = std::time::Instant::now();
    loop {
        let list = integrations.list(&ListParams::default()).await.unwrap();
        let not_ready: Vec<String> = list
            .items
            .iter()
            .filter(|i| !ready(i))
            .map(|i| format!("{}: {:?}", i.name_any(), i.status.as_ref().map(|s| &s.conditions)))
            .collect();
        if list.items.len() == all.len() && not_ready.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not Ready with their workers after 120 s:\n{}",
            not_ready.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // kubectl shows the printer columns.
    let table = env.kubectl_ok(&["get", "integrations", "-n", NS]);
    assert!(
        table.starts_with("NAME")
            && table.contains("TEAM")
            && table.contains("CLASS")
            && table.contains("READY"),
        "{table}"
    );
    assert!(table.contains("monitoring-incident") && table.contains("sre"), "{table}");

    // Health and metrics.
    let (code, body) = eventually("/readyz", WAIT, || async {
        operator.get("/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok: leading, caches synced"));
    let (_, metrics) = operator.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("switchboard_reconcile_total{kind=\"Integration\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_objects{kind=\"Credential\",condition=\"Ready\",status=\"True\",owner_team=\"itsm-platform\"}"), "{metrics}");
    assert!(operator.get("/livez").await.unwrap().0 == 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_credential_is_named_and_recovery_follows_its_creation() {
    let env = Env::start().await;
    let _operator = env.operator("operator-0", false);
    env.kubectl_ok(&[
        "apply",
        "-f",
        "examples/00-namespace.yaml",
        "-f",
        "examples/05-servicenow.yaml",
        "-f",
        // The alert route's SMTP Credential lives here.
        "examples/20-hr-employee-import.yaml",
        "-f",
        "examples/60-vendor-email-intake.yaml",
    ]);
    // Take away the mailbox credential: the Integration says which one is missing.
    env.kubectl_ok(&["delete", "credential", "vendor-mailbox", "-n", NS]);
    let client = env.admin.clone();
    let (_, reason, message) = eventually("Ready=False naming the credential", WAIT, || {
        let client = client.clone();
        async move {
            let status = status_of::<Integration>(&client, "vendor-email-intake").await?;
            let ready = condition(Some(&status), "Ready")?;
            (ready.1 == "MissingReference").then_some(ready)
        }
    })
    .await;
    assert_eq!(reason, "MissingReference");
    assert!(message.contains("Credential \"vendor-mailbox\" not found"), "{message}");
    let events = env.kubectl_ok(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"]);
    assert!(events.contains("MissingReference"), "an Event records the transition");

    env.kubectl_ok(&["apply", "-f", "examples/60-vendor-email-intake.yaml"]);
    let started = std::time::Instant::now();
    eventually(
        "CredentialsReady=True after the Credential exists",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let status = status_of::<Integration>(&client, "vendor-email-intake").await?;
                (condition(Some(&status), "CredentialsReady")?.0 == "True").then_some(())
            }
        },
    )
    .await;
    println!("recovered {:?} after the Credential was created", started.elapsed());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment = deployments.get_opt("vendor-email-intake-worker").await.unwrap();
    assert!(
        deployment.is_some(),
        "{:?}",
        status_of::<Integration>(&client, "vendor-email-intake").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_rotation_rolls_exactly_the_workers_that_use_it() {
    let env = Env::start().await;
    let _operator = env.operator("operator-0", false);
    apply_examples(&env).await;
    let deployments: Api<Deployment> = Api::namespaced(env.admin.clone(), NS);
    let hash_of = |name: &'static str, credential: &'static str| {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get_opt(&format!("{name}-worker")).await.ok()??;
            pod_annotations(&d).get(&format!("credential.switchboard.dev/{credential}")).cloned()
        }
    };
    let before = eventually("servicenow hash on monitoring-incident", WAIT, || {
        hash_of("monitoring-incident", "servicenow-oauth")
    })
    .await;
    let intake_before = eventually("servicenow hash on vendor-email-intake", WAIT, || {
        hash_of("vendor-email-intake", "servicenow-oauth")
    })
    .await;
    let bystander = eventually("change-approval's hashes", WAIT, || {
        hash_of("change-approval", "slack-release-bot")
    })
    .await;
    // Its generation moves only when its spec does (its status moves while its pods start).
    let bystander_generation =
        deployments.get("change-approval-worker").await.unwrap().metadata.generation;

    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), NS);
    let patch = json!({"stringData": {"clientSecret": "FAKE-rotated-client-secret"}});
    secrets
        .patch("servicenow-oauth", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let after = eventually("a new hash on monitoring-incident", Duration::from_secs(30), || {
        let before = before.clone();
        let get = hash_of("monitoring-incident", "servicenow-oauth");
        async move { get.await.filter(|h| *h != before) }
    })
    .await;
    eventually("a new hash on vendor-email-intake", Duration::from_secs(30), || {
        let before = intake_before.clone();
        let get = hash_of("vendor-email-intake", "servicenow-oauth");
        async move { get.await.filter(|h| *h != before) }
    })
    .await;
    assert_ne!(after, before);
    assert_eq!(hash_of("change-approval", "slack-release-bot").await.unwrap(), bystander);
    assert_eq!(
        deployments.get("change-approval-worker").await.unwrap().metadata.generation,
        bystander_generation,
        "an unrelated worker is untouched"
    );
    let credential = status_of::<Credential>(&env.admin, "servicenow-oauth").await.unwrap();
    assert_eq!(
        credential["contentHash"],
        after.as_str(),
        "the Credential's hash is the one on the pods"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciling_an_unchanged_object_changes_nothing_and_deletion_cascades() {
    let env = Env::start().await;
    let _operator = env.operator("operator-0", false);
    apply_examples(&env).await;
    let client = env.admin.clone();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let versions = || {
        let config_maps = config_maps.clone();
        let deployments = deployments.clone();
        async move {
            let mut v = BTreeMap::new();
            for c in config_maps.list(&ListParams::default()).await.ok()?.items {
                v.insert(format!("cm/{}", c.name_any()), c.resource_version().unwrap());
            }
            for d in deployments.list(&ListParams::default()).await.ok()?.items {
                v.insert(format!("deploy/{}", d.name_any()), d.resource_version().unwrap());
            }
            Some(v)
        }
    };
    // Wait until everything settled: credential hashes on the pods mean the second pass ran.
    eventually("settled children", WAIT, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get_opt("monitoring-incident-worker").await.ok()??;
            pod_annotations(&d)
                .contains_key("credential.switchboard.dev/servicenow-oauth")
                .then_some(())
        }
    })
    .await;
    // Settled: two snapshots three seconds apart agree.
    let settled = eventually("a stable set of children", WAIT, || {
        let first = versions();
        async move {
            let first = first.await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let second = versions().await?;
            (first == second).then_some(second)
        }
    })
    .await;
    // Touch every Integration (a label: the spec is unchanged): each is reconciled again.
    let integrations: Api<Integration> = Api::namespaced(client.clone(), NS);
    for i in integrations.list(&ListParams::default()).await.unwrap().items {
        let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
        integrations
            .patch(&i.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = versions().await.unwrap();
    let changed: Vec<&String> = settled.keys().filter(|k| settled.get(*k) != now.get(*k)).collect();
    assert!(changed.is_empty(), "reconciling unchanged objects rewrote {changed:?}");

    env.kubectl_ok(&["delete", "integration", "monitoring-incident", "-n", NS]);
    eventually("monitoring-incident's children removed", WAIT, || {
        let deployments = deployments.clone();
        let config_maps = config_maps.clone();
        async move {
            let gone = deployments.get_opt("monitoring-incident-worker").await.ok()?.is_none()
                && config_maps.get_opt("monitoring-incident-worker").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_the_chart_rbac_are_forbidden() {
    let env = Env::start().await;
    // Secrets: created (the workers' admin tokens), never changed or deleted.
    for (verb, resource) in [
        ("update", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "clusterroles"),
        ("update", "integrations"),
    ] {
        let output = env.kubectl_as_operator(&["auth", "can-i", verb, resource, "-A"]);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "no",
            "the operator may {verb} {resource}"
        );
    }
    for (verb, resource, subresource) in [
        ("list", "integrations", ""),
        ("patch", "integrations", "status"),
        ("watch", "secrets", ""),
        ("create", "secrets", ""),
        ("patch", "deployments", ""),
        ("create", "events.events.k8s.io", ""),
    ] {
        let mut args = vec!["auth", "can-i", verb, resource, "-A"];
        if !subresource.is_empty() {
            args.push("--subresource");
            args.push(subresource);
        }
        let output = env.kubectl_as_operator(&args);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "yes",
            "the operator needs {verb} {resource} {subresource}"
        );
    }
    let lease = env.kubectl_as_operator(&["auth", "can-i", "update", "leases", "-n", SYSTEM]);
    assert_eq!(String::from_utf8_lossy(&lease.stdout).trim(), "yes");
    let elsewhere =
        env.kubectl_as_operator(&["auth", "can-i", "update", "leases", "-n", "default"]);
    assert_eq!(
        String::from_utf8_lossy(&elsewhere.stdout).trim(),
        "no",
        "leases only in the operator's namespace"
    );
    let denied = env.kubectl_as_operator(&["delete", "secret", "x", "-n", SYSTEM]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

/// The time of a log line written by tracing's default formatter.
fn log_time(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let clean: String = strip_ansi(line);
    let stamp = clean.split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(stamp).ok().map(|t| t.with_timezone(&chrono::Utc))
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), SYSTEM);
    leases.get_opt("switchboard-operator").await.ok()??.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_or_paused_leader_is_replaced_and_then_writes_nothing() {
    let env = Env::start().await;
    let a = env.operator("replica-a", true);
    let first = eventually("a leader", WAIT, || lease_holder(&env.admin)).await;
    let b = env.operator("replica-b", true);
    assert_eq!(first, "replica-a");
    apply_examples(&env).await;
    let (_, standby) = eventually("the follower's /readyz", WAIT, || async {
        b.get("/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    assert_eq!(standby, "ok: standby, another replica leads");

    // Pause the leader: the follower takes over once the lease runs out.
    a.signal("STOP");
    let paused_at = std::time::Instant::now();
    eventually("replica-b to take the lease", Duration::from_secs(30), || async {
        (lease_holder(&env.admin).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let handover = paused_at.elapsed();
    println!("handover after {handover:?}");
    assert!(
        handover < Duration::from_secs(15),
        "handover took {handover:?}, more than the 15 s promised"
    );

    // Resume the old leader: it must notice and exit without writing anything.
    let resumed = chrono::Utc::now();
    a.signal("CONT");
    // Give it something to react to.
    env.kubectl_ok(&["label", "integration", "monitoring-incident", "-n", NS, "nudged=yes"]);
    let mut a = a;
    let exit = eventually("the old leader to exit", Duration::from_secs(30), || {
        let status = a.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(!exit.success(), "a deposed leader exits non-zero");
    let log = a.log_text();
    assert!(log.contains("lost the lease"), "{log}");
    let late_writes: Vec<String> = log
        .lines()
        .filter(|l| l.contains("api write"))
        .filter(|l| log_time(l).is_some_and(|t| t > resumed))
        .map(strip_ansi)
        .collect();
    assert!(late_writes.is_empty(), "the deposed leader wrote after resuming: {late_writes:#?}");
    assert!(b.log_text().contains("became the leader"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_converges_across_an_api_server_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut env = Env::start_with(devcluster::Config {
        state_dir: Some(state.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let _operator = env.operator("operator-0", false);
    apply_examples(&env).await;
    let deployments: Api<Deployment> = Api::namespaced(env.admin.clone(), NS);
    eventually("the first children", WAIT, || {
        let deployments = deployments.clone();
        async move {
            (deployments.list(&ListParams::default()).await.ok()?.items.len() == 5).then_some(())
        }
    })
    .await;
    env.restart().await;
    // Changes after the restart: a new Integration, and a rotated Secret.
    let copy = env.kubectl_ok(&["get", "integration", "change-approval", "-n", NS, "-o", "json"]);
    let mut copy: Value = serde_json::from_str(&copy).unwrap();
    copy["metadata"] = json!({"name": "change-approval-copy", "namespace": NS});
    copy.as_object_mut().unwrap().remove("status");
    let file = env.scratch().join("copy.json");
    std::fs::write(&file, copy.to_string()).unwrap();
    env.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let client = env.admin.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    eventually("the new Integration's workers after the restart", WAIT, || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("change-approval-copy-worker").await.ok().flatten() }
    })
    .await;
    // No duplicates: one Deployment per (non-persistent) Integration, one ConfigMap each.
    let names: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| d.name_any())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, NS);
    let configs = config_maps
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=switchboard-operator"))
        .await
        .unwrap()
        .items;
    assert_eq!(
        configs.len(),
        8,
        "6 workers + order-invoicing + one schedule: {:?}",
        configs.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_secret_value_appears_in_no_log_event_or_status() {
    const CANARY: &str = "CANARY-3f9a1c7e-never-print-me";
    let env = Env::start().await;
    let operator = env.operator("operator-0", false);
    env.kubectl_ok(&["apply", "-f", "examples/"]);
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), NS);
    for (secret, key) in [
        ("servicenow-oauth", "clientSecret"),
        ("vendor-mailbox", "password"),
        ("monitoring-webhook-signing", "secret"),
    ] {
        let patch = json!({"stringData": {key: CANARY}});
        secrets.patch(secret, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    // A Secret missing a key makes a KeyMissing message that names the Secret, never a value.
    let patch = json!({"data": {"username": null}});
    secrets.patch("vendor-mailbox", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let client = env.admin.clone();
    eventually("vendor-mailbox KeyMissing", WAIT, || {
        let client = client.clone();
        async move {
            let status = status_of::<Credential>(&client, "vendor-mailbox").await?;
            (condition(Some(&status), "Ready")?.1 == "KeyMissing").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut outputs = vec![("operator log".to_string(), operator.log_text())];
    for kind in [
        "integrations",
        "credentials",
        "outboundmessages",
        "schedules",
        "events.events.k8s.io",
        "configmaps",
        "deployments",
        "cronjobs",
    ] {
        outputs.push((kind.to_string(), env.kubectl_ok(&["get", kind, "-n", NS, "-o", "json"])));
    }
    for (what, text) in outputs {
        assert!(!text.contains(CANARY), "the canary leaked into {what}");
    }
    assert!(operator.log_text().contains("api write"), "the log was collected at debug level");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_object_is_reported_on_itself_and_stalls_nothing() {
    let env = Env::start().await;
    // Loosen the Credential schema, as an older or newer CRD might, so that an object our types
    // cannot read gets stored.
    let crd = env.kubectl_ok(&["get", "crd", "credentials.switchboard.dev", "-o", "json"]);
    let mut crd: Value = serde_json::from_str(&crd).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let file = env.scratch().join("loose-crd.json");
    std::fs::write(&file, crd.to_string()).unwrap();
    env.kubectl_ok(&["replace", "-f", file.to_str().unwrap()]);
    env.kubectl_ok(&["apply", "-f", "examples/00-namespace.yaml"]);
    let odd = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Credential",
        "metadata": {"name": "odd", "namespace": NS}, "spec": {"type": "kerberos", "secretRef": {"name": "x"}}});
    let file = env.scratch().join("odd.json");
    std::fs::write(&file, odd.to_string()).unwrap();
    env.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let _operator = env.operator("operator-0", false);
    env.kubectl_ok(&["apply", "-f", "examples/05-servicenow.yaml"]);
    let client = env.admin.clone();
    let (_, reason, message) = eventually("odd InvalidSpec", WAIT, || {
        let client = client.clone();
        async move { condition(status_of::<Credential>(&client, "odd").await.as_ref(), "Ready") }
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("spec.type: unknown variant `kerberos`"), "{message}");
    eventually("the valid Credential beside it Ready", WAIT, || {
        let client = client.clone();
        async move {
            (condition(
                status_of::<Credential>(&client, "servicenow-oauth").await.as_ref(),
                "Ready",
            )?
            .0 == "True")
                .then_some(())
        }
    })
    .await;
}

/// Export requests seen by the stand-in collector: request line and body.
type Exports = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread")]
async fn reconciles_are_traced_over_otlp_when_configured() {
    // A stand-in OTLP/HTTP collector: records every export request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Exports = Default::default();
    let sink = received.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let head = text[..end].to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    sink.lock()
                        .unwrap()
                        .push((head.lines().next().unwrap_or_default().to_string(), body));
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").await;
                    buffer.clear();
                }
            });
        }
    });
    let env = Env::start().await;
    let endpoint = format!("--otlp-endpoint=http://127.0.0.1:{port}");
    let _operator = env.operator_with("operator-0", false, &[&endpoint]);
    env.kubectl_ok(&[
        "apply",
        "-f",
        "examples/00-namespace.yaml",
        "-f",
        "examples/05-servicenow.yaml",
    ]);
    let exports = eventually("trace exports", WAIT, || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap().clone();
            got.iter()
                .any(|(_, body)| String::from_utf8_lossy(body).contains("reconciling object"))
                .then_some(got)
        }
    })
    .await;
    assert!(
        exports.iter().all(|(line, _)| line.starts_with("post /v1/traces")),
        "{:?}",
        exports.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = exports.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        String::from_utf8_lossy(&all).contains("switchboard-operator"),
        "the service name is on the resource"
    );
}
