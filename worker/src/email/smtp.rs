//! The email target: one message per delivery, sent over SMTP with lettre.
//!
//! ```text
//!  variables ──▶ subject template (header value: CR, LF and controls refused, O2)
//!            ──▶ body template (plain text)
//!            ──▶ Message { From, To, Subject, Message-ID (stable per delivery, D7),
//!                          Auto-Submitted: auto-generated, text/plain body }
//!  attempt n: resolve host through the SSRF guard (O1) ─▶ connect to that address
//!             smtps://  implicit TLS        smtp://  STARTTLS required
//!             (smtp:// with insecureAllowPlaintext: STARTTLS when offered, else plaintext)
//!             AUTH PLAIN/LOGIN with the basic Credential (re-read on rotation) ─▶ send
//!  classify (D2): 2xx delivered · 4xx, timeouts, connection errors retried with backoff (D3)
//!                 · 5xx, TLS failures, STARTTLS missing, bad templates permanent
//! ```
//!
//! The Message-ID is derived from the delivery id and the target name, so every retry of a
//! delivery (and a later run that delivers the same inbound email again) carries the same
//! id, which receiving systems use to drop duplicates. Error messages are sanitized and have
//! the credential's values redacted; lettre's own logging is not compiled in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use crate::config::{EmailTargetConfig, RetryConfig, SecretRole, SmtpConfig, VariableConfig};
use crate::delivery::{Outbound, backoff_delay};
use crate::outbound::egress::EgressPolicy;
use crate::outbound::http::{redaction_forms, sanitize_excerpt};
use crate::outbound::tcp::resolve;
use crate::outbound::template::{Encoding, Template, TemplateError, header_forbidden};
use crate::queue::Attempt;

/// Timeout of each SMTP command (connect, greeting, EHLO, AUTH, DATA, ...).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a whole attempt (D6).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest accepted subject after rendering, in characters.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Longest accepted body after rendering, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://`: STARTTLS, refused when the server does not offer it.
    StartTlsRequired,
    /// `smtp://` with `insecureAllowPlaintext`: STARTTLS when offered, plaintext otherwise.
    Opportunistic,
}

/// An SMTP server from `smtps://host:465` or `smtp://host:587`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpServer {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protection.
    pub security: Security,
}

impl SmtpServer {
    /// Parse the server of an SMTP config.
    pub fn parse(config: &SmtpConfig) -> Result<SmtpServer, SmtpError> {
        let invalid = |reason: &str| SmtpError::Server {
            server: config.server.clone(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(&config.server).map_err(|_| invalid("not a URL"))?;
        let (security, default_port) = match url.scheme() {
            "smtps" => (Security::ImplicitTls, 465),
            "smtp" if config.insecure_allow_plaintext => (Security::Opportunistic, 587),
            "smtp" => (Security::StartTlsRequired, 587),
            _ => return Err(invalid("the scheme must be smtps or smtp")),
        };
        let (host, port) = super::server_address(&url, default_port).map_err(invalid)?;
        Ok(SmtpServer { host, port, security })
    }

    /// `host:port`, for check names and messages.
    pub fn authority(&self) -> String {
        crate::outbound::tcp::authority(&self.host, self.port)
    }
}

/// Why an email target cannot be set up. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// The server URL is unusable.
    #[error("SMTP server {server:?}: {reason}")]
    Server {
        /// The URL as configured.
        server: String,
        /// What is wrong.
        reason: String,
    },
    /// A sender or recipient is not an address.
    #[error("{field} {value:?} is not an email address")]
    Address {
        /// `from` or `to`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A template does not parse.
    #[error("{part} template: {reason}")]
    Template {
        /// `subject` or `body`.
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The credential is unusable.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// The TLS settings are unusable.
    #[error("TLS settings are invalid: {0}")]
    Tls(String),
}

impl SmtpError {
    /// Short category for metrics and readiness reasons.
    pub fn category(&self) -> &'static str {
        match self {
            SmtpError::Server { .. } | SmtpError::Address { .. } => "config",
            SmtpError::Template { .. } => "template",
            SmtpError::Credential(e) => e.category(),
            SmtpError::Tls(_) => "tls",
        }
    }
}

/// One failed attempt: bounded, single-line, redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpFailure {
    /// Short category (`smtp_451`, `timeout`, `connect`, `tls`, `egress`, `template`, ...).
    pub reason: String,
    /// The SMTP reply code, when the server answered.
    pub code: Option<u16>,
    /// What happened.
    pub message: String,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
}

impl SmtpFailure {
    fn permanent(reason: &str, message: impl Into<String>) -> SmtpFailure {
        SmtpFailure { reason: reason.into(), code: None, message: message.into(), retryable: false }
    }

