//! The runtime status pass at scale (issue 7): how the operator reads the workers' `/status`
//! and writes `Healthy`, against devcluster (chart CRDs) and loopback worker stand-ins.
//!
//! The pass is driven directly (`StatusReader::pass`) over caches this test fills, so that
//! what each pass writes can be counted without waiting on the interval.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;
use support::cluster::{Env, eventually};
use switchboard::api::Integration;
use switchboard::controller::object::Unchecked;
use switchboard::controller::runtime::{RuntimeSettings, StatusReader};
use switchboard::controller::{Context, Stores};

const NS: &str = "runtime";

fn integration(name: &str) -> Integration {
    serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "owner": {"team": "finance", "contact": "finance@acme.example"},
            "dataFlow": {"sourceSystem": "Shop", "targetSystem": "Billing", "classification": "internal"},
            "source": {"webhook": {"auth": {"type": "none"}}},
            "targets": [{"name": "billing", "outboundMessage": {"name": "billing", "method": "post"}}],
            "alerting": {"useDefaultRoutes": false},
        }
    }))
    .unwrap()
}

/// A worker pod of `integration` at `ip`, as the pod cache holds it.
fn pod(integration: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{integration}-0"), "namespace": NS,
                     "labels": {"switchboard.dev/integration": integration}},
        "status": {"podIP": ip},
    }))
    .unwrap()
}

/// A worker's `/status`: `delivered` deliveries, failing (five in a row) or not.
fn document(name: &str, delivered: u64, failing: bool) -> serde_json::Value {
    use switchboard_worker::status::{FailureInfo, StatusCounters, WorkerStatus};
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
    let status = WorkerStatus {
        api_version: "worker.switchboard.dev/v1".into(),
        subject_kind: "Integration".into(),
        namespace: NS.into(),
        name: name.into(),
        started_at: at(1_700_000_000),
        ready: true,
        not_ready_reason: None,
        delivery_mode: "durable".into(),
        counters: StatusCounters {
            received: delivered,
            accepted: delivered,
            delivered,
            ..StatusCounters::default()
        },
        last_success_time: Some(at(1_700_000_100)),
        last_failure: failing.then(|| FailureInfo {
            time: chrono::Utc::now(),
            reason: "TargetUnavailable".into(),
            message: "billing refused the connection".into(),
        }),
        consecutive_failures: if failing { 5 } else { 0 },
        circuits: Vec::new(),
        health_checks: Vec::new(),
    };
    serde_json::to_value(status).unwrap()
}

