//! One mounted Secret file, re-read when it changes.
//!
//! Kubernetes updates a mounted Secret by writing a new directory and swapping a symlink, so
//! a change shows as a new inode, size or modification time of the file the path points to.
//! Each read stats the path (cheap) and re-reads the content only when that stamp changed;
//! a rotation therefore reaches the next call without a restart.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use secrecy::SecretSlice;

use super::CredentialError;
use crate::config::SecretRole;

/// Largest credential file read (a certificate chain fits easily).
pub const MAX_SECRET_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

struct Loaded {
    stamp: Stamp,
    value: Arc<SecretSlice<u8>>,
}

/// A credential file of one role.
pub(crate) struct SecretFile {
    credential: String,
    role: SecretRole,
    path: PathBuf,
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("credential", &self.credential)
            .field("role", &self.role)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretFile {
    pub(crate) fn new(credential: &str, role: SecretRole, directory: &Path) -> SecretFile {
        SecretFile {
            credential: credential.to_string(),
            role,
            path: directory.join(role.file_name()),
            loaded: Mutex::new(None),
        }
    }

    /// The current content, and whether it changed since the previous read.
    pub(crate) fn read(&self) -> Result<(Arc<SecretSlice<u8>>, bool), CredentialError> {
        let metadata = std::fs::metadata(&self.path).map_err(|e| self.io_error(&e))?;
        if metadata.len() > MAX_SECRET_FILE_BYTES {
            return Err(CredentialError::Invalid {
                credential: self.credential.clone(),
                role: self.role.file_name(),
                reason: format!("file is larger than {MAX_SECRET_FILE_BYTES} bytes"),
            });
        }
        let stamp = Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = loaded.as_ref()
            && current.stamp == stamp
        {
            return Ok((current.value.clone(), false));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| self.io_error(&e))?;
        let value: Arc<SecretSlice<u8>> = Arc::new(bytes.into());
        let changed = loaded.is_some();
        *loaded = Some(Loaded { stamp, value: value.clone() });
        Ok((value, changed))
    }

    fn io_error(&self, error: &std::io::Error) -> CredentialError {
        if error.kind() == std::io::ErrorKind::NotFound {
            CredentialError::Missing {
                credential: self.credential.clone(),
                role: self.role.file_name(),
                path: self.path.display().to_string(),
            }
        } else {
            CredentialError::Unreadable {
                credential: self.credential.clone(),
                role: self.role.file_name(),
                reason: error.kind().to_string(),
            }
        }
    }
}
