//! Email in and out: the IMAP source with inbound email actions, and the SMTP target.
//!
//! ```text
//!  IMAP mailbox ──imap──▶ message (mail-parser, bounded) ──▶ source: actions (CEL over `email`)
//!       ▲                                                        │ variables
//!       └──── markSeen | move | delete (handled mail only) ◀─────┤ runtime pipeline
//!                                                                ▼ (deliverers, retries)
//!                                   outboundMessage targets · email targets ──smtp──▶ relay
//! ```
//!
//! - [`message`] turns raw RFC 5322 bytes into the `email` value expressions read;
//! - [`imap`] is the session with the mailbox (async-imap over our own TLS stream, so the
//!   SSRF guard and the ring-based rustls apply as for HTTP);
//! - [`source`] is one pull, as a Schedule's `run-once` performs it;
//! - [`smtp`] sends one message per delivery with lettre (implicit TLS or required
//!   STARTTLS, AUTH from a basic Credential, a Message-ID stable per delivery).
//!
//! Neither side logs a message's content or a credential value; errors are sanitized and
//! redacted before they reach logs, dead letters or the status document.

pub mod imap;
pub mod message;
pub mod smtp;
pub mod source;

/// Host and port of a mail server URL (`imaps://host:993`, `smtp://[::1]:587`): no user info
/// (credentials belong in a Credential), a host, IPv6 brackets removed; `default_port` when
/// the URL names none. The error says what is wrong.
fn server_address(url: &url::Url, default_port: u16) -> Result<(String, u16), &'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials belong in a Credential, not in the URL");
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
    Ok((host.trim_matches(['[', ']']).to_string(), url.port().unwrap_or(default_port)))
}
