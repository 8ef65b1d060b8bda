//! `switchboard report`: the auditor's view of Switchboard resources — who owns each
//! integration, which data goes where with which credential, how it behaves, and what is wrong.
//!
//! ```text
//!   -f PATH...  ─▶ ObjectSet::load ──┐
//!                                    ├─▶ model::build ─▶ ReportModel ─┬─▶ markdown   (+ Mermaid)
//!   cluster     ─▶ live::load ───────┘   (lint + runtime findings,    ├─▶ json       (docs/report.schema.json)
//!   (kubeconfig)                          inventory, diagram)         ├─▶ csv        (one table, formulas neutralised)
//!                                                                     ├─▶ mermaid / dot
//!                                                                     └─▶ html       (inline SVG, sortable tables)
//! ```
//!
//! Only the two loaders do I/O; the model and every renderer are pure functions, so a report
//! is reproducible given `--now`. Nothing in the model can hold a Secret value: Secrets are
//! read (offline) only for their rotation annotation, and never listed from a cluster.

pub mod csv_export;
pub mod diagram;
pub mod findings;
pub mod html;
pub mod live;
pub mod markdown;
pub mod model;
pub mod svg;
pub mod tables;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::ValueEnum;

pub use model::{BuildOptions, Mode, REPORT_API_VERSION, ReportModel, ReportSource, build};

/// Arguments of `switchboard report`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Offline (with -f), the objects come from files and carry no status, so health shows as
\"unknown (offline)\" and only declared findings appear. Live (without -f), the four kinds are
listed from the cluster of the current kubeconfig context, and their status adds the runtime
findings. Secrets are never listed and no Secret value is ever printed.

Examples:
  switchboard report -f examples/ -o html --output-file report.html
  switchboard report -A -o json | jq '.findings[] | select(.severity == \"error\")'
  switchboard report -n payments -o csv --table credentials > credentials.csv")]
pub struct ReportArgs {
    /// Report offline on these files or directories of manifests (a GitOps directory; read
    /// recursively). Without -f, the report is made from a live cluster.
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Live: the namespace to list (default: the kubeconfig context's namespace). Offline: the
    /// namespace of objects that name none (default: `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Live: list every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "paths"])]
    pub all_namespaces: bool,
    /// Live: the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// service account).
    #[arg(long, value_name = "FILE", conflicts_with = "paths")]
    pub kubeconfig: Option<PathBuf>,
    /// Live: the kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME", conflicts_with = "paths")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Markdown)]
    pub output: ReportFormat,
    /// Write the report into FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// The table a CSV report holds (CSV has one table per file).
    #[arg(long, value_enum, default_value_t = CsvTable::Inventory)]
    pub table: CsvTable,
    /// Report an integration whose Healthy condition has been False for more than this many
    /// days.
    #[arg(long, value_name = "DAYS", default_value_t = 3)]
    pub unhealthy_days: u32,
    /// Also draw the Credentials each integration uses in the diagram.
    #[arg(long)]
    pub diagram_credentials: bool,
    /// Print the JSON Schema of `-o json` and exit.
    #[arg(long, exclusive = true)]
    pub schema: bool,
    /// Make the report as of this time (RFC 3339) instead of now, for reproducible reports.
    #[arg(long, value_name = "RFC3339", hide = true, value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
}

/// Output formats of `report`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// A Markdown document with a Mermaid diagram (renders on GitHub and GitLab).
    Markdown,
    /// A JSON document that validates against docs/report.schema.json.
    Json,
    /// One table as CSV (see --table); formula cells are neutralised.
    Csv,
    /// The data-flow diagram as a Mermaid flowchart.
    Mermaid,
    /// The data-flow diagram as a Graphviz DOT digraph.
    Dot,
    /// One self-contained HTML page: rendered diagram, sortable tables; works offline.
    Html,
}

/// Tables a CSV report can hold.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvTable {
    /// One row per Integration: owner, data flow, credentials, schedule, health.
    Inventory,
    /// One row per finding.
    Findings,
    /// One row per Credential: type, rotation, consumers.
    Credentials,
    /// One row per OutboundMessage.
    Endpoints,
    /// One row per Schedule.
    Schedules,
}

