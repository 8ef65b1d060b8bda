//! The `switchboard` binary: see `switchboard --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    switchboard::cli::run(switchboard::cli::Cli::parse())
}
