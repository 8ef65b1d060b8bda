//! Workloads end to end: controllers, the pod runner and service proxies, driving a real
//! program (`devcluster-testapp`) as local processes, observed through `kube` and `kubectl`.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use devcluster::kubelet::{ImageRule, PodRunnerConfig};
use devcluster::{Config, DevCluster};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const IMAGE: &str = "example.test/testapp:1";
const DEADLINE: Duration = Duration::from_secs(90);

fn config() -> Config {
    let workloads = devcluster::workloads::WorkloadSettings {
        job_backoff: Duration::from_millis(200),
        tick: Duration::from_millis(200),
        ..Default::default()
    };
    Config {
        pods: PodRunnerConfig {
            images: vec![ImageRule {
                image: "example.test/testapp:*".into(),
                executable: Some(env!("CARGO_BIN_EXE_devcluster-testapp").into()),
                env: vec![("APP_ROOT".into(), "{pod_root}".into())],
            }],
            restart_backoff: Duration::from_millis(200),
            max_termination_grace: Duration::from_secs(5),
            ..PodRunnerConfig::default()
        },
        workloads,
        ..Config::default()
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after the deadline.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

fn pid_of(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .as_deref()?
        .strip_prefix("devcluster://")?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // A reaped process has no /proc entry; a zombie counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
        .unwrap_or(false)
}

async fn http_get(url: &str) -> Option<String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .await
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn deployment(annotation: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"example.test/secret-hash": annotation}},
                "spec": {
                    "containers": [{
                        "name": "app", "image": IMAGE,
                        "args": ["serve", "--port", "8080", "--file", "/etc/app/config.txt"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "greeting"}}}],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
                },
            },
        },
    })
}

