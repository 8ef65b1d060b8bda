//! An inbound email as the `email` value of CEL expressions.
//!
//! ```text
//!  raw RFC 5322 bytes (at most MAX_MESSAGE_BYTES fetched) ──▶ mail-parser
//!      ──▶ InboundEmail { from, to, cc, subject, text, html?, headers, messageId, date,
//!                         attachments, size, truncated }  ──▶ JSON ──▶ CEL `email`
//! ```
//!
//! Parsing never fails: a malformed message gives empty fields rather than an error, so one
//! hostile message cannot stop a mailbox. Every field is bounded (characters of text and
//! headers, number of headers and addresses), so the expressions evaluated over it stay
//! within their cost budget. Attachments are not read; they are counted.

use std::collections::BTreeMap;

use mail_parser::{HeaderValue, MessageParser};
use serde_json::{Value, json};

/// Most bytes of a message fetched and parsed; a larger message is cut (see
/// [`InboundEmail::truncated`]).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most characters kept of the text and of the HTML body.
pub const MAX_BODY_CHARS: usize = 1024 * 1024;
/// Most characters kept of a header value (and of the subject).
pub const MAX_HEADER_CHARS: usize = 4096;
/// Most distinct headers kept.
pub const MAX_HEADERS: usize = 128;
/// Most addresses kept per address field.
pub const MAX_ADDRESSES: usize = 100;

/// An inbound email, reduced to what actions read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InboundEmail {
    /// Sender address (`a@example.com`, without the display name).
    pub from: String,
    /// Sender display name.
    pub from_name: String,
    /// Recipient addresses.
    pub to: Vec<String>,
    /// Copy addresses.
    pub cc: Vec<String>,
    /// Decoded subject.
    pub subject: String,
    /// Plain-text body (converted from HTML when the message has only HTML).
    pub text: String,
    /// HTML body, when there is one.
    pub html: Option<String>,
    /// Headers by lower-case name; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// `Message-ID` without angle brackets.
    pub message_id: String,
    /// `Date` as RFC 3339, when it parses.
    pub date: Option<String>,
    /// Attachments (not read).
    pub attachments: usize,
    /// Size of the whole message on the server, in bytes.
    pub size: u64,
    /// Whether only the first [`MAX_MESSAGE_BYTES`] were fetched, or a body was cut.
    pub truncated: bool,
}

/// Keep at most `max` characters of `text`; returns whether it was cut.
fn bounded(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (text[..end].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// A header value as one line: folding and control characters become spaces.
fn one_line(text: &str) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let (line, _) = bounded(line.trim(), MAX_HEADER_CHARS);
    line
}

fn addresses(address: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address())
                .map(one_line)
                .filter(|a| !a.is_empty())
                .take(MAX_ADDRESSES)
                .collect()
        })
        .unwrap_or_default()
}

impl InboundEmail {
    /// Parse `raw` (the first bytes of a message of `size` bytes on the server).
    pub fn parse(raw: &[u8], size: u64) -> InboundEmail {
        let mut email = InboundEmail {
            size,
            truncated: (raw.len() as u64) < size || raw.len() > MAX_MESSAGE_BYTES,
            ..Default::default()
        };
        let raw = &raw[..raw.len().min(MAX_MESSAGE_BYTES)];
        let Some(message) = MessageParser::default().parse(raw) else {
            return email;
        };
        if let Some(first) = message.from().and_then(|f| f.first()) {
            email.from = first.address().map(one_line).unwrap_or_default();
            email.from_name = first.name().map(one_line).unwrap_or_default();
        }
        email.to = addresses(message.to());
        email.cc = addresses(message.cc());
        email.subject = message.subject().map(one_line).unwrap_or_default();
        email.message_id = message.message_id().map(one_line).unwrap_or_default();
        email.date = message.date().map(|d| d.to_rfc3339());
        email.attachments = message.attachment_count();
        if let Some(text) = message.body_text(0) {
            let (text, cut) = bounded(&text, MAX_BODY_CHARS);
            email.text = text;
            email.truncated |= cut;
        }
        // mail-parser offers converted text as HTML too; only a real text/html part counts.
        if message.html_part(0).is_some_and(|part| part.is_text_html())
            && let Some(html) = message.body_html(0)
        {
            let (html, cut) = bounded(&html, MAX_BODY_CHARS);
            email.html = Some(html);
            email.truncated |= cut;
        }
        for header in message.headers() {
            let name = header.name().to_ascii_lowercase();
            if !email.headers.contains_key(&name) && email.headers.len() >= MAX_HEADERS {
                continue;
            }
            let value = match header.value() {
                HeaderValue::Text(text) => one_line(text),
                HeaderValue::TextList(list) => one_line(&list.join(", ")),
                _ => {
                    let start = header.offset_start as usize;
                    let end = (header.offset_end as usize).min(raw.len());
                    one_line(&String::from_utf8_lossy(raw.get(start..end).unwrap_or_default()))
                }
            };
            email
                .headers
                .entry(name)
                .and_modify(|v| {
                    if v.chars().count() < MAX_HEADER_CHARS {
                        *v = one_line(&format!("{v}, {value}"));
                    }
                })
                .or_insert(value);
        }
        email
    }

