//! Benchmark (issue 7): status aggregation for N Integrations. Every worker pod is served by
//! one process answering `/status` for all pod addresses; a sample of integrations starts
//! failing at once, and the time until each shows `Healthy=False` is the staleness.
//! Targets: p99 under 30 s, operator under 200 MiB.
//!
//! It always says what happened: a progress line every `--progress` seconds whatever it is
//! waiting for (Ready and Healthy counts, `/status` requests served, connections open, the
//! operator's memory and CPU), and a message naming the phase and the counts when it gives up,
//! when the operator exits, or when the status server cannot accept connections.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// The switchboard binary (default: target/release/switchboard); a wrapper script that
    /// execs it (e.g. under heaptrack) works too.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Give up when not every Integration is Ready and Healthy after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The failures start one after another over this many seconds (0: all at once), so that
    /// they meet the operator's passes at every phase and the percentiles are a distribution
    /// rather than one draw of where the next pass happens to be.
    #[arg(long, default_value_t = 30)]
    spread: u64,
    /// Give up waiting for `Healthy=False` this many seconds after the last failure started.
    #[arg(long, default_value_t = 180)]
    failure_timeout: u64,
    /// Seconds between two progress lines.
    #[arg(long, default_value_t = 10)]
    progress: u64,
}

type Failing = Arc<Mutex<HashSet<IpAddr>>>;

