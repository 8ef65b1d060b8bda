//! The records the queue stores: accepted events, their delivery attempts, and dead letters.
//!
//! An event is stored as a small JSON header followed by the raw body bytes, so a body is
//! never re-encoded (and a megabyte of JSON is not turned into a megabyte of base64).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An accepted inbound event, as stored until every target has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedEvent {
    /// The worker's own id of this event; also the delivery id (idempotency key) sent to
    /// targets, identical on every retry.
    pub id: String,
    /// The sender's id (`webhook-id`, CloudEvents `source`+`id`, ...), used to drop duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// When the worker accepted it.
    pub received_at: DateTime<Utc>,
    /// Webhook path or API route name that received it.
    pub route: String,
    /// Targets that still have to receive it.
    pub pending_targets: Vec<String>,
    /// The request, without its credentials.
    pub request: StoredRequest,
    /// Attempts made so far (across restarts and replays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Replays of this event from the dead-letter store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replays: Vec<ReplayRecord>,
    /// Raw body; stored after the header, not inside it.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// The parts of an inbound request the transform may read. Authentication headers are
/// removed before an event is stored: the store must not become a copy of callers' secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers, lower-case names; repeated headers joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters (last value wins).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Path parameters of an API route.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// CloudEvents attributes, when the request is a CloudEvent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_event: Option<BTreeMap<String, serde_json::Value>>,
    /// Content type of the body (for a structured CloudEvent: of its `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// One delivery attempt to one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Target name.
    pub target: String,
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// HTTP status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Short reason (`timeout`, `status_503`, `mapping_failed`, ...).
    pub reason: String,
    /// What happened, sanitized and bounded (see [`sanitize_message`]).
    pub message: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// Who replayed a dead letter, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRecord {
    /// Name given by the caller of the admin API (authenticated by the admin token).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Id of the new queued event.
    pub event_id: String,
}

/// An event whose delivery is exhausted or impossible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Id in the dead-letter store (the event's id).
    pub id: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// Short reason (`retries_exhausted`, `mapping_failed`, `permanent_failure`, ...).
    pub reason: String,
    /// What happened last, sanitized and bounded.
    pub message: String,
    /// Targets that did not receive it.
    pub failed_targets: Vec<String>,
    /// `pending` or `replayed`.
    pub state: String,
    /// The event with its full attempt history.
    pub event: QueuedEvent,
}

/// Longest message kept from a target's error.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Make untrusted text (a target's error body) safe to store, log and print: control
/// characters (CR, LF, escape sequences) become spaces, markup is kept as text, and the result
/// is cut at [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub fn sanitize_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_LEN));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_MESSAGE_LEN {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// Encode an event for storage: `u32` header length, JSON header, raw body.
pub fn encode_event(event: &QueuedEvent) -> Vec<u8> {
    // One buffer for every event (a typical header fits the reserve): the header is written
    // in place and its length patched in front, instead of a second buffer copied over.
    let mut out = Vec::with_capacity(4 + 512 + event.body.len());
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut out, event).expect("a QueuedEvent always serializes");
    let header_len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&event.body);
    out
}

/// Decode what [`encode_event`] wrote.
pub fn decode_event(bytes: &[u8]) -> Result<QueuedEvent, String> {
    if bytes.len() < 4 {
        return Err("record shorter than its length prefix".into());
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let header = bytes.get(4..4 + len).ok_or("record shorter than its header")?;
    let mut event: QueuedEvent =
        serde_json::from_slice(header).map_err(|e| format!("record header: {e}"))?;
    event.body = bytes[4 + len..].to_vec();
    Ok(event)
}

/// Encode a dead letter: `u32` header length, JSON of the dead letter, raw body of its event.
pub fn encode_dead_letter(dead: &DeadLetter) -> Vec<u8> {
    let header = serde_json::to_vec(dead).expect("a DeadLetter always serializes");
    let mut out = Vec::with_capacity(4 + header.len() + dead.event.body.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&dead.event.body);
    out
}

/// Decode what [`encode_dead_letter`] wrote.
pub fn decode_dead_letter(bytes: &[u8]) -> Result<DeadLetter, String> {
    if bytes.len() < 4 {
        return Err("record shorter than its length prefix".into());
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let header = bytes.get(4..4 + len).ok_or("record shorter than its header")?;
    let mut dead: DeadLetter =
        serde_json::from_slice(header).map_err(|e| format!("record header: {e}"))?;
    dead.event.body = bytes[4 + len..].to_vec();
    Ok(dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_error_bodies_are_neutralised() {
        let hostile = format!("<html>\r\nSet-Cookie: x\u{1b}[31m{}", "A".repeat(10 * 1024 * 1024));
        let clean = sanitize_message(&hostile);
        assert!(clean.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(!clean.contains('\r') && !clean.contains('\n') && !clean.contains('\u{1b}'));
        assert!(clean.starts_with("<html>  Set-Cookie"));
    }

    #[test]
    fn events_round_trip_with_binary_bodies() {
        let event = QueuedEvent {
            id: "e1".into(),
            source_id: Some("s".into()),
            received_at: Utc::now(),
            route: "/hook".into(),
            pending_targets: vec!["a".into()],
            request: StoredRequest::default(),
            attempts: vec![],
            replays: vec![],
            body: vec![0, 159, 146, 150, b'{'],
        };
        assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
        assert!(decode_event(&[1, 0]).is_err());
        assert!(decode_event(&[200, 0, 0, 0, b'{']).is_err());
    }
}
