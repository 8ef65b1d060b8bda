//! The operator as a child process of `switchboard dev`: the same binary running
//! `switchboard operator`, with the operator ServiceAccount's kubeconfig (never the admin's),
//! leader election on a Lease in its namespace, in a process group of its own (so Ctrl-C
//! reaches `dev`, which stops everything in order), its output in a log file.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use devcluster::kubelet::process::signal_group;
use rustix::process::Signal;

/// The running operator.
pub struct OperatorProcess {
    child: tokio::process::Child,
    pid: i32,
    /// Where its output goes.
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl OperatorProcess {
    /// Starts `exe operator` as the ServiceAccount whose kubeconfig is `kubeconfig`.
    pub fn start(
        exe: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
    ) -> std::io::Result<Self> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("operator")
            .arg("--metrics-addr=127.0.0.1:0")
            .arg("--leader-elect=true")
            .arg(format!("--lease-namespace={namespace}"))
            .arg("--identity=switchboard-dev")
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        Ok(OperatorProcess { child, pid, log: log.to_path_buf(), exited: None })
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Asks it to stop (SIGTERM), waits up to `grace`, then kills it.
    pub async fn stop(mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        signal_group(self.pid, Signal::TERM);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            signal_group(self.pid, Signal::KILL);
            let _ = self.child.wait().await;
        }
        self.exited = Some(ExitStatus::default());
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            signal_group(self.pid, Signal::KILL);
        }
    }
}
