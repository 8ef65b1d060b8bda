//! TCP and TLS connections for protocols other than HTTP: the IMAP source, the SMTP target's
//! address check, and the health checks' handshakes.
//!
//! ```text
//!  host, port ──▶ resolve (IP literal: checked; name: lookup, then egress filter, O1)
//!             ──▶ TCP connect to exactly the allowed addresses, with a timeout (D6)
//!             ──▶ TLS (rustls on ring): system roots or a PEM CA file; the server's
//!                 certificate is kept, verified or not, so expiry can be reported
//! ```
//!
//! Connecting to the address that was checked (rather than handing a name to another
//! resolver) leaves no window for a DNS answer to change between check and connect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use super::egress::{EgressError, EgressPolicy};
use super::http::{provider, system_roots};

/// Why a connection could not be made. Never carries a secret (there is none on this path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The SSRF guard refused every address, or the name does not resolve.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// No connection within the timeout.
    #[error("no connection to {host}:{port} within {millis} ms")]
    Timeout {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The timeout.
        millis: u128,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {host}:{port}: {reason}")]
    Io {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The I/O error.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {host}:{port} failed: {reason}")]
    Tls {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// rustls' reason.
        reason: String,
    },
    /// The TLS settings are unusable (CA file missing or empty, invalid server name).
    #[error("TLS settings are invalid: {0}")]
    Config(String),
}

impl ConnectError {
    /// Short category for metrics, dead letters and health checks.
    pub fn category(&self) -> &'static str {
        match self {
            ConnectError::Egress(e) => e.category(),
            ConnectError::Timeout { .. } => "timeout",
            ConnectError::Io { .. } => "connect",
            ConnectError::Tls { .. } => "tls",
            ConnectError::Config(_) => "config",
        }
    }
}

/// `host:port`, with an IPv6 address in brackets (`[::1]:993`): how check names and
/// messages name a server.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The addresses of `host` that the egress policy allows.
pub async fn resolve(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, EgressError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        policy.check(host, ip)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| EgressError::Resolve { host: host.to_string(), reason: e.to_string() })?;
    policy.filter(host, found)
}

/// A TCP connection to an allowed address of `host`, within `timeout`.
pub async fn connect(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let addresses = resolve(policy, host, port).await?;
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Io {
            host: host.to_string(),
            port,
            reason: last.map(|e| e.kind().to_string()).unwrap_or_else(|| "no address".into()),
        })
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(ConnectError::Timeout {
        host: host.to_string(),
        port,
        millis: timeout.as_millis(),
    }))
}

/// The roots that verify a server: the PEM bundle in `ca_file`, or the system's.
pub fn roots(ca_file: Option<&str>) -> Result<Arc<RootCertStore>, ConnectError> {
    let Some(path) = ca_file else {
        return Ok(system_roots());
    };
    let pem = std::fs::read(path).map_err(|e| {
        ConnectError::Config(format!("CA file {path} cannot be read: {}", e.kind()))
    })?;
    let certificates = crate::credentials::mtls::parse_certificates(
        "tls.caFile",
        crate::config::SecretRole::CaCertificate,
        &pem,
    )
    .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(ConnectError::Config(format!("CA file {path} holds no usable certificate")));
    }
    Ok(Arc::new(store))
}

/// What the server presented in a handshake, and whether it verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// The end-entity certificate (DER).
    pub der: Vec<u8>,
    /// `None` when the chain verified for the server name; otherwise rustls' reason.
    pub verification_error: Option<String>,
}

impl PresentedCertificate {
    /// The certificate's `notAfter`.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        certificate_not_after(&self.der)
    }
}

/// The `notAfter` of a DER certificate.
pub fn certificate_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(certificate.validity().not_after.timestamp(), 0)
}

/// Verifies like rustls' WebPKI verifier, and remembers what it was shown.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<PresentedCertificate>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(PresentedCertificate {
            der: end_entity.as_ref().to_vec(),
            verification_error: result.as_ref().err().map(|e| e.to_string()),
        });
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS session over `stream`, verified against `roots` for `server_name`, and the
/// certificate the server presented (also when the handshake failed after presenting it).
pub async fn handshake(
    stream: TcpStream,
    roots: Arc<RootCertStore>,
    server_name: &str,
    port: u16,
    alpn: &[&[u8]],
) -> (Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError>, Option<PresentedCertificate>)
{
    let name = match ServerName::try_from(server_name.trim_matches(['[', ']']).to_string()) {
        Ok(name) => name,
        Err(_) => {
            let error = ConnectError::Config(format!("{server_name:?} is not a valid server name"));
            return (Err(error), None);
        }
    };
    let inner = match WebPkiServerVerifier::builder_with_provider(roots, provider()).build() {
        Ok(inner) => inner,
        Err(e) => return (Err(ConnectError::Config(e.to_string())), None),
    };
    let verifier = Arc::new(RecordingVerifier { inner, seen: Mutex::new(None) });
    let config = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => {
            let mut config = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config
        }
        Err(e) => return (Err(ConnectError::Config(e.to_string())), None),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = connector.connect(name, stream).await.map_err(|e| ConnectError::Tls {
        host: server_name.to_string(),
        port,
        reason: crate::outbound::http::sanitize_excerpt(e.to_string().as_bytes(), 300, &[]),
    });
    let seen = verifier.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (result, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_are_checked_before_connecting() {
        let policy = EgressPolicy::default();
        let refused = connect(&policy, "127.0.0.1", 1, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(refused.category(), "egress", "{refused}");
        let refused = resolve(&policy, "[::1]", 993).await.unwrap_err();
        assert!(matches!(refused, EgressError::Refused { .. }), "{refused}");
    }

    #[test]
    fn missing_ca_files_are_config_errors() {
        let error = roots(Some("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(error.category(), "config");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
