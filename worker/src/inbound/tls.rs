//! The inbound TLS listener, used when a route authenticates with client certificates (mTLS).
//!
//! ```text
//!  TCP ─▶ TLS handshake ─────────────────────────▶ hyper (HTTP/1.1, HTTP/2) ─▶ axum routes
//!         server certificate: the mtls Credential's certificate + key (re-read on change)
//!         client certificate: requested, optional; possession of its key proven here
//!                                  │
//!                                  └── PeerCertificates extension ─▶ route auth (mtls):
//!                                      chain verified against the route's CA (re-read on change)
//! ```
//!
//! The handshake only proves that the client holds the key of the certificate it presents;
//! whether that certificate is trusted is decided per route, against that route's current
//! CA bundle. A CA rotated in the Secret therefore applies to the next request, and routes
//! without mTLS are served on the same listener without a client certificate.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth::PeerCertificates;
use crate::credentials::ClientCertificate;

/// The worker's server certificate, from an mtls Credential, resolved per handshake.
#[derive(Debug)]
pub struct ServerCertificate(pub Arc<ClientCertificate>);

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.0.current() {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::error!(error = %e, "no usable server certificate for the TLS listener");
                None
            }
        }
    }
}

/// Requests a client certificate and checks the handshake signature made with its key; the
/// chain is verified per route (see the module docs).
#[derive(Debug)]
struct ProofOfPossession {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ProofOfPossession {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls server config of the inbound listener.
pub fn server_config(certificate: Arc<ClientCertificate>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = ProofOfPossession { algorithms: provider.signature_verification_algorithms };
    let mut config =
        rustls::ServerConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(ServerCertificate(certificate)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serve `router` over TLS until `shutdown` turns true, then let open requests finish
/// (bounded by `grace`).
pub async fn serve(
    listener: TcpListener,
    config: rustls::ServerConfig,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let peer: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let service = router.layer(Extension(PeerCertificates(Arc::new(peer))));
            let service = hyper_util::service::TowerToHyperService::new(service);
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("TLS connections still open at shutdown were closed");
    }
}
