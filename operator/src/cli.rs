//! The `switchboard` command line: one binary for the operator, the workers and the tools.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kube::ResourceExt;

pub use switchboard_worker::cli::{LogFormat, init_logging};

use crate::manifest::ObjectSet;
use crate::render::{self, RenderSettings, Workload};

/// Switchboard: governed integrations on Kubernetes.
///
/// Platform teams declare integrations (Integration, Credential, OutboundMessage, Schedule) in
/// Git; the operator runs them, and `lint`, `render` and `report` check them before and after.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions of the four kinds as YAML.
    Crds(CrdsArgs),
    /// Print the Kubernetes objects the operator would create for the given resources.
    Render(RenderArgs),
    /// Check resources for governance problems before they are merged.
    Lint(LintArgs),
    /// The auditor's view: inventory, findings and data-flow diagram, from files or a cluster.
    Report(ReportArgs),
    /// Run the operator: reconcile Integrations, Credentials, OutboundMessages and Schedules.
    Operator(OperatorArgs),
    /// Run a worker (inside worker pods), or one run of a Schedule with `run-once`.
    Worker(switchboard_worker::cli::WorkerArgs),
    /// List, show and replay dead letters: of every worker pod of an Integration (through the
    /// Kubernetes API server), or of one worker by URL.
    Dlq(crate::dlq::DlqArgs),
    /// Run Switchboard on this machine: a local cluster, the operator, and the given manifests.
    Dev(crate::dev::DevArgs),
}

/// Arguments of `switchboard operator`.
#[derive(clap::Args, Debug)]
pub struct OperatorArgs {
    /// Where `/livez`, `/readyz` and `/metrics` listen.
    #[arg(long, env = "SWITCHBOARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Elect one acting replica on a Lease; followers wait.
    #[arg(long, env = "SWITCHBOARD_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "switchboard-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "switchboard-operator")]
    pub lease_name: String,
    /// This replica's identity on the Lease and on Events (default: the pod or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Image of the worker pods the operator creates.
    #[arg(long, env = "SWITCHBOARD_WORKER_IMAGE", default_value = render::DEFAULT_IMAGE)]
    pub worker_image: String,
    /// Reconciles in flight per kind.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// How often each integration's workers are asked for their `/status` (runtime health).
    #[arg(long, env = "SWITCHBOARD_STATUS_INTERVAL", default_value = "15s", value_parser = parse_duration_arg)]
    pub status_interval: std::time::Duration,
    /// Port of the workers' admin endpoint, where `/status` is read (tests and benchmarks
    /// serve many workers from one address).
    #[arg(long, hide = true, default_value_t = switchboard_worker::config::ADMIN_PORT)]
    pub worker_status_port: u16,
    /// Log format.
    #[arg(long, value_enum, env = "SWITCHBOARD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (`RUST_LOG` overrides it).
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// OpenLineage endpoint that workers send run events to (for Marquez:
    /// `http://marquez:5000/api/v1/lineage`); none are sent without it.
    #[arg(long, env = "SWITCHBOARD_OPENLINEAGE_URL")]
    pub openlineage_url: Option<String>,
    /// OpenLineage job namespace (default: each Integration's namespace).
    #[arg(long, env = "SWITCHBOARD_OPENLINEAGE_NAMESPACE", default_value = "")]
    pub openlineage_namespace: String,
    /// Export traces (a span per reconcile) over OTLP/HTTP to this endpoint, for example
    /// `http://otel-collector.monitoring:4318`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Arguments of `switchboard crds`.
#[derive(clap::Args, Debug)]
pub struct CrdsArgs {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Input files shared by the commands that read resources.
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// Files or directories of YAML or JSON manifests (multi-document YAML is fine);
    /// directories are read recursively.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that do not name one.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

/// Arguments of `switchboard render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The resources to render.
    #[command(flatten)]
    pub input: InputArgs,
    /// Image of the worker containers.
    #[arg(long, default_value = render::DEFAULT_IMAGE)]
    pub image: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// Output formats of `render`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Multi-document YAML.
    Yaml,
    /// A JSON `v1` List.
    Json,
}

pub use crate::governance::lint::LintArgs;
pub use crate::governance::report::ReportArgs;

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crds(args) => crds(args),
        Command::Render(args) => render_command(args),
        Command::Lint(args) => crate::governance::lint::run(args),
        Command::Report(args) => crate::governance::report::run(args),
        Command::Operator(args) => operator(args),
        Command::Worker(args) => {
            tokio_runtime().block_on(switchboard_worker::cli::run_worker(args))
        }
        Command::Dlq(args) => tokio_runtime().block_on(crate::dlq::run(args)),
        Command::Dev(args) => crate::dev::run(args),
    }
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::api::parse_duration(text)
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
}

