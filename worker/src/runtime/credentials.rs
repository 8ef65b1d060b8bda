//! Credential files as the inbound side reads them: `directory/role-file` of each Credential
//! in the worker config, read at use so that a rotated Secret applies without a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretSlice;

use crate::config::{CredentialConfig, SecretRole};
use crate::inbound::auth::SecretLookup;

/// Largest credential file read.
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 1024 * 1024;

/// Credential directories by Credential name.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    directories: BTreeMap<String, PathBuf>,
}

impl CredentialFiles {
    /// From the worker config's credentials.
    pub fn new(credentials: &BTreeMap<String, CredentialConfig>) -> CredentialFiles {
        CredentialFiles {
            directories: credentials
                .iter()
                .map(|(name, c)| (name.clone(), PathBuf::from(&c.directory)))
                .collect(),
        }
    }

    /// Path of one role's file.
    pub fn path(&self, credential: &str, role: SecretRole) -> Option<PathBuf> {
        self.directories.get(credential).map(|d| d.join(role.file_name()))
    }
}

impl SecretLookup for CredentialFiles {
    fn secret(&self, credential: &str, role: SecretRole) -> Result<Arc<SecretSlice<u8>>, String> {
        let path = self
            .path(credential, role)
            .ok_or_else(|| format!("credential {credential:?} is not in the worker config"))?;
        let meta = std::fs::metadata(&path).map_err(|e| {
            format!("credential {credential:?}: file {} unreadable ({})", path.display(), e.kind())
        })?;
        if meta.len() > MAX_CREDENTIAL_FILE_BYTES {
            return Err(format!(
                "credential {credential:?}: file {} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes",
                path.display()
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            format!("credential {credential:?}: file {} unreadable ({})", path.display(), e.kind())
        })?;
        Ok(Arc::new(bytes.into()))
    }
}
