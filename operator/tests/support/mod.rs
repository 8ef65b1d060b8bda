//! Helpers shared by the integration tests: paths, the built binary, and test peers.

#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("operator/ has a parent").to_path_buf()
}

/// The Integrations of `examples/`, in name order (the order reports list them in).
pub const EXAMPLE_INTEGRATIONS: &[&str] = &[
    "change-approval",
    "crm-account-sync",
    "hr-employee-import",
    "monitoring-incident",
    "order-invoicing",
    "vendor-email-intake",
];

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

/// Path of the headless Chromium that `scripts/test-peers` installs from Debian's packages
/// (or `SWITCHBOARD_CHROMIUM`). Fails the test with instructions when it is missing, rather
/// than skipping.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "test peer chromium is missing: run ./scripts/test-peers (the README's test command does), \
             or install Debian's package `chromium`, or set SWITCHBOARD_CHROMIUM to a Chromium binary"
        )
    })
}

/// Run headless Chromium on a page with the flags this machine needs (root, no GPU, no
/// network side traffic) and a fresh profile in `profile`; returns its output.
pub fn run_chromium(profile: &Path, args: &[&str]) -> Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

/// Path of Graphviz's `dot` (Debian's package `graphviz`, installed by `scripts/test-peers`).
/// Fails the test with instructions when it is missing, rather than skipping.
pub fn graphviz_dot() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("dot")).find(|c| c.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "test peer dot is missing: run ./scripts/test-peers (the README's test command does), \
             or install Debian's package `graphviz`"
        )
    })
}
