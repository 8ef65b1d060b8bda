//! The IMAP side of the email source: one session with a mailbox, over async-imap.
//!
//! ```text
//!  imaps://host:993 ──▶ SSRF guard (O1) ─▶ TCP ─▶ TLS (rustls/ring; system roots or caFile)
//!  imap://host:143  ──▶ SSRF guard ─────▶ TCP (plaintext: the Integration allowed it)
//!     greeting ─▶ LOGIN (basic Credential) ─▶ CAPABILITY ─▶ SELECT mailbox (UIDVALIDITY)
//!     UID SEARCH UNSEEN UNDELETED ─▶ oldest first, at most maxMessages
//!     per message: UID FETCH (RFC822.SIZE BODY.PEEK[]<0.limit>)      (\Seen is not set)
//!     after handling: UID STORE +FLAGS.SILENT (\Seen)
//!                   | UID MOVE folder  (MOVE), or UID COPY + UID STORE \Deleted + EXPUNGE
//!                   | UID STORE \Deleted + EXPUNGE
//!     LOGOUT
//! ```
//!
//! Every command has a timeout (D6). Messages are addressed by UID, never by sequence
//! number, so moving one message does not change which message the next command means.
//! With UIDPLUS, expunging is limited to the UIDs this run flagged (`UID EXPUNGE`);
//! without it, a plain `EXPUNGE` also removes messages other clients flagged `\Deleted`.
//! Server texts in errors are sanitized and have the credential's values redacted.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::outbound::egress::EgressPolicy;
use crate::outbound::http::{redaction_forms, sanitize_excerpt};
use crate::outbound::tcp::{ConnectError, PresentedCertificate, connect, handshake, roots};

/// Timeout of connecting (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of each IMAP command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the mailbox could not be read or updated. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    /// The server URL or mailbox name is unusable.
    #[error("IMAP settings are invalid: {0}")]
    Config(String),
    /// No connection.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused the session (greeting `BYE`, or no greeting).
    #[error("IMAP server {server} refused the session: {message}")]
    Greeting {
        /// `host:port`.
        server: String,
        /// What it said.
        message: String,
    },
    /// LOGIN failed.
    #[error("IMAP login to {server} failed: {message}")]
    Login {
        /// `host:port`.
        server: String,
        /// What the server said.
        message: String,
    },
    /// A command failed.
    #[error("IMAP {command} failed: {message}")]
    Command {
        /// The command (`SELECT INBOX`, `UID MOVE`, ...), without arguments that could be secret.
        command: String,
        /// What the server said.
        message: String,
    },
    /// A command got no answer in time.
    #[error("IMAP {command}: no answer within {} s", COMMAND_TIMEOUT.as_secs())]
    Timeout {
        /// The command.
        command: String,
    },
}

impl ImapError {
    /// Short category for metrics, run reports and health checks.
    pub fn category(&self) -> &'static str {
        match self {
            ImapError::Config(_) => "config",
            ImapError::Connect(e) => e.category(),
            ImapError::Greeting { .. } => "imap_greeting",
            ImapError::Login { .. } => "imap_login",
            ImapError::Command { .. } => "imap_command",
            ImapError::Timeout { .. } => "timeout",
        }
    }
}

/// An IMAP server from `imaps://host:993` or `imap://host:143`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapServer {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether TLS is used (imaps).
    pub tls: bool,
}

impl ImapServer {
    /// Parse `imaps://host[:port]` (or `imap://`, which the operator renders only when the
    /// Integration allows plaintext).
    pub fn parse(server: &str) -> Result<ImapServer, ImapError> {
        let invalid = |reason: &str| ImapError::Config(format!("server {server:?}: {reason}"));
        let url = url::Url::parse(server).map_err(|_| invalid("not a URL"))?;
        let (tls, default_port) = match url.scheme() {
            "imaps" => (true, 993),
            "imap" => (false, 143),
            _ => return Err(invalid("the scheme must be imaps or imap")),
        };
        let (host, port) = super::server_address(&url, default_port).map_err(invalid)?;
        Ok(ImapServer { host, port, tls })
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        crate::outbound::tcp::authority(&self.host, self.port)
    }
}

