//! One Pod on the runner: its directory and address, its volumes, its init containers in
//! order, then its containers side by side, each supervised (probes, restarts with
//! back-off), and the Pod status written back as the kubelet writes it.
//!
//! ```text
//!  start: dir, IP, status Pending ─▶ ServiceAccount token ─▶ volumes (retry until the
//!         Secrets/ConfigMaps exist) ─▶ init containers, one by one, to success
//!         ─▶ containers: spawn ─▶ probes ─▶ exit ─▶ restart policy ─▶ back-off ─▶ spawn ...
//!  stop (Pod deleted, cluster stopping): SIGTERM to every group, grace, SIGKILL
//!  status: phase, conditions, podIP, startTime, init/containerStatuses (state, lastState,
//!          ready, started, restartCount)
//! ```

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::env::{self, PodEnv};
use super::logs::log_file;
use super::probe::{self, Timing};
use super::process::{self, Exit, Launch};
use super::{MANAGER, Shared};
use crate::api::{Subresource, WriteOptions};
use crate::error::ApiError;
use crate::resources::ResourceKey;

/// Whether the Pod spec asks for the ServiceAccount token (the default).
pub fn automount(pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken").and_then(Value::as_bool).unwrap_or(true)
}

/// A container's state as the status reports it.
#[derive(Clone, Debug)]
struct ContainerState {
    name: String,
    image: String,
    restart_count: i64,
    state: Value,
    last_state: Value,
    ready: bool,
    started: bool,
    container_id: Option<String>,
}

impl ContainerState {
    fn new(c: &Value) -> Self {
        ContainerState {
            name: c["name"].as_str().unwrap_or("").to_string(),
            image: c["image"].as_str().unwrap_or("").to_string(),
            restart_count: 0,
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            last_state: json!({}),
            ready: false,
            started: false,
            container_id: None,
        }
    }