    /// The `email` value expressions see.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "from": self.from,
            "fromName": self.from_name,
            "to": self.to,
            "cc": self.cc,
            "subject": self.subject,
            "text": self.text,
            "headers": self.headers,
            "messageId": self.message_id,
            "date": self.date.clone().unwrap_or_default(),
            "attachments": self.attachments,
            "size": self.size,
            "truncated": self.truncated,
        });
        if let Some(html) = &self.html {
            value["html"] = Value::String(html.clone());
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "From: Vendor Support <help@supplier.example>\r\n\
        To: intake@acme.example, other@acme.example\r\n\
        Cc: boss@acme.example\r\n\
        Subject: =?UTF-8?Q?Re:_disk_full_=E2=9C=93?= [ref:0123456789abcdef0123456789abcdef]\r\n\
        Message-ID: <abc-1@supplier.example>\r\n\
        Date: Tue, 3 Nov 2026 10:00:00 +0000\r\n\
        X-Ticket: 42\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        We replaced the disk.\r\n\
        --b1\r\n\
        Content-Type: application/pdf; name=report.pdf\r\n\
        Content-Disposition: attachment; filename=report.pdf\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        JVBERi0xLjQK\r\n\
        --b1--\r\n";

    #[test]
    fn fields_actions_read() {
        let email = InboundEmail::parse(REPLY.as_bytes(), REPLY.len() as u64);
        assert_eq!(email.from, "help@supplier.example");
        assert_eq!(email.from_name, "Vendor Support");
        assert_eq!(email.to, vec!["intake@acme.example", "other@acme.example"]);
        assert_eq!(email.cc, vec!["boss@acme.example"]);
        assert_eq!(email.subject, "Re: disk full ✓ [ref:0123456789abcdef0123456789abcdef]");
        assert_eq!(email.text.trim(), "We replaced the disk.");
        assert_eq!(email.message_id, "abc-1@supplier.example");
        assert_eq!(email.date.as_deref(), Some("2026-11-03T10:00:00Z"));
        assert_eq!(email.attachments, 1);
        assert_eq!(email.headers["x-ticket"], "42");
        assert!(email.headers["message-id"].contains("abc-1@supplier.example"));
        assert!(!email.truncated);
        let json = email.to_json();
        assert_eq!(json["from"], "help@supplier.example");
        assert!(json.get("html").is_none());
    }

    #[test]
    fn malformed_and_huge_messages_give_bounded_fields() {
        let garbage = InboundEmail::parse(b"\x00\xff\xfe not a message", 17);
        assert!(garbage.subject.len() < 100);
        let mut huge = b"Subject: big\r\n\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_BODY_CHARS + 10));
        let email = InboundEmail::parse(&huge, 50 * 1024 * 1024);
        assert!(email.truncated);
        assert!(email.text.chars().count() <= MAX_BODY_CHARS);
        assert_eq!(email.size, 50 * 1024 * 1024);
    }

    #[test]
    fn header_values_stay_on_one_line() {
        let raw = "Subject: hi\r\n =?UTF-8?B?DQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?=\r\n\r\nbody";
        let email = InboundEmail::parse(raw.as_bytes(), raw.len() as u64);
        assert!(
            !email.subject.contains('\r') && !email.subject.contains('\n'),
            "{:?}",
            email.subject
        );
        assert!(email.subject.starts_with("hi"), "{:?}", email.subject);
    }
}
