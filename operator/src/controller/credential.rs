//! Credential: read its Secret → check the keys (and certificates) → status with a content
//! hash, `lastRotated` and consumers.
//!
//! Only a SHA-256 over the keys the Credential reads leaves this module; no value is logged,
//! put in an Event, a condition or an error. A changed hash is a rotation: `lastRotated` moves,
//! and the Integrations using the Credential re-render with the new hash on their pod
//! templates, which rolls exactly their workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::conditions::Desired;
use super::index::Key;
use super::object::Unchecked;
use super::status::write_status;
use super::{Context, Error};
use crate::api::{
    Consumer, Credential, CredentialStatus, CredentialType, MAX_LISTED_CONSUMERS, SecretRole,
    condition, parse_duration,
};
use crate::render::{credential_content_hash, secret_value};

const KIND: &str = "Credential";

/// Client certificates expiring within this window make the Credential report
/// `CertificateExpiringSoon`.
pub const CERTIFICATE_WARNING: Duration = Duration::from_secs(21 * 86400);

/// The consumers a status lists (the first [`MAX_LISTED_CONSUMERS`] by kind and name) and
/// how many there are.
pub fn listed(consumers: std::collections::BTreeSet<Key>) -> (Vec<Consumer>, i64) {
    let count = consumers.len() as i64;
    let listed = consumers
        .into_iter()
        .take(MAX_LISTED_CONSUMERS)
        .map(|k| Consumer { kind: k.kind.into(), name: k.name })
        .collect();
    (listed, count)
}

/// Reconcile one Credential.
pub async fn reconcile(
    object: Arc<Unchecked<Credential>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics.observe(
        KIND,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok() {
        ctx.succeeded(&super::object_key(object.as_ref()));
    }
    result
}

/// What the Secret says about a Credential.
#[derive(Debug, PartialEq)]
pub struct Check {
    /// The Ready condition.
    pub ready: Desired,
    /// Content hash, when every required key is there.
    pub hash: Option<String>,
    /// Certificate expiry (mtls).
    pub not_after: Option<Time>,
}

/// Check a Credential against its Secret (pure: the Secret is passed in).
pub fn check(
    credential: &Credential,
    secret: Option<&Secret>,
    now: k8s_openapi::jiff::Timestamp,
) -> Check {
    let spec = &credential.spec;
    let namespace = credential.namespace().unwrap_or_default();
    let Some(secret) = secret else {
        let ready = Desired::no(
            condition::READY,
            "SecretNotFound",
            format!("Secret {:?} not found in namespace {namespace}", spec.secret_ref.name),
        );
        return Check { ready, hash: None, not_after: None };
    };
    let missing: Vec<String> = spec
        .secret_keys()
        .into_iter()
        .filter(|(_, key, required)| {
            *required && secret_value(secret, key).is_none_or(|v| v.is_empty())
        })
        .map(|(_, key, _)| key)
        .collect();
    if !missing.is_empty() {
        let ready = Desired::no(
            condition::READY,
            "KeyMissing",
            format!(
                "Secret {:?} has no (or an empty) key {} needed for type {}",
                spec.secret_ref.name,
                missing.join(", "),
                spec.type_.as_str()
            ),
        );
        return Check { ready, hash: None, not_after: None };
    }
    let hash = credential_content_hash(spec, secret);
    let mut not_after = None;
    let mut ready = Desired::yes(
        condition::READY,
        "Valid",
        format!("Secret {:?} holds every key", spec.secret_ref.name),
    );
    if spec.type_ == CredentialType::Mtls {
        let key_of = |role: SecretRole| {
            spec.secret_keys()
                .into_iter()
                .find(|(r, _, _)| *r == role)
                .map(|(_, k, _)| k)
                .unwrap_or_default()
        };
        match certificate_expiry(
            &secret_value(secret, &key_of(SecretRole::Certificate)).unwrap_or_default(),
        ) {
            Err(why) => {
                ready = Desired::no(
                    condition::READY,
                    "InvalidCertificate",
                    format!(
                        "{} in Secret {:?}: {why}",
                        key_of(SecretRole::Certificate),
                        spec.secret_ref.name
                    ),
                );
            }
            Ok(expiry) => {
                not_after = Some(Time(expiry));
                let key = secret_value(secret, &key_of(SecretRole::PrivateKey)).unwrap_or_default();
                let remaining = expiry.as_second() - now.as_second();
                if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
                    ready = Desired::no(
                        condition::READY,
                        "InvalidCertificate",
                        format!(
                            "{} in Secret {:?} is not a PEM private key",
                            key_of(SecretRole::PrivateKey),
                            spec.secret_ref.name
                        ),
                    );
                } else if remaining <= 0 {
                    ready = Desired::no(
                        condition::READY,
                        "CertificateExpired",
                        format!("the client certificate expired at {expiry}"),
                    );
                } else if remaining < CERTIFICATE_WARNING.as_secs() as i64 {
                    ready = Desired::yes(
                        condition::READY,
                        "CertificateExpiringSoon",
                        format!(
                            "the client certificate expires at {expiry}, in {} day(s); rotate it",
                            remaining / 86400
                        ),
                    );
                }
            }
        }
    }
    Check { ready, hash, not_after }
}

/// The `notAfter` of the first certificate in a PEM bundle.
pub fn certificate_expiry(pem: &[u8]) -> Result<k8s_openapi::jiff::Timestamp, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|_| "not a PEM certificate".to_string())?;
    let certificate =
        block.parse_x509().map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let seconds = certificate.validity().not_after.timestamp();
    k8s_openapi::jiff::Timestamp::from_second(seconds).map_err(|e| e.to_string())
}

