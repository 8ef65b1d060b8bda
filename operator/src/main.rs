use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Switchboard: governed integrations on Kubernetes.
#[derive(Parser)]
#[command(name = "switchboard", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRDs as YAML.
    Crds,
    /// Run a worker (inside worker pods), or one run of a Schedule with `run-once`.
    Worker(switchboard_worker::cli::WorkerArgs),
    /// List, show and replay a running worker's dead letters.
    Dlq(switchboard_worker::cli::DlqArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        || tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.command {
        None | Some(Command::Crds) => {
            for crd in switchboard::api::crds() {
                println!("---\n{}", yaml_serde::to_string(&crd).unwrap());
            }
            ExitCode::SUCCESS
        }
        Some(Command::Worker(args)) => {
            runtime().block_on(switchboard_worker::cli::run_worker(args))
        }
        Some(Command::Dlq(args)) => runtime().block_on(switchboard_worker::cli::run_dlq(args)),
    }
}