/// A mailbox name as an IMAP quoted string; CR, LF and NUL are refused.
pub fn quote_mailbox(name: &str) -> Result<String, ImapError> {
    if name.is_empty() || name.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(ImapError::Config(format!("mailbox name {name:?} is not usable")));
    }
    Ok(format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// The connection under the session: TLS or (when allowed) plaintext.
#[derive(Debug)]
pub enum Connection {
    /// `imap://`.
    Plain(TcpStream),
    /// `imaps://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connect (TLS when `imaps`) and read the greeting. Also returns the certificate the server
/// presented, for health checks.
pub async fn open(
    server: &ImapServer,
    ca_file: Option<&str>,
    egress: &EgressPolicy,
    timeout: Duration,
) -> Result<(async_imap::Client<Connection>, Option<PresentedCertificate>), ImapError> {
    let tcp = connect(egress, &server.host, server.port, timeout).await?;
    let (connection, presented) = if server.tls {
        let roots = roots(ca_file)?;
        let (result, presented) = tokio::time::timeout(
            timeout,
            handshake(tcp, roots, &server.host, server.port, &[b"imap"]),
        )
        .await
        .map_err(|_| ConnectError::Timeout {
            host: server.host.clone(),
            port: server.port,
            millis: timeout.as_millis(),
        })?;
        (Connection::Tls(Box::new(result?)), presented)
    } else {
        (Connection::Plain(tcp), None)
    };
    let mut client = async_imap::Client::new(connection);
    let greeting = tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(|_| ImapError::Timeout { command: "greeting".into() })?;
    let refused = |message: String| ImapError::Greeting { server: server.authority(), message };
    match greeting {
        Ok(Some(response)) => {
            use async_imap::imap_proto::{Response, Status};
            if let Response::Data { status: Status::Bye | Status::No | Status::Bad, outcome } =
                response.parsed()
            {
                let text = outcome.information.as_deref().unwrap_or_default();
                return Err(refused(sanitize_excerpt(text.as_bytes(), 300, &[])));
            }
        }
        Ok(None) => return Err(refused("the connection closed before the greeting".into())),
        Err(e) => return Err(refused(e.kind().to_string())),
    }
    Ok((client, presented))
}

/// A logged-in session with one selected mailbox.
pub struct MailboxSession {
    session: async_imap::Session<Connection>,
    redact: Vec<String>,
    /// `UIDVALIDITY` of the selected mailbox.
    pub uid_validity: u32,
    can_move: bool,
    uidplus: bool,
}

impl std::fmt::Debug for MailboxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSession")
            .field("uid_validity", &self.uid_validity)
            .finish_non_exhaustive()
    }
}

/// One fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// UID.
    pub uid: u32,
    /// Size on the server.
    pub size: u64,
    /// The first bytes (at most the fetch limit).
    pub raw: Vec<u8>,
}

async fn timed<T>(
    command: &str,
    future: impl std::future::Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(COMMAND_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| Err(ImapError::Timeout { command: command.to_string() }))
}