impl CsvTable {
    fn id(self) -> &'static str {
        match self {
            CsvTable::Inventory => "inventory",
            CsvTable::Findings => "findings",
            CsvTable::Credentials => "credentials",
            CsvTable::Endpoints => "endpoints",
            CsvTable::Schedules => "schedules",
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A path given with -f does not exist.
    #[error("{}: no such file or directory", .0.display())]
    MissingPath(PathBuf),
    /// No kubeconfig or in-cluster configuration.
    #[error(
        "no cluster to report on: {0}\nGive -f PATH to report on files offline, or point KUBECONFIG (or --kubeconfig) at a cluster"
    )]
    NoCluster(String),
    /// The API server could not be reached.
    #[error("cannot reach the Kubernetes API server at {url}: {message}")]
    Unreachable {
        /// Its address.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The cluster does not serve a Switchboard kind.
    #[error(
        "the cluster does not serve {kind} (switchboard.dev/v1alpha1): install the CRDs with `switchboard crds | kubectl apply -f -`"
    )]
    CrdsMissing {
        /// The kind.
        kind: String,
    },
    /// The API server refused to list a kind.
    #[error("the API server refused to list {kind}: {message}")]
    Refused {
        /// The kind.
        kind: String,
        /// The server's message.
        message: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    /// The output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-11-28T09:00:00Z: {e}"))
}

/// The JSON Schema of the JSON report (published as `docs/report.schema.json`).
pub fn schema() -> String {
    let schema = schemars::schema_for!(ReportModel);
    serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n"
}

/// Write a model in a format. CSV holds `table`; the other formats ignore it.
pub fn render(model: &ReportModel, format: ReportFormat, table: CsvTable) -> String {
    match format {
        ReportFormat::Markdown => markdown::markdown(model),
        ReportFormat::Json => {
            serde_json::to_string_pretty(model).expect("the report serializes") + "\n"
        }
        ReportFormat::Csv => csv_export::csv(
            &tables::table(model, table.id()).expect("every CSV table is a report table"),
        ),
        ReportFormat::Mermaid => diagram::mermaid(&model.diagram),
        ReportFormat::Dot => diagram::dot(&model.diagram),
        ReportFormat::Html => html::html(model),
    }
}

/// Read the objects (files or cluster) and build the model.
pub fn load_model(args: &ReportArgs) -> Result<ReportModel, ReportError> {
    let now = args.now.unwrap_or_else(Utc::now);
    let (set, load_errors, source) = if args.paths.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReportError::Runtime)?;
        runtime.block_on(async {
            let target = live::ClusterTarget {
                kubeconfig: args.kubeconfig.clone(),
                context: args.context.clone(),
            };
            let connection = live::connect(&target).await?;
            let namespace = match (&args.namespace, args.all_namespaces) {
                (_, true) => None,
                (Some(namespace), false) => Some(namespace.clone()),
                (None, false) => Some(connection.default_namespace.clone()),
            };
            let (set, errors) = live::load(&connection, namespace.as_deref()).await?;
            let source = ReportSource {
                mode: Mode::Live,
                paths: Vec::new(),
                context: connection.context.clone(),
                namespace,
            };
            Ok::<_, ReportError>((set, errors, source))
        })?
    } else {
        if let Some(missing) = args.paths.iter().find(|p| !p.exists()) {
            return Err(ReportError::MissingPath(missing.clone()));
        }
        let namespace = args.namespace.as_deref().unwrap_or("default");
        let (set, errors) = crate::manifest::ObjectSet::load(&args.paths, namespace);
        let source = ReportSource {
            mode: Mode::Offline,
            paths: args.paths.iter().map(|p| p.display().to_string()).collect(),
            context: None,
            namespace: None,
        };
        (set, errors, source)
    };
    let options = BuildOptions {
        now,
        unhealthy_days: args.unhealthy_days,
        diagram_credentials: args.diagram_credentials,
        source,
    };
    Ok(build(&set, &load_errors, &options))
}

/// Run `switchboard report`.
pub fn run(args: ReportArgs) -> ExitCode {
    let text = if args.schema {
        schema()
    } else {
        match load_model(&args) {
            Ok(model) => {
                if model.findings.iter().any(|f| f.rule == "unreadable") {
                    eprintln!(
                        "warning: some objects could not be read; the report lists them as `unreadable` findings"
                    );
                }
                render(&model, args.output, args.table)
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    match &args.output_file {
        None => crate::cli::write_stdout(&text),
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(source) => {
                eprintln!("error: {}", ReportError::Write { path: path.clone(), source });
                ExitCode::FAILURE
            }
        },
    }
}
