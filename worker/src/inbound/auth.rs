//! Authentication of inbound requests, one [`Authenticator`] per route.
//!
//! ```text
//!  signature  HMAC over the raw body (scheme from the hmac Credential)     → 401 on failure
//!  bearer     Authorization: Bearer <token>  (constant-time compare)       → 401
//!  basic      Authorization: Basic <user:password>  (constant-time)        → 401
//!  mtls       client certificate verified by the mtls Credential's CA      → 401 / 403
//!  none       nothing (the operator refuses it for restricted and pii data)
//! ```
//!
//! Secrets are read through [`SecretLookup`] on every request: credential files mounted from
//! Secrets are re-read when they change, so a rotation applies without a restart. A secret
//! that cannot be read is the worker's problem, not the sender's: 503, so senders retry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime, pem::PemObject};
use rustls::server::danger::ClientCertVerifier;
use secrecy::{ExposeSecret, SecretSlice};
use subtle::ConstantTimeEq;

use super::signature::{self, SignatureError, SignatureScheme, SigningKey, Verified};
use crate::config::{CredentialConfig, InboundAuthConfig, SecretRole};

/// Reads the current value of a credential's secret file.
pub trait SecretLookup: Send + Sync + 'static {
    /// The content of `role` of Credential `credential`. The error text names the credential
    /// and file, never content.
    fn secret(&self, credential: &str, role: SecretRole) -> Result<Arc<SecretSlice<u8>>, String>;
}

/// The TLS client certificate chain of the connection, end entity first.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Signature verification failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// No credentials presented.
    #[error("missing credentials: {0}")]
    Missing(&'static str),
    /// Credentials presented but wrong.
    #[error("invalid credentials")]
    Invalid,
    /// The client certificate is not signed by the trusted CA.
    #[error("client certificate not accepted: {0}")]
    CertificateRejected(String),
    /// The worker cannot read or use its own secret.
    #[error("credential unavailable: {0}")]
    Unavailable(String),
    /// The route's auth config is unusable.
    #[error("inbound auth config: {0}")]
    Config(String),
}

impl AuthError {
    /// Short category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            AuthError::Signature(SignatureError::Config(_)) => "credential_unusable",
            AuthError::Signature(s) => s.category(),
            AuthError::Missing(_) => "credentials_missing",
            AuthError::Invalid => "credentials_invalid",
            AuthError::CertificateRejected(_) => "client_certificate_rejected",
            AuthError::Unavailable(_) => "credential_unavailable",
            AuthError::Config(_) => "auth_config_invalid",
        }
    }

    /// Whether the worker (not the sender) is at fault.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self,
            AuthError::Unavailable(_)
                | AuthError::Config(_)
                | AuthError::Signature(SignatureError::Config(_))
        )
    }
}

/// The last secret seen and what was built from it (rebuilt when the file changes).
type Derived<T> = Mutex<Option<(Arc<SecretSlice<u8>>, Arc<T>)>>;

/// How one route authenticates.
pub enum Authenticator {
    /// No authentication.
    None,
    /// HMAC signature.
    Signature {
        /// Credential name.
        credential: String,
        /// Scheme.
        scheme: SignatureScheme,
        /// Accepted clock difference.
        tolerance_seconds: u32,
        /// Key decoded from the last secret seen (re-decoded when the file changes).
        cache: Derived<SigningKey>,
    },
    /// Bearer token.
    Bearer {
        /// Credential name.
        credential: String,
    },
    /// HTTP basic.
    Basic {
        /// Credential name.
        credential: String,
    },
    /// TLS client certificate.
    Mtls {
        /// Credential name.
        credential: String,
        /// Verifier built from the last CA seen.
        cache: Derived<dyn ClientCertVerifier>,
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("type", &self.type_name())
            .field("credential", &self.credential())
            .finish()
    }
}