impl MailboxSession {
    /// Log in with `user` and `password`, then select `mailbox`.
    pub async fn login(
        client: async_imap::Client<Connection>,
        server: &ImapServer,
        user: &SecretString,
        password: &SecretString,
        mailbox: &str,
    ) -> Result<MailboxSession, ImapError> {
        let mut redact = redaction_forms(password.expose_secret());
        redact.extend(redaction_forms(user.expose_secret()));
        let login = tokio::time::timeout(
            COMMAND_TIMEOUT,
            client.login(user.expose_secret(), password.expose_secret()),
        )
        .await
        .map_err(|_| ImapError::Timeout { command: "LOGIN".into() })?;
        let session = match login {
            Ok(session) => session,
            Err((error, _)) => {
                return Err(ImapError::Login {
                    server: server.authority(),
                    message: describe(&error, &redact),
                });
            }
        };
        let mut this =
            MailboxSession { session, redact, uid_validity: 0, can_move: false, uidplus: false };
        let capabilities = timed("CAPABILITY", async {
            this.session.capabilities().await.map_err(|e| this.command_error("CAPABILITY", &e))
        })
        .await?;
        this.can_move = capabilities.has_str("MOVE");
        this.uidplus = capabilities.has_str("UIDPLUS");
        let quoted = quote_mailbox(mailbox)?;
        let selected = timed("SELECT", async {
            // async-imap quotes the name itself; `quoted` only checked it.
            let _ = &quoted;
            this.session
                .select(mailbox)
                .await
                .map_err(|e| this.command_error(&format!("SELECT {mailbox}"), &e))
        })
        .await?;
        this.uid_validity = selected.uid_validity.unwrap_or(0);
        Ok(this)
    }

    fn command_error(&self, command: &str, error: &async_imap::error::Error) -> ImapError {
        ImapError::Command { command: command.to_string(), message: describe(error, &self.redact) }
    }

    /// UIDs of unseen, undeleted messages, oldest first, at most `limit`.
    pub async fn unseen(&mut self, limit: usize) -> Result<Vec<u32>, ImapError> {
        let found = timed("UID SEARCH", async {
            self.session
                .uid_search("UNSEEN UNDELETED")
                .await
                .map_err(|e| self.command_error("UID SEARCH", &e))
        })
        .await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        uids.truncate(limit);
        Ok(uids)
    }

