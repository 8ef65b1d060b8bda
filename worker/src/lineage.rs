//! OpenLineage run events (<https://openlineage.io/>): which job ran, when, what it read and
//! wrote, and whose it is.
//!
//! ```text
//!  run-once (pull, import)      START ──▶ … the run … ──▶ COMPLETE | FAIL (errorMessage facet)
//!        job      {namespace: lineage namespace or the Integration's, name: the Integration}
//!        inputs   the source: namespace scheme://host[:port], name the path / database,
//!                 dataSource facet {name: dataFlow.sourceSystem, uri}
//!        outputs  each target, the same way (a table target's name is database.table)
//!        facets   ownership (owner team), switchboard (classification, contact, systems)
//!  ──▶ POST <lineage.url>  (JSON, 5 s timeout)
//! ```
//!
//! A run-once is one OpenLineage run. Long-running webhook and API workers do not emit one run
//! per event (far too chatty for a lineage backend): the data flow of such a worker is
//! described by the runs of its scheduled pulls and by the report, and event-level history
//! lives in metrics and dead letters. Emission never fails a run: errors are logged and
//! counted in `switchboard_worker_lineage_errors_total`. The lineage endpoint is set by the
//! platform team (the operator's `--openlineage-url`), not by integration authors, so it is
//! not subject to the integrations' egress allow-list.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};

use crate::config::{LineageConfig, OutboundCall, SourceConfig, TargetKind, WorkerConfig};

/// OpenLineage spec version of the events.
pub const SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent";
/// Producer URI written in events and facets.
pub const PRODUCER: &str = "https://github.com/switchboard-dev/switchboard";
/// How long one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Emits the run events of one worker.
#[derive(Clone)]
pub struct Lineage {
    config: LineageConfig,
    job_namespace: String,
    job_name: String,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    job_facets: Value,
    client: reqwest::Client,
    errors: Counter,
}

impl std::fmt::Debug for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lineage").field("job", &self.job_name).finish_non_exhaustive()
    }
}

/// One run: its id and what to say at its end.
#[derive(Debug, Clone)]
pub struct LineageRun {
    /// The run id (a UUID).
    pub run_id: String,
}

impl Lineage {
    /// The emitter for `config`, or `None` when it has no lineage endpoint.
    /// Failed emissions are counted in `errors` (`switchboard_worker_lineage_errors_total`).
    pub fn for_config(config: &WorkerConfig, errors: Counter) -> Option<Lineage> {
        let lineage = config.lineage.clone()?;
        crate::outbound::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(
                rustls::ClientConfig::builder()
                    .with_root_certificates(system_roots())
                    .with_no_client_auth(),
            )
            .build()
            .ok()?;
        let job_namespace = if lineage.namespace.is_empty() {
            config.subject.namespace.clone()
        } else {
            lineage.namespace.clone()
        };
        let flow = config.data_flow.as_ref();
        let source_system = flow.map(|f| f.source_system.clone()).unwrap_or_default();
        let target_system = flow.map(|f| f.target_system.clone()).unwrap_or_default();
        let inputs = source_dataset(config, &source_system).into_iter().collect();
        let outputs =
            config.targets.iter().filter_map(|t| target_dataset(&t.kind, &target_system)).collect();
        let job_facets = json!({
            "ownership": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/OwnershipJobFacet.json#/$defs/OwnershipJobFacet",
                "owners": [{"name": format!("team:{}", config.owner.team), "type": "team"}],
            },
            "jobType": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                "processingType": "BATCH",
                "integration": "SWITCHBOARD",
                "jobType": config.source.as_ref().map(|s| s.kind().to_uppercase()).unwrap_or_else(|| "CALL".into()),
            },
            "switchboard": {
                "_producer": PRODUCER,
                "_schemaURL": format!("{PRODUCER}/blob/main/docs/imports.md#openlineage"),
                "ownerTeam": config.owner.team,
                "contact": config.owner.contact,
                "classification": flow.map(|f| f.classification.clone()).unwrap_or_default(),
                "sourceSystem": source_system,
                "targetSystem": target_system,
                "kind": config.subject.kind,
            },
        });
        Some(Lineage {
            config: lineage,
            job_namespace,
            job_name: config.subject.name.clone(),
            inputs,
            outputs,
            job_facets,
            client,
            errors,
        })
    }

    /// Emit START for a new run.
    pub async fn start(&self) -> LineageRun {
        let run = LineageRun { run_id: uuid::Uuid::new_v4().to_string() };
        self.emit(self.event("START", &run, None)).await;
        run
    }

    /// Emit COMPLETE (`error` is `None`) or FAIL with the error message.
    pub async fn finish(&self, run: &LineageRun, error: Option<&str>) {
        let kind = if error.is_some() { "FAIL" } else { "COMPLETE" };
        self.emit(self.event(kind, run, error)).await;
    }

    /// The event document.
    pub fn event(&self, event_type: &str, run: &LineageRun, error: Option<&str>) -> Value {
        let mut run_facets = serde_json::Map::new();
        if let Some(message) = error {
            run_facets.insert(
                "errorMessage".into(),
                json!({
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    "message": crate::queue::sanitize_message(message),
                    "programmingLanguage": "rust",
                }),
            );
        }
        json!({
            "eventType": event_type,
            "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "run": {"runId": run.run_id, "facets": run_facets},
            "job": {"namespace": self.job_namespace, "name": self.job_name, "facets": self.job_facets},
            "inputs": self.inputs,
            "outputs": self.outputs,
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
        })
    }

    async fn emit(&self, event: Value) {
        let result = self.client.post(&self.config.url).json(&event).send().await;
        let problem = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
            Err(e) => Some(crate::outbound::http::describe_reqwest_error(&e)),
        };
        if let Some(problem) = problem {
            self.errors.inc();
            tracing::warn!(event = %event["eventType"].as_str().unwrap_or_default(), error = %problem,
                "OpenLineage event not accepted; the run goes on");
        }
    }
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// `scheme://host[:port]` and the path of a URL, as an OpenLineage dataset namespace and name.
fn url_dataset(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let namespace = match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    };
    let path = parsed.path().trim_end_matches('/');
    Some((namespace, if path.is_empty() { "/".into() } else { path.to_string() }))
}

