//! CloudEvents over HTTP, both content modes (CloudEvents 1.0 HTTP binding).
//!
//! - **binary**: attributes in `ce-*` headers, the body is the event's `data` in its own
//!   content type;
//! - **structured**: `Content-Type: application/cloudevents+json`, the body is a JSON object
//!   with the attributes and `data` (or `data_base64`).
//!
//! Either way the transform sees the attributes as `event` and the data as `body`, and the
//! pair `source` + `id` identifies the event for duplicate detection (D7).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::Value;

use super::body::{self, BodyError};

/// Media type of structured-mode CloudEvents.
pub const STRUCTURED_MEDIA_TYPE: &str = "application/cloudevents+json";
/// Media type of batched CloudEvents (not accepted: one request, one event).
pub const BATCH_MEDIA_TYPE: &str = "application/cloudevents-batch+json";

/// Why a CloudEvent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// A required attribute is missing.
    #[error("CloudEvent without required attribute {0}")]
    MissingAttribute(&'static str),
    /// Unsupported spec version.
    #[error("CloudEvents specversion {0:?} is not supported (1.0 is)")]
    SpecVersion(String),
    /// The structured envelope is not a JSON object.
    #[error("structured CloudEvent is not a JSON object")]
    NotAnObject,
    /// Batches are refused.
    #[error("CloudEvents batches are not accepted; send one event per request")]
    Batch,
    /// The body inside is malformed.
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl CloudEventError {
    /// Short category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            CloudEventError::Body(b) => b.category(),
            _ => "invalid_cloudevent",
        }
    }
}

/// A parsed CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Attributes (`id`, `source`, `type`, `specversion`, extensions...).
    pub attributes: BTreeMap<String, Value>,
    /// The data, parsed by its content type.
    pub data: Value,
    /// Content type of the data.
    pub data_content_type: Option<String>,
}

impl CloudEvent {
    /// `source` + `id`, the event's identity.
    pub fn identity(&self) -> Option<String> {
        let source = self.attributes.get("source")?.as_str()?;
        let id = self.attributes.get("id")?.as_str()?;
        Some(format!("{source}\u{1f}{id}"))
    }
}

/// Whether the request is a binary-mode CloudEvent.
pub fn is_binary(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
}

fn check_required(attributes: &BTreeMap<String, Value>) -> Result<(), CloudEventError> {
    for name in ["id", "source", "type", "specversion"] {
        match attributes.get(name) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(CloudEventError::MissingAttribute(name)),
        }
    }
    let version = attributes["specversion"].as_str().unwrap_or_default();
    if version != "1.0" {
        return Err(CloudEventError::SpecVersion(version.to_string()));
    }
    Ok(())
}

/// A binary-mode event: attributes from `ce-*` headers (percent-decoded), data from the body.
pub fn from_binary(
    headers: &HeaderMap,
    content_type: Option<&str>,
    raw: &[u8],
) -> Result<CloudEvent, CloudEventError> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        if let Some(attr) = name.as_str().strip_prefix("ce-") {
            let text = value.to_str().unwrap_or_default();
            let decoded = percent_decode(text);
            attributes.insert(attr.to_string(), Value::String(decoded));
        }
    }
    if let Some(ct) = content_type {
        attributes.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    check_required(&attributes)?;
    let data = body::parse(&body::media_type(content_type), raw)?;
    Ok(CloudEvent { attributes, data, data_content_type: content_type.map(str::to_string) })
}

/// A structured-mode event.
pub fn from_structured(raw: &[u8]) -> Result<CloudEvent, CloudEventError> {
    let Value::Object(mut envelope) = body::parse_json(raw)? else {
        return Err(CloudEventError::NotAnObject);
    };
    let data_base64 = envelope.remove("data_base64");
    let data = envelope.remove("data");
    let attributes: BTreeMap<String, Value> = envelope.into_iter().collect();
    check_required(&attributes)?;
    let data_content_type =
        attributes.get("datacontenttype").and_then(Value::as_str).map(str::to_string);
    let data = match (data, data_base64) {
        (Some(d), _) => {
            // `data` of an XML event arrives as a string; parse it by its declared type.
            let media = body::media_type(data_content_type.as_deref());
            match d {
                Value::String(s) if body::is_xml(&media) => body::parse_xml(s.as_bytes())?,
                other => other,
            }
        }
        (None, Some(Value::String(b64))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| CloudEventError::MissingAttribute("data_base64 (valid base64)"))?;
            body::parse(&body::media_type(data_content_type.as_deref()), &bytes)?
        }
        _ => Value::Null,
    };
    Ok(CloudEvent { attributes, data, data_content_type })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(Ok(b)) = text.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_mode() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-id", "A234-1234".parse().unwrap());
        h.insert("ce-source", "/mycontext".parse().unwrap());
        h.insert("ce-type", "com.example.someevent".parse().unwrap());
        h.insert("ce-comexampleextension1", "value%20x".parse().unwrap());
        let ev = from_binary(&h, Some("application/json"), br#"{"a":1}"#).unwrap();
        assert_eq!(ev.data, json!({"a": 1}));
        assert_eq!(ev.attributes["comexampleextension1"], json!("value x"));
        assert_eq!(ev.identity().unwrap(), "/mycontext\u{1f}A234-1234");
        h.remove("ce-type");
        assert_eq!(
            from_binary(&h, None, b"").unwrap_err(),
            CloudEventError::MissingAttribute("type")
        );
    }

    #[test]
    fn structured_mode() {
        let raw = br#"{"specversion":"1.0","type":"t","source":"s","id":"1","datacontenttype":"application/json","data":{"x":2}}"#;
        let ev = from_structured(raw).unwrap();
        assert_eq!(ev.data, json!({"x": 2}));
        assert_eq!(ev.attributes["type"], json!("t"));
        let b64 = br#"{"specversion":"1.0","type":"t","source":"s","id":"1","datacontenttype":"text/plain","data_base64":"aGk="}"#;
        assert_eq!(from_structured(b64).unwrap().data, json!("hi"));
        let old = br#"{"specversion":"0.3","type":"t","source":"s","id":"1"}"#;
        assert!(matches!(from_structured(old), Err(CloudEventError::SpecVersion(_))));
        assert_eq!(from_structured(b"[1]").unwrap_err(), CloudEventError::NotAnObject);
        assert_eq!(from_structured(b"{").unwrap_err().category(), "malformed_json");
    }
}
