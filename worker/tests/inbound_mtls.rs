//! mTLS on the inbound listener, with certificates made by rcgen: a client certificate from
//! the Credential's CA is accepted, one from another CA is refused, none is refused, and a CA
//! rotated in the Secret applies to the next request without a restart.

mod runtime_support;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use runtime_support::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use switchboard_worker::config::WorkerConfig;
use switchboard_worker::credentials::CredentialStore;
use switchboard_worker::inbound::{InboundState, router, routes_for, tls};
use switchboard_worker::queue::{Queue, QueueSettings};
use switchboard_worker::runtime::delivery::QueueSink;
use switchboard_worker::runtime::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    Pki { ca_pem: issuer.pem(), issuer }
}

fn leaf(pki: &Pki, names: &[&str], client: bool) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn send(
    addr: std::net::SocketAddr,
    server_ca: &str,
    client: Option<&(String, String)>,
) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server_ca.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let body = r#"{"event":"badge.scanned"}"#;
    let request = format!(
        "POST /hook HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn client_certificates_are_verified_per_route_against_the_current_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusted = ca("trusted-ca");
    let other = ca("other-ca");
    let (server_cert, server_key) = leaf(&trusted, &["localhost"], false);
    let good_client = leaf(&trusted, &["badge-reader"], true);
    let foreign_client = leaf(&other, &["intruder"], true);

    let dir = tempfile::tempdir().unwrap();
    let cred = credential_dir(
        dir.path(),
        "peer",
        &[
            ("certificate", server_cert.as_bytes()),
            ("privateKey", server_key.as_bytes()),
            ("caCertificate", trusted.ca_pem.as_bytes()),
        ],
    );
    let yaml = format!(
        "{}source:\n  type: webhook\n  path: /hook\n  auth: {{type: mtls, credential: peer, toleranceSeconds: 300}}\n  maxBodyBytes: 4096\ncredentials:\n  peer: {{type: mtls, directory: {}}}\n",
        config_head("durable"),
        cred.display()
    );
    let config = WorkerConfig::from_yaml(&yaml).unwrap();
    let store = Arc::new(CredentialStore::new(&config.credentials).unwrap());
    let queue = Queue::open(&dir.path().join("data"), QueueSettings::default()).unwrap();
    let state = InboundState::new(
        store.clone(),
        Arc::new(QueueSink { queue: queue.clone(), fast: None }),
        Arc::new(Metrics::for_config(&config)),
        queue.counters().clone(),
    );
    let app =
        router(routes_for(config.source.as_ref().unwrap(), &config.credentials).unwrap(), state);
    let certificate = store.get("peer").unwrap().client_certificate().unwrap().clone();
    let server_config = tls::server_config(certificate).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(tls::serve(
        listener,
        server_config,
        app,
        stop_rx,
        std::time::Duration::from_secs(1),
    ));

    assert_eq!(send(addr, &trusted.ca_pem, Some(&good_client)).await, 202);
    assert_eq!(send(addr, &trusted.ca_pem, Some(&foreign_client)).await, 403);
    assert_eq!(send(addr, &trusted.ca_pem, None).await, 401);
    assert_eq!(queue.pending_after(0, 10).unwrap().len(), 1);

    // Rotate the CA in the mounted Secret: the other CA's clients are now the trusted ones.
    std::fs::write(cred.join("caCertificate"), other.ca_pem.as_bytes()).unwrap();
    assert_eq!(send(addr, &trusted.ca_pem, Some(&foreign_client)).await, 202);
    assert_eq!(send(addr, &trusted.ca_pem, Some(&good_client)).await, 403);
}
