//! Container processes: spawned in a process group of their own, with a clean environment,
//! their output appended to the container's log file, and ended group-wide.
//!
//! Every live group is registered in [`ProcessGroups`]; when the cluster stops (or is
//! dropped) every registered group is killed, so no process outlives the cluster that started
//! it, including processes a container forked into the background.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// The process groups of running containers.
#[derive(Default)]
pub struct ProcessGroups {
    groups: Mutex<HashSet<i32>>,
}

impl ProcessGroups {
    fn insert(&self, pgid: i32) {
        self.lock().insert(pgid);
    }

    fn remove(&self, pgid: i32) {
        self.lock().remove(&pgid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills every registered group at once (SIGKILL).
    pub fn kill_all(&self) {
        for pgid in self.lock().drain() {
            signal_group(pgid, Signal::KILL);
        }
    }

    /// How many groups are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends a signal to a process group; a group that is gone already is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// What to start. Its `Debug` names the environment variables but never shows their
/// values (they may come from Secrets).
#[derive(Clone)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// A running container process.
pub struct Process {
    child: tokio::process::Child,
    pgid: i32,
    groups: Arc<ProcessGroups>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `launch`, appending its output to `log` in the CRI log format.
pub fn spawn(launch: &Launch, log: &Path, groups: &Arc<ProcessGroups>) -> std::io::Result<Process> {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
    groups.insert(pgid);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, "stdout", log.to_path_buf())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, "stderr", log.to_path_buf())));
    }
    Ok(Process { child, pgid, groups: groups.clone(), pumps })
}

impl Process {
    /// The process id (also its group id).
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the process to exit, then ends the rest of its group and waits (briefly) for
    /// its output to be written.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        signal_group(self.pgid, Signal::KILL);
        self.groups.remove(self.pgid);
        for p in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        status
    }

    /// Asks the group to stop (SIGTERM), waits up to `grace`, then kills it (SIGKILL).
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        signal_group(self.pgid, Signal::TERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => signal_group(self.pgid, Signal::KILL),
        }
        self.wait().await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.groups.lock().contains(&self.pgid) {
            signal_group(self.pgid, Signal::KILL);
            self.groups.remove(self.pgid);
        }
    }
}

async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, log: PathBuf) {
    let mut reader = BufReader::new(stream);
    let mut file = match std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %log.display(), error = %e, "cannot open a container log");
            return;
        }
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let record = super::logs::format_line(chrono::Utc::now(), name, &line);
                if file.write_all(&record).is_err() {
                    return;
                }
            }
        }
    }
}

/// How a process ended, as a container status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128 + signal for signalled processes).
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(s: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt as _;
        match (s.code(), s.signal()) {
            (Some(code), _) => Exit { code, signal: None },
            (None, Some(sig)) => Exit { code: 128 + sig, signal: Some(sig) },
            (None, None) => Exit { code: 1, signal: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_variables_without_their_values() {
        let launch = Launch {
            program: "/bin/app".into(),
            args: vec!["--token=CANARY-ARG".into()],
            env: vec![("GREETING".into(), "CANARY-VALUE".into())],
            cwd: "/tmp".into(),
        };
        let shown = format!("{launch:?}");
        assert!(shown.contains("GREETING"));
        assert!(!shown.contains("CANARY"), "{shown}");
    }
}