    fn retryable(reason: &str, message: impl Into<String>) -> SmtpFailure {
        SmtpFailure { reason: reason.into(), code: None, message: message.into(), retryable: true }
    }
}

impl std::fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The result of one delivery, retries included.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailOutcome {
    /// Whether the server accepted the message.
    pub delivered: bool,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// `retries_exhausted` or the permanent failure's reason; empty when delivered.
    pub reason: String,
    /// The last failure's message.
    pub message: String,
    /// The Message-ID sent.
    pub message_id: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject, one line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

fn template_variables(source: &str) -> Vec<VariableConfig> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        names.push(VariableConfig {
            name: after[..end].to_string(),
            default: None,
            max_length: u32::MAX,
        });
        rest = &after[end..];
    }
    names
}

fn render(
    source: &str,
    encoding: Encoding,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let declared: Vec<VariableConfig> = vars
        .keys()
        .map(|name| VariableConfig { name: name.clone(), default: None, max_length: u32::MAX })
        .collect();
    let template = Template::parse(source, encoding, &declared).map_err(|e| match e {
        // A placeholder whose variable this event does not carry.
        TemplateError::Undeclared { name } => TemplateError::Missing { name },
        other => other,
    })?;
    let fixed = BTreeMap::new();
    template.render(&crate::outbound::template::Variables::new(&declared, &fixed, vars))
}

/// System roots as DER (lettre takes certificates, not a rustls root store), read once.
fn system_root_certificates() -> &'static [Vec<u8>] {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect()
    })
}

/// TLS parameters verifying `host` against the CA file, or the system roots.
pub fn tls_parameters(host: &str, ca_file: Option<&str>) -> Result<TlsParameters, SmtpError> {
    let mut builder =
        TlsParameters::builder(host.to_string()).certificate_store(CertificateStore::None);
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                SmtpError::Tls(format!("CA file {path} cannot be read: {}", e.kind()))
            })?;
            let certificate = Certificate::from_pem(&pem)
                .map_err(|_| SmtpError::Tls(format!("CA file {path} is not a PEM bundle")))?;
            builder = builder.add_root_certificate(certificate);
        }
        None => {
            for der in system_root_certificates() {
                if let Ok(certificate) = Certificate::from_der(der.clone()) {
                    builder = builder.add_root_certificate(certificate);
                }
            }
        }
    }
    builder.build_rustls().map_err(|e| SmtpError::Tls(e.to_string()))
}