/// A worker stand-in on `ip:port` (port 0: any) answering `/status`; every answer counts one
/// more delivery. Returns the port.
async fn worker(ip: &str, port: u16, name: &'static str, failing: bool) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let delivered = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(move || {
            let n = delivered.fetch_add(1, Ordering::Relaxed) + 1;
            async move { axum::Json(document(name, n, failing)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A worker stand-in on `ip:port` that accepts connections and never answers.
async fn silent_worker(ip: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// The cluster with `names` created, a context whose Integration cache this test fills, and
/// the cache's writer.
async fn setup(names: &[&str]) -> (Env, Arc<Context>, Writer<Unchecked<Integration>>) {
    let env = Env::start().await;
    env.kubectl_ok(&["create", "namespace", NS]);
    let api: Api<Integration> = Api::namespaced(env.admin.clone(), NS);
    for name in names {
        api.create(&PostParams::default(), &integration(name)).await.unwrap();
    }
    let (integrations, writer) = reflector::store();
    let stores = Stores {
        integrations,
        credentials: reflector::store().0,
        outbound_messages: reflector::store().0,
        schedules: reflector::store().0,
    };
    let ctx = Context::new(
        env.admin.clone(),
        switchboard::render::RenderSettings::default(),
        switchboard::controller::leader::LeaderGuard::always(),
        kube::runtime::events::Reporter { controller: "test".into(), instance: None },
        Arc::new(switchboard::controller::metrics::Metrics::default()),
        stores,
        Arc::new(switchboard::controller::index::RefIndex::default()),
    );
    let mut writer = writer;
    refresh(&env, &mut writer).await;
    (env, Arc::new(ctx), writer)
}

/// Fill the Integration cache with what the API server holds now.
async fn refresh(env: &Env, writer: &mut Writer<Unchecked<Integration>>) {
    let api: Api<Unchecked<Integration>> = Api::namespaced(env.admin.clone(), NS);
    let objects = api.list(&Default::default()).await.unwrap().items;
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

fn pods(list: Vec<Pod>) -> reflector::Store<Pod> {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for pod in list {
        writer.apply_watcher_event(&watcher::Event::InitApply(pod));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

async fn healthy(env: &Env, name: &str) -> Option<(String, String)> {
    let api: Api<Integration> = Api::namespaced(env.admin.clone(), NS);
    let status = api.get(name).await.ok()?.status?;
    let c = status.conditions.iter().find(|c| c.type_ == "Healthy")?;
    Some((c.status.clone(), c.reason.clone()))
}

/// With the status read from every worker before anything was written, one worker that
/// does not answer held back every integration's `Healthy` until its request timed out.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_does_not_answer_holds_back_no_other_integration() {
    let (env, ctx, _writer) = setup(&["silent", "billing"]).await;
    let port = silent_worker("127.0.0.2").await;
    worker("127.0.0.3", port, "billing", true).await;
    let settings = RuntimeSettings {
        port,
        // Longer than this test waits: the silent worker's request is still open at the end.
        timeout: Duration::from_secs(3600),
        concurrency: 4,
        ..RuntimeSettings::default()
    };
    let pods = pods(vec![pod("silent", "127.0.0.2"), pod("billing", "127.0.0.3")]);
    let mut reader = StatusReader::new(&ctx, settings);
    let pass_ctx = ctx.clone();
    let pass = tokio::spawn(async move { reader.pass(&pass_ctx, &pods).await });

    let seen = eventually("billing's Healthy=False", Duration::from_secs(60), || async {
        healthy(&env, "billing").await.filter(|(status, _)| status == "False")
    })
    .await;
    assert_eq!(seen.1, "TargetUnavailable");
    assert!(!pass.is_finished(), "the pass still waits for the silent worker");
    assert_eq!(healthy(&env, "silent").await, None, "nothing is known of the silent one yet");
    pass.abort();
}

/// Counters alone are written at most `counter_writes_per_second` over all integrations,
/// and an operator that starts (or takes over) does not write them all in its first pass.
#[tokio::test(flavor = "multi_thread")]
async fn counters_alone_are_written_within_a_budget_and_not_all_after_a_restart() {
    let names = ["alpha", "bravo", "charlie", "delta"];
    let (env, ctx, mut writer) = setup(&names).await;
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"];
    let mut port = 0;
    for (name, ip) in names.iter().zip(ips) {
        port = worker(ip, port, name, false).await;
    }
    let pods = pods(names.iter().zip(ips).map(|(n, ip)| pod(n, ip)).collect());
    let settings = RuntimeSettings {
        port,
        // Due at once, were it not for the budget: 4 integrations at 0.001/s wait 4,000 s.
        counters_every: Duration::ZERO,
        counter_writes_per_second: 0.001,
        ..RuntimeSettings::default()
    };

    let mut reader = StatusReader::new(&ctx, settings.clone());
    let first = reader.pass(&ctx, &pods).await;
    assert_eq!((first.answered, first.written), (4, 4), "Healthy is new: all written");
    for name in names {
        assert_eq!(healthy(&env, name).await, Some(("True".into(), "Succeeding".into())));
    }
    refresh(&env, &mut writer).await;
    let second = reader.pass(&ctx, &pods).await;
    assert_eq!(
        (second.answered, second.written),
        (4, 0),
        "every worker counted another delivery, but counters wait for the budget"
    );

    // A new reader (an operator restart): the counters moved, and still nothing is written.
    let mut restarted = StatusReader::new(&ctx, settings);
    let third = restarted.pass(&ctx, &pods).await;
    assert_eq!((third.answered, third.written), (4, 0));
}

/// A worker stand-in speaking HTTP/1.1 by hand on `ip` (any port), answering every request
/// with `body` and keeping the connection open unless asked to close it (as a real server
/// does). Returns the port and how many connections are open.
async fn counting_worker(ip: &str, body: String) -> (u16, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicU64::new(0));
    let counted = open.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (open, body) = (counted.clone(), body.clone());
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    request.drain(..end + 4);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                    if head.contains("\r\nconnection: close") {
                        break;
                    }
                }
                drop(stream);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open)
}

/// Each worker is asked once per interval: a connection kept alive for the next pass only
/// idles, and at 10,000 pods the idle connections' buffers alone outweighed the 200 MiB the
/// operator may use. After a pass, no connection to a worker stays open.
#[tokio::test(flavor = "multi_thread")]
async fn no_connection_to_a_worker_stays_open_after_a_pass() {
    let (env, ctx, _writer) = setup(&["echo"]).await;
    let (port, open) = counting_worker("127.0.0.21", document("echo", 1, false).to_string()).await;
    let pods = pods(vec![pod("echo", "127.0.0.21")]);
    let settings = RuntimeSettings { port, ..RuntimeSettings::default() };
    let mut reader = StatusReader::new(&ctx, settings);
    let report = reader.pass(&ctx, &pods).await;
    assert_eq!((report.answered, report.written), (1, 1), "{report:?}");
    assert_eq!(healthy(&env, "echo").await, Some(("True".into(), "Succeeding".into())));
    eventually("the connection to the worker closed", Duration::from_secs(30), || async {
        (open.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
}
