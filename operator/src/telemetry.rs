//! Logs and traces of the operator: formatted logs on standard error (text or JSON), and,
//! when an endpoint is configured, every span (one per reconcile, from kube-runtime's
//! `reconciling object` span down to our API writes) exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use switchboard_worker::cli::{LogFormat, init_logging_with};

/// Telemetry that must be flushed at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flush and stop the span exporter, if any.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: could not flush traces: {error}");
        }
    }
}

/// Install logging, and OTLP trace export to `otlp_endpoint` (e.g. `http://collector:4318`)
/// when given. Must run inside a tokio runtime when an endpoint is given.
pub fn init(
    level: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
    service: &str,
) -> Result<Telemetry, String> {
    let Some(endpoint) = otlp_endpoint else {
        init_logging_with(level, format, None::<tracing_subscriber::layer::Identity>);
        return Ok(Telemetry { provider: None });
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    let resource =
        opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build();
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("switchboard");
    init_logging_with(level, format, Some(tracing_opentelemetry::layer().with_tracer(tracer)));
    Ok(Telemetry { provider: Some(provider) })
}
