//! HTTP clients for outbound calls: TLS, the SSRF guard, and bounded response reading.
//!
//! Two kinds of client, their rustls configurations made by one function (`tls_config`):
//!
//! - a **delivery client** (`DeliveryClient`) per TLS profile (CA file, client certificate
//!   credential, server name): hyper's pooled client behind hyper-rustls, used for every
//!   delivery attempt and health probe. It is the busiest code of a worker, and reqwest's
//!   layers (its redirect service, request conversion and a second parse of the URL for
//!   every response) cost about a quarter of the throughput of a webhook-to-target hop on
//!   the benchmark machine;
//! - one `reqwest::Client` for OAuth2 token requests (the default profile: system roots, no
//!   client certificate), where its form and JSON helpers are worth more than its cost.
//!
//! A profile's TLS:
//!
//! - rustls on the ring provider, with the public roots of the system, or the endpoint's CA
//!   file and the mtls credential's CA (re-read at each new handshake, so CA rotation works);
//! - an optional server-name override, verified in the certificate and sent in SNI;
//! - the client certificate of an mtls credential, resolved at each handshake
//!   ([`crate::credentials::ClientCertificate`]), with TLS session resumption off so a new
//!   connection really presents the current certificate.
//!
//! Both kinds have the [`GuardedResolver`](super::egress) as their only resolver; no proxy;
//! no redirects (a 3xx is handed back to the caller, which refuses it); no automatic retries
//! (the delivery engine owns retries and counts every attempt); idle connections kept 60 s.
//!
//! Responses are read up to a limit and error bodies are reduced to a short, sanitized and
//! redacted excerpt ([`sanitize_excerpt`]) before they go anywhere else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use http_body_util::BodyExt;
use hyper_rustls::FixedServerNameResolver;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::egress::{EgressPolicy, GuardedResolver};
use crate::credentials::{ClientCertificate, CredentialError, CredentialStore};

/// Install ring as the process-wide rustls crypto provider (no-op if one is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

pub(crate) fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found; public HTTPS endpoints will fail verification"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

/// The TLS settings that distinguish one HTTP client from another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsProfile {
    /// PEM CA bundle file verifying the server, instead of the system roots.
    pub ca_file: Option<String>,
    /// Name of the mtls credential presenting a client certificate.
    pub client_certificate: Option<String>,
    /// Server name to verify instead of the URL host.
    pub server_name: Option<String>,
}

/// Why an HTTP client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// A credential problem (client certificate).
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A TLS setting is invalid.
    #[error("TLS settings are invalid: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
}

impl HttpError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            HttpError::Credential(e) => e.category(),
            HttpError::Tls { .. } => "tls",
        }
    }
}

/// The delivery client: hyper's pooled HTTP/1.1 and HTTP/2 client over rustls, its names
/// resolved through the egress guard.
pub(crate) type DeliveryClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>,
    http_body_util::Full<bytes::Bytes>,
>;

/// The `User-Agent` of outbound requests.
pub const USER_AGENT: &str = concat!("switchboard-worker/", env!("CARGO_PKG_VERSION"));

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The HTTP clients of one worker: a delivery client per TLS profile, and one client for
/// OAuth2 token requests.
pub struct HttpClients {
    policy: Arc<EgressPolicy>,
    delivery: Mutex<HashMap<TlsProfile, DeliveryClient>>,
    token: Mutex<Option<reqwest::Client>>,
}

impl std::fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClients").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl HttpClients {
    /// Clients that connect only where `policy` allows.
    pub fn new(policy: Arc<EgressPolicy>) -> HttpClients {
        HttpClients { policy, delivery: Mutex::default(), token: Mutex::default() }
    }

    /// The egress policy every client applies.
    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.policy
    }

    /// The delivery client for `profile`, built on first use.
    pub(crate) fn delivery(
        &self,
        profile: &TlsProfile,
        credentials: &CredentialStore,
    ) -> Result<DeliveryClient, HttpError> {
        let mut clients = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = clients.get(profile) {
            return Ok(found.clone());
        }
        let client_certificate = match &profile.client_certificate {
            Some(name) => {
                let credential = credentials.get(name)?;
                Some(credential.client_certificate().cloned().ok_or_else(|| {
                    CredentialError::WrongType {
                        credential: name.clone(),
                        found: credential.type_name(),
                        expected: "mtls",
                    }
                })?)
            }
            None => None,
        };
        let (config, server_name) = tls_config(profile, client_certificate)?;
        let mut connector =
            HttpConnector::new_with_resolver(GuardedResolver { policy: self.policy.clone() });
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(15)));
        // hyper-rustls sets the ALPN protocols (h2, http/1.1) from what it enables. A
        // server-name override is also the name sent in SNI, as `spec.tls.serverName`
        // promises (the URL's host may be an address, which SNI cannot carry).
        let builder =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
        let builder = match server_name {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_http1().enable_http2().wrap_connector(connector);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        clients.insert(profile.clone(), client.clone());
        Ok(client)
    }

    /// The client of OAuth2 token requests, built on first use: the system roots and no
    /// client certificate, since the token endpoint is another host than the endpoints whose
    /// CAs and certificates the delivery profiles carry.
    pub fn token_client(&self) -> Result<reqwest::Client, HttpError> {
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = token.as_ref() {
            return Ok(client.clone());
        }
        let (mut config, _) = tls_config(&TlsProfile::default(), None)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .dns_resolver(GuardedResolver { policy: self.policy.clone() })
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .referer(false)
            .pool_idle_timeout(POOL_IDLE)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| HttpError::Tls { reason: describe_reqwest_error(&e) })?;
        *token = Some(client.clone());
        Ok(client)
    }
}