impl Authenticator {
    /// Build from the route's auth config and the worker's credentials.
    pub fn from_config(
        auth: &InboundAuthConfig,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Result<Authenticator, AuthError> {
        let credential = || -> Result<(String, &CredentialConfig), AuthError> {
            let name = auth.credential.clone().ok_or_else(|| {
                AuthError::Config(format!("auth type {} needs a credential", auth.type_))
            })?;
            let config = credentials.get(&name).ok_or_else(|| {
                AuthError::Config(format!("credential {name:?} is not in the worker config"))
            })?;
            Ok((name, config))
        };
        let expect_type = |name: &str, config: &CredentialConfig, want: &str| {
            if config.type_ == want {
                Ok(())
            } else {
                Err(AuthError::Config(format!(
                    "auth type {} needs a {want} credential, {name:?} is {}",
                    auth.type_, config.type_
                )))
            }
        };
        Ok(match auth.type_.as_str() {
            "none" => Authenticator::None,
            "signature" => {
                let (name, config) = credential()?;
                expect_type(&name, config, "hmac")?;
                let hmac = config.hmac.as_ref();
                let scheme = SignatureScheme::from_config(
                    hmac.map(|h| h.scheme.as_str()).unwrap_or("standardWebhooks"),
                    hmac.and_then(|h| h.header.as_deref()),
                )?;
                Authenticator::Signature {
                    credential: name,
                    scheme,
                    tolerance_seconds: auth.tolerance_seconds.max(1),
                    cache: Mutex::new(None),
                }
            }
            "bearer" => {
                let (name, config) = credential()?;
                expect_type(&name, config, "bearer")?;
                Authenticator::Bearer { credential: name }
            }
            "basic" => {
                let (name, config) = credential()?;
                expect_type(&name, config, "basic")?;
                Authenticator::Basic { credential: name }
            }
            "mtls" => {
                let (name, config) = credential()?;
                expect_type(&name, config, "mtls")?;
                Authenticator::Mtls { credential: name, cache: Mutex::new(None) }
            }
            other => return Err(AuthError::Config(format!("unknown inbound auth type {other:?}"))),
        })
    }

    /// `signature`, `bearer`, `basic`, `mtls` or `none`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Authenticator::None => "none",
            Authenticator::Signature { .. } => "signature",
            Authenticator::Bearer { .. } => "bearer",
            Authenticator::Basic { .. } => "basic",
            Authenticator::Mtls { .. } => "mtls",
        }
    }

    /// The Credential used, if any.
    pub fn credential(&self) -> Option<&str> {
        match self {
            Authenticator::None => None,
            Authenticator::Signature { credential, .. }
            | Authenticator::Bearer { credential }
            | Authenticator::Basic { credential }
            | Authenticator::Mtls { credential, .. } => Some(credential),
        }
    }

    /// The secret files this route needs (checked at start and by `/readyz`).
    pub fn required_secrets(&self) -> Vec<(String, SecretRole)> {
        match self {
            Authenticator::None => vec![],
            Authenticator::Signature { credential, .. } => {
                vec![(credential.clone(), SecretRole::Secret)]
            }
            Authenticator::Bearer { credential } => vec![(credential.clone(), SecretRole::Token)],
            Authenticator::Basic { credential } => vec![
                (credential.clone(), SecretRole::Username),
                (credential.clone(), SecretRole::Password),
            ],
            Authenticator::Mtls { credential, .. } => {
                vec![(credential.clone(), SecretRole::CaCertificate)]
            }
        }
    }

    /// Whether this route needs TLS client certificates on the listener.
    pub fn needs_tls(&self) -> bool {
        matches!(self, Authenticator::Mtls { .. })
    }

    /// Authenticate one request on its raw bytes.
    pub fn authenticate(
        &self,
        secrets: &dyn SecretLookup,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<&PeerCertificates>,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let read = |credential: &str, role| {
            secrets.secret(credential, role).map_err(AuthError::Unavailable)
        };
        match self {
            Authenticator::None => Ok(Verified::default()),
            Authenticator::Signature { credential, scheme, tolerance_seconds, cache } => {
                let secret = read(credential, SecretRole::Secret)?;
                let key = {
                    let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
                    match cached.as_ref() {
                        Some((s, k)) if Arc::ptr_eq(s, &secret) => k.clone(),
                        _ => {
                            let key =
                                Arc::new(SigningKey::from_secret(scheme, secret.expose_secret())?);
                            *cached = Some((secret.clone(), key.clone()));
                            key
                        }
                    }
                };
                Ok(signature::verify(scheme, &key, headers, body, now, *tolerance_seconds)?)
            }
            Authenticator::Bearer { credential } => {
                let presented = authorization(headers, "Bearer")?;
                let token = read(credential, SecretRole::Token)?;
                if ct_eq(presented.as_bytes(), trim_newline(token.expose_secret())) {
                    Ok(Verified::default())
                } else {
                    Err(AuthError::Invalid)
                }
            }
            Authenticator::Basic { credential } => {
                let encoded = authorization(headers, "Basic")?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| AuthError::Invalid)?;
                let Some(colon) = decoded.iter().position(|b| *b == b':') else {
                    return Err(AuthError::Invalid);
                };
                let user = read(credential, SecretRole::Username)?;
                let password = read(credential, SecretRole::Password)?;
                // Both comparisons always run: no early exit tells which part was wrong.
                let user_ok = ct_eq(&decoded[..colon], trim_newline(user.expose_secret()));
                let pass_ok = ct_eq(&decoded[colon + 1..], trim_newline(password.expose_secret()));
                if user_ok & pass_ok { Ok(Verified::default()) } else { Err(AuthError::Invalid) }
            }
            Authenticator::Mtls { credential, cache } => {
                let Some(peer) = peer.filter(|p| !p.0.is_empty()) else {
                    return Err(AuthError::Missing("a TLS client certificate"));
                };
                let ca = read(credential, SecretRole::CaCertificate)?;
                let verifier = {
                    let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
                    match cached.as_ref() {
                        Some((s, v)) if Arc::ptr_eq(s, &ca) => v.clone(),
                        _ => {
                            let v = client_verifier(credential, ca.expose_secret())?;
                            *cached = Some((ca.clone(), v.clone()));
                            v
                        }
                    }
                };
                let now =
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
                verifier
                    .verify_client_cert(&peer.0[0], &peer.0[1..], now)
                    .map_err(|e| AuthError::CertificateRejected(e.to_string()))?;
                Ok(Verified::default())
            }
        }
    }
}