fn dataset(namespace: String, name: String, system: &str, uri: &str) -> Value {
    json!({
        "namespace": namespace,
        "name": name,
        "facets": {
            "dataSource": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet",
                "name": system,
                "uri": uri,
            }
        }
    })
}

/// The dataset an HTTP call reads or writes: the endpoint's origin, and its path with the
/// method's (templates as written).
fn call_dataset(call: &OutboundCall, system: &str) -> Option<Value> {
    let url = format!("{}{}", call.endpoint.url.trim_end_matches('/'), call.method.path);
    let (namespace, name) = url_dataset(&url)?;
    Some(dataset(namespace, name, system, &call.endpoint.url))
}

fn source_dataset(config: &WorkerConfig, system: &str) -> Option<Value> {
    match config.source.as_ref()? {
        SourceConfig::Database(db) => {
            let (namespace, name) = url_dataset(&db.connection.endpoint)?;
            Some(dataset(
                namespace,
                name.trim_start_matches('/').to_string(),
                system,
                &db.connection.endpoint,
            ))
        }
        SourceConfig::File(file) => call_dataset(&file.fetch, system),
        SourceConfig::Rest(rest) => call_dataset(&rest.request, system),
        SourceConfig::Imap(imap) => {
            let (namespace, _) = url_dataset(&imap.server)?;
            Some(dataset(namespace, imap.mailbox.clone(), system, &imap.server))
        }
        SourceConfig::Webhook(w) => {
            Some(dataset("switchboard".into(), w.path.clone(), system, &w.path))
        }
        SourceConfig::Api(_) => {
            Some(dataset("switchboard".into(), config.subject.name.clone(), system, ""))
        }
    }
}

fn target_dataset(kind: &TargetKind, system: &str) -> Option<Value> {
    match kind {
        TargetKind::Database(db) => {
            let (namespace, database) = url_dataset(&db.connection.endpoint)?;
            let name = format!("{}.{}", database.trim_start_matches('/'), db.table);
            Some(dataset(namespace, name, system, &db.connection.endpoint))
        }
        TargetKind::OutboundMessage(call) => call_dataset(call, system),
        TargetKind::Email(email) => {
            let (namespace, _) = url_dataset(&email.smtp.server)?;
            Some(dataset(namespace, "mail".into(), system, &email.smtp.server))
        }
    }
}
