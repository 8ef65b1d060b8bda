//! mTLS client certificates against a rustls server that requires one (RELIABILITY C2):
//! the certificate from the mounted files is presented, a rotation of the files reaches the
//! next new connection, and broken files give clear credential errors. Certificates are made
//! with rcgen for each test.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{credential, outbound, read_request, rest_call, vars, write_secret};
use switchboard_worker::delivery::{DeliveryOutcome, FailureKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "switchboard test CA");
        Pki { ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A leaf certificate and key (PEM) for `names` (DNS names or IP addresses).
    fn leaf(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            });
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS server requiring a client certificate from `pki`'s CA; records the common name
/// of each client certificate it saw, with `@` and the SNI name when the client sent one,
/// one request per connection.
async fn mtls_server(
    pki: &Pki,
    server_names: &[&str],
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert_pem, key_pem) = pki.leaf("server", server_names);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap(),
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let session = tls.get_ref().1;
                let mut name = session
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(common_name)
                    .unwrap_or_default();
                // The name the client sent in SNI, if any (none for an address).
                if let Some(sni) = session.server_name() {
                    name = format!("{name}@{sni}");
                }
                if read_request(&mut tls).await.is_some() {
                    recorded.lock().unwrap().push(name);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, seen)
}

/// The common name of a DER certificate (the tests' certificates have short ASCII names
/// after the `2.5.4.3` attribute).
fn common_name(der: &CertificateDer<'_>) -> String {
    let bytes = der.as_ref();
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let Some(at) = bytes.windows(oid.len()).rposition(|w| w == oid) else { return String::new() };
    let len = bytes[at + oid.len() + 1] as usize;
    let start = at + oid.len() + 2;
    String::from_utf8_lossy(&bytes[start..start + len]).into_owned()
}

fn write_pair(dir: &Path, pair: &(String, String)) {
    write_secret(dir, "certificate", pair.0.as_bytes());
    write_secret(dir, "privateKey", pair.1.as_bytes());
}

fn setup(
    pki: &Pki,
    url: &str,
) -> (
    tempfile::TempDir,
    switchboard_worker::config::OutboundCall,
    BTreeMap<String, switchboard_worker::config::CredentialConfig>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pki.ca.pem()).unwrap();
    let certs = dir.path().join("client");
    std::fs::create_dir(&certs).unwrap();
    let mut call = rest_call(url, "/events");
    call.endpoint.credential = Some("client-cert".into());
    call.endpoint.ca_file = Some(ca_file.display().to_string());
    let credentials = BTreeMap::from([("client-cert".to_string(), credential("mtls", &certs))]);
    (dir, call, credentials)
}

#[tokio::test]
async fn the_mounted_certificate_is_presented_and_rotation_reaches_new_connections() {
    let pki = Pki::new();
    let (addr, seen) = mtls_server(&pki, &["127.0.0.1"]).await;
    let (dir, call, credentials) = setup(&pki, &format!("https://127.0.0.1:{}", addr.port()));
    let certs = dir.path().join("client");
    write_pair(&certs, &pki.leaf("client-a", &["client-a.example"]));
    let outbound = outbound(credentials);

    for _ in 0..2 {
        let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
        assert!(outcome.is_delivered(), "{outcome:?}");
    }
    write_pair(&certs, &pki.leaf("client-b", &["client-b.example"]));
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert!(outcome.is_delivered(), "{outcome:?}");
    assert_eq!(*seen.lock().unwrap(), vec!["client-a", "client-a", "client-b"]);
}

#[tokio::test]
async fn a_server_name_override_verifies_a_certificate_for_another_name() {
    let pki = Pki::new();
    let (addr, seen) = mtls_server(&pki, &["api.internal.example"]).await;
    let (dir, mut call, credentials) = setup(&pki, &format!("https://127.0.0.1:{}", addr.port()));
    write_pair(&dir.path().join("client"), &pki.leaf("client-a", &["client-a.example"]));
    let outbound = outbound(credentials);

    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert_eq!(outcome.failure().map(|f| f.kind), Some(FailureKind::Tls), "{outcome:?}");
    call.endpoint.server_name = Some("api.internal.example".into());
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert!(outcome.is_delivered(), "{outcome:?}");
    // The override is also what the server is asked for by SNI (the URL's host is an address).
    assert_eq!(*seen.lock().unwrap(), vec!["client-a@api.internal.example"]);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_rejected_by_the_server() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let (addr, seen) = mtls_server(&pki, &["127.0.0.1"]).await;
    let (dir, call, credentials) = setup(&pki, &format!("https://127.0.0.1:{}", addr.port()));
    write_pair(&dir.path().join("client"), &stranger.leaf("intruder", &["intruder.example"]));
    let outcome = outbound(credentials).deliver(&call, &vars(&[]), "d").await;
    assert_eq!(outcome.failure().map(|f| f.kind), Some(FailureKind::Tls), "{outcome:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn missing_and_mismatched_files_are_clear_credential_errors() {
    let pki = Pki::new();
    let (addr, seen) = mtls_server(&pki, &["127.0.0.1"]).await;
    let (dir, call, credentials) = setup(&pki, &format!("https://127.0.0.1:{}", addr.port()));
    let certs = dir.path().join("client");
    let outbound = outbound(credentials);

    let a = pki.leaf("client-a", &["a.example"]);
    write_secret(&certs, "certificate", a.0.as_bytes());
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.kind, FailureKind::Credential);
    assert!(
        failure.message.contains("\"client-cert\"") && failure.message.contains("privateKey"),
        "{failure}"
    );

    let b = pki.leaf("client-b", &["b.example"]);
    write_secret(&certs, "privateKey", b.1.as_bytes());
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Credential);
    assert!(failure.message.contains("does not match"), "{failure}");
    assert!(!failure.message.contains("PRIVATE KEY"));
    assert!(!format!("{outcome:?}").contains(&b.1[40..80]));
    assert!(seen.lock().unwrap().is_empty());

    write_secret(&certs, "privateKey", a.1.as_bytes());
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    assert_eq!(*seen.lock().unwrap(), vec!["client-a"]);
}
