//! TLS peers on loopback for tests: a small PKI made with rcgen, whose certificates expire
//! when a test wants them to, and an HTTPS server that answers every request with 200.
//! Shared by the worker's tests (through `email_support`) and the operator's end-to-end
//! tests (`#[path]`), so that both check certificates made the same way.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

/// A CA and the files of server certificates it issues.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "switchboard test mail CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { ca, dir }
    }

    /// The CA bundle file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `localhost` and 127.0.0.1 valid for `days`; (cert file, key file).
    pub fn server(&self, name: &str, days: i64) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"], days);
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    /// PEM certificate and key for `names`, valid for `days` from now.
    pub fn issue(&self, names: &[&str], days: i64) -> (String, String) {
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            })
            .collect();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        // Midnight (UTC) of the day `days` from today.
        let date = |days: i64| {
            use chrono::Datelike;
            let day = chrono::Utc::now() + chrono::Duration::days(days);
            rcgen::date_time_ymd(day.year(), day.month() as u8, day.day() as u8)
        };
        params.not_before = date(-1);
        params.not_after = date(days);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// rustls roots trusting this CA.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(roots)
    }
}

/// A rustls server configuration (ring, no client authentication) with the certificate and
/// key in the PEM files `cert` and `key`.
pub fn server_config(cert: &Path, key: &Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// An HTTPS server on 127.0.0.1 with the certificate and key in `cert` and `key` (PEM files)
/// that answers every request with 200 and an empty body.
pub async fn https_server(cert: &Path, key: &Path) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert, key)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
