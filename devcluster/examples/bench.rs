//! Benchmark: 10,000 Integration-sized (~3 KiB) custom objects written, listed and watched.
//!
//! `cargo run --release -p devcluster --example bench [-- COUNT]`
//!
//! Prints writes/s, list latency, watch catch-up time and resident memory, each with its
//! ratio against the target (a ratio >= 1.0 meets it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

const WRITES_PER_SEC_TARGET: f64 = 2000.0;
const RSS_TARGET_MIB: f64 = 300.0;
const LIST_TARGET: Duration = Duration::from_secs(1);
const WATCH_TARGET: Duration = Duration::from_secs(2);
const CONCURRENCY: usize = 32;

fn crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "benchobjects.bench.dev"},
        "spec": {"group": "bench.dev", "scope": "Namespaced",
            "names": {"kind": "BenchObject", "plural": "benchobjects", "singular": "benchobject"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["owner"],
                        "x-kubernetes-validations": [{"rule": "self.replicas <= 10", "message": "too many replicas"}],
                        "properties": {
                            "owner": {"type": "object", "properties": {"team": {"type": "string", "maxLength": 63}, "contact": {"type": "string"}}},
                            "replicas": {"type": "integer", "default": 1},
                            "fields": {"type": "array", "items": {"type": "object", "properties": {
                                "name": {"type": "string"}, "source": {"type": "string"}, "target": {"type": "string"}, "classification": {"type": "string", "enum": ["public", "internal", "confidential"]}}}},
                            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

fn object(i: usize) -> DynamicObject {
    let fields: Vec<serde_json::Value> = (0..24)
        .map(|f| json!({"name": format!("field_{f:02}"), "source": format!("source.table.column_{f:02}"), "target": format!("target.object.attribute_{f:02}"), "classification": "internal"}))
        .collect();
    let obj = json!({
        "apiVersion": "bench.dev/v1", "kind": "BenchObject",
        "metadata": {"name": format!("obj-{i:05}"), "labels": {"team": format!("team-{}", i % 10)}},
        "spec": {"owner": {"team": format!("team-{}", i % 10), "contact": "oncall@example.com"}, "replicas": 2,
            "fields": fields,
            "config": {"endpoint": "https://api.example.com/v1/records", "pagination": {"pageSize": 100, "cursor": "next"}, "notes": "x".repeat(600)}}
    });
    serde_json::from_value(obj).expect("object")
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let cluster = devcluster::DevCluster::start(devcluster::Config::default()).await?;
    let client = cluster.client().await?;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        },
    );
    crds.create(&PostParams::default(), &serde_json::from_value(crd())?).await?;
    let ar = ApiResource {
        group: "bench.dev".into(),
        version: "v1".into(),
        api_version: "bench.dev/v1".into(),
        kind: "BenchObject".into(),
        plural: "benchobjects".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let size = serde_json::to_vec(&object(0))?.len();

    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let api = api.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, kube::Error>(());
                }
                api.create(&PostParams::default(), &object(i)).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let write_time = start.elapsed();
    let writes_per_sec = count as f64 / write_time.as_secs_f64();
    // Measured before the client holds a 10,000-item list of its own.
    let rss = rss_mib();

    let start = Instant::now();
    let list = api.list(&ListParams::default()).await?;
    let list_time = start.elapsed();
    assert_eq!(list.items.len(), count);

    let start = Instant::now();
    let mut stream = api.watch(&WatchParams::default(), "0").await?.boxed();
    let mut added = 0;
    while added < count {
        match stream.next().await {
            Some(Ok(WatchEvent::Added(_))) => added += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let watch_time = start.elapsed();

    println!("objects: {count} of {size} bytes each");
    println!(
        "writes/s:        {writes_per_sec:>10.0}  target >= {WRITES_PER_SEC_TARGET:.0}  ratio {:.2}",
        writes_per_sec / WRITES_PER_SEC_TARGET
    );
    println!(
        "list latency:    {:>10.0} ms  target <= {} ms  ratio {:.2}",
        list_time.as_secs_f64() * 1000.0,
        LIST_TARGET.as_millis(),
        LIST_TARGET.as_secs_f64() / list_time.as_secs_f64()
    );
    println!(
        "watch catch-up:  {:>10.0} ms  target <= {} ms  ratio {:.2}",
        watch_time.as_secs_f64() * 1000.0,
        WATCH_TARGET.as_millis(),
        WATCH_TARGET.as_secs_f64() / watch_time.as_secs_f64()
    );
    println!(
        "resident memory: {rss:>10.0} MiB target <= {RSS_TARGET_MIB:.0} MiB ratio {:.2} (after the writes; server and client in one process)",
        RSS_TARGET_MIB / rss
    );
    Ok(())
}