    /// The first `limit` bytes of message `uid` and its size; `None` when it is gone. The
    /// `\Seen` flag is not set (`BODY.PEEK`).
    pub async fn fetch(
        &mut self,
        uid: u32,
        limit: usize,
    ) -> Result<Option<FetchedMessage>, ImapError> {
        let query = format!("(UID RFC822.SIZE BODY.PEEK[]<0.{limit}>)");
        timed("UID FETCH", async {
            let redact = self.redact.clone();
            let error = |e: async_imap::error::Error| ImapError::Command {
                command: "UID FETCH".into(),
                message: describe(&e, &redact),
            };
            let mut stream =
                self.session.uid_fetch(uid.to_string(), &query).await.map_err(error)?;
            let mut found = None;
            while let Some(item) = stream.next().await {
                let fetch = item.map_err(error)?;
                if fetch.uid == Some(uid) && found.is_none() {
                    found = Some(FetchedMessage {
                        uid,
                        size: fetch.size.map(u64::from).unwrap_or_default(),
                        raw: fetch.body().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
            }
            Ok(found)
        })
        .await
    }

    async fn store(&mut self, uid: u32, flags: &str) -> Result<(), ImapError> {
        let command = format!("UID STORE {flags}");
        timed(&command, async {
            let redact = self.redact.clone();
            let error = |e: async_imap::error::Error| ImapError::Command {
                command: command.clone(),
                message: describe(&e, &redact),
            };
            let mut stream = self.session.uid_store(uid.to_string(), flags).await.map_err(error)?;
            while let Some(item) = stream.next().await {
                item.map_err(error)?;
            }
            Ok(())
        })
        .await
    }

    async fn expunge(&mut self, uid: u32) -> Result<(), ImapError> {
        let uidplus = self.uidplus;
        timed("EXPUNGE", async {
            let redact = self.redact.clone();
            let error = |e: async_imap::error::Error| ImapError::Command {
                command: "EXPUNGE".into(),
                message: describe(&e, &redact),
            };
            if uidplus {
                let stream = self.session.uid_expunge(uid.to_string()).await.map_err(error)?;
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    item.map_err(error)?;
                }
            } else {
                let stream = self.session.expunge().await.map_err(error)?;
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    item.map_err(error)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Set `\Seen`.
    pub async fn mark_seen(&mut self, uid: u32) -> Result<(), ImapError> {
        self.store(uid, "+FLAGS.SILENT (\\Seen)").await
    }

    /// Move to `folder`: `UID MOVE` when the server has MOVE, otherwise copy, flag
    /// `\Deleted` and expunge. The moved copy is marked `\Seen` first.
    pub async fn move_to(&mut self, uid: u32, folder: &str) -> Result<(), ImapError> {
        quote_mailbox(folder)?;
        self.mark_seen(uid).await?;
        if self.can_move {
            return timed("UID MOVE", async {
                self.session
                    .uid_mv(uid.to_string(), folder)
                    .await
                    .map_err(|e| self.command_error(&format!("UID MOVE {folder}"), &e))
            })
            .await;
        }
        timed("UID COPY", async {
            self.session
                .uid_copy(uid.to_string(), folder)
                .await
                .map_err(|e| self.command_error(&format!("UID COPY {folder}"), &e))
        })
        .await?;
        self.delete(uid).await
    }

    /// Flag `\Deleted` and expunge.
    pub async fn delete(&mut self, uid: u32) -> Result<(), ImapError> {
        self.store(uid, "+FLAGS.SILENT (\\Deleted)").await?;
        self.expunge(uid).await
    }

    /// Create `folder` unless it exists.
    pub async fn ensure_folder(&mut self, folder: &str) -> Result<bool, ImapError> {
        let quoted = quote_mailbox(folder)?;
        let exists = timed("LIST", async {
            let redact = self.redact.clone();
            let error = |e: async_imap::error::Error| ImapError::Command {
                command: "LIST".into(),
                message: describe(&e, &redact),
            };
            let mut stream = self.session.list(Some(""), Some(&quoted)).await.map_err(error)?;
            let mut found = false;
            while let Some(item) = stream.next().await {
                found |= item.map_err(error)?.name() == folder;
            }
            Ok(found)
        })
        .await?;
        if exists {
            return Ok(false);
        }
        timed("CREATE", async {
            self.session
                .create(folder)
                .await
                .map_err(|e| self.command_error(&format!("CREATE {folder}"), &e))
        })
        .await?;
        Ok(true)
    }

    /// LOGOUT (errors ignored: the work is done).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.session.logout()).await;
    }
}

/// An async-imap error as one safe line.
fn describe(error: &async_imap::error::Error, redact: &[String]) -> String {
    use async_imap::error::Error;
    let text = match error {
        Error::Io(e) => format!("connection error: {}", e.kind()),
        Error::Bad(m) => format!("BAD {m}"),
        Error::No(m) => format!("NO {m}"),
        Error::ConnectionLost => "connection lost".into(),
        Error::Parse(_) => "unparseable server response".into(),
        Error::Validate(_) => "a value holds a character IMAP cannot carry".into(),
        Error::Append => "APPEND failed".into(),
        other => other.to_string(),
    };
    sanitize_excerpt(text.as_bytes(), 300, redact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_mailbox_names() {
        let s = ImapServer::parse("imaps://mail.example.com").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("mail.example.com", 993, true));
        let s = ImapServer::parse("imap://127.0.0.1:1143").unwrap();
        assert_eq!((s.port, s.tls), (1143, false));
        assert_eq!(s.authority(), "127.0.0.1:1143");
        assert!(ImapServer::parse("https://mail.example.com").is_err());
        assert!(ImapServer::parse("imaps://user:pw@mail.example.com").is_err());
        assert_eq!(quote_mailbox("Processed").unwrap(), "\"Processed\"");
        assert_eq!(quote_mailbox("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quote_mailbox("x\r\nA001 LOGOUT").is_err());
    }

    #[test]
    fn errors_never_echo_a_password() {
        let error = async_imap::error::Error::No("[AUTHENTICATIONFAILED] bad pw hunter22".into());
        let text = describe(&error, &redaction_forms("hunter22"));
        assert!(!text.contains("hunter22"), "{text}");
    }
}
