//! `switchboard dlq`: the dead-letter commands against one worker by URL, or against every
//! worker pod of an Integration through the Kubernetes API server.
//!
//! ```text
//!  --url URL --token-file F ──────────────▶ UrlTransport ──▶ worker :9090
//!  --integration NAME [-n NS]   (kubeconfig, no port-forward)
//!     get Integration ─▶ get Secret <name>-worker-admin (the token) ─▶ list the worker pods
//!       ─▶ each Running pod: /api/v1/namespaces/NS/pods/POD:9090/proxy/v1/dead-letters...
//!          with the token in X-Switchboard-Admin-Token (the API server consumes
//!          Authorization, its own credentials, and does not pass it on)
//! ```
//!
//! What the person running it needs in the namespace: `get` on integrations, `get` on that
//! Secret (or `--token-file` with the token from elsewhere), `list` on pods, and `get`
//! (list, show) and `create` (replay) on `pods/proxy`.

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use switchboard_worker::cli::ADMIN_URL_ENV;
use switchboard_worker::config::{ADMIN_PORT, ADMIN_TOKEN_KEY};
use switchboard_worker::dlq::{
    AdminResponse, AdminTransport, DlqCommand, UrlTransport, body_value, read_token_file,
    run_dlq_command,
};
use switchboard_worker::runtime::admin::{ADMIN_TOKEN_FILE_ENV, ADMIN_TOKEN_HEADER};

use crate::api::Integration;
use crate::render::{admin_token_secret_name, secret_value, selector_labels};

/// Arguments of `switchboard dlq`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    switchboard dlq list --integration order-invoicing -n acme-integrations\n  \
    switchboard dlq replay 3f0c... --integration order-invoicing -n acme-integrations --by alice\n  \
    switchboard dlq list --url http://127.0.0.1:9090 --token-file ./admin-token")]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
    /// Reach every worker pod of this Integration through the Kubernetes API server (the
    /// kubeconfig's cluster and credentials; no port-forward), with the admin token from the
    /// Secret the operator created for it.
    #[arg(long, global = true, value_name = "NAME")]
    pub integration: Option<String>,
    /// Namespace of the Integration (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Admin URL of one worker (default http://127.0.0.1:9090; ignored with --integration).
    #[arg(long, global = true, env = ADMIN_URL_ENV)]
    pub url: Option<String>,
    /// File holding the admin token (required with --url; with --integration it replaces
    /// reading the Secret).
    #[arg(long, global = true, env = ADMIN_TOKEN_FILE_ENV)]
    pub token_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Run `switchboard dlq ...`.
pub async fn run(args: DlqArgs) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match dlq(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn dlq(args: &DlqArgs) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let Some(integration) = &args.integration else {
        let token_file = args.token_file.as_ref().ok_or_else(|| {
            format!(
                "the admin token is required: --token-file or {ADMIN_TOKEN_FILE_ENV} \
                 (or --integration NAME to use the Integration's Secret through the cluster)"
            )
        })?;
        let token = read_token_file(token_file)?;
        let url = args.url.as_deref().unwrap_or("http://127.0.0.1:9090");
        let worker = UrlTransport::new(url, token)?;
        return run_dlq_command(&args.command, args.json, &[worker], &mut out).await;
    };
    let mut config =
        kube::Config::infer().await.map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
    // kube retries 503 answers up to 15 times with growing delays; a worker pod that cannot be
    // reached through the proxy answers 503, and a person waiting wants to hear it at once.
    config.default_retry = false;
    let client = Client::try_from(config)
        .map_err(|e| format!("cannot reach the Kubernetes API (kubeconfig): {e}"))?;
    if args.url.is_some() {
        // Not a clap conflict: SWITCHBOARD_ADMIN_URL in the environment would refuse every
        // --integration call.
        eprintln!("note: --url (or {ADMIN_URL_ENV}) is ignored with --integration");
    }
    let namespace =
        args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let token = match &args.token_file {
        Some(file) => Some(read_token_file(file)?),
        None => None,
    };
    let workers = integration_workers(&client, &namespace, integration, token).await?;
    run_dlq_command(&args.command, args.json, &workers, &mut out).await
}

