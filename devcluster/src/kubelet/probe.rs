//! Probes: `httpGet` (HTTP, or HTTPS without certificate checks, as the kubelet does),
//! `tcpSocket` and `exec`, each bounded by `timeoutSeconds`; success and failure thresholds
//! are counted by the container supervisor. gRPC probes are not supported.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use serde_json::Value;

use super::process::{Launch, ProcessGroups};

/// One probe's timing and thresholds.
#[derive(Clone, Debug)]
pub struct Timing {
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

impl Timing {
    /// Reads a probe's timing fields.
    pub fn of(probe: &Value) -> Timing {
        let secs = |f: &str, d: u64| {
            Duration::from_secs(probe.get(f).and_then(Value::as_u64).unwrap_or(d))
        };
        let n = |f: &str, d: u32| {
            probe.get(f).and_then(Value::as_u64).map(|v| v.max(1) as u32).unwrap_or(d)
        };
        Timing {
            initial_delay: secs("initialDelaySeconds", 0),
            period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: n("successThreshold", 1),
            failure_threshold: n("failureThreshold", 3),
        }
    }
}

/// What a probe needs to reach the container.
pub struct Target<'a> {
    /// The Pod's IP.
    pub ip: Ipv4Addr,
    /// The container (for named ports).
    pub container: &'a Value,
    /// The container's process settings (for `exec`).
    pub launch: &'a Launch,
    /// Path remapping for `exec` commands.
    pub mounts: &'a [String],
    /// The Pod's root.
    pub root: &'a std::path::Path,
    /// Process groups (an `exec` probe is a process too).
    pub groups: &'a Arc<ProcessGroups>,
    /// Where `exec` output goes (discarded after the probe).
    pub scratch_log: &'a std::path::Path,
}

/// Runs a probe once: `Ok(())` on success, otherwise why it failed.
pub async fn run(probe: &Value, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_inner(probe, target)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

async fn run_inner(probe: &Value, target: &Target<'_>) -> Result<(), String> {
    if let Some(h) = probe.get("httpGet") {
        let port = resolve_port(h.get("port"), target.container)?;
        let host = h.get("host").and_then(Value::as_str).filter(|s| !s.is_empty());
        let host = host.map(str::to_string).unwrap_or_else(|| target.ip.to_string());
        let path = h.get("path").and_then(Value::as_str).unwrap_or("/");
        let https = h.get("scheme").and_then(Value::as_str) == Some("HTTPS");
        let headers: Vec<(String, String)> = h
            .get("httpHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| {
                Some((x.get("name")?.as_str()?.to_string(), x.get("value")?.as_str()?.to_string()))
            })
            .collect();
        let code = http_get(&host, port, path, https, &headers).await?;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(t) = probe.get("tcpSocket") {
        let port = resolve_port(t.get("port"), target.container)?;
        let host = t.get("host").and_then(Value::as_str).filter(|s| !s.is_empty());
        let host = host.map(str::to_string).unwrap_or_else(|| target.ip.to_string());
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
    }
    if let Some(e) = probe.get("exec") {
        let command: Vec<String> = e
            .get("command")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| super::env::rewrite(s, target.mounts, target.root))
            .collect();
        let Some((first, rest)) = command.split_first() else {
            return Err("exec probe without command".into());
        };
        let path = target
            .launch
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/bin:/bin");
        let program = if first.contains('/') {
            std::path::PathBuf::from(first)
        } else {
            path.split(':')
                .map(|d| std::path::Path::new(d).join(first))
                .find(|p| p.is_file())
                .ok_or_else(|| format!("{first:?} not found"))?
        };
        let launch = Launch { program, args: rest.to_vec(), ..target.launch.clone() };
        let mut p = super::process::spawn(&launch, target.scratch_log, target.groups)
            .map_err(|e| e.to_string())?;
        let status = p.wait().await.map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(target.scratch_log);
        return if status.success() {
            Ok(())
        } else {
            Err(format!("command exited with {status}"))
        };
    }
    if probe.get("grpc").is_some() {
        return Err("gRPC probes are not supported by devcluster".into());
    }
    Err("probe has no handler".into())
}

/// A probe port: a number, or the name of a container port.
pub fn resolve_port(port: Option<&Value>, container: &Value) -> Result<u16, String> {
    match port {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("invalid port {n}")),
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(s))
                .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("port {s:?} is not a named port of the container"))
        }
        _ => Err("probe without port".into()),
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let mut req = http::Request::get(path).header(http::header::HOST, format!("{host}:{port}"));
    req = req.header(http::header::USER_AGENT, "kube-probe/devcluster");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    if https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(hyper_util::rt::TokioIo::new(tls), req).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await
    }
}

async fn send<IO>(io: IO, req: http::Request<Empty<Bytes>>) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let result =
        sender.send_request(req).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
    driver.abort();
    result
}

/// Probes do not check certificates (the kubelet does not either).
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_resolve_by_number_or_name() {
        let c = json!({"ports": [{"name": "admin", "containerPort": 9090}]});
        assert_eq!(resolve_port(Some(&json!(8080)), &c).unwrap(), 8080);
        assert_eq!(resolve_port(Some(&json!("admin")), &c).unwrap(), 9090);
        assert_eq!(resolve_port(Some(&json!("9091")), &c).unwrap(), 9091);
        assert!(resolve_port(Some(&json!("http")), &c).is_err());
    }

    #[test]
    fn timing_defaults_match_kubernetes() {
        let t = Timing::of(&json!({}));
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    }
}
