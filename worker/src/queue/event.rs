//! The records the queue stores: accepted events, their delivery attempts, and dead letters.
//!
//! An event is stored as a small binary header followed by the raw body bytes, so a body is
//! never re-encoded (and a megabyte of JSON is not turned into a megabyte of base64). Events
//! stored by earlier versions have a JSON header instead; they are still read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::bytes::{ABSENT, Reader, put_len, put_opt, put_str};

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

/// First byte of a binary event header. Events stored before it existed have a JSON header,
/// which starts with `{`; both are read.
const BINARY_HEADER: u8 = 1;

/// Encode an event for storage: `u32` header length, header, raw body. The header is binary
/// (length-prefixed strings in a fixed order); the parts only retried or replayed events
/// have (attempts, replays) and CloudEvents attributes are JSON inside it.
pub fn encode_event(event: &QueuedEvent) -> Vec<u8> {
    // One buffer for every event (a typical header fits the reserve): the header is written
    // in place and its length patched in front.
    let mut out = Vec::with_capacity(4 + 256 + event.body.len());
    out.extend_from_slice(&[0; 4]);
    out.push(BINARY_HEADER);
    let w = &mut out;
    put_str(w, &event.id);
    put_opt(w, event.source_id.as_deref());
    w.extend_from_slice(&event.received_at.timestamp().to_le_bytes());
    w.extend_from_slice(&event.received_at.timestamp_subsec_nanos().to_le_bytes());
    put_str(w, &event.route);
    put_len(w, event.pending_targets.len());
    for target in &event.pending_targets {
        put_str(w, target);
    }
    let request = &event.request;
    put_str(w, &request.method);
    put_str(w, &request.path);
    for map in [&request.headers, &request.query, &request.params] {
        put_len(w, map.len());
        for (name, value) in map {
            put_str(w, name);
            put_str(w, value);
        }
    }
    put_opt(w, request.content_type.as_deref());
    put_json(w, request.cloud_event.as_ref());
    put_json(w, Some(&event.attempts).filter(|a| !a.is_empty()));
    put_json(w, Some(&event.replays).filter(|r| !r.is_empty()));
    let header_len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&event.body);
    out
}

fn put_json(out: &mut Vec<u8>, value: Option<&impl Serialize>) {
    match value {
        Some(value) => {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            serde_json::to_writer(&mut *out, value).expect("stored values always serialize");
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

fn get_map(f: &mut Reader) -> Result<BTreeMap<String, String>, String> {
    (0..f.u32()?).map(|_| Ok((f.str()?, f.str()?))).collect()
}

fn get_json<T: serde::de::DeserializeOwned>(f: &mut Reader) -> Result<Option<T>, String> {
    f.bytes()?.map(|b| serde_json::from_slice(b).map_err(|e| e.to_string())).transpose()
}

fn decode_binary_header(header: &[u8]) -> Result<QueuedEvent, String> {
    let mut f = Reader(header);
    let id = f.str()?;
    let source_id = f.opt()?;
    let (seconds, nanos) = (f.i64()?, f.u32()?);
    let received_at = DateTime::from_timestamp(seconds, nanos).ok_or("receivedAt out of range")?;
    let route = f.str()?;
    let pending_targets = (0..f.u32()?).map(|_| f.str()).collect::<Result<_, _>>()?;
    let request = StoredRequest {
        method: f.str()?,
        path: f.str()?,
        headers: get_map(&mut f)?,
        query: get_map(&mut f)?,
        params: get_map(&mut f)?,
        content_type: f.opt()?,
        cloud_event: get_json(&mut f)?,
    };
    let event = QueuedEvent {
        id,
        source_id,
        received_at,
        route,
        pending_targets,
        request,
        attempts: get_json(&mut f)?.unwrap_or_default(),
        replays: get_json(&mut f)?.unwrap_or_default(),
        body: Vec::new(),
    };
    if !f.rest().is_empty() {
        return Err("unexpected bytes after it".into());
    }
    Ok(event)
}

/// Decode what [`encode_event`] wrote, or an event stored with a JSON header.
pub fn decode_event(bytes: &[u8]) -> Result<QueuedEvent, String> {
    if bytes.len() < 4 {
        return Err("record shorter than its length prefix".into());
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let header = bytes.get(4..4 + len).ok_or("record shorter than its header")?;
    let mut event = match header.split_first() {
        Some((&BINARY_HEADER, fields)) => {
            decode_binary_header(fields).map_err(|e| format!("record header: {e}"))?
        }
        _ => serde_json::from_slice(header).map_err(|e| format!("record header: {e}"))?,
    };
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

    fn full_event() -> QueuedEvent {
        let map = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        QueuedEvent {
            id: "0b5c6e9e-8f43-4d0c-a2a4-5b1b4ad0a7c1".into(),
            source_id: None,
            received_at: DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap(),
            route: "/hook".into(),
            pending_targets: vec!["crm".into(), "erp é".into()],
            request: StoredRequest {
                method: "POST".into(),
                path: "/hook".into(),
                headers: map(&[("content-type", "application/json"), ("x-a", "1, 2")]),
                query: map(&[("q", "a b")]),
                params: map(&[]),
                cloud_event: Some(BTreeMap::from([
                    ("id".to_string(), serde_json::json!("c1")),
                    ("specversion".to_string(), serde_json::json!("1.0")),
                ])),
                content_type: Some("application/json".into()),
            },
            attempts: vec![Attempt {
                target: "crm".into(),
                at: DateTime::from_timestamp(1_790_000_001, 0).unwrap(),
                status: Some(503),
                reason: "status_503".into(),
                message: "busy".into(),
                duration_ms: 12,
            }],
            replays: vec![ReplayRecord {
                by: "alice".into(),
                at: DateTime::from_timestamp(1_790_000_002, 0).unwrap(),
                event_id: "e2".into(),
            }],
            body: b"{\"a\":1}".to_vec(),
        }
    }

    #[test]
    fn every_field_round_trips_through_the_binary_header() {
        let event = full_event();
        let bytes = encode_event(&event);
        assert_eq!(bytes[4], BINARY_HEADER);
        assert_eq!(decode_event(&bytes).unwrap(), event);
        // Cut anywhere inside the header, the record is refused, never misread.
        let header_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        for cut in 5..4 + header_len {
            let mut short = bytes[..cut].to_vec();
            short[..4].copy_from_slice(&((cut - 4) as u32).to_le_bytes());
            assert!(decode_event(&short).is_err(), "header cut at {cut} was read");
        }
    }

    #[test]
    fn events_stored_with_a_json_header_are_still_read() {
        let event = full_event();
        let header = serde_json::to_vec(&event).unwrap();
        let mut old = (header.len() as u32).to_le_bytes().to_vec();
        old.extend_from_slice(&header);
        old.extend_from_slice(&event.body);
        assert_eq!(decode_event(&old).unwrap(), event);
    }
}