/// The worker pods of an Integration, each reached through the API server's `pods/proxy`.
/// `token` replaces reading the admin token Secret.
pub async fn integration_workers(
    client: &Client,
    namespace: &str,
    name: &str,
    token: Option<SecretString>,
) -> Result<Vec<PodProxyTransport>, String> {
    let what = format!("Integration {namespace}/{name}");
    let integrations: Api<Integration> = Api::namespaced(client.clone(), namespace);
    match integrations.get_metadata_opt(name).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(format!("{what} not found")),
        Err(e) => return Err(format!("cannot read {what}: {}", api_error(&e))),
    }
    let token = match token {
        Some(token) => token,
        None => admin_token(client, namespace, name).await?,
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = selector_labels(name, "worker")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("cannot list the worker pods of {what}: {}", api_error(&e)))?;
    let total = listed.items.len();
    let mut running: Vec<&Pod> = listed.items.iter().filter(|p| is_running(p)).collect();
    running.sort_by_key(|p| p.name_any());
    if running.is_empty() {
        return Err(format!(
            "{what} has no running worker pod ({total} pod(s) found with {selector})"
        ));
    }
    Ok(running
        .into_iter()
        .map(|pod| PodProxyTransport {
            client: client.clone(),
            namespace: namespace.to_string(),
            pod: pod.name_any(),
            token: token.clone(),
        })
        .collect())
}

fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status.and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty())
}

/// The admin token from the Integration's Secret.
async fn admin_token(client: &Client, namespace: &str, name: &str) -> Result<SecretString, String> {
    let secret_name = admin_token_secret_name(name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&secret_name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(format!(
                "the admin token Secret {namespace}/{secret_name} is missing: the operator creates \
                 it when it reconciles Integration {name} (is the operator running and allowed to \
                 create Secrets?)"
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot read the admin token Secret {namespace}/{secret_name}: {} \
                 (or pass the token with --token-file)",
                api_error(&e)
            ));
        }
    };
    let value = secret_value(&secret, ADMIN_TOKEN_KEY)
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            format!("the admin token Secret {namespace}/{secret_name} has no key {ADMIN_TOKEN_KEY}")
        })?;
    Ok(SecretString::from(value))
}

/// A short description of an API error (the Status message when there is one).
fn api_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.message),
        other => other.to_string(),
    }
}

/// Reaches one worker pod's admin port through the API server:
/// `/api/v1/namespaces/{ns}/pods/{pod}:9090/proxy/...`.
pub struct PodProxyTransport {
    client: Client,
    namespace: String,
    pod: String,
    token: SecretString,
}

impl PodProxyTransport {
    /// The API path of `path_and_query` on this pod's admin port.
    pub fn proxy_path(&self, path_and_query: &str) -> String {
        format!(
            "/api/v1/namespaces/{}/pods/{}:{ADMIN_PORT}/proxy{path_and_query}",
            self.namespace, self.pod
        )
    }
}

impl AdminTransport for PodProxyTransport {
    fn pod(&self) -> Option<&str> {
        Some(&self.pod)
    }

    fn describe(&self) -> String {
        format!("pod {}", self.pod)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<AdminResponse, String> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(self.proxy_path(path_and_query))
            .header(ADMIN_TOKEN_HEADER, self.token.expose_secret());
        let bytes = match body {
            Some(body) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(&body).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let request = request
            .body(kube::client::Body::from(bytes))
            .map_err(|e| format!("building the request: {e}"))?;
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.client.send(request))
                .await
                .map_err(|_| format!("pod {}: no answer within 30s", self.pod))?
                .map_err(|e| format!("the API server proxy to pod {} failed: {e}", self.pod))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| format!("reading the answer of pod {}: {e}", self.pod))?;
        Ok(AdminResponse { status, body: body_value(&bytes) })
    }
}
