//! `switchboard dev [PATH...]`: a working Switchboard on this machine in one step.
//!
//! ```text
//!  request sink (stand-in for external systems, unless --no-sink)
//!  devcluster: API server + workload controllers + pod runner
//!     image ghcr.io/switchboard-dev/switchboard:* ─▶ this executable
//!  CRDs ─▶ operator RBAC from the chart's rule files ─▶ `switchboard operator` child process
//!     (ServiceAccount kubeconfig, Lease in its namespace)
//!  manifests (endpoints pointed at the sink) ─▶ server-side apply
//!  live view until Ctrl-C ─▶ operator stopped ─▶ pods stopped ─▶ cluster saved (--state-dir)
//! ```
//!
//! Worker pods run this same executable as local processes. The pod runner tells them where
//! they live through environment variables that the worker honours:
//! `SWITCHBOARD_ROOT` (the Pod's root: absolute paths in the worker config, such as the
//! credential directories and the data directory, are read below it) and
//! `SWITCHBOARD_BIND_ADDRESS` (the Pod's own loopback address, where the worker binds its
//! inbound and admin ports instead of 0.0.0.0). See docs/dev.md.

mod apply;
mod child;
mod live;
pub mod rbac;
pub mod sink;

pub use apply::ordered;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use devcluster::kubelet::{ImageRule, PodRunnerConfig};
use devcluster::sink::{RequestSink, SinkConfig};

use crate::manifest::ObjectSet;