async fn ready_pod(pods: &Api<Pod>, exclude: Option<&str>) -> Pod {
    wait_for("a ready pod", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        list.items.into_iter().find(|p| {
            p.metadata.name.as_deref() != exclude
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await
}

async fn rolled_out(deployments: &Api<Deployment>) -> Deployment {
    wait_for("the deployment to be complete", || async {
        let d = deployments.get("web").await.ok()?;
        let s = d.status.clone()?;
        let done = s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(1)
            && s.replicas == Some(1)
            && s.available_replicas == Some(1)
            && s.ready_replicas == Some(1)
            && s.conditions.as_ref().is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("NewReplicaSetAvailable")
                }) && c.iter().any(|c| c.type_ == "Available" && c.status == "True")
            });
        done.then_some(d)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_rolls_and_stops_a_local_process() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "apps").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "apps");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    let pp = PostParams::default();
    secrets
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "app-secret"}, "stringData": {"greeting": "hello-1"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    maps.create(
        &pp,
        &serde_json::from_value(
            json!({"metadata": {"name": "app-config"}, "data": {"config.txt": "v1"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    deployments.create(&pp, &serde_json::from_value(deployment("1")).unwrap()).await.unwrap();

    // The pod becomes Ready through its readiness probe, on its own loopback address.
    let first = ready_pod(&pods, None).await;
    let d = rolled_out(&deployments).await;
    assert_eq!(d.status.as_ref().unwrap().unavailable_replicas, None);
    let ip = first.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "pod ip {ip}");
    let body: Value =
        serde_json::from_str(&http_get(&format!("http://{ip}:8080/")).await.unwrap()).unwrap();
    assert_eq!(body["greeting"], "hello-1", "env from the Secret");
    let config_path = body["files"].as_object().unwrap().keys().next().unwrap().clone();
    assert!(
        config_path.ends_with("/root/etc/app/config.txt"),
        "the argument was remapped: {config_path}"
    );
    assert_eq!(body["files"][&config_path], "v1", "the mounted ConfigMap");
    let root = http_get(&format!("http://{ip}:8080/env/APP_ROOT")).await.unwrap();
    assert_eq!(http_get(&format!("http://{ip}:8080/env/DEVCLUSTER_POD_ROOT")).await.unwrap(), root);

    // A ConfigMap update reaches the mounted file without a restart.
    maps.patch(
        "app-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config.txt": "v2"}})),
    )
    .await
    .unwrap();
    wait_for("the mounted file to follow the ConfigMap", || async {
        let body: Value =
            serde_json::from_str(&http_get(&format!("http://{ip}:8080/")).await?).ok()?;
        (body["files"][&config_path] == "v2").then_some(())
    })
    .await;

    // kubectl logs shows the program's output.
    let logs = kubectl(&cluster.kubeconfig_path(), &["-n", "apps", "logs", "deploy/web"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success(), "kubectl logs: {}", String::from_utf8_lossy(&logs.stderr));
    assert!(text.contains(&format!("listening on {ip}:8080")), "logs: {text}");

    // A Secret rotation plus a template change rolls the pod.
    let old_pid = pid_of(&first).expect("a container id with the pid");
    assert!(alive(old_pid));
    secrets
        .patch(
            "app-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"greeting": "hello-2"}})),
        )
        .await
        .unwrap();
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"example.test/secret-hash": "2"}}}}})),
        )
        .await
        .unwrap();
    let second = ready_pod(&pods, first.metadata.name.as_deref()).await;
    let kubeconfig = cluster.kubeconfig_path();
    let status = tokio::task::spawn_blocking(move || {
        kubectl(&kubeconfig, &["-n", "apps", "rollout", "status", "deploy/web", "--timeout=90s"])
    })
    .await
    .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).contains("successfully rolled out"));
    rolled_out(&deployments).await;
    wait_for("the old pod to be gone", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        (list.items.len() == 1).then_some(())
    })
    .await;
    wait_for("the old process to end", || async { (!alive(old_pid)).then_some(()) }).await;
    let ip2 = second.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let body: Value =
        serde_json::from_str(&http_get(&format!("http://{ip2}:8080/")).await.unwrap()).unwrap();
    assert_eq!(body["greeting"], "hello-2");
    let d = deployments.get("web").await.unwrap();
    let revision = d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"].clone();
    assert_eq!(revision, "2");

    // A Service: a loopback cluster IP and a proxy to the ready pod.
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    let svc = services
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(cluster_ip.starts_with("127."), "cluster ip {cluster_ip}");
    let local = wait_for("the service proxy", || async {
        cluster.service_addresses("apps", "web").into_iter().next()
    })
    .await;
    assert_eq!(local.address.ip().to_string(), cluster_ip);
    let via_service = wait_for("a response through the service", || async {
        http_get(&format!("http://{}/env/GREETING", local.address)).await
    })
    .await;
    assert_eq!(via_service, "hello-2");

    // Deleting the Deployment ends the process.
    let pid = pid_of(&second).unwrap();
    deployments.delete("web", &DeleteParams::background()).await.unwrap();
    wait_for("the pods to be gone", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    wait_for("the process to end", || async { (!alive(pid)).then_some(()) }).await;
    wait_for("no container process left", || async {
        (cluster.running_processes() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_creates_jobs_that_run_to_completion() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "batch").await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "batch");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "batch");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "batch");
    let cj = json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/1 * * * *",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "run", "image": IMAGE,
                    "args": ["exit", "--code", "0", "--message", "done", "--termination-log", "/dev/termination-log"]}],
            }}}},
        },
    });
    cronjobs.create(&PostParams::default(), &serde_json::from_value(cj).unwrap()).await.unwrap();

    let mut seen = Vec::new();
    for round in 0..2 {
        // The next minute boundary arrives at once.
        cluster.clock().advance(Duration::from_secs(60));
        let job = wait_for("a new job", || async {
            let list = jobs.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|j| !seen.contains(j.metadata.name.as_ref().unwrap()))
        })
        .await;
        let name = job.metadata.name.clone().unwrap();
        seen.push(name.clone());
        let annotations = job.metadata.annotations.clone().unwrap();
        let scheduled = annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
        assert!(scheduled.ends_with(":00Z"), "a minute boundary: {scheduled}");
        let minutes = chrono::DateTime::parse_from_rfc3339(&scheduled).unwrap().timestamp() / 60;
        assert_eq!(name, format!("tick-{minutes}"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "tick");

        let done = wait_for("the job to complete", || async {
            let j = jobs.get(&name).await.ok()?;
            let s = j.status.clone()?;
            s.conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(j)
        })
        .await;
        let s = done.status.unwrap();
        assert_eq!(s.succeeded, Some(1));
        assert_eq!(s.active, None);
        assert_eq!(s.failed, None);
        assert!(s.start_time.is_some() && s.completion_time.is_some());
        let types: Vec<String> = s.conditions.unwrap().into_iter().map(|c| c.type_).collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);

        let pod = pods
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
            .await
            .unwrap()
            .items
            .remove(0);
        let ps = pod.status.unwrap();
        assert_eq!(ps.phase.as_deref(), Some("Succeeded"));
        let terminated =
            ps.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(
            terminated.message.as_deref(),
            Some("done"),
            "the termination message, through the remapped path"
        );

        let cj = wait_for("the cronjob status", || async {
            let cj = cronjobs.get("tick").await.ok()?;
            let s = cj.status.clone()?;
            (s.active.is_none() && s.last_successful_time.is_some()).then_some(cj)
        })
        .await;
        let s = cj.status.unwrap();
        assert_eq!(serde_json::to_value(s.last_schedule_time.unwrap()).unwrap(), json!(scheduled));
        if round == 1 {
            wait_for("the older job to be removed (history limit 1)", || async {
                let list = jobs.list(&ListParams::default()).await.ok()?;
                (list.items.len() == 1
                    && list.items[0].metadata.name.as_deref() == Some(name.as_str()))
                .then_some(())
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fails_once_its_backoff_limit_is_exceeded() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "fail").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "fail");
    let job = json!({
        "metadata": {"name": "broken"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "run", "image": IMAGE, "args": ["exit", "--code", "3"],
                "terminationMessagePolicy": "FallbackToLogsOnError"}]}}},
    });
    jobs.create(&PostParams::default(), &serde_json::from_value(job).unwrap()).await.unwrap();
    let failed = wait_for("the job to fail", || async {
        let j = jobs.get("broken").await.ok()?;
        let s = j.status.clone()?;
        s.conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
            .then_some(j)
    })
    .await;
    let s = failed.status.unwrap();
    assert_eq!(s.failed, Some(2), "the first pod and one retry");
    assert_eq!(s.succeeded, None);
    let conditions = s.conditions.unwrap();
    let failed = conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(conditions.iter().any(|c| c.type_ == "FailureTarget"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "fail");
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    for p in list.items {
        let status = p.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let t = status.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
        assert_eq!(
            t.message.as_deref(),
            Some("exiting with code 3\n"),
            "logs as the termination message"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "probe").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "probe");
    let pod = json!({
        "metadata": {"name": "sick"},
        "spec": {"containers": [{"name": "app", "image": IMAGE, "args": ["serve", "--port", "8080", "--unhealthy"],
            "ports": [{"containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}}]},
    });
    pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    let restarted = wait_for("a restart", || async {
        let p = pods.get("sick").await.ok()?;
        let c = p.status.clone()?.container_statuses?.remove(0);
        (c.restart_count >= 1 && c.last_state.as_ref()?.terminated.is_some()).then_some(c)
    })
    .await;
    assert!(restarted.last_state.unwrap().terminated.unwrap().exit_code != 0);
    // The container keeps failing and restarting; a restart can begin between two reads, so
    // the previous run's output is awaited rather than read once.
    let kubeconfig = cluster.kubeconfig_path();
    wait_for("the previous run's output in logs --previous", || async {
        let previous = kubectl(&kubeconfig, &["-n", "probe", "logs", "sick", "--previous"]);
        (previous.status.success()
            && String::from_utf8_lossy(&previous.stdout).contains("listening on"))
        .then_some(())
    })
    .await;
    let events =
        kubectl(&cluster.kubeconfig_path(), &["-n", "probe", "get", "events", "-o", "json"]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let reasons: Vec<&str> =
        events["items"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"Unhealthy") && reasons.contains(&"Killing"), "events: {reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_starts_ordinal_pods_in_order_with_claims() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "db").await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    let set = json!({
        "metadata": {"name": "store"},
        "spec": {"replicas": 2, "serviceName": "store", "selector": {"matchLabels": {"app": "store"}},
            "template": {"metadata": {"labels": {"app": "store"}}, "spec": {"containers": [{"name": "app", "image": IMAGE,
                "args": ["serve", "--port", "8080"], "ports": [{"containerPort": 8080}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]},
    });
    sets.create(&PostParams::default(), &serde_json::from_value(set).unwrap()).await.unwrap();
    let done = wait_for("both replicas ready", || async {
        let s = sets.get("store").await.ok()?;
        let st = s.status.clone()?;
        (st.ready_replicas == Some(2) && st.current_revision == st.update_revision).then_some(s)
    })
    .await;
    let st = done.status.unwrap();
    assert_eq!((st.replicas, st.updated_replicas, st.current_replicas), (2, Some(2), Some(2)));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "db");
    let mut names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["store-0", "store-1"]);
    let p0 = pods.get("store-0").await.unwrap();
    let p1 = pods.get("store-1").await.unwrap();
    let ready_at = |p: &Pod| {
        p.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert!(
        ready_at(&p0).unwrap().0 <= p1.metadata.creation_timestamp.clone().unwrap().0,
        "store-1 waited for store-0"
    );
    let claims = kubectl(
        &cluster.kubeconfig_path(),
        &[
            "-n",
            "db",
            "get",
            "pvc",
            "-o",
            "jsonpath={.items[*].metadata.name} {.items[*].status.phase}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&claims.stdout), "data-store-0 data-store-1 Bound Bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_logs_ends_with_the_container_and_dropping_the_cluster_ends_every_process() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "life").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "life");
    let pp = PostParams::default();
    let short = json!({"metadata": {"name": "short"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "run", "image": IMAGE, "args": ["exit", "--code", "0", "--sleep-ms", "1500"]}]}});
    let long = json!({"metadata": {"name": "long"}, "spec": {"containers": [{"name": "app", "image": IMAGE,
        "args": ["serve", "--port", "8080"], "ports": [{"containerPort": 8080}]}]}});
    pods.create(&pp, &serde_json::from_value(short).unwrap()).await.unwrap();
    pods.create(&pp, &serde_json::from_value(long).unwrap()).await.unwrap();

    // `kubectl logs -f` streams until the container ends.
    wait_for("the short container to start", || async {
        let p = pods.get("short").await.ok()?;
        p.status?.container_statuses?.first()?.state.as_ref()?.running.as_ref().map(|_| ())
    })
    .await;
    let kubeconfig = cluster.kubeconfig_path();
    let followed = tokio::task::spawn_blocking(move || {
        kubectl(&kubeconfig, &["-n", "life", "logs", "-f", "short"])
    })
    .await
    .unwrap();
    assert!(followed.status.success(), "{}", String::from_utf8_lossy(&followed.stderr));
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "exiting with code 0\n");
    let done = pods.get("short").await.unwrap();
    assert_eq!(done.status.unwrap().phase.as_deref(), Some("Succeeded"));

    let pid = wait_for("the long-running pod's process", || async {
        pid_of(&pods.get("long").await.ok()?)
    })
    .await;
    assert!(alive(pid));
    drop(cluster);
    wait_for("the process to end with the cluster", || async { (!alive(pid)).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_cronjob_replaces_the_running_job_on_the_next_schedule() {
    let cluster = DevCluster::start(config()).await.unwrap();
    let client = cluster.client().await.unwrap();
    namespace(&client, "replace").await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "replace");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "replace");
    let cj = json!({
        "metadata": {"name": "long"},
        "spec": {"schedule": "* * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Replace",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "run", "image": IMAGE, "args": ["serve", "--port", "8080"]}]}}}}},
    });
    cronjobs.create(&PostParams::default(), &serde_json::from_value(cj).unwrap()).await.unwrap();
    cluster.clock().advance(Duration::from_secs(60));
    let first = wait_for("the first job to run", || async {
        let j = jobs.list(&ListParams::default()).await.ok()?.items.into_iter().next()?;
        (j.status.as_ref()?.active == Some(1)).then_some(j)
    })
    .await;
    let first_name = first.metadata.name.unwrap();
    wait_for("the cronjob to list it as active", || async {
        let s = cronjobs.get("long").await.ok()?.status?;
        (s.active?.first()?.name.as_deref() == Some(first_name.as_str())).then_some(())
    })
    .await;
    cluster.clock().advance(Duration::from_secs(60));
    let second = wait_for("a second job replacing the first", || async {
        let list = jobs.list(&ListParams::default()).await.ok()?.items;
        (list.len() == 1 && list[0].metadata.name.as_deref() != Some(first_name.as_str()))
            .then(|| list[0].metadata.name.clone().unwrap())
    })
    .await;
    let s = cronjobs.get("long").await.unwrap().status.unwrap();
    let scheduled = serde_json::to_value(s.last_schedule_time.unwrap()).unwrap();
    let minutes =
        chrono::DateTime::parse_from_rfc3339(scheduled.as_str().unwrap()).unwrap().timestamp() / 60;
    assert_eq!(second, format!("long-{minutes}"));
}
