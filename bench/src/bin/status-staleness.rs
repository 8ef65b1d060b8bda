//! Benchmark (issue 7): status aggregation for N Integrations. Every worker pod is served by
//! one process answering `/status` for all pod addresses; a sample of integrations starts
//! failing at once, and the time until each shows `Healthy=False` is the staleness.
//! Targets: p99 under 30 s, operator under 200 MiB.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::Response;
use switchboard_bench::{
    Observed, Operator, binary, cluster, create_integrations, pod_ip, ratio, simulate_workloads,
    watch_conditions,
};
use switchboard_worker::status::{FailureInfo, StatusCounters, WorkerStatus};

/// Measure how stale `Healthy` is at scale.
#[derive(Parser)]
struct Args {
    /// Integrations (each with one worker pod).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// How many of them start failing.
    #[arg(long, default_value_t = 200)]
    failing: usize,
    /// The switchboard binary (default: target/release/switchboard).
    #[arg(long)]
    binary: Option<PathBuf>,
}

type Failing = Arc<Mutex<HashSet<IpAddr>>>;
/// An Integration's (Ready, Healthy status) as the watch last saw them.
type ConditionPair = (bool, Option<String>);

fn document(failing: bool, index: usize) -> WorkerStatus {
    let now = chrono::Utc::now();
    WorkerStatus {
        api_version: "worker.switchboard.dev/v1".into(),
        subject_kind: "Integration".into(),
        namespace: switchboard_bench::NS.into(),
        name: format!("integration-{index:05}"),
        started_at: now - chrono::Duration::hours(1),
        ready: true,
        not_ready_reason: None,
        delivery_mode: "durable".into(),
        counters: StatusCounters {
            received: 100,
            accepted: 100,
            delivered: if failing { 90 } else { 100 },
            ..StatusCounters::default()
        },
        last_success_time: Some(now - chrono::Duration::minutes(if failing { 10 } else { 0 })),
        last_failure: failing.then(|| FailureInfo {
            time: now,
            reason: "TargetUnavailable".into(),
            message: "tickets.example.com refused the connection".into(),
        }),
        consecutive_failures: if failing { 5 } else { 0 },
        circuits: Vec::new(),
        health_checks: Vec::new(),
    }
}

/// One listener on every loopback address: the destination address tells which pod is asked.
async fn serve_statuses(
    port: u16,
    failing: Failing,
    index_of: Arc<HashMap<IpAddr, usize>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let local = stream.local_addr()?.ip();
        let failing = failing.clone();
        let index_of = index_of.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                let is_failing = failing.lock().unwrap().contains(&local);
                let index = index_of.get(&local).copied().unwrap_or(0);
                let body = serde_json::to_vec(&document(is_failing, index)).unwrap_or_default();
                async move {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = binary(args.binary);
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: cargo build --release -p switchboard",
        binary.display()
    );
    let n = args.count;
    let (cluster, client) = cluster().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let failing: Failing = Default::default();
    let index_of: Arc<HashMap<IpAddr, usize>> =
        Arc::new((0..n).map(|i| (IpAddr::V4(pod_ip(i)), i)).collect());
    tokio::spawn(serve_statuses(port, failing.clone(), index_of));

    let states: Arc<Mutex<HashMap<String, ConditionPair>>> = Default::default();
    let unhealthy_at: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let (seen_states, seen_unhealthy) = (states.clone(), unhealthy_at.clone());
    tokio::spawn(watch_conditions(client.clone(), move |name, observed| {
        let Observed { ready, healthy, .. } = observed;
        if healthy.as_deref() == Some("False") {
            seen_unhealthy.lock().unwrap().entry(name.to_string()).or_insert_with(Instant::now);
        }
        seen_states
            .lock()
            .unwrap()
            .insert(name.to_string(), (ready.as_deref() == Some("True"), healthy));
    }));
    tokio::spawn(simulate_workloads(client.clone(), true));
    let operator = Operator::start(
        &binary,
        &cluster.kubeconfig_path(),
        &["--concurrency=16".into(), format!("--worker-status-port={port}")],
    )?;
    let started = Instant::now();
    create_integrations(&client, 0..n, 32).await?;
    loop {
        let healthy = states
            .lock()
            .unwrap()
            .values()
            .filter(|(r, h)| *r && h.as_deref() == Some("True"))
            .count();
        if healthy >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "only {healthy} of {n} Ready and Healthy after 900 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "== {n} Integrations Ready and Healthy after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cpu_before = operator.cpu_seconds();
    let window = Instant::now();

    // Inject failures into a sample, all at once.
    let sample: Vec<usize> = (0..args.failing).map(|k| k * n / args.failing.max(1)).collect();
    let injected = Instant::now();
    {
        let mut set = failing.lock().unwrap();
        for i in &sample {
            set.insert(IpAddr::V4(pod_ip(*i)));
        }
    }
    let names: Vec<String> = sample.iter().map(|i| format!("integration-{i:05}")).collect();
    loop {
        let all_seen = {
            let seen = unhealthy_at.lock().unwrap();
            names.iter().all(|n| seen.contains_key(n))
        };
        if all_seen || injected.elapsed() > Duration::from_secs(180) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = unhealthy_at.lock().unwrap().clone();
    let mut staleness: Vec<f64> = names
        .iter()
        .filter_map(|n| seen.get(n))
        .map(|t| t.duration_since(injected).as_secs_f64())
        .collect();
    staleness.sort_by(|a, b| a.total_cmp(b));
    let missed = names.len() - staleness.len();
    let cpu = (operator.cpu_seconds() - cpu_before) / window.elapsed().as_secs_f64() * 100.0;
    println!("{:<44} {:>10.1} s", "Healthy staleness p50", percentile(&staleness, 0.5));
    println!("{}", ratio("Healthy staleness p99", percentile(&staleness, 0.99), 30.0, true, "s"));
    if missed > 0 {
        println!(
            "{missed} of {} failing integrations never turned Healthy=False within 180 s",
            names.len()
        );
    }
    println!("{:<44} {:>10.1} % of one core", "operator CPU while aggregating", cpu);
    println!(
        "{}",
        ratio("operator peak resident memory", operator.peak_rss_mib(), 200.0, true, "MiB")
    );
    Ok(())
}