/// Arguments of `switchboard dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Files or directories of manifests to apply (YAML or JSON, directories recursively).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Keep the cluster (objects, certificates, tokens, claims) in this directory between
    /// runs; without it everything is removed on exit.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Port of the API server on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Keep external endpoints as written instead of pointing them at the request sink.
    #[arg(long)]
    pub no_sink: bool,
    /// Do not start the operator (nothing reconciles the applied objects then).
    #[arg(long)]
    pub no_operator: bool,
    /// Namespace of the operator's ServiceAccount and leader-election Lease.
    #[arg(long, default_value = "switchboard-system")]
    pub operator_namespace: String,
    /// Log level of the cluster's own messages (on standard error).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// Why `switchboard dev` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The manifests could not be read.
    #[error("cannot read the manifests:\n{0}")]
    Manifests(String),
    /// The cluster did not start.
    #[error("devcluster: {0}")]
    Cluster(#[from] devcluster::Error),
    /// The API refused a request.
    #[error("the API server refused a request: {0}")]
    Api(#[from] kube::Error),
    /// A rules file of the chart is not valid.
    #[error("the chart's RBAC rules cannot be read: {0}")]
    Rules(String),
    /// Starting a process or a listener failed.
    #[error("{0}")]
    Io(String),
}

/// The image rule that runs Switchboard pods with this executable (`exe`): each pod's
/// processes get its root directory and loopback address (see docs/dev.md).
pub fn switchboard_image_rule(exe: PathBuf) -> ImageRule {
    let repository = crate::render::DEFAULT_IMAGE.rsplit_once(':').map(|(r, _)| r).unwrap_or("");
    ImageRule {
        image: format!("{repository}:*"),
        executable: Some(exe),
        env: vec![
            ("SWITCHBOARD_ROOT".into(), "{pod_root}".into()),
            ("SWITCHBOARD_BIND_ADDRESS".into(), "{pod_ip}".into()),
            // Their output goes to log files that kubectl logs serves: no colour codes.
            ("NO_COLOR".into(), "1".into()),
        ],
    }
}

/// Runs `switchboard dev`.
pub fn run(args: DevArgs) -> ExitCode {
    crate::cli::init_logging(&args.log_level, crate::cli::LogFormat::Text);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dev(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dev(args: DevArgs) -> Result<(), DevError> {
    // Read the manifests before starting anything: a typo should not cost a cluster start.
    let (set, errors) = ObjectSet::load(&args.paths, &args.namespace);
    if !errors.is_empty() {
        return Err(DevError::Manifests(
            errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"),
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| DevError::Io(format!("cannot find this executable: {e}")))?;

    let sink = if args.no_sink { None } else { Some(start_sink(args.state_dir.as_deref()).await?) };
    let config = devcluster::Config {
        state_dir: args.state_dir.clone(),
        port: args.port,
        pods: PodRunnerConfig {
            images: vec![switchboard_image_rule(exe.clone())],
            ..PodRunnerConfig::default()
        },
        ..devcluster::Config::default()
    };
    let mut cluster = devcluster::DevCluster::start(config).await?;
    println!("devcluster: API server {} (state in {})", cluster.url(), cluster.dir().display());
    println!("export KUBECONFIG={}", cluster.kubeconfig_path().display());
    let client = cluster.client().await?;
    let crds = apply::install_crds(&client).await?;
    println!("installed {crds} CRDs (switchboard.dev/v1alpha1)");

    let mut operator = None;
    if args.no_operator {
        println!(
            "operator: not started (--no-operator); no controller is running, objects are stored but not reconciled"
        );
    } else {
        rbac::install(&client, &args.operator_namespace).await?;
        let kubeconfig =
            cluster.service_account_kubeconfig(&args.operator_namespace, rbac::OPERATOR)?;
        let log = cluster.dir().join("operator.log");
        let process =
            child::OperatorProcess::start(&exe, &kubeconfig, &args.operator_namespace, &log)
                .map_err(|e| DevError::Io(format!("starting the operator: {e}")))?;
        println!(
            "operator: running as system:serviceaccount:{}:{} with the chart's RBAC rules (charts/switchboard/files/operator-rules.yaml); log {}",
            args.operator_namespace,
            rbac::OPERATOR,
            log.display()
        );
        println!("operator kubeconfig: {}", kubeconfig.display());
        operator = Some(process);
    }

    let mut objects = apply::ordered(&set);
    if let Some(sink) = &sink {
        let mut rewrites = Vec::new();
        for obj in &mut objects {
            let (changed, rules) = sink::point_at_sink(obj, sink.addr());
            rewrites.extend(changed);
            for rule in rules {
                sink.add_rule(rule);
            }
        }
        println!(
            "request sink: {} — a local stand-in for external systems; {} endpoint(s) of the applied objects point at it (--no-sink keeps them as written):",
            sink.url(),
            rewrites.len()
        );
        for r in &rewrites {
            println!("  {} {}: {} → {}", r.object, r.field, r.from, r.to);
        }
    }
    let (applied, refused) = apply::apply_all(&client, &objects).await;
    let from: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    println!(
        "applied {applied} object(s) from {}",
        if from.is_empty() { "nothing".to_string() } else { from.join(", ") }
    );
    for r in &refused {
        println!("  refused: {r}");
    }
    println!("Ctrl-C stops everything.\n");

    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let mut signals = Box::pin(shutdown_signal());
    loop {
        let mut view = live::View {
            cluster: &cluster,
            client: &client,
            sink: sink.as_ref(),
            operator: operator.as_mut(),
        };
        let shown = live::render(&mut view).await;
        if shown != last {
            if tty {
                print!("\x1b[H\x1b[2J{shown}");
            } else {
                println!("---\n{shown}");
            }
            last = shown;
        }
        tokio::select! {
            _ = &mut signals => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }

    println!("\nstopping: operator, worker pods, cluster");
    if let Some(op) = operator {
        op.stop(Duration::from_secs(10)).await;
    }
    cluster.stop().await?;
    if let Some(sink) = sink {
        sink.stop().await;
    }
    if args.state_dir.is_some() {
        println!("stopped; the cluster is kept in {}", cluster.dir().display());
    } else {
        println!("stopped");
    }
    Ok(())
}

/// Starts the sink; with a state directory on the address it had last time, so the
/// endpoints pointed at it (and so the workers' config hashes) stay the same between runs.
async fn start_sink(state_dir: Option<&std::path::Path>) -> Result<RequestSink, DevError> {
    let remembered = state_dir.map(|d| d.join("sink.addr"));
    let previous: Option<std::net::SocketAddr> = remembered
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| t.trim().parse().ok());
    let reused = match previous {
        Some(addr) => RequestSink::start(SinkConfig { addr, ..SinkConfig::default() }).await.ok(),
        None => None,
    };
    let sink = match reused {
        Some(sink) => sink,
        None => RequestSink::start(SinkConfig::default())
            .await
            .map_err(|e| DevError::Io(format!("request sink: {e}")))?,
    };
    if let Some(file) = remembered {
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(file, sink.addr().to_string());
    }
    Ok(sink)
}

async fn shutdown_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