/// A verifier of client certificates against the PEM CA bundle `pem`.
pub fn client_verifier(
    credential: &str,
    pem: &[u8],
) -> Result<Arc<dyn ClientCertVerifier>, AuthError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| {
            AuthError::Unavailable(format!("credential {credential:?}: CA bundle is not PEM"))
        })?;
        roots.add(cert).map_err(|e| {
            AuthError::Unavailable(format!(
                "credential {credential:?}: CA certificate unusable: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(AuthError::Unavailable(format!(
            "credential {credential:?}: CA bundle is empty"
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| AuthError::Unavailable(format!("credential {credential:?}: {e}")))
}

fn authorization<'a>(headers: &'a HeaderMap, scheme: &'static str) -> Result<&'a str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing("Authorization header"))?;
    let (given, rest) = value.split_once(' ').ok_or(AuthError::Invalid)?;
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(AuthError::Missing(if scheme == "Bearer" {
            "Authorization: Bearer"
        } else {
            "Authorization: Basic"
        }));
    }
    Ok(rest.trim())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HmacConfig;

    struct Secrets(BTreeMap<(String, SecretRole), Vec<u8>>);
    impl SecretLookup for Secrets {
        fn secret(&self, c: &str, r: SecretRole) -> Result<Arc<SecretSlice<u8>>, String> {
            self.0
                .get(&(c.to_string(), r))
                .map(|v| Arc::new(v.clone().into()))
                .ok_or_else(|| format!("credential {c:?}: file {} missing", r.file_name()))
        }
    }

    fn creds(kind: &str) -> BTreeMap<String, CredentialConfig> {
        let mut m = BTreeMap::new();
        m.insert(
            "c".to_string(),
            CredentialConfig {
                type_: kind.into(),
                directory: "/nowhere".into(),
                api_key: None,
                oauth2: None,
                hmac: (kind == "hmac")
                    .then(|| HmacConfig { scheme: "github".into(), header: None }),
            },
        );
        m
    }

    fn auth(kind: &str) -> InboundAuthConfig {
        InboundAuthConfig {
            type_: kind.into(),
            credential: Some("c".into()),
            tolerance_seconds: 300,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_basic() {
        let secrets = Secrets(BTreeMap::from([
            (("c".into(), SecretRole::Token), b"canary-token-1\n".to_vec()),
            (("c".into(), SecretRole::Username), b"svc".to_vec()),
            (("c".into(), SecretRole::Password), b"canary-pass".to_vec()),
        ]));
        let bearer = Authenticator::from_config(&auth("bearer"), &creds("bearer")).unwrap();
        let ok = headers(&[("authorization", "Bearer canary-token-1")]);
        assert!(bearer.authenticate(&secrets, &ok, b"", None, 0).is_ok());
        let bad = headers(&[("authorization", "Bearer canary-token-2")]);
        assert_eq!(
            bearer.authenticate(&secrets, &bad, b"", None, 0).unwrap_err(),
            AuthError::Invalid
        );
        let none = HeaderMap::new();
        assert_eq!(
            bearer.authenticate(&secrets, &none, b"", None, 0).unwrap_err().category(),
            "credentials_missing"
        );

        let basic = Authenticator::from_config(&auth("basic"), &creds("basic")).unwrap();
        let good = base64::engine::general_purpose::STANDARD.encode("svc:canary-pass");
        let h = headers(&[("authorization", &format!("Basic {good}"))]);
        assert!(basic.authenticate(&secrets, &h, b"", None, 0).is_ok());
        let wrong = base64::engine::general_purpose::STANDARD.encode("svc:nope");
        let h = headers(&[("authorization", &format!("Basic {wrong}"))]);
        let err = basic.authenticate(&secrets, &h, b"", None, 0).unwrap_err();
        assert!(!format!("{err:?} {err}").contains("canary"));
    }

    #[test]
    fn signature_uses_the_credentials_scheme() {
        let secrets = Secrets(BTreeMap::from([(
            ("c".into(), SecretRole::Secret),
            b"It's a Secret to Everybody".to_vec(),
        )]));
        let a = Authenticator::from_config(&auth("signature"), &creds("hmac")).unwrap();
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert!(a.authenticate(&secrets, &h, b"Hello, World!", None, 0).is_ok());
    }

    #[test]
    fn missing_secret_is_server_side_and_config_mismatch_is_refused() {
        let a = Authenticator::from_config(&auth("bearer"), &creds("bearer")).unwrap();
        let err = a
            .authenticate(
                &Secrets(BTreeMap::new()),
                &headers(&[("authorization", "Bearer x")]),
                b"",
                None,
                0,
            )
            .unwrap_err();
        assert!(err.is_server_side());
        assert!(Authenticator::from_config(&auth("bearer"), &creds("basic")).is_err());
        assert!(Authenticator::from_config(&auth("kerberos"), &creds("basic")).is_err());
    }

    #[test]
    fn mtls_without_certificate_is_refused() {
        let a = Authenticator::from_config(&auth("mtls"), &creds("mtls")).unwrap();
        let err =
            a.authenticate(&Secrets(BTreeMap::new()), &HeaderMap::new(), b"", None, 0).unwrap_err();
        assert_eq!(err.category(), "credentials_missing");
    }
}
