//! Authentication: bearer tokens for the admin user and for ServiceAccounts.
//!
//! The admin token is random per cluster (kept in the state directory). A ServiceAccount
//! token is `<namespace>.<name>.<signature>` prefixed with `sa.`, where the signature is a
//! SHA-256 over a cluster secret and the ServiceAccount's uid: it stays valid across restarts
//! and stops working when the ServiceAccount is deleted (or recreated with a new uid).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::resources::ResourceKey;
use crate::store::Store;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`admin`, `system:serviceaccount:ns:name`).
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The cluster administrator.
    pub fn admin() -> Self {
        UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// The user of a ServiceAccount.
    pub fn service_account(ns: &str, name: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// Whether RBAC is bypassed for this user.
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Token issuing and checking.
pub struct Tokens {
    admin: String,
    secret: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

impl Tokens {
    /// Fresh random secrets.
    pub fn generate() -> Self {
        Tokens { admin: random_hex(), secret: random_hex() }
    }

    /// Loads the secrets from `dir`, creating them on first use.
    pub fn load_or_generate(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("tokens");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some((admin, secret)) = text.trim().split_once('\n')
        {
            return Ok(Tokens { admin: admin.to_string(), secret: secret.to_string() });
        }
        let t = Self::generate();
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, format!("{}\n{}\n", t.admin, t.secret))?;
        Ok(t)
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    fn signature(&self, ns: &str, name: &str, uid: &str) -> String {
        let digest = Sha256::digest(format!("{}\0{ns}\0{name}\0{uid}", self.secret).as_bytes());
        hex(&digest[..20])
    }

    /// The token of a ServiceAccount with the given uid.
    pub fn service_account_token(&self, ns: &str, name: &str, uid: &str) -> String {
        format!("sa.{ns}.{name}.{}", self.signature(ns, name, uid))
    }

    /// Resolves a bearer token to a user.
    pub fn authenticate(&self, token: &str, store: &Store) -> Option<UserInfo> {
        if token == self.admin {
            return Some(UserInfo::admin());
        }
        let rest = token.strip_prefix("sa.")?;
        let (ns, rest) = rest.split_once('.')?;
        let (name, sig) = rest.rsplit_once('.')?;
        let sa = store.get(&ResourceKey::new("", "serviceaccounts"), ns, name)?;
        let v = sa.value();
        let uid = v.pointer("/metadata/uid")?.as_str()?;
        (self.signature(ns, name, uid) == sig).then(|| UserInfo::service_account(ns, name))
    }
}