/// The transport of one (address, credential) pair; rebuilt when either changes.
struct Cached {
    key: (IpAddr, String),
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// One email target.
pub struct EmailTarget {
    name: String,
    server: SmtpServer,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    body: String,
    credential: Option<String>,
    ca_file: Option<String>,
    outbound: Outbound,
    egress: Arc<EgressPolicy>,
    retry: RetryConfig,
    transport: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTarget")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl EmailTarget {
    /// Check and keep a target's settings. Credentials are read from `outbound`'s store at
    /// each attempt (rotation without restart); retries follow `retry`.
    pub fn new(
        name: &str,
        config: &EmailTargetConfig,
        outbound: Outbound,
        egress: Arc<EgressPolicy>,
        retry: RetryConfig,
    ) -> Result<EmailTarget, SmtpError> {
        let server = SmtpServer::parse(&config.smtp)?;
        let from = Mailbox::from_str(&config.from)
            .map_err(|_| SmtpError::Address { field: "from", value: config.from.clone() })?;
        let to = config
            .to
            .iter()
            .map(|t| {
                Mailbox::from_str(t)
                    .map_err(|_| SmtpError::Address { field: "to", value: t.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(SmtpError::Address { field: "to", value: String::new() });
        }
        if let Some(what) = header_forbidden(&config.subject) {
            return Err(SmtpError::Template {
                part: "subject",
                reason: format!("the subject holds a {what}"),
            });
        }
        for (part, source, encoding) in [
            ("subject", &config.subject, Encoding::HeaderValue),
            ("body", &config.body, Encoding::Text),
        ] {
            Template::parse(source, encoding, &template_variables(source))
                .map_err(|e| SmtpError::Template { part, reason: e.to_string() })?;
        }
        if let Some(credential) = &config.smtp.credential {
            let found = outbound.credentials().get(credential)?;
            if found.type_name() != "basic" {
                return Err(SmtpError::Credential(
                    crate::credentials::CredentialError::WrongType {
                        credential: credential.clone(),
                        found: found.type_name(),
                        expected: "basic",
                    },
                ));
            }
        }
        if let Some(path) = &config.smtp.ca_file {
            tls_parameters(&server.host, Some(path))?;
        }
        Ok(EmailTarget {
            name: name.to_string(),
            server,
            from,
            to,
            subject: config.subject.clone(),
            body: config.body.clone(),
            credential: config.smtp.credential.clone(),
            ca_file: config.smtp.ca_file.clone(),
            outbound,
            egress,
            retry,
            transport: tokio::sync::Mutex::new(None),
        })
    }

    /// Target name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server.
    pub fn server(&self) -> &SmtpServer {
        &self.server
    }

    /// The Message-ID of a delivery: the same for every attempt of it.
    pub fn message_id(&self, delivery_id: &str) -> String {
        let digest = sha2::Sha256::digest(format!("{delivery_id}\u{0}{}", self.name).as_bytes());
        let domain = self.from.email.domain();
        format!("<{}.switchboard@{domain}>", hex::encode(&digest[..16]))
    }

    /// Subject and body with `vars`.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<RenderedEmail, TemplateError> {
        let subject = render(&self.subject, Encoding::HeaderValue, vars)?;
        let body = render(&self.body, Encoding::Text, vars)?;
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(TemplateError::RenderedTooLarge { limit: MAX_SUBJECT_CHARS });
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(TemplateError::RenderedTooLarge { limit: MAX_BODY_BYTES });
        }
        Ok(RenderedEmail { subject, body })
    }

    fn build(&self, rendered: RenderedEmail, message_id: &str) -> Result<Message, SmtpFailure> {
        let mut builder = Message::builder()
            .message_id(Some(message_id.to_string()))
            .from(self.from.clone())
            .subject(rendered.subject)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(rendered.body)
            .map_err(|e| SmtpFailure::permanent("invalid_message", e.to_string()))
    }

    /// The user name and password, when a credential is configured.
    fn credentials(&self) -> Result<Option<(SecretString, SecretString)>, SmtpFailure> {
        let Some(name) = &self.credential else { return Ok(None) };
        let read =
            || -> Result<(SecretString, SecretString), crate::credentials::CredentialError> {
                let credential = self.outbound.credentials().get(name)?;
                Ok((credential.text(SecretRole::Username)?, credential.text(SecretRole::Password)?))
            };
        read().map(Some).map_err(|e| SmtpFailure::permanent("credential", e.to_string()))
    }

    async fn address(&self) -> Result<IpAddr, SmtpFailure> {
        let addresses =
            resolve(&self.egress, &self.server.host, self.server.port).await.map_err(|e| {
                let failure = if e.category() == "dns" {
                    SmtpFailure::retryable
                } else {
                    SmtpFailure::permanent
                };
                failure(e.category(), e.to_string())
            })?;
        Ok(addresses[0].ip())
    }

    fn tls(&self) -> Result<Tls, SmtpFailure> {
        let parameters = tls_parameters(&self.server.host, self.ca_file.as_deref())
            .map_err(|e| SmtpFailure::permanent("tls", e.to_string()))?;
        Ok(match self.server.security {
            Security::ImplicitTls => Tls::Wrapper(parameters),
            Security::StartTlsRequired => Tls::Required(parameters),
            Security::Opportunistic => Tls::Opportunistic(parameters),
        })
    }

    async fn transport(
        &self,
        credentials: Option<&(SecretString, SecretString)>,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpFailure> {
        let address = self.address().await?;
        let fingerprint = credentials
            .map(|(user, password)| {
                hex::encode(sha2::Sha256::digest(
                    format!("{}\u{0}{}", user.expose_secret(), password.expose_secret()).as_bytes(),
                ))
            })
            .unwrap_or_default();
        let key = (address, fingerprint);
        let mut cached = self.transport.lock().await;
        if let Some(c) = cached.as_ref()
            && c.key == key
        {
            return Ok(c.transport.clone());
        }
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.to_string())
                .port(self.server.port)
                .tls(self.tls()?)
                .timeout(Some(COMMAND_TIMEOUT));
        if let Some((user, password)) = credentials {
            builder = builder
                .credentials(Credentials::new(
                    user.expose_secret().to_string(),
                    password.expose_secret().to_string(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let transport = builder.build();
        *cached = Some(Cached { key, transport: transport.clone() });
        Ok(transport)
    }

    /// Drop the cached transport (after a failure, so the next attempt connects afresh).
    async fn forget_transport(&self) {
        *self.transport.lock().await = None;
    }

    async fn attempt(&self, message: &Message) -> Result<(), SmtpFailure> {
        let credentials = self.credentials()?;
        let redact: Vec<String> = credentials
            .as_ref()
            .map(|(user, password)| {
                let mut forms = redaction_forms(password.expose_secret());
                forms.extend(redaction_forms(user.expose_secret()));
                forms
            })
            .unwrap_or_default();
        let transport = self.transport(credentials.as_ref()).await?;
        match transport.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                self.forget_transport().await;
                Err(classify(&error, &redact))
            }
        }
    }

    /// Render, then send with retries; `delivery_id` is the same on every retry.
    pub async fn deliver(
        &self,
        vars: &BTreeMap<String, String>,
        delivery_id: &str,
    ) -> EmailOutcome {
        let message_id = self.message_id(delivery_id);
        let failed = |reason: &str, message: String, attempts: Vec<Attempt>| EmailOutcome {
            delivered: false,
            attempts,
            reason: reason.to_string(),
            message: crate::queue::sanitize_message(&message),
            message_id: message_id.clone(),
        };
        let message = match self.render(vars) {
            Ok(rendered) => match self.build(rendered, &message_id) {
                Ok(message) => message,
                Err(f) => return failed(&f.reason, f.message, vec![]),
            },
            Err(e) => return failed(e.category(), e.to_string(), vec![]),
        };
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempts = Vec::new();
        for number in 1..=max_attempts {
            let at: DateTime<Utc> = Utc::now();
            let started = Instant::now();
            let result = tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&message))
                .await
                .unwrap_or_else(|_| {
                    Err(SmtpFailure::retryable(
                        "timeout",
                        format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
                    ))
                });
            let duration_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(()) => {
                    attempts.push(Attempt {
                        target: self.name.clone(),
                        at,
                        status: None,
                        reason: "delivered".into(),
                        message: String::new(),
                        duration_ms,
                    });
                    return EmailOutcome {
                        delivered: true,
                        attempts,
                        reason: String::new(),
                        message: String::new(),
                        message_id,
                    };
                }
                Err(failure) => {
                    attempts.push(Attempt {
                        target: self.name.clone(),
                        at,
                        status: None,
                        reason: failure.reason.clone(),
                        message: failure.message.clone(),
                        duration_ms,
                    });
                    if !failure.retryable {
                        return failed(&failure.reason, failure.message, attempts);
                    }
                    if number == max_attempts {
                        return failed("retries_exhausted", failure.to_string(), attempts);
                    }
                    let delay = backoff_delay(&self.retry, number, None);
                    tracing::info!(target_name = %self.name, attempt = number, error = %failure,
                        delay_ms = delay.as_millis() as u64, "email attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Reachability for health checks: connect (TLS as configured), EHLO, NOOP, QUIT. Returns
    /// the server certificate (DER) when the connection is encrypted.
    pub async fn check(&self) -> Result<Option<Vec<u8>>, SmtpFailure> {
        let address = self.address().await?;
        let hello = ClientId::default();
        let implicit = match self.server.security {
            Security::ImplicitTls => Some(
                tls_parameters(&self.server.host, self.ca_file.as_deref())
                    .map_err(|e| SmtpFailure::permanent("tls", e.to_string()))?,
            ),
            _ => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (address, self.server.port),
            Some(COMMAND_TIMEOUT),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| classify(&e, &[]))?;
        let wants_tls = self.server.security == Security::StartTlsRequired
            || (self.server.security == Security::Opportunistic && connection.can_starttls());
        if wants_tls && !connection.is_encrypted() {
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(SmtpFailure::permanent(
                    "starttls_missing",
                    format!("{} does not offer STARTTLS", self.server.authority()),
                ));
            }
            let parameters = tls_parameters(&self.server.host, self.ca_file.as_deref())
                .map_err(|e| SmtpFailure::permanent("tls", e.to_string()))?;
            connection.starttls(parameters, &hello).await.map_err(|e| classify(&e, &[]))?;
        }
        let certificate =
            if connection.is_encrypted() { connection.peer_certificate().ok() } else { None };
        let alive = connection.test_connected().await;
        let _ = connection.quit().await;
        if !alive {
            return Err(SmtpFailure::retryable("noop_failed", "the server did not answer NOOP"));
        }
        Ok(certificate)
    }
}

/// Classify a lettre error (D2): 4xx and connection trouble retry, 5xx and TLS do not.
fn classify(error: &lettre::transport::smtp::Error, redact: &[String]) -> SmtpFailure {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let message = inner.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = inner.source();
    }
    let message = sanitize_excerpt(text.as_bytes(), 512, redact);
    if let Some(code) = error.status() {
        let number = code.to_string().parse::<u16>().ok();
        return SmtpFailure {
            reason: format!("smtp_{code}"),
            code: number,
            message,
            retryable: error.is_transient(),
        };
    }
    if error.is_tls() {
        return SmtpFailure::permanent("tls", message);
    }
    if error.is_timeout() {
        return SmtpFailure::retryable("timeout", message);
    }
    if error.is_client() {
        // Refusals by lettre itself: STARTTLS required but not offered, no usable AUTH
        // mechanism, an invalid message. None improves by retrying.
        return SmtpFailure::permanent("smtp_client", message);
    }
    if error.is_response() {
        return SmtpFailure::retryable("invalid_response", message);
    }
    SmtpFailure::retryable("connect", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(server: &str, plaintext: bool) -> SmtpConfig {
        SmtpConfig {
            server: server.into(),
            credential: None,
            insecure_allow_plaintext: plaintext,
            ca_file: None,
        }
    }

    #[test]
    fn servers_and_their_protection() {
        let s = SmtpServer::parse(&smtp("smtps://mail.example.com", false)).unwrap();
        assert_eq!((s.port, s.security), (465, Security::ImplicitTls));
        let s = SmtpServer::parse(&smtp("smtp://mail.example.com", false)).unwrap();
        assert_eq!((s.port, s.security), (587, Security::StartTlsRequired));
        let s = SmtpServer::parse(&smtp("smtp://[::1]:2525", true)).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.security), ("::1", 2525, Security::Opportunistic));
        assert_eq!(s.authority(), "[::1]:2525");
        assert!(SmtpServer::parse(&smtp("http://mail.example.com", false)).is_err());
        assert!(SmtpServer::parse(&smtp("smtps://u:p@mail.example.com", false)).is_err());
    }

    #[test]
    fn subjects_refuse_line_breaks_from_variables() {
        let vars: BTreeMap<String, String> =
            [("title".to_string(), "disk\r\nBcc: victim@example.com".to_string())].into();
        let error = render("Alert: ${title}", Encoding::HeaderValue, &vars).unwrap_err();
        assert!(matches!(error, TemplateError::ForbiddenCharacter { .. }), "{error}");
        let body = render("Alert: ${title}", Encoding::Text, &vars).unwrap();
        assert!(body.contains("Bcc:"), "the body is plain text");
        let missing = render("${nope}", Encoding::Text, &vars).unwrap_err();
        assert!(matches!(missing, TemplateError::Missing { .. }), "{missing}");
    }
}
