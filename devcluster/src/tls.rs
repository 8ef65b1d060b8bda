//! The cluster's certificate authority and serving certificate.
//!
//! A self-signed CA is generated once (and kept in the state directory, when there is one),
//! and signs a serving certificate for `localhost`, `127.0.0.1` and `::1`. Kubeconfigs embed
//! the CA, so `kubectl` and `kube::Client` verify the server with nothing else configured.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM material of the cluster.
#[derive(Clone)]
pub struct Pki {
    /// CA certificate (PEM).
    pub ca_pem: String,
    /// Serving certificate (PEM).
    pub cert_pem: String,
    /// Serving key (PEM).
    pub key_pem: String,
}

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM files could not be read or written.
    #[error("certificate files: {0}")]
    Io(#[from] std::io::Error),
    /// rustls rejected the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM file did not parse.
    #[error("certificate files: {0}")]
    Pem(String),
}

impl Pki {
    /// Generates a new CA and serving certificate.
    pub fn generate() -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "devcluster-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        params.distinguished_name.push(DnType::CommonName, "devcluster");
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Loads the PKI from `dir`, generating and saving it on first use.
    pub fn load_or_generate(dir: &Path) -> Result<Self, TlsError> {
        let (ca, cert, key) = (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"));
        if ca.exists() && cert.exists() && key.exists() {
            return Ok(Pki {
                ca_pem: std::fs::read_to_string(ca)?,
                cert_pem: std::fs::read_to_string(cert)?,
                key_pem: std::fs::read_to_string(key)?,
            });
        }
        let pki = Self::generate()?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(ca, &pki.ca_pem)?;
        std::fs::write(cert, &pki.cert_pem)?;
        std::fs::write(key, &pki.key_pem)?;
        Ok(pki)
    }

    /// A rustls server configuration (HTTP/1.1) using the ring provider.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
                .map_err(|e| TlsError::Pem(e.to_string()))?,
        ];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
