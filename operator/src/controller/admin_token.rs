//! The workers' admin token Secret: created when it is missing, kept as it is otherwise.
//!
//! ```text
//!  reconcile ─▶ ensure_admin_token ─▶ children's cache, else GET (metadata only) <name>-worker-admin
//!                                        ├─ exists ─▶ keep it (never rotated by a reconcile)
//!                                        └─ 404 ───▶ 32 random bytes (OS CSPRNG), hex
//!                                                    ─▶ create (owned by the Integration)
//!  Secret deleted ─▶ watch (owned, managed-by label) ─▶ reconcile ─▶ created again, new value
//!                    ─▶ the kubelet updates the mounted file; the worker re-reads it per request
//! ```
//!
//! Every other child is server-side applied on every reconcile. This one must not be: its
//! value is random, and applying a fresh one would rotate the token under every reader. So it
//! is created with a plain create (409 from a concurrent create is fine) and then left alone;
//! garbage collection removes it with the Integration. Its value never reaches a log, an
//! Event, a status or an error message.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use secrecy::SecretString;

use super::{Context, Error};
use crate::api::Integration;
use crate::render::{FIELD_MANAGER, admin_token_secret_name, render_admin_token_secret};

/// What [`ensure_admin_token`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminToken {
    /// The Secret exists; it was left as it is.
    Kept,
    /// The Secret was missing and has been created with a new token.
    Created,
}

/// Make sure the Integration's workers have their admin token Secret: create it with a
/// random token when it does not exist; never change an existing one.
pub async fn ensure_admin_token(
    ctx: &Context,
    integration: &Integration,
) -> Result<AdminToken, Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let name = admin_token_secret_name(&integration.name_any());
    let uid = integration.uid().unwrap_or_default();
    if ctx.children.controlled_by("Secret", &namespace, &name, &uid) {
        return Ok(AdminToken::Kept);
    }
    // Not (yet) in the children's cache: ask the API server before creating.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if secrets.get_metadata_opt(&name).await?.is_some() {
        return Ok(AdminToken::Kept);
    }
    ctx.require_leader()?;
    let secret = render_admin_token_secret(integration, &random_token()?);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    tracing::debug!(%namespace, %name, "api write: create admin token Secret");
    match secrets.create(&params, &secret).await {
        Ok(_) => {
            tracing::info!(%namespace, secret = %name, "created the workers' admin token Secret");
            Ok(AdminToken::Created)
        }
        // Created by a concurrent reconcile in between: theirs is kept.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(AdminToken::Kept),
        Err(error) => Err(error.into()),
    }
}

/// 256 random bits from the operating system, hex-encoded.
fn random_token() -> Result<SecretString, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for the admin token: {e}")))?;
    let token = hex::encode(bytes);
    bytes.fill(0);
    Ok(SecretString::from(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.expose_secret().len(), 64);
        assert!(a.expose_secret().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
