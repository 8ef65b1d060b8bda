//! mTLS client certificates from mounted files, rotated without restart (RELIABILITY C2).
//!
//! [`ClientCertificate`] is the rustls client-certificate resolver of every HTTP client that
//! presents this credential. rustls asks it during each new handshake; it stats the
//! certificate and key files and re-reads them when either changed, so a rotated Secret
//! reaches the next new connection. Connections already open keep the certificate they were
//! made with. A pair that does not load (mid-rotation, key not matching the certificate)
//! leaves the last good pair in use and is reported by [`ClientCertificate::current`].

use std::sync::{Arc, Mutex};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use secrecy::{ExposeSecret, SecretSlice};

use super::{CredentialError, secret_file::SecretFile};
use crate::config::SecretRole;

struct Loaded {
    certificate: Arc<SecretSlice<u8>>,
    private_key: Arc<SecretSlice<u8>>,
    key: Arc<CertifiedKey>,
}

/// The client certificate of one `mtls` credential.
pub struct ClientCertificate {
    credential: String,
    certificate: SecretFile,
    private_key: SecretFile,
    ca_certificate: SecretFile,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    pub(crate) fn new(
        credential: &str,
        certificate: SecretFile,
        private_key: SecretFile,
        ca_certificate: SecretFile,
    ) -> ClientCertificate {
        ClientCertificate {
            credential: credential.to_string(),
            certificate,
            private_key,
            ca_certificate,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            loaded: Mutex::new(None),
        }
    }

    pub(crate) fn role_file(&self, role: SecretRole) -> Option<&SecretFile> {
        match role {
            SecretRole::Certificate => Some(&self.certificate),
            SecretRole::PrivateKey => Some(&self.private_key),
            SecretRole::CaCertificate => Some(&self.ca_certificate),
            _ => None,
        }
    }

    /// Credential name.
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// The certificate chain and key as they are now on disk (re-read if changed).
    pub fn current(&self) -> Result<Arc<CertifiedKey>, CredentialError> {
        let (certificate, _) = self.certificate.read()?;
        let (private_key, _) = self.private_key.read()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = loaded.as_ref()
            && Arc::ptr_eq(&current.certificate, &certificate)
            && Arc::ptr_eq(&current.private_key, &private_key)
        {
            return Ok(current.key.clone());
        }
        let key = Arc::new(self.build(certificate.expose_secret(), private_key.expose_secret())?);
        if loaded.is_some() {
            tracing::info!(credential = %self.credential, "client certificate reloaded");
        }
        *loaded = Some(Loaded { certificate, private_key, key: key.clone() });
        Ok(key)
    }

    /// The optional CA bundle of the credential (PEM), which then verifies the server.
    pub fn ca_bundle(&self) -> Result<Option<Vec<CertificateDer<'static>>>, CredentialError> {
        match self.ca_certificate.read() {
            Ok((bytes, _)) => parse_certificates(
                &self.credential,
                SecretRole::CaCertificate,
                bytes.expose_secret(),
            )
            .map(Some),
            Err(CredentialError::Missing { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn build(
        &self,
        certificate: &[u8],
        private_key: &[u8],
    ) -> Result<CertifiedKey, CredentialError> {
        let chain = parse_certificates(&self.credential, SecretRole::Certificate, certificate)?;
        let invalid_key = |reason: String| CredentialError::Invalid {
            credential: self.credential.clone(),
            role: SecretRole::PrivateKey.file_name(),
            reason,
        };
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|_| invalid_key("no PEM private key found".into()))?;
        CertifiedKey::from_der(chain, key, &self.provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                invalid_key("the private key does not match the certificate".into())
            }
            _ => invalid_key("the private key cannot be used".into()),
        })
    }
}

/// Every certificate of a PEM bundle; an error if there is none.
pub(crate) fn parse_certificates(
    credential: &str,
    role: SecretRole,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let invalid = |reason: &str| CredentialError::Invalid {
        credential: credential.to_string(),
        role: role.file_name(),
        reason: reason.to_string(),
    };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid("not a PEM certificate bundle"))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate found"));
    }
    Ok(certificates)
}

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        match self.current() {
            Ok(key) => Some(key),
            Err(error) => {
                let last_good = self
                    .loaded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|l| l.key.clone());
                tracing::warn!(credential = %self.credential, error = %error,
                    keeping_previous = last_good.is_some(), "client certificate cannot be loaded");
                last_good
            }
        }
    }

    fn has_certs(&self) -> bool {
        true
    }
}
