//! Real mail peers for the email and health-check tests, on loopback:
//!
//! - Dovecot (Debian's `dovecot-imapd`, installed by `scripts/test-peers`), run as an
//!   unprivileged process (`nobody` when the tests run as root) with a generated config:
//!   IMAPS only, an rcgen certificate, passwd-file authentication, Maildir in a temp dir;
//! - aiosmtpd (PyPI, in `.test-peers/venv`) through `tests/peers/smtp_server.py`: implicit
//!   TLS, required STARTTLS or plaintext, AUTH required, scripted 451s and 550s;
//! - a small PKI made with rcgen, whose certificates can expire when a test wants them to
//!   (`tls_support`, shared with the operator's end-to-end tests).
//!
//! Mailboxes are seeded and inspected with IMAP APPEND/FETCH by async-imap, as any client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;

#[path = "../tls_support/mod.rs"]
pub mod tls_support;
pub use tls_support::Pki;
#[path = "../runtime_support/mod.rs"]
pub mod runtime_support;
use runtime_support::free_port;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A tool of `scripts/test-peers`, or a panic that says how to get it.
pub fn peers_python() -> PathBuf {
    let root = std::env::var_os("SWITCHBOARD_TEST_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".test-peers"));
    let python = root.join("venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "aiosmtpd is missing at {}: run ./scripts/test-peers (the README's test command does)",
        python.display()
    );
    python
}

fn id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A Dovecot IMAPS server with one user.
pub struct Dovecot {
    child: std::process::Child,
    pub port: u16,
    pub user: String,
    pub password: String,
    dir: tempfile::TempDir,
    roots: Arc<rustls::RootCertStore>,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    /// Start Dovecot with a certificate from `pki` valid for `days`.
    pub async fn start(pki: &Pki, user: &str, password: &str, days: i64) -> Dovecot {
        let dovecot = Path::new("/usr/sbin/dovecot");
        assert!(
            dovecot.exists(),
            "dovecot is missing: run ./scripts/test-peers (the README's test command does), which installs Debian's dovecot-imapd"
        );
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let (cert, key) = pki.server("imap", days);
        std::fs::copy(&cert, base.join("cert.pem")).unwrap();
        std::fs::copy(&key, base.join("key.pem")).unwrap();
        std::fs::write(base.join("passwd"), format!("{user}:{{PLAIN}}{password}::::::\n")).unwrap();
        let root = id(&["-u"]) == "0";
        let (run_user, run_group) = if root {
            (id(&["-un", "nobody"]), id(&["-gn", "nobody"]))
        } else {
            (id(&["-un"]), id(&["-gn"]))
        };
        let port = free_port();
        let b = base.display();
        let config = format!(
            r#"base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/dovecot.log
default_internal_user = {run_user}
default_internal_group = {run_group}
default_login_user = {run_user}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{b}/cert.pem
ssl_key = <{b}/key.pem
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {b}/passwd
}}
userdb {{
  driver = static
  args = uid={run_user} gid={run_group} home={b}/mail/%u
}}
mail_location = maildir:{b}/mail/%u/Maildir
first_valid_uid = 0
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"#
        );
        std::fs::write(base.join("dovecot.conf"), config).unwrap();
        let mut command = if root {
            // Root would make Dovecot drop privileges into its own accounts; run it as
            // `nobody` instead, owning its temp dir.
            let uid: u32 = id(&["-u", "nobody"]).parse().unwrap();
            let gid: u32 = id(&["-g", "nobody"]).parse().unwrap();
            for entry in walk(base) {
                std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
            }
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid", &gid.to_string(), "--clear-groups"]).arg(dovecot);
            c
        } else {
            Command::new(dovecot)
        };
        command.arg("-F").arg("-c").arg(base.join("dovecot.conf"));
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let child = command.spawn().expect("start dovecot");
        let server = Dovecot {
            child,
            port,
            user: user.into(),
            password: password.into(),
            dir,
            roots: pki.roots(),
        };
        for _ in 0..200 {
            if let Ok(session) = server.try_session().await {
                drop(session);
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "dovecot did not come up; log:\n{}",
            std::fs::read_to_string(server.dir.path().join("dovecot.log")).unwrap_or_default()
        );
    }

    /// `imaps://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("imaps://127.0.0.1:{}", self.port)
    }

    async fn try_session(
        &self,
    ) -> Result<async_imap::Session<tokio_rustls::client::TlsStream<TcpStream>>, String> {
        let tcp = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .map_err(|e| e.to_string())?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = async_imap::Client::new(tls);
        client.read_response().await.map_err(|e| e.to_string())?;
        client.login(&self.user, &self.password).await.map_err(|(e, _)| e.to_string())
    }

    /// A logged-in client session.
    pub async fn session(&self) -> async_imap::Session<tokio_rustls::client::TlsStream<TcpStream>> {
        self.try_session().await.expect("test IMAP session")
    }

    /// APPEND raw messages to `mailbox` (created when missing).
    pub async fn append(&self, mailbox: &str, messages: &[Vec<u8>]) {
        let mut session = self.session().await;
        let _ = session.create(mailbox).await;
        for raw in messages {
            session.append(mailbox, None, None, raw).await.unwrap();
        }
        session.logout().await.unwrap();
    }

    /// Every message of `mailbox`: (UID, flags, raw bytes); empty when it does not exist.
    pub async fn messages(&self, mailbox: &str) -> Vec<(u32, Vec<String>, Vec<u8>)> {
        let mut session = self.session().await;
        let Ok(selected) = session.examine(mailbox).await else { return vec![] };
        let mut out = Vec::new();
        if selected.exists > 0 {
            let stream = session.fetch("1:*", "(UID FLAGS BODY.PEEK[])").await.unwrap();
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let fetch = item.unwrap();
                let flags = fetch.flags().map(|f| format!("{f:?}")).collect();
                out.push((fetch.uid.unwrap(), flags, fetch.body().unwrap_or_default().to_vec()));
            }
        }
        session.logout().await.unwrap();
        out
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// An aiosmtpd server.
pub struct SmtpPeer {
    _child: tokio::process::Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl SmtpPeer {
    /// Start in `mode` (`implicit`, `starttls` or `plain`) with a certificate from `pki`;
    /// the first `transient` DATA commands get 451.
    pub async fn start(
        mode: &str,
        pki: &Pki,
        user: &str,
        password: &str,
        transient: u32,
    ) -> SmtpPeer {
        use tokio::io::AsyncBufReadExt;
        let python = peers_python();
        let out = tempfile::tempdir().unwrap();
        let (cert, key) = pki.server(&format!("smtp-{mode}"), 90);
        let password_file = out.path().join(".password");
        std::fs::write(&password_file, password).unwrap();
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_server.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args(["--port", &port.to_string(), "--mode", mode, "--user", user])
            .arg("--password-file")
            .arg(&password_file)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--out")
            .arg(out.path())
            .args(["--transient", &transient.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = lines.next_line().await.unwrap();
        assert_eq!(ready.as_deref(), Some("READY"), "the SMTP peer did not start");
        SmtpPeer { _child: child, port, out }
    }

    /// Every DATA attempt, in order.
    pub fn attempts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.path().join("attempts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Accepted messages, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<u32> = std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".eml")?.parse().ok())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| std::fs::read(self.out.path().join(format!("{n}.eml"))).unwrap())
            .collect()
    }
}
