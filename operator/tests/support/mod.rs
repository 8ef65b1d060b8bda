//! Helpers shared by the integration tests: paths, the built binary, and test peers.

#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("operator/ has a parent").to_path_buf()
}

/// Run the `switchboard` binary built for these tests.
pub fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("the switchboard binary runs")
}

/// Path of a tool installed by `scripts/test-peers` (Python tools live in its virtualenv).
/// Fails the test with instructions when the peer is missing, rather than skipping.
pub fn peer(tool: &str) -> PathBuf {
    let root = std::env::var_os("SWITCHBOARD_TEST_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".test-peers"));
    let path = root.join("venv/bin").join(tool);
    assert!(
        path.exists(),
        "test peer {tool} is missing at {}: run ./scripts/test-peers (the README's test command does)",
        path.display()
    );
    path
}

/// Text of an output's stdout and stderr.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