/// What the stand-in workers' status server did.
#[derive(Default)]
struct ServerStats {
    requests: AtomicU64,
    open_connections: AtomicI64,
    accept_errors: AtomicU64,
    last_accept_error: Mutex<Option<String>>,
    /// When each failing pod first answered with its failure.
    first_failing_answer: Mutex<HashMap<IpAddr, Instant>>,
}

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
/// An accept error (such as running out of file descriptors) is counted and reported, and
/// the server goes on accepting.
async fn serve_statuses(
    listener: tokio::net::TcpListener,
    failing: Failing,
    index_of: Arc<HashMap<IpAddr, usize>>,
    stats: Arc<ServerStats>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                if stats.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    println!("status server: cannot accept a connection: {error}");
                }
                *stats.last_accept_error.lock().unwrap() = Some(error.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr().map(|a| a.ip()) else { continue };
        let failing = failing.clone();
        let index_of = index_of.clone();
        let stats = stats.clone();
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let served = stats.clone();
            let service = hyper::service::service_fn(move |_request| {
                served.requests.fetch_add(1, Ordering::Relaxed);
                let is_failing = failing.lock().unwrap().contains(&local);
                if is_failing {
                    served
                        .first_failing_answer
                        .lock()
                        .unwrap()
                        .entry(local)
                        .or_insert_with(Instant::now);
                }
                let index = index_of.get(&local).copied().unwrap_or(0);
                let body = serde_json::to_vec(&document(is_failing, index)).unwrap_or_default();
                async move {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Everything the progress lines and the error messages report.
struct Shared {
    n: usize,
    started: Instant,
    phase: Mutex<String>,
    states: Mutex<HashMap<String, Observed>>,
    stats: Arc<ServerStats>,
    operator: Mutex<Operator>,
}

impl Shared {
    fn set_phase(&self, phase: &str) {
        println!("== {:>6.1} s  {phase}", self.started.elapsed().as_secs_f64());
        *self.phase.lock().unwrap() = phase.to_string();
    }

    /// How many are Ready and Healthy.
    fn ready_and_healthy(&self) -> usize {
        let states = self.states.lock().unwrap();
        states
            .values()
            .filter(|o| o.ready.as_deref() == Some("True") && o.healthy.as_deref() == Some("True"))
            .count()
    }

    /// Ready and Healthy counts, with the reasons of the others.
    fn counts(&self) -> String {
        let states = self.states.lock().unwrap();
        let mut ready = 0;
        let mut healthy: std::collections::BTreeMap<String, usize> = Default::default();
        for o in states.values() {
            ready += usize::from(o.ready.as_deref() == Some("True"));
            let key = match (&o.healthy, &o.healthy_reason) {
                (Some(s), Some(r)) => format!("{s}/{r}"),
                _ => "no Healthy".into(),
            };
            *healthy.entry(key).or_default() += 1;
        }
        let unseen = self.n.saturating_sub(states.len());
        if unseen > 0 {
            healthy.insert("not seen yet".into(), unseen);
        }
        let healthy: Vec<String> = healthy.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("Ready {ready}/{}  Healthy: {}", self.n, healthy.join(", "))
    }

    /// The operator's state, or an error when it is gone.
    fn operator_line(&self) -> anyhow::Result<String> {
        let mut operator = self.operator.lock().unwrap();
        if let Some(status) = operator.exited() {
            anyhow::bail!(
                "the operator exited ({status}); its log ends:\n{}",
                operator.log_tail(20)
            );
        }
        Ok(format!(
            "operator RSS {:.0} MiB (peak {:.0}), CPU {:.1} s",
            operator.rss_mib(),
            operator.peak_rss_mib(),
            operator.cpu_seconds()
        ))
    }

    fn server_line(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "/status served {}, connections open {}",
            s.requests.load(Ordering::Relaxed),
            s.open_connections.load(Ordering::Relaxed)
        );
        let errors = s.accept_errors.load(Ordering::Relaxed);
        if errors > 0 {
            let last = s.last_accept_error.lock().unwrap().clone().unwrap_or_default();
            line.push_str(&format!(", accept errors {errors} (last: {last})"));
        }
        line
    }

    /// A progress line; an error when the operator is gone.
    fn progress(&self) -> anyhow::Result<String> {
        Ok(format!(
            "  {:>6.1} s  [{}]  {}  |  {}  |  {}",
            self.started.elapsed().as_secs_f64(),
            self.phase.lock().unwrap(),
            self.counts(),
            self.server_line(),
            self.operator_line()?
        ))
    }

    /// Fail with the phase and every count when `deadline` has passed or the operator is gone.
    fn check(&self, since: Instant, deadline: Duration) -> anyhow::Result<()> {
        let operator = self.operator_line()?;
        anyhow::ensure!(
            since.elapsed() < deadline,
            "gave up after {} s in phase \"{}\": {}; {}; {}",
            deadline.as_secs(),
            self.phase.lock().unwrap(),
            self.counts(),
            self.server_line(),
            operator
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("status-staleness failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = binary(args.binary);
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: cargo build --release -p switchboard",
        binary.display()
    );
    let n = args.count;
    let started = Instant::now();
    println!("== {n} Integrations, {} failing", args.failing);
    let (cluster, client) = cluster().await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 0))).await?;
    let port = listener.local_addr()?.port();
    let failing: Failing = Default::default();
    let index_of: Arc<HashMap<IpAddr, usize>> =
        Arc::new((0..n).map(|i| (IpAddr::V4(pod_ip(i)), i)).collect());
    let stats = Arc::new(ServerStats::default());
    tokio::spawn(serve_statuses(listener, failing.clone(), index_of, stats.clone()));

    let unhealthy_at: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let operator = Operator::start(
        &binary,
        &cluster.kubeconfig_path(),
        &["--concurrency=16".into(), format!("--worker-status-port={port}")],
    )?;
    let shared = Arc::new(Shared {
        n,
        started,
        phase: Mutex::new(String::new()),
        states: Default::default(),
        stats: stats.clone(),
        operator: Mutex::new(operator),
    });
    let (seen, seen_unhealthy) = (shared.clone(), unhealthy_at.clone());
    tokio::spawn(watch_conditions(client.clone(), move |name, observed| {
        if observed.healthy.as_deref() == Some("False") {
            seen_unhealthy.lock().unwrap().entry(name.to_string()).or_insert_with(Instant::now);
        }
        seen.states.lock().unwrap().insert(name.to_string(), observed);
    }));
    tokio::spawn(simulate_workloads(client.clone(), true));
    // Progress whatever the main task waits for (even an API request that hangs).
    let reporter = shared.clone();
    let every = Duration::from_secs(args.progress.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match reporter.progress() {
                Ok(line) => println!("{line}"),
                Err(error) => println!("  {error:#}"),
            }
        }
    });

    let deadline = Duration::from_secs(args.timeout);
    shared.set_phase("creating the Integrations");
    tokio::time::timeout(deadline, create_integrations(&client, 0..n, 32))
        .await
        .map_err(|_| anyhow::anyhow!("creating {n} Integrations took over {deadline:?}"))??;
    shared.set_phase("waiting until every Integration is Ready and Healthy");
    while shared.ready_and_healthy() < n {
        shared.check(started, deadline)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "== {n} Integrations Ready and Healthy after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let settled_rss = shared.operator.lock().unwrap().rss_mib();
    let cpu_before = shared.operator.lock().unwrap().cpu_seconds();
    let requests_before = stats.requests.load(Ordering::Relaxed);
    let window = Instant::now();

    // Failures start in a sample, one after another over `spread`.
    let sample: Vec<usize> = (0..args.failing).map(|k| k * n / args.failing.max(1)).collect();
    let names: Vec<String> = sample.iter().map(|i| format!("integration-{i:05}")).collect();
    let spread = Duration::from_secs(args.spread);
    let step = spread.checked_div(sample.len() as u32).unwrap_or_default();
    let injected_at: Arc<Mutex<HashMap<IpAddr, Instant>>> = Default::default();
    let (injecting, recorded, addresses) = (failing.clone(), injected_at.clone(), sample.clone());
    tokio::spawn(async move {
        let first = Instant::now();
        for (k, i) in addresses.iter().enumerate() {
            tokio::time::sleep_until((first + step * k as u32).into()).await;
            let ip = IpAddr::V4(pod_ip(*i));
            recorded.lock().unwrap().insert(ip, Instant::now());
            injecting.lock().unwrap().insert(ip);
        }
    });
    shared.set_phase(&format!(
        "{} failures starting over {} s, waiting for Healthy=False",
        sample.len(),
        spread.as_secs()
    ));
    let failure_deadline = spread + Duration::from_secs(args.failure_timeout);
    loop {
        let all_seen = {
            let seen = unhealthy_at.lock().unwrap();
            names.iter().all(|n| seen.contains_key(n))
        };
        if all_seen {
            break;
        }
        if window.elapsed() > failure_deadline {
            println!("stopped waiting for Healthy=False after {} s", failure_deadline.as_secs());
            break;
        }
        shared.operator_line()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = window.elapsed().as_secs_f64();
    let seen = unhealthy_at.lock().unwrap().clone();
    let injected_at = injected_at.lock().unwrap().clone();
    let answered = stats.first_failing_answer.lock().unwrap().clone();
    // Staleness = until the operator next asks the pod + until the condition is written.
    let mut staleness: Vec<f64> = Vec::new();
    let mut asked: Vec<f64> = Vec::new();
    let mut written: Vec<f64> = Vec::new();
    for (i, name) in sample.iter().zip(&names) {
        let ip = IpAddr::V4(pod_ip(*i));
        let Some(injected) = injected_at.get(&ip) else { continue };
        let unhealthy = seen.get(name);
        if let Some(at) = unhealthy {
            staleness.push(at.saturating_duration_since(*injected).as_secs_f64());
        }
        if let Some(at) = answered.get(&ip) {
            asked.push(at.saturating_duration_since(*injected).as_secs_f64());
            if let Some(unhealthy) = unhealthy {
                written.push(unhealthy.saturating_duration_since(*at).as_secs_f64());
            }
        }
    }
    for list in [&mut staleness, &mut asked, &mut written] {
        list.sort_by(|a, b| a.total_cmp(b));
    }
    let missed = names.len() - staleness.len();
    let operator = shared.operator.lock().unwrap();
    let cpu = (operator.cpu_seconds() - cpu_before) / elapsed * 100.0;
    let rate = (stats.requests.load(Ordering::Relaxed) - requests_before) as f64 / elapsed;
    println!("{:<44} {:>10.1} s", "Healthy staleness p50", percentile(&staleness, 0.5));
    println!("{}", ratio("Healthy staleness p99", percentile(&staleness, 0.99), 30.0, true, "s"));
    println!(
        "{:<44} {:>10.1} s (p99 {:.1} s)",
        "  of it: until the pod was asked, p50",
        percentile(&asked, 0.5),
        percentile(&asked, 0.99)
    );
    println!(
        "{:<44} {:>10.1} s (p99 {:.1} s)",
        "  of it: from the answer to the condition, p50",
        percentile(&written, 0.5),
        percentile(&written, 0.99)
    );
    if missed > 0 {
        println!(
            "{missed} of {} failing integrations never turned Healthy=False within {} s",
            names.len(),
            failure_deadline.as_secs()
        );
    }
    println!("{:<44} {:>10.0} /s ({n} pods)", "/status requests while measuring", rate);
    println!("{:<44} {:>10.1} % of one core", "operator CPU while aggregating", cpu);
    println!("{:<44} {:>10.1} MiB", "operator resident memory when settled", settled_rss);
    println!(
        "{}",
        ratio("operator peak resident memory", operator.peak_rss_mib(), 200.0, true, "MiB")
    );
    println!("{}", shared.server_line());
    Ok(())
}