fn operator(args: OperatorArgs) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "switchboard-operator".into())
    });
    let settings = crate::controller::run::OperatorSettings {
        metrics_addr: args.metrics_addr,
        leader_election: args.leader_elect,
        lease_namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name,
        identity,
        timing: crate::controller::leader::LeaseTiming::default(),
        worker_image: args.worker_image,
        concurrency: args.concurrency,
        lineage: args.openlineage_url.map(|url| switchboard_worker::config::LineageConfig {
            url,
            namespace: args.openlineage_namespace,
        }),
        runtime: crate::controller::runtime::RuntimeSettings {
            interval: args.status_interval,
            port: args.worker_status_port,
            operator_namespace: args.lease_namespace.clone(),
            ..Default::default()
        },
    };
    let result = tokio_runtime().block_on(async {
        let telemetry = crate::telemetry::init(
            &args.log_level,
            args.log_format,
            args.otlp_endpoint.as_deref(),
            "switchboard-operator",
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let client = kube::Client::try_default()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API: {e}"))?;
        let result = crate::controller::run::run(client, settings).await;
        telemetry.shutdown();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print (or write) the CRDs.
fn crds(args: CrdsArgs) -> ExitCode {
    match args.output_dir {
        None => write_stdout(&crate::api::crds_yaml()),
        Some(dir) => match crate::api::write_crds(&dir) {
            Ok(files) => {
                for file in files {
                    eprintln!("wrote {}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write CRDs into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Render every object of a set: the children in apply order, or every problem found.
pub fn render_set(
    set: &ObjectSet,
    settings: &RenderSettings,
) -> Result<Vec<serde_json::Value>, Vec<String>> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for v in set.schema_violations() {
        problems.push(format!(
            "{}: {}: {}: {} (the API server would refuse it)",
            v.origin, v.object, v.field, v.message
        ));
    }
    for (what, origins) in set.duplicates() {
        let places: Vec<String> = origins.iter().map(ToString::to_string).collect();
        problems.push(format!("{what} is defined more than once: {}", places.join(", ")));
    }
    for namespace in set.namespaces() {
        let refs = set.references(&namespace);
        for integration in
            set.integrations.iter().filter(|i| i.object.namespace().as_deref() == Some(&namespace))
        {
            match render::render_integration(&integration.object, &refs, settings) {
                Ok(children) => {
                    // Destructured without `..`: a new child kind must be printed here too.
                    let render::IntegrationChildren {
                        config: _,
                        config_map,
                        workload,
                        service,
                        service_account,
                        role,
                        role_binding,
                        pod_disruption_budget,
                    } = children;
                    objects.push(to_value(&service_account));
                    objects.push(to_value(&role));
                    objects.push(to_value(&role_binding));
                    objects.push(to_value(&config_map));
                    if let Some(service) = service {
                        objects.push(to_value(&service));
                    }
                    match workload {
                        Workload::Deployment(d) => objects.push(to_value(&*d)),
                        Workload::StatefulSet(s) => objects.push(to_value(&*s)),
                    }
                    if let Some(pdb) = pod_disruption_budget {
                        objects.push(to_value(&pdb));
                    }
                }
                Err(errors) => {
                    problems.extend(errors.0.iter().map(|e| format!("{}: {e}", integration.origin)))
                }
            }
        }
        for schedule in
            set.schedules.iter().filter(|s| s.object.namespace().as_deref() == Some(&namespace))
        {
            match render::render_schedule(&schedule.object, &refs, settings) {
                Ok(render::ScheduleChildren { config_map, cron_job }) => {
                    if let Some(config_map) = config_map {
                        objects.push(to_value(&config_map));
                    }
                    objects.push(to_value(&cron_job));
                }
                Err(errors) => {
                    problems.extend(errors.0.iter().map(|e| format!("{}: {e}", schedule.origin)))
                }
            }
        }
    }
    if problems.is_empty() { Ok(objects) } else { Err(problems) }
}

/// Write to standard output; a closed pipe (`| head`) ends quietly instead of panicking.
pub fn write_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize")
}

fn render_command(args: RenderArgs) -> ExitCode {
    let (set, load_errors) = ObjectSet::load(&args.input.paths, &args.input.namespace);
    let settings = RenderSettings { image: args.image, ..RenderSettings::default() };
    let rendered = match (render_set(&set, &settings), load_errors.is_empty()) {
        (Ok(objects), true) => Ok(objects),
        (Ok(_), false) => Err(Vec::new()),
        (Err(problems), _) => Err(problems),
    };
    for error in &load_errors {
        eprintln!("error: {error}");
    }
    match rendered {
        Ok(objects) => {
            let offline = set.integrations.iter().any(|i| i.object.uid().is_none())
                || set.schedules.iter().any(|s| s.object.uid().is_none());
            let text = match args.output {
                Format::Yaml => {
                    let mut text = String::new();
                    if offline {
                        text.push_str(
                            "# Rendered offline: ownerReferences carry a uid derived from kind, namespace and name,\n\
                             # because objects read from files have none. The operator uses the live object's uid.\n",
                        );
                    }
                    for object in &objects {
                        text.push_str("---\n");
                        text.push_str(
                            &yaml_serde::to_string(object).expect("JSON values serialize as YAML"),
                        );
                    }
                    text
                }
                Format::Json => {
                    let list =
                        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
                    serde_json::to_string_pretty(&list).expect("JSON values serialize") + "\n"
                }
            };
            write_stdout(&text)
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            ExitCode::FAILURE
        }
    }
}
