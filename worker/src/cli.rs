//! Command-line surface of the worker, mounted into the `switchboard` binary:
//!
//! ```text
//!  switchboard worker   --config FILE [--admin-token-file F] [--log-format json]   serve
//!                       [--bind-address IP] [--root DIR]   (how switchboard dev runs it)
//!  switchboard worker run-once --config FILE [--data-dir DIR]                       one run (Schedule Job)
//! ```
//!
//! `switchboard dlq` (the client of the workers' dead-letter API) lives in [`crate::dlq`]; the
//! `switchboard` binary adds how it finds an Integration's workers in a cluster.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};

use crate::runtime::admin::ADMIN_TOKEN_FILE_ENV;
use crate::runtime::delivery::Deliverer;

/// Environment variable with the admin API URL for `dlq`.
pub const ADMIN_URL_ENV: &str = "SWITCHBOARD_ADMIN_URL";
/// Where a Kubernetes Job's container leaves its termination message.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `switchboard worker`.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = false)]
pub struct WorkerArgs {
    /// One run instead of serving.
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
    /// Rendered worker config.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_CONFIG",
        default_value = "/etc/switchboard/worker.yaml"
    )]
    pub config: PathBuf,
    /// File holding the token that the dead-letter API requires.
    #[arg(long, global = true, env = ADMIN_TOKEN_FILE_ENV)]
    pub admin_token_file: Option<PathBuf>,
    /// Listen address of inbound traffic (default: all addresses, the config's port).
    #[arg(long, global = true)]
    pub inbound_addr: Option<SocketAddr>,
    /// Listen address of the admin port (default: all addresses, the config's port).
    #[arg(long, global = true)]
    pub admin_addr: Option<SocketAddr>,
    /// Queue and dead-letter directory; for `run-once` without cluster access, where the
    /// watermark and the last run report are kept (default: the config's dataDir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where `run-once` writes its termination message.
    #[arg(long, global = true, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// Address the inbound and admin ports listen on (default: all addresses);
    /// `--inbound-addr` and `--admin-addr` win over it. `switchboard dev` sets it to the
    /// pod's own loopback address.
    #[arg(long, global = true, env = "SWITCHBOARD_BIND_ADDRESS")]
    pub bind_address: Option<std::net::IpAddr>,
    /// Directory the pod's file system appears under: the config file, the paths it names
    /// (credential directories, CA files, the data directory), the admin token file and the
    /// termination log are read below it (paths already below it are kept). For running a
    /// worker outside a container; `switchboard dev` sets it to the pod's root.
    #[arg(long, global = true, env = "SWITCHBOARD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Subcommands of `switchboard worker`.
#[derive(Subcommand, Debug, Clone)]
pub enum WorkerCommand {
    /// Run the config's outbound call (or one pull of its source) once and exit: 0 on
    /// success, 1 on failure, with the message in the termination log.
    RunOnce,
}

/// Install logging: `level` unless `RUST_LOG` says otherwise.
pub fn init_logging(level: &str, format: LogFormat) {
    init_logging_with(level, format, None::<tracing_subscriber::layer::Identity>);
}

/// Install logging, with an extra layer (the operator adds OpenTelemetry export) beside the
/// formatted output on standard error.
pub fn init_logging_with<L>(level: &str, format: LogFormat, extra: Option<L>)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(&directives)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
            // async-imap traces every command and response it encodes: LOGIN carries the
            // mailbox password and FETCH the mail itself. Never log them, whatever RUST_LOG
            // says.
            .add_directive("async_imap=off".parse().expect("a valid directive"))
    };
    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(extra.map(|layer| layer.with_filter(filter())))
        .with(output.with_filter(filter()))
        .try_init();
}

fn log_level_of(config: &Path, root: Option<&Path>) -> String {
    crate::runtime::load_rooted_config(config, root)
        .map(|c| c.server.log_level)
        .unwrap_or_else(|_| "info".into())
}

/// The deliverer for a config's targets.
pub fn deliverer_for(config: &crate::config::WorkerConfig) -> Result<Arc<dyn Deliverer>, String> {
    crate::runtime::outbound::deliverer_for(config)
}

/// `switchboard worker ...`.
pub async fn run_worker(args: WorkerArgs) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = args.root.clone();
    let rooted = |p: PathBuf| match &root {
        Some(r) => crate::runtime::rooted(&p, r),
        None => p,
    };
    init_logging(&log_level_of(&args.config, root.as_deref()), args.log_format);
    match args.command {
        Some(WorkerCommand::RunOnce) => {
            let result = crate::runtime::run_once::run_once(
                &args.config,
                root.as_deref(),
                args.data_dir.as_deref(),
            )
            .await;
            let (code, message) = match &result {
                Ok(summary) => (ExitCode::SUCCESS, summary.clone()),
                Err(e) => (ExitCode::FAILURE, format!("{}: {e}", e.category())),
            };
            if result.is_ok() {
                tracing::info!(summary = %message, "run succeeded");
            } else {
                tracing::error!(error = %message, "run failed");
            }
            // Kubernetes shows this file's content as the container's termination message.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(rooted(args.termination_log.clone()))
            {
                let _ = f.write_all(message.as_bytes());
            }
            code
        }
        None => {
            let options = crate::runtime::WorkerOptions {
                config_path: args.config,
                admin_token_file: args.admin_token_file.map(rooted),
                inbound_addr: args.inbound_addr,
                admin_addr: args.admin_addr,
                data_dir: args.data_dir,
                bind_address: args.bind_address,
                root: args.root,
            };
            match crate::runtime::run_worker(options, deliverer_for).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "worker failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