async fn reconcile_inner(object: &Unchecked<Credential>, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let credential = match object.typed() {
        Ok(credential) => credential,
        Err(message) => {
            let status = Desired::no(
                condition::READY,
                "InvalidSpec",
                format!("the spec cannot be read: {message}"),
            );
            write_status::<_, CredentialStatus>(ctx, object, vec![status], |_| {}).await?;
            return Err(Error::InvalidSpec(message));
        }
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets.get_opt(&credential.spec.secret_ref.name).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let Check { mut ready, hash, not_after } = check(&credential, secret.as_ref(), now);

    let old = credential.status.clone().unwrap_or_default();
    let last_rotated = match (&hash, &old.content_hash) {
        (Some(new), Some(previous)) if new == previous => old.last_rotated.clone(),
        (Some(_), _) => Some(Time(now)),
        (None, _) => old.last_rotated.clone(),
    };
    if ready.status
        && ready.reason == "Valid"
        && let (Some(rotation), Some(rotated)) = (&credential.spec.rotation, &last_rotated)
        && let Ok(max_age) = parse_duration(&rotation.max_age)
    {
        let age = now.as_second() - rotated.0.as_second();
        if age > max_age.as_secs() as i64 {
            ready = Desired::yes(
                condition::READY,
                "RotationOverdue",
                format!(
                    "the Secret was last rotated {} day(s) ago, longer than rotation.maxAge {}",
                    age / 86400,
                    rotation.max_age
                ),
            );
        }
    }
    let (consumers, consumer_count) =
        listed(ctx.index.consumers_transitive(&Key::new(KIND, &namespace, &credential.name_any())));
    let requeue = match &not_after {
        Some(expiry) => {
            Duration::from_secs((expiry.0.as_second() - now.as_second()).clamp(60, 3600) as u64)
        }
        None => Duration::from_secs(3600),
    };
    write_status(ctx, object, vec![ready], move |status: &mut CredentialStatus| {
        status.content_hash = hash.clone();
        status.last_rotated = last_rotated.clone();
        status.certificate_not_after = not_after.clone();
        status.consumers = consumers.clone();
        status.consumer_count = Some(consumer_count);
    })
    .await?;
    Ok(Action::requeue(requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_lists_the_first_consumers_and_counts_them_all() {
        let keys: std::collections::BTreeSet<Key> =
            (0..250).map(|i| Key::new("Integration", "ns", &format!("i-{i:03}"))).collect();
        let (listed_now, count) = listed(keys);
        assert_eq!(count, 250);
        assert_eq!(listed_now.len(), MAX_LISTED_CONSUMERS);
        assert_eq!(listed_now[0].name, "i-000");
        assert_eq!(listed_now[99].name, "i-099");
    }
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn credential(yaml: &str) -> Credential {
        yaml_serde::from_str(yaml).unwrap()
    }

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    const BASIC: &str = "apiVersion: switchboard.dev/v1alpha1\nkind: Credential\nmetadata: {name: db, namespace: ns}\nspec: {type: basic, secretRef: {name: db-secret}}";

    #[test]
    fn a_missing_secret_or_key_is_named_and_no_value_is_quoted() {
        let c = credential(BASIC);
        let now = k8s_openapi::jiff::Timestamp::now();
        let missing = check(&c, None, now);
        assert_eq!(missing.ready.reason, "SecretNotFound");
        assert_eq!(missing.ready.message, "Secret \"db-secret\" not found in namespace ns");
        let partial = check(&c, Some(&secret(&[("username", b"CANARY-USER-VALUE")])), now);
        assert_eq!(partial.ready.reason, "KeyMissing");
        assert!(partial.ready.message.contains("key password needed for type basic"));
        assert!(!partial.ready.message.contains("CANARY"));
        let full =
            check(&c, Some(&secret(&[("username", b"u"), ("password", b"CANARY-PASSWORD")])), now);
        assert!(full.ready.status);
        assert_eq!(full.hash.as_ref().unwrap().len(), 64);
        let rotated = check(&c, Some(&secret(&[("username", b"u"), ("password", b"other")])), now);
        assert_ne!(rotated.hash, full.hash, "a rotation changes the hash");
    }

    #[test]
    fn client_certificates_are_parsed_and_their_expiry_reported() {
        let c = credential(
            "apiVersion: switchboard.dev/v1alpha1\nkind: Credential\nmetadata: {name: m, namespace: ns}\nspec: {type: mtls, secretRef: {name: s}}",
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        let expiry = chrono::Utc::now().date_naive() + chrono::Days::new(5);
        use chrono::Datelike;
        params.not_after =
            rcgen::date_time_ymd(expiry.year(), expiry.month() as u8, expiry.day() as u8);
        let not_after = expiry.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        let cert = params.self_signed(&key).unwrap();
        let s = secret(&[
            ("tls.crt", cert.pem().as_bytes()),
            ("tls.key", key.serialize_pem().as_bytes()),
        ]);
        let result = check(&c, Some(&s), k8s_openapi::jiff::Timestamp::now());
        assert_eq!(result.ready.reason, "CertificateExpiringSoon", "{:?}", result.ready);
        assert!(result.ready.status);
        assert_eq!(result.not_after.unwrap().0.as_second(), not_after);
        let garbage = secret(&[
            ("tls.crt", b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"),
            ("tls.key", b"k"),
        ]);
        assert_eq!(
            check(&c, Some(&garbage), k8s_openapi::jiff::Timestamp::now()).ready.reason,
            "InvalidCertificate"
        );
    }
}
