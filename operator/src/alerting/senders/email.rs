//! Email over SMTP with lettre: implicit TLS (`smtps://host:465`) or STARTTLS
//! (`smtp://host:587`, required unless `insecureAllowPlaintext`), SMTP AUTH from a basic
//! Credential.
//!
//! The server's name is resolved and checked against the egress rule here, and lettre is
//! pointed at the checked address with the name kept for TLS verification, so DNS cannot
//! move the connection between check and connect. Loopback is reachable only with
//! `insecureAllowPlaintext` (local development). The resolve message answers the firing one
//! (`In-Reply-To`, `References`), so mail clients thread them.

use futures::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use switchboard_worker::delivery::backoff_delay;

use super::{Sender, Transport, facts};
use crate::alerting::http::SendError;
use crate::alerting::model::{Alert, AlertStatus};
use crate::alerting::routes::{EmailTarget, RouteKind};

/// Sends email.
pub struct EmailSender {
    /// Server, sender, recipients and credentials.
    pub target: EmailTarget,
}

/// The `Message-ID` of the firing notification of `alert` (the resolve answers it).
pub fn firing_message_id(alert: &Alert) -> String {
    format!("<{}.{}.firing@switchboard.dev>", alert.fingerprint, alert.starts_at.as_second())
}

/// The subject and plain-text body of `alert`. Pure.
pub fn content(alert: &Alert, transport: &Transport) -> (String, String) {
    let mut body = match alert.status {
        AlertStatus::Firing => format!("{}\n\n", alert.annotation("description")),
        AlertStatus::Resolved => {
            format!("{} is healthy again; the alert is resolved.\n\n", alert.subject())
        }
    };
    for (name, value) in facts(alert) {
        body.push_str(&format!("{name}: {value}\n"));
    }
    if let Some(link) = transport.settings.link(alert) {
        body.push_str(&format!("Integration: {link}\n"));
    }
    body.push_str(&format!(
        "\nFingerprint: {}\n-- \nSwitchboard alert routing\n",
        alert.fingerprint
    ));
    (alert.title(), body)
}

/// The message for `alert`. Pure.
pub fn message(
    alert: &Alert,
    target: &EmailTarget,
    transport: &Transport,
) -> Result<Message, SendError> {
    let mailbox = |text: &str| {
        text.parse::<Mailbox>()
            .map_err(|_| SendError::Build(format!("{text:?} is not an email address")))
    };
    let (subject, body) = content(alert, transport);
    let mut builder = Message::builder().from(mailbox(&target.from)?).subject(subject);
    for to in &target.to {
        builder = builder.to(mailbox(to)?);
    }
    builder = match alert.status {
        AlertStatus::Firing => builder.message_id(Some(firing_message_id(alert))),
        AlertStatus::Resolved => builder
            .message_id(Some(format!(
                "<{}.{}.resolved@switchboard.dev>",
                alert.fingerprint,
                alert.starts_at.as_second()
            )))
            .in_reply_to(firing_message_id(alert))
            .references(firing_message_id(alert)),
    };
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| SendError::Build(format!("the message cannot be built: {e}")))
}

fn smtp_error(error: &lettre::transport::smtp::Error) -> SendError {
    let text = switchboard_worker::outbound::http::sanitize_excerpt(
        error.to_string().as_bytes(),
        200,
        &[],
    );
    if error.is_timeout() {
        SendError::Timeout(text)
    } else if error.is_tls() {
        SendError::Tls(text)
    } else {
        SendError::Smtp(text)
    }
}

fn is_transient(error: &lettre::transport::smtp::Error) -> bool {
    error.is_transient()
        || error.is_timeout()
        || !(error.is_permanent() || error.is_tls() || error.is_client() || error.is_response())
}

impl EmailSender {
    async fn deliver(&self, alert: &Alert, transport: &Transport) -> Result<(), SendError> {
        let target = &self.target;
        let host = target
            .server
            .host_str()
            .ok_or_else(|| SendError::Build("smtp.server has no host".into()))?
            .to_string();
        let implicit_tls = target.server.scheme() == "smtps";
        let port = target.server.port().unwrap_or(if implicit_tls { 465 } else { 587 });
        let addresses =
            transport.http.egress().addresses(&host, port, target.insecure_allow_plaintext).await?;
        let address = addresses[0];
        let tls_name = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let parameters = TlsParameters::new(tls_name)
            .map_err(|e| SendError::Tls(format!("TLS settings: {e}")))?;
        let tls = if implicit_tls {
            Tls::Wrapper(parameters)
        } else if target.insecure_allow_plaintext {
            Tls::Opportunistic(parameters)
        } else {
            Tls::Required(parameters)
        };
        let retry = transport.http.retry();
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(address.port())
                .tls(tls)
                .timeout(Some(retry.attempt_timeout))
                .hello_name(ClientId::Domain("switchboard-operator".into()));
        if let Some((user, password)) = &target.credentials {
            builder = builder.credentials(Credentials::new(
                user.expose_secret().to_string(),
                password.expose_secret().to_string(),
            ));
        }
        let mailer = builder.build();
        let message = message(alert, target, transport)?;
        let config = retry.config();
        let mut attempt = 1;
        loop {
            match mailer.send(message.clone()).await {
                Ok(_) => return Ok(()),
                Err(error) if is_transient(&error) && attempt < retry.max_attempts => {
                    tokio::time::sleep(backoff_delay(&config, attempt, None)).await;
                    attempt += 1;
                }
                Err(error) => return Err(smtp_error(&error)),
            }
        }
    }
}

impl Sender for EmailSender {
    fn kind(&self) -> RouteKind {
        RouteKind::Email
    }

    fn send<'a>(
        &'a self,
        alert: &'a Alert,
        transport: &'a Transport,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(alert, transport))
    }
}