/// The rustls configuration of `profile` (no ALPN protocols set), and its server-name
/// override.
fn tls_config(
    profile: &TlsProfile,
    client_certificate: Option<Arc<ClientCertificate>>,
) -> Result<(rustls::ClientConfig, Option<ServerName<'static>>), HttpError> {
    let tls_error = |reason: String| HttpError::Tls { reason };
    let server_name = profile
        .server_name
        .as_ref()
        .map(|name| {
            ServerName::try_from(name.clone())
                .map_err(|_| tls_error(format!("server name {name:?} is not a DNS name or IP")))
        })
        .transpose()?;
    let verifier = Arc::new(ServerVerifier {
        ca_file: profile.ca_file.clone(),
        client_certificate: client_certificate.clone(),
        server_name: server_name.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_certificate {
        Some(resolver) => {
            let mut config = builder.with_client_cert_resolver(resolver);
            config.resumption = rustls::client::Resumption::disabled();
            config
        }
        None => builder.with_no_client_auth(),
    };
    Ok((config, server_name))
}

/// Verifies server certificates against the system roots or the configured CAs, read at
/// each handshake, optionally under another server name.
#[derive(Debug)]
struct ServerVerifier {
    ca_file: Option<String>,
    client_certificate: Option<Arc<ClientCertificate>>,
    server_name: Option<ServerName<'static>>,
}

impl ServerVerifier {
    fn inner(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let mut custom: Vec<CertificateDer<'static>> = Vec::new();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                rustls::Error::General(format!("CA file {path} cannot be read: {}", e.kind()))
            })?;
            custom.extend(
                crate::credentials::mtls::parse_certificates(
                    "tls.caFile",
                    crate::config::SecretRole::CaCertificate,
                    &pem,
                )
                .map_err(|e| rustls::Error::General(e.to_string()))?,
            );
        }
        if let Some(cert) = &self.client_certificate
            && let Some(bundle) =
                cert.ca_bundle().map_err(|e| rustls::Error::General(e.to_string()))?
        {
            custom.extend(bundle);
        }
        let roots = if custom.is_empty() {
            system_roots()
        } else {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(custom);
            if added == 0 {
                return Err(rustls::Error::General("no usable CA certificate configured".into()));
            }
            Arc::new(roots)
        };
        WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.server_name.as_ref().unwrap_or(server_name);
        self.inner()?.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Read a response body up to `limit` bytes. Returns the bytes and whether more was left.
pub async fn read_limited<B>(mut body: B, limit: usize) -> Result<(Vec<u8>, bool), B::Error>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        // Trailers carry nothing a delivery reads.
        let Ok(chunk) = frame?.into_data() else { continue };
        let room = limit - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// A short description of a reqwest error without its URL (which may carry an API key).
pub fn describe_reqwest_error(error: &reqwest::Error) -> String {
    describe_chain(
        if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "response body error"
        } else if error.is_builder() {
            "invalid request"
        } else {
            "request failed"
        },
        error,
    )
}

/// A short description of a delivery client error: what failed and the chain of causes
/// (the client's own message names no URL either).
pub fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    describe_chain(if error.is_connect() { "connection failed" } else { "request failed" }, error)
}

/// `head`, then the messages of `error`'s sources, sanitized; `error`'s own message is left
/// out (reqwest's names the URL).
pub fn describe_chain(head: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::from(head);
    let mut source = error.source();
    while let Some(inner) = source {
        let message = inner.to_string();
        if !message.is_empty() && !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = inner.source();
    }
    sanitize_excerpt(text.as_bytes(), 300, &[])
}

/// Make `bytes` safe to store and show: lossy UTF-8, secrets in `redact` replaced by
/// `[REDACTED]`, control and invisible formatting characters turned into spaces, runs of
/// white space collapsed, and at most `max_chars` characters (an ellipsis marks the cut).
pub fn sanitize_excerpt(bytes: &[u8], max_chars: usize, redact: &[String]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for secret in redact {
        if secret.len() >= 4 && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[REDACTED]");
        }
    }
    let mut out = String::new();
    let mut chars = 0usize;
    let mut pending_space = false;
    for c in text.chars() {
        let invisible = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
        if invisible || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        if chars >= max_chars {
            out.push('…');
            return out;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Secret texts to redact from excerpts, with the encodings they may be echoed in.
pub(crate) fn redaction_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    if let Some((_, token)) = secret.split_once(' ')
        && token.len() >= 8
    {
        forms.push(token.to_string());
    }
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    if encoded != secret {
        forms.push(encoded);
    }
    let escaped = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    if escaped != secret {
        forms.push(escaped);
    }
    forms
}

/// The first error of type `E` in the source chain of `error`.
pub(crate) fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        // An io::Error's `source` skips the error it wraps (TLS errors arrive that way).
        current = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_single_line_and_redacted() {
        let body = "<html>\r\nX-Injected: 1\r\n\r\n<b>token sk_live_abcdef</b>\u{202e}evil\u{0}";
        let out = sanitize_excerpt(body.as_bytes(), 200, &["sk_live_abcdef".into()]);
        assert_eq!(out, "<html> X-Injected: 1 <b>token [REDACTED]</b> evil");
        let huge = "a".repeat(10_000_000);
        let out = sanitize_excerpt(huge.as_bytes(), 512, &[]);
        assert_eq!(out.chars().count(), 513);
        assert!(out.ends_with('…'));
        assert_eq!(sanitize_excerpt(&[0xff, b'a'], 10, &[]), "\u{fffd}a");
    }
}
