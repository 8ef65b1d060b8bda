//! Where a scheduled run keeps what must outlive it: the watermark of a database pull and the
//! report of the last run.
//!
//! ```text
//!  in a cluster (in-cluster ServiceAccount, or KUBECONFIG)
//!     get integrations/<name>              → status.watermark (else the configured initial)
//!     patch integrations/<name>/status     ← {watermark, lastRun}, merge patch conditioned on
//!                                            the resourceVersion read; 409 → read again
//!  elsewhere (a local run-once without any cluster config)
//!     <dataDir>/run-state.json             ← the same two fields, written atomically
//! ```
//!
//! The worker's Role allows exactly `get` on its Integration and `get, patch` on its status
//! (scoped by resourceNames); nothing else is needed. The watermark only moves forward: a save
//! whose watermark is lower than the stored one keeps the stored one (two overlapping runs, or
//! an old Job finishing late, cannot move it back).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

use super::report::RunReport;
use crate::config::Subject;
use crate::database::pull::compare_text;

/// API group of the Integration.
const GROUP: &str = "switchboard.dev";
/// Its version.
const VERSION: &str = "v1alpha1";
/// Field manager of the worker's status writes.
const FIELD_MANAGER: &str = "switchboard-worker";

/// Why the run state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunStateError {
    /// The Kubernetes API refused or failed.
    #[error("integration status: {0}")]
    Api(String),
    /// The local file failed.
    #[error("run state file {path}: {message}")]
    File {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
}

impl RunStateError {
    /// Short category.
    pub fn category(&self) -> &'static str {
        match self {
            RunStateError::Api(_) => "status_api",
            RunStateError::File { .. } => "state_file",
        }
    }
}

/// The store of one subject's run state.
pub enum RunStateStore {
    /// The Integration's status.
    Kubernetes {
        /// The Integrations of the subject's namespace.
        api: Box<Api<DynamicObject>>,
        /// The Integration.
        name: String,
    },
    /// A file in the data directory.
    File {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Debug for RunStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunStateStore::Kubernetes { name, .. } => write!(f, "Integration {name} status"),
            RunStateStore::File { path } => write!(f, "file {}", path.display()),
        }
    }
}

/// The stored state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// The last recorded watermark.
    pub watermark: Option<String>,
}

impl RunStateStore {
    /// The Integration's status when a cluster config is found (in-cluster ServiceAccount or
    /// KUBECONFIG), otherwise a file in `data_dir` (said in the log).
    pub async fn connect(subject: &Subject, data_dir: &Path) -> RunStateStore {
        let file = || RunStateStore::File { path: data_dir.join("run-state.json") };
        if subject.kind != "Integration" {
            return file();
        }
        let config = match kube::Config::infer().await {
            Ok(config) => config,
            Err(e) => {
                tracing::info!(reason = %e, path = %data_dir.join("run-state.json").display(),
                    "no Kubernetes config found; the watermark and run report are kept in the data directory");
                return file();
            }
        };
        match kube::Client::try_from(config) {
            Ok(client) => {
                let resource =
                    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, "Integration"));
                RunStateStore::Kubernetes {
                    api: Box::new(Api::namespaced_with(client, &subject.namespace, &resource)),
                    name: subject.name.clone(),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a Kubernetes client; the watermark and run report are kept in the data directory");
                file()
            }
        }
    }

    /// Read the stored state.
    pub async fn load(&self) -> Result<RunState, RunStateError> {
        match self {
            RunStateStore::Kubernetes { api, name } => {
                let object = api.get(name).await.map_err(api_error)?;
                Ok(RunState { watermark: stored_watermark(&object.data) })
            }
            RunStateStore::File { path } => match std::fs::read(path) {
                Ok(bytes) => {
                    let value: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| file_error(path, &e.to_string()))?;
                    Ok(RunState { watermark: value["watermark"].as_str().map(str::to_string) })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunState::default()),
                Err(e) => Err(file_error(path, &e.kind().to_string())),
            },
        }
    }

    /// Record a watermark (only if it is not behind the stored one) and/or a report.
    pub async fn save(
        &self,
        watermark: Option<&str>,
        report: Option<&RunReport>,
    ) -> Result<(), RunStateError> {
        match self {
            RunStateStore::Kubernetes { api, name } => {
                for attempt in 0..5 {
                    let object = api.get(name).await.map_err(api_error)?;
                    let stored = stored_watermark(&object.data);
                    let mut status = serde_json::Map::new();
                    if let Some(w) = forward(stored.as_deref(), watermark) {
                        status.insert("watermark".into(), json!(w));
                    }
                    if let Some(report) = report {
                        status.insert("lastRun".into(), json!(report));
                    }
                    if status.is_empty() {
                        return Ok(());
                    }
                    let patch = json!({
                        "metadata": {"resourceVersion": object.metadata.resource_version},
                        "status": status,
                    });
                    let params = PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PatchParams::default()
                    };
                    match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => continue,
                        Err(e) => return Err(api_error(e)),
                    }
                }
                Err(RunStateError::Api("conflicting writes; gave up after 5 attempts".into()))
            }
            RunStateStore::File { path } => {
                let mut value = match std::fs::read(path) {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({})),
                    Err(_) => json!({}),
                };
                let stored = value["watermark"].as_str().map(str::to_string);
                if let Some(w) = forward(stored.as_deref(), watermark) {
                    value["watermark"] = json!(w);
                }
                if let Some(report) = report {
                    value["lastRun"] = json!(report);
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| file_error(path, &e.kind().to_string()))?;
                }
                let temporary = path.with_extension("json.tmp");
                std::fs::write(
                    &temporary,
                    serde_json::to_vec_pretty(&value).expect("JSON serializes"),
                )
                .and_then(|_| std::fs::rename(&temporary, path))
                .map_err(|e| file_error(path, &e.kind().to_string()))
            }
        }
    }
}

/// The watermark to write: `new` unless it is behind `stored`.
fn forward<'a>(stored: Option<&str>, new: Option<&'a str>) -> Option<&'a str> {
    let new = new?;
    match stored {
        Some(old) if old == new => None,
        Some(old) => match compare_text(new, old) {
            Some(Ordering::Less) => {
                tracing::warn!("the stored watermark is ahead of this run's; it is kept");
                None
            }
            _ => Some(new),
        },
        None => Some(new),
    }
}

fn stored_watermark(data: &serde_json::Value) -> Option<String> {
    data["status"]["watermark"].as_str().map(str::to_string)
}

fn api_error(e: kube::Error) -> RunStateError {
    RunStateError::Api(match e {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    })
}

fn file_error(path: &Path, message: &str) -> RunStateError {
    RunStateError::File { path: path.display().to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_only_moves_forward() {
        assert_eq!(forward(None, Some("5")), Some("5"));
        assert_eq!(forward(Some("5"), Some("7")), Some("7"));
        assert_eq!(forward(Some("7"), Some("5")), None);
        assert_eq!(forward(Some("7"), Some("7")), None);
        assert_eq!(forward(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")), None);
        assert_eq!(forward(Some("7"), None), None);
    }

    #[tokio::test]
    async fn the_file_store_keeps_watermark_and_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStateStore::File { path: dir.path().join("run-state.json") };
        assert_eq!(store.load().await.unwrap(), RunState::default());
        let report = RunReport::start(chrono::Utc::now());
        store.save(Some("10"), Some(&report)).await.unwrap();
        store.save(Some("3"), None).await.unwrap();
        assert_eq!(store.load().await.unwrap().watermark.as_deref(), Some("10"));
    }
}
