//! Live mode: list the four kinds from a cluster into an [`ObjectSet`], so that the report is
//! built the same way as from files.
//!
//! Objects are listed as [`Unchecked`] and typed one by one: an object our types cannot read
//! becomes an `unreadable` finding instead of failing the whole report. Secrets are never
//! listed: a Credential's status says when it was rotated and whether its Secret is usable.

use std::path::PathBuf;

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ReportError;
use crate::api::{Credential, Integration, OutboundMessage, Schedule};
use crate::controller::object::Unchecked;
use crate::manifest::{LoadError, Located, ObjectSet, Origin};

/// Which cluster to report on.
#[derive(Clone, Debug, Default)]
pub struct ClusterTarget {
    /// Kubeconfig file; default `$KUBECONFIG`, then `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Context; default the kubeconfig's current context.
    pub context: Option<String>,
}

/// A client for the cluster, with what the report says about where it came from.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// Name of the kubeconfig context (none in-cluster).
    pub context: Option<String>,
    /// The API server's address, for error messages.
    pub url: String,
    /// The context's namespace, listed when neither `-n` nor `-A` is given (as kubectl does).
    pub default_namespace: String,
}

/// Connect to the cluster a target names (no request is made yet).
pub async fn connect(target: &ClusterTarget) -> Result<Connection, ReportError> {
    // kube's TLS uses rustls, which needs one process-wide crypto provider; ring is the one the
    // workspace builds (DEPENDENCIES.md). An Err means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: target.context.clone(), cluster: None, user: None };
    let no_cluster = |e: &dyn std::fmt::Display| ReportError::NoCluster(e.to_string());
    let (config, context) = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                ReportError::NoCluster(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            let context = target.context.clone().or_else(|| kubeconfig.current_context.clone());
            let config = Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| no_cluster(&e))?;
            (config, context)
        }
        None if target.context.is_some() => {
            let config = Config::from_kubeconfig(&options).await.map_err(|e| no_cluster(&e))?;
            (config, target.context.clone())
        }
        None => {
            let config = Config::infer().await.map_err(|e| no_cluster(&e))?;
            let context = Kubeconfig::read().ok().and_then(|k| k.current_context);
            (config, context)
        }
    };
    let url = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config)
        .map_err(|e| ReportError::Unreachable { url: url.clone(), message: e.to_string() })?;
    Ok(Connection { client, context, url, default_namespace })
}

async fn list<K>(
    connection: &Connection,
    namespace: Option<&str>,
    errors: &mut Vec<LoadError>,
) -> Result<Vec<Located<K>>, ReportError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Serialize + Clone,
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
{
    let kind = K::kind(&());
    let api: Api<Unchecked<K>> = match namespace {
        Some(namespace) => Api::namespaced(connection.client.clone(), namespace),
        None => Api::all(connection.client.clone()),
    };
    let objects = api.list(&ListParams::default()).await.map_err(|e| match e {
        kube::Error::Api(status) if status.code == 404 => {
            ReportError::CrdsMissing { kind: kind.to_string() }
        }
        kube::Error::Api(status) => {
            ReportError::Refused { kind: kind.to_string(), message: status.message }
        }
        other => {
            ReportError::Unreachable { url: connection.url.clone(), message: other.to_string() }
        }
    })?;
    let mut located = Vec::new();
    for item in objects {
        let id = format!("{kind} {}/{}", item.namespace().unwrap_or_default(), item.name_any());
        match item.typed() {
            Ok(object) => {
                let mut raw = serde_json::to_value(&object).expect("typed objects serialize");
                if let Some(map) = raw.as_object_mut() {
                    map.remove("status");
                }
                located.push(Located {
                    origin: Origin { file: PathBuf::from(&id), line: 0, document: 0 },
                    object,
                    raw,
                });
            }
            Err(message) => errors.push(LoadError { location: id, message }),
        }
    }
    Ok(located)
}

/// List the four kinds, in one namespace or all, into an object set.
pub async fn load(
    connection: &Connection,
    namespace: Option<&str>,
) -> Result<(ObjectSet, Vec<LoadError>), ReportError> {
    let mut errors = Vec::new();
    let set = ObjectSet {
        integrations: list::<Integration>(connection, namespace, &mut errors).await?,
        credentials: list::<Credential>(connection, namespace, &mut errors).await?,
        outbound_messages: list::<OutboundMessage>(connection, namespace, &mut errors).await?,
        schedules: list::<Schedule>(connection, namespace, &mut errors).await?,
        secrets: Vec::new(),
        others: Vec::new(),
    };
    Ok((set, errors))
}