    fn to_status(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

struct PodState {
    init: Vec<ContainerState>,
    app: Vec<ContainerState>,
    init_done: bool,
    sandbox_ready: bool,
    start_time: String,
    conditions: Vec<Value>,
    last_written: Option<Value>,
}

/// A Pod being run.
pub struct PodRun {
    pub(super) shared: Arc<Shared>,
    pod: Value,
    ns: String,
    name: String,
    uid: String,
    dir: PathBuf,
    root: PathBuf,
    ip: Ipv4Addr,
    state: Mutex<PodState>,
    changed: tokio::sync::Notify,
    stop: watch::Receiver<bool>,
    refresh: watch::Receiver<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Init,
    App,
}

impl PodRun {
    /// Prepares a run of `pod` (allocating its address).
    pub fn new(
        shared: Arc<Shared>,
        pod: Value,
        stop: watch::Receiver<bool>,
        refresh: watch::Receiver<u64>,
    ) -> Self {
        let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let (ns, name, uid) = (s("/metadata/namespace"), s("/metadata/name"), s("/metadata/uid"));
        let dir = super::logs::pod_dir(&shared.pods_root, &ns, &name, &uid);
        let root = dir.join("root");
        let containers = |list: &str| -> Vec<ContainerState> {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .map(|a| a.iter().map(ContainerState::new).collect())
                .unwrap_or_default()
        };
        let ports: Vec<u16> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|p| {
                p.get("containerPort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())
            })
            .collect();
        let ip = shared.addresses.allocate(&ports);
        let init = containers("initContainers");
        let state = PodState {
            init_done: init.is_empty(),
            init,
            app: containers("containers"),
            sandbox_ready: false,
            start_time: shared.clock.timestamp(),
            conditions: Vec::new(),
            last_written: None,
        };
        PodRun {
            shared,
            pod,
            ns,
            name,
            uid,
            dir,
            root,
            ip,
            state: Mutex::new(state),
            changed: tokio::sync::Notify::new(),
            stop,
            refresh,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PodState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, role: Role, index: usize, f: impl FnOnce(&mut ContainerState)) {
        {
            let mut st = self.lock();
            let list = if role == Role::Init { &mut st.init } else { &mut st.app };
            if let Some(c) = list.get_mut(index) {
                f(c);
            }
        }
        self.changed.notify_one();
    }

    fn container_state(&self, role: Role, index: usize) -> Option<ContainerState> {
        let st = self.lock();
        let list = if role == Role::Init { &st.init } else { &st.app };
        list.get(index).cloned()
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn event(&self, kind: &str, reason: &str, message: &str) {
        let mut involved = self.pod.clone();
        involved["apiVersion"] = json!("v1");
        involved["kind"] = json!("Pod");
        crate::events::record(
            &self.shared.core,
            &self.shared.clock,
            &involved,
            kind,
            reason,
            message,
            MANAGER,
        );
    }
}

/// Runs a Pod until its containers are done (per restart policy) or it is stopped.
pub async fn run(run: Arc<PodRun>) {
    if let Err(e) = prepare(&run) {
        tracing::warn!(pod = %run.name, namespace = %run.ns, error = %e, "cannot prepare a pod directory");
    }
    write_status(&run);
    let writer = tokio::spawn(status_writer(run.clone()));

    // Token and volumes: retried until the objects they need exist.
    let mut reported = None;
    let mut refresh = run.refresh.clone();
    let mut stop = run.stop.clone();
    loop {
        let result = mount_token(&run).and_then(|kubeconfig| {
            let layout = super::volumes::Layout {
                pod_dir: &run.dir,
                root: &run.root,
                claims_dir: &run.shared.claims_root,
            };
            super::volumes::project(&run.shared.core, &run.pod, &layout).map(|_| kubeconfig)
        });
        match result {
            Ok(_) => break,
            Err(message) => {
                if reported.as_ref() != Some(&message) {
                    run.event(
                        "Warning",
                        "FailedMount",
                        &format!("MountVolume.SetUp failed: {message}"),
                    );
                    reported = Some(message);
                }
                tokio::select! {
                    _ = refresh.changed() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if run.stopped() {
                    finish(&run, writer).await;
                    return;
                }
            }
        }
    }
    run.lock().sandbox_ready = true;
    run.changed.notify_one();
    let follower = tokio::spawn(follow_volumes(run.clone()));

    let init_count = run.lock().init.len();
    let mut init_ok = true;
    for i in 0..init_count {
        if !supervise(run.clone(), Role::Init, i).await {
            init_ok = false;
            break;
        }
    }
    if init_ok && !run.stopped() {
        run.lock().init_done = true;
        run.changed.notify_one();
        let app_count = run.lock().app.len();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..app_count {
            set.spawn(supervise(run.clone(), Role::App, i));
        }
        while set.join_next().await.is_some() {}
    }
    follower.abort();
    finish(&run, writer).await;
}

async fn finish(run: &Arc<PodRun>, writer: tokio::task::JoinHandle<()>) {
    writer.abort();
    write_status(run);
    run.shared.addresses.release(run.ip);
}

fn prepare(run: &PodRun) -> std::io::Result<()> {
    std::fs::create_dir_all(run.root.join("tmp"))?;
    std::fs::create_dir_all(run.dir.join("logs"))?;
    std::fs::set_permissions(&run.dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes the ServiceAccount token, CA and namespace where containers expect them, and a
/// kubeconfig for the Pod, when the token is to be mounted. Returns the kubeconfig path.
fn mount_token(run: &PodRun) -> Result<Option<PathBuf>, String> {
    let sa =
        run.pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
    let sa_obj = run
        .shared
        .core
        .store
        .get(&ResourceKey::new("", "serviceaccounts"), &run.ns, sa)
        .map(|o| o.value());
    let Some(sa_obj) = sa_obj else { return Err(format!("serviceaccount {sa:?} not found")) };
    let wanted =
        match run.pod.pointer("/spec/automountServiceAccountToken").and_then(Value::as_bool) {
            Some(v) => v,
            None => {
                sa_obj.get("automountServiceAccountToken").and_then(Value::as_bool).unwrap_or(true)
            }
        };
    if !wanted {
        return Ok(None);
    }
    let Some(creds) = (run.shared.api.credentials)(&run.ns, sa) else {
        return Err(format!("no token for serviceaccount {sa:?}"));
    };
    let dir = super::volumes::under(&run.root, env::TOKEN_DIR)?;
    let files: super::volumes::Files = [
        ("token".to_string(), (creds.token.into_bytes(), 0o400)),
        ("ca.crt".to_string(), (run.shared.api.ca_pem.clone().into_bytes(), 0o444)),
        ("namespace".to_string(), (run.ns.clone().into_bytes(), 0o444)),
    ]
    .into_iter()
    .collect();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    super::volumes::write_atomic(&dir, &files).map_err(|e| e.to_string())?;
    let path = run.dir.join("kubeconfig");
    std::fs::write(&path, creds.kubeconfig).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
        .map_err(|e| e.to_string())?;
    Ok(Some(path))
}

/// Re-projects volumes when a Secret or ConfigMap of the namespace changes.
async fn follow_volumes(run: Arc<PodRun>) {
    let mut refresh = run.refresh.clone();
    while refresh.changed().await.is_ok() {
        let layout = super::volumes::Layout {
            pod_dir: &run.dir,
            root: &run.root,
            claims_dir: &run.shared.claims_root,
        };
        if let Err(message) = super::volumes::project(&run.shared.core, &run.pod, &layout) {
            tracing::debug!(pod = %run.name, %message, "volume update skipped");
        }
    }
}

async fn status_writer(run: Arc<PodRun>) {
    loop {
        run.changed.notified().await;
        // Changes that come together are written together.
        tokio::time::sleep(Duration::from_millis(20)).await;
        write_status(&run);
    }
}

fn container(run: &PodRun, role: Role, index: usize) -> Value {
    let list = if role == Role::Init { "initContainers" } else { "containers" };
    run.pod.pointer(&format!("/spec/{list}/{index}")).cloned().unwrap_or(Value::Null)
}

fn waiting(reason: &str, message: &str) -> Value {
    if message.is_empty() {
        json!({"waiting": {"reason": reason}})
    } else {
        json!({"waiting": {"reason": reason, "message": message}})
    }
}

/// Runs one container until it is done under the restart policy, or the Pod stops.
/// Returns whether it ended successfully.
async fn supervise(run: Arc<PodRun>, role: Role, index: usize) -> bool {
    let c = container(&run, role, index);
    let cname = c["name"].as_str().unwrap_or("").to_string();
    let image = c["image"].as_str().unwrap_or("").to_string();
    let policy = run
        .pod
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
        .to_string();
    let config = &run.shared.config;
    let base = config.restart_backoff;
    let cap = (base * 30).min(Duration::from_secs(300)).max(base);
    let mut delay = base;
    let mut stop = run.stop.clone();
    let mut refresh = run.refresh.clone();
    let mut reported_config_error = None;
    let grace = Duration::from_secs(
        run.pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30),
    )
    .min(config.max_termination_grace);

    let Some(rule) = config.images.iter().find(|r| r.matches(&image)).cloned() else {
        let message = format!(
            "image {image:?} is not mapped to a local program (devcluster runs images as local processes; add an image rule)"
        );
        run.update(role, index, |s| s.state = waiting("ErrImagePull", &message));
        run.event("Warning", "Failed", &format!("Failed to pull image {image:?}: {message}"));
        until_stopped(&mut stop).await;
        return false;
    };

    loop {
        if run.stopped() {
            return false;
        }
        let kubeconfig = run.dir.join("kubeconfig");
        let kubeconfig = kubeconfig.exists().then_some(kubeconfig);
        let base_env = base_env(&run);
        let pod_now = current_pod(&run);
        let pod_env = PodEnv {
            pod: &pod_now,
            root: &run.root,
            ip: run.ip,
            base: &base_env,
            kubeconfig: kubeconfig.as_deref(),
        };
        let launch = match env::launch(&run.shared.core, &pod_env, &c, &rule) {
            Ok(l) => l,
            Err(message) => {
                run.update(role, index, |s| {
                    s.state = waiting("CreateContainerConfigError", &message)
                });
                if reported_config_error.as_ref() != Some(&message) {
                    run.event("Warning", "Failed", &format!("Error: {message}"));
                    reported_config_error = Some(message);
                }
                tokio::select! {
                    _ = refresh.changed() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
        };
        let mounts = env::mount_paths(&run.pod, &c);
        let termination_path =
            c["terminationMessagePath"].as_str().unwrap_or("/dev/termination-log");
        let termination_file = super::volumes::under(&run.root, termination_path).ok();
        if let Some(f) = &termination_file {
            if let Some(parent) = f.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(f, b"");
        }
        let restart_count = run.container_state(role, index).map(|s| s.restart_count).unwrap_or(0);
        let log = log_file(&run.dir, &cname, restart_count);
        if let Some(parent) = log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::remove_file(&log);
        let started_at = run.shared.clock.timestamp();
        let began = tokio::time::Instant::now();
        let (exit, cause) = match process::spawn(&launch, &log, &run.shared.groups) {
            Err(e) => (Exit { code: 128, signal: None }, Cause::StartError(e.to_string())),
            Ok(mut p) => {
                let has_startup = c.get("startupProbe").is_some();
                let has_readiness = c.get("readinessProbe").is_some();
                let pid = p.pid();
                run.update(role, index, |s| {
                    s.state = json!({"running": {"startedAt": started_at}});
                    s.container_id = Some(format!("devcluster://{pid}"));
                    s.started = !has_startup;
                    s.ready = !has_startup && !has_readiness && role == Role::App;
                });
                run.event("Normal", "Started", &format!("Started container {cname}"));
                watch_process(&run, role, index, &c, &mut p, &launch, &mounts, grace).await
            }
        };
        let finished_at = run.shared.clock.timestamp();
        let message = match &cause {
            Cause::StartError(e) => e.clone(),
            _ => {
                let written = termination_file
                    .as_ref()
                    .and_then(|f| std::fs::read(f).ok())
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
                    .unwrap_or_default();
                if written.is_empty()
                    && exit.code != 0
                    && c["terminationMessagePolicy"].as_str() == Some("FallbackToLogsOnError")
                {
                    last_lines(&log, 80, 2048)
                } else {
                    written
                }
            }
        };
        let reason = match &cause {
            Cause::StartError(_) => "StartError",
            _ if exit.code == 0 => "Completed",
            _ => "Error",
        };
        let mut terminated = json!({
            "exitCode": exit.code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": finished_at,
        });
        if let Some(sig) = exit.signal {
            terminated["signal"] = json!(sig);
        }
        if !message.is_empty() {
            terminated["message"] = json!(message);
        }
        if let Some(id) = run.container_state(role, index).and_then(|s| s.container_id) {
            terminated["containerID"] = json!(id);
        }
        let terminated = json!({"terminated": terminated});
        if matches!(cause, Cause::Stopped) {
            run.update(role, index, |s| {
                s.state = terminated;
                s.ready = false;
            });
            return false;
        }
        let success = exit.code == 0;
        let restart = match (role, policy.as_str()) {
            (Role::App, "Always") => true,
            (_, "Never") => false,
            _ => !success,
        };
        if !restart {
            run.update(role, index, |s| {
                s.state = terminated;
                s.ready = false;
            });
            return success;
        }
        if began.elapsed() >= Duration::from_secs(600) {
            delay = base;
        }
        let pod_label = format!("{}_{}({})", run.name, run.ns, run.uid);
        run.update(role, index, |s| {
            s.last_state = terminated;
            s.ready = false;
            s.state = waiting(
                "CrashLoopBackOff",
                &format!(
                    "back-off {}s restarting failed container={cname} pod={pod_label}",
                    delay.as_secs()
                ),
            );
        });
        run.event(
            "Warning",
            "BackOff",
            &format!("Back-off restarting failed container {cname} in pod {}", run.name),
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = until_stopped(&mut stop) => return false,
        }
        run.update(role, index, |s| s.restart_count += 1);
        delay = (delay * 2).min(cap);
    }
}

/// Resolves once the Pod is to stop (and never holds the channel's lock across an await).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

enum Cause {
    Exited,
    Probe,
    Stopped,
    StartError(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

/// Aborts probe tasks when the container's run ends.
struct ProbeTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for ProbeTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch_process(
    run: &Arc<PodRun>,
    role: Role,
    index: usize,
    c: &Value,
    p: &mut process::Process,
    launch: &Launch,
    mounts: &[String],
    grace: Duration,
) -> (Exit, Cause) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(ProbeKind, Result<(), String>)>(16);
    let mut tasks = Vec::new();
    let mut timings = std::collections::HashMap::new();
    if role == Role::App {
        for (kind, field) in [
            (ProbeKind::Startup, "startupProbe"),
            (ProbeKind::Readiness, "readinessProbe"),
            (ProbeKind::Liveness, "livenessProbe"),
        ] {
            let Some(probe) = c.get(field).cloned() else { continue };
            let timing = Timing::of(&probe);
            timings.insert(kind, timing.clone());
            let tx = tx.clone();
            let ip = run.ip;
            let container = c.clone();
            let launch = launch.clone();
            let mounts = mounts.to_vec();
            let root = run.root.clone();
            let groups = run.shared.groups.clone();
            let scratch = run
                .dir
                .join(format!("probe-{}-{index}-{field}.log", c["name"].as_str().unwrap_or("")));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(timing.initial_delay).await;
                loop {
                    let target = probe::Target {
                        ip,
                        container: &container,
                        launch: &launch,
                        mounts: &mounts,
                        root: &root,
                        groups: &groups,
                        scratch_log: &scratch,
                    };
                    let result = probe::run(&probe, &target, timing.timeout).await;
                    if tx.send((kind, result)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(timing.period).await;
                }
            }));
        }
    }
    drop(tx);
    let _tasks = ProbeTasks(tasks);
    let has_readiness = timings.contains_key(&ProbeKind::Readiness);
    let mut started = !timings.contains_key(&ProbeKind::Startup);
    let mut successes: std::collections::HashMap<ProbeKind, u32> = Default::default();
    let mut failures: std::collections::HashMap<ProbeKind, u32> = Default::default();
    let mut ready = !has_readiness && started;
    let mut stop = run.stop.clone();
    let cname = c["name"].as_str().unwrap_or("").to_string();
    loop {
        tokio::select! {
            status = p.wait() => {
                let exit = status.map(Exit::from).unwrap_or(Exit { code: 1, signal: None });
                return (exit, Cause::Exited);
            }
            _ = until_stopped(&mut stop) => {
                let exit = p.stop(grace).await.map(Exit::from).unwrap_or(Exit { code: 137, signal: Some(9) });
                return (exit, Cause::Stopped);
            }
            Some((kind, result)) = rx.recv() => {
                let timing = &timings[&kind];
                if kind != ProbeKind::Startup && !started {
                    continue;
                }
                if kind == ProbeKind::Startup && started {
                    continue;
                }
                match &result {
                    Ok(()) => {
                        *successes.entry(kind).or_default() += 1;
                        failures.insert(kind, 0);
                    }
                    Err(_) => {
                        *failures.entry(kind).or_default() += 1;
                        successes.insert(kind, 0);
                    }
                }
                let ok = successes.get(&kind).copied().unwrap_or(0) >= timing.success_threshold;
                let failed = failures.get(&kind).copied().unwrap_or(0) >= timing.failure_threshold;
                match kind {
                    ProbeKind::Startup if ok => {
                        started = true;
                        ready = !has_readiness;
                        run.update(role, index, |s| { s.started = true; s.ready = ready; });
                    }
                    ProbeKind::Readiness if ok && !ready => {
                        ready = true;
                        run.update(role, index, |s| s.ready = true);
                    }
                    ProbeKind::Readiness if failed && ready => {
                        ready = false;
                        run.update(role, index, |s| s.ready = false);
                    }
                    _ => {}
                }
                if let Err(message) = &result {
                    let first = failures.get(&kind).copied() == Some(1);
                    if first || failed {
                        let what = match kind { ProbeKind::Startup => "Startup", ProbeKind::Readiness => "Readiness", ProbeKind::Liveness => "Liveness" };
                        if first {
                            run.event("Warning", "Unhealthy", &format!("{what} probe failed: {message}"));
                        }
                        if failed && kind != ProbeKind::Readiness {
                            run.event(
                                "Normal",
                                "Killing",
                                &format!("Container {cname} failed {} probe, will be restarted", what.to_lowercase()),
                            );
                            let exit = p.stop(grace).await.map(Exit::from).unwrap_or(Exit { code: 137, signal: Some(9) });
                            return (exit, Cause::Probe);
                        }
                    }
                }
            }
        }
    }
}

fn last_lines(log: &std::path::Path, lines: usize, bytes: usize) -> String {
    let content = std::fs::read(log).unwrap_or_default();
    let text = super::logs::render(
        &content,
        &super::logs::LogOptions { tail_lines: Some(lines), ..Default::default() },
    );
    let start = text.len().saturating_sub(bytes);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// The Pod as stored now (its status carries the IP for `fieldRef: status.podIP`).
fn current_pod(run: &PodRun) -> Value {
    let mut pod = run
        .shared
        .core
        .store
        .get(&ResourceKey::new("", "pods"), &run.ns, &run.name)
        .map(|o| o.value())
        .filter(|p| p.pointer("/metadata/uid").and_then(Value::as_str) == Some(run.uid.as_str()))
        .unwrap_or_else(|| run.pod.clone());
    pod["status"]["podIP"] = json!(run.ip.to_string());
    pod
}

fn base_env(run: &PodRun) -> Vec<(String, String)> {
    let mut env = vec![
        ("KUBERNETES_SERVICE_HOST".to_string(), run.shared.api.host.clone()),
        ("KUBERNETES_SERVICE_PORT".to_string(), run.shared.api.port.to_string()),
    ];
    let links =
        run.pod.pointer("/spec/enableServiceLinks").and_then(Value::as_bool).unwrap_or(true);
    if links {
        env.extend(run.shared.services.links(&run.shared.core, &run.ns));
    }
    env
}

fn build_status(run: &PodRun) -> Value {
    let mut st = run.lock();
    let now = run.shared.clock.timestamp();
    let policy = run.pod.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    let phase = phase(&st, policy);
    let unready: Vec<String> = st.app.iter().filter(|c| !c.ready).map(|c| c.name.clone()).collect();
    let incomplete: Vec<String> = st
        .init
        .iter()
        .filter(|c| c.state.pointer("/terminated/exitCode").and_then(Value::as_i64) != Some(0))
        .map(|c| c.name.clone())
        .collect();
    let sandbox = if st.sandbox_ready { "True" } else { "False" };
    let init_done = st.init_done;
    let mut conditions = std::mem::take(&mut st.conditions);
    let set = |conds: &mut Vec<Value>, kind: &str, status: &str, reason: &str, message: String| {
        crate::workloads::set_condition(conds, kind, status, reason, &message, &now, false);
        if reason.is_empty()
            && let Some(c) = conds.iter_mut().find(|c| c["type"] == kind)
            && let Some(m) = c.as_object_mut()
        {
            m.remove("reason");
            m.remove("message");
        }
    };
    set(&mut conditions, "PodReadyToStartContainers", sandbox, "", String::new());
    if init_done {
        set(&mut conditions, "Initialized", "True", "", String::new());
    } else {
        set(
            &mut conditions,
            "Initialized",
            "False",
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{}]", incomplete.join(" ")),
        );
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");
    if terminal {
        set(&mut conditions, "Ready", "False", "PodCompleted", String::new());
        set(&mut conditions, "ContainersReady", "False", "PodCompleted", String::new());
    } else if unready.is_empty() && init_done {
        set(&mut conditions, "Ready", "True", "", String::new());
        set(&mut conditions, "ContainersReady", "True", "", String::new());
    } else {
        let message = format!("containers with unready status: [{}]", unready.join(" "));
        set(&mut conditions, "Ready", "False", "ContainersNotReady", message.clone());
        set(&mut conditions, "ContainersReady", "False", "ContainersNotReady", message);
    }
    set(&mut conditions, "PodScheduled", "True", "", String::new());
    conditions.sort_by_key(|c| match c["type"].as_str() {
        Some("PodReadyToStartContainers") => 0,
        Some("Initialized") => 1,
        Some("Ready") => 2,
        Some("ContainersReady") => 3,
        Some("PodScheduled") => 4,
        _ => 5,
    });
    st.conditions = conditions.clone();
    let ip = run.ip.to_string();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": st.start_time,
        "containerStatuses": st.app.iter().map(ContainerState::to_status).collect::<Vec<_>>(),
    });
    if !st.init.is_empty() {
        status["initContainerStatuses"] =
            json!(st.init.iter().map(ContainerState::to_status).collect::<Vec<_>>());
    }
    status
}

/// The Pod phase from its containers' states (the kubelet's rules).
fn phase(st: &PodState, policy: &str) -> &'static str {
    if !st.init_done {
        let init_failed = st.init.iter().any(|c| {
            c.state.pointer("/terminated/exitCode").and_then(Value::as_i64).is_some_and(|x| x != 0)
        });
        return if init_failed && policy == "Never" { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &st.app {
        if c.state.get("running").is_some() {
            running += 1;
        } else if let Some(code) = c.state.pointer("/terminated/exitCode").and_then(Value::as_i64) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if c.last_state.get("terminated").is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// Writes the Pod's status when it changed; a Pod that is gone is left alone.
fn write_status(run: &PodRun) {
    let status = build_status(run);
    if run.lock().last_written.as_ref() == Some(&status) {
        return;
    }
    let res = crate::workloads::resource(&run.shared.core, "", "pods");
    let opts = WriteOptions { field_manager: Some(MANAGER.into()), ..Default::default() };
    for _ in 0..8 {
        let Some(current) = run.shared.core.store.get(&res.key(), &run.ns, &run.name) else {
            return;
        };
        let mut obj = current.value();
        if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(run.uid.as_str()) {
            return;
        }
        // Conditions written by others (readiness gates) are kept.
        let mut next = status.clone();
        let ours: Vec<&str> = next["conditions"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["type"].as_str()).collect())
            .unwrap_or_default();
        let foreign: Vec<Value> = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|c| !ours.contains(&c["type"].as_str().unwrap_or("")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(list) = next["conditions"].as_array_mut() {
            list.extend(foreign);
        }
        obj["status"] = next;
        match run.shared.core.update(
            &res,
            &run.ns,
            &run.name,
            obj,
            &opts,
            Subresource::Status,
            MANAGER,
        ) {
            Ok(_) => {
                run.lock().last_written = Some(status);
                return;
            }
            Err(ApiError::Conflict { .. }) => continue,
            Err(ApiError::NotFound(_)) => return,
            Err(e) => {
                tracing::warn!(pod = %run.name, namespace = %run.ns, error = %e, "writing pod status failed");
                return;
            }
        }
    }
}
