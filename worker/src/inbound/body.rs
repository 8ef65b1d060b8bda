//! Request bodies: reading under a size limit, then parsing into the JSON-like value the
//! transform sees as `body`.
//!
//! The limit holds with and without `Content-Length` (W4): a declared length above it is
//! refused before reading, and a chunked body is cut off as soon as it passes the limit.
//! Parsing happens only after authentication, on the bytes that were verified. JSON, XML
//! (no DTDs, bounded depth and size: B2) and form bodies are understood; anything else is
//! passed on as text (or base64 when it is not UTF-8).

use axum::body::Body;
use base64::Engine as _;
use http_body_util::BodyExt;
use quick_xml::events::Event;
use serde_json::{Map, Value};

/// Deepest XML nesting accepted.
pub const MAX_XML_DEPTH: usize = 64;
/// Most XML nodes accepted.
pub const MAX_XML_NODES: usize = 200_000;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit.
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("could not read the body: {0}")]
    Read(String),
    /// Not valid JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Not acceptable XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Not a form.
    #[error("malformed form body")]
    Form,
}

impl BodyError {
    /// Short category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "body_too_large",
            BodyError::Read(_) => "body_unreadable",
            BodyError::Json { .. } => "malformed_json",
            BodyError::Xml(_) => "malformed_xml",
            BodyError::Form => "malformed_form",
        }
    }
}

/// Read a body, refusing it as soon as it grows past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// The media type without parameters, lower case.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a media type is JSON (`application/json`, `application/*+json`, `text/json`).
pub fn is_json(media: &str) -> bool {
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// Whether a media type is XML.
pub fn is_xml(media: &str) -> bool {
    media == "application/xml" || media == "text/xml" || media.ends_with("+xml")
}

/// Parse `bytes` according to their media type.
pub fn parse(media: &str, bytes: &[u8]) -> Result<Value, BodyError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if is_json(media) {
        return parse_json(bytes);
    }
    if is_xml(media) {
        return parse_xml(bytes);
    }
    if media == "application/x-www-form-urlencoded" {
        let text = std::str::from_utf8(bytes).map_err(|_| BodyError::Form)?;
        let fields: Map<String, Value> = form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Ok(Value::Object(fields));
    }
    Ok(match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    })
}

/// Parse JSON with a precise error position.
pub fn parse_json(bytes: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice(bytes).map_err(|e| BodyError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
    })
}

/// Parse XML into JSON: an element with only text becomes a string, one with children or
/// attributes an object (`@attr` for attributes, `#text` for mixed text), repeated children
/// an array. DTDs are refused outright, so no entity can expand or reach outside.
pub fn parse_xml(bytes: &[u8]) -> Result<Value, BodyError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    // Stack of (name, object, text).
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut nodes = 0usize;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| BodyError::Xml(format!("at byte {}: {e}", reader.buffer_position())))?;
        nodes += 1;
        if nodes > MAX_XML_NODES {
            return Err(BodyError::Xml(format!("more than {MAX_XML_NODES} nodes")));
        }
        match event {
            Event::DocType(_) => return Err(BodyError::Xml("DTDs are not accepted".into())),
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let _ = start;
                return Err(BodyError::Xml("more than one root element".into()));
            }
            Event::Start(start) => {
                if stack.len() == MAX_XML_DEPTH {
                    return Err(BodyError::Xml(format!("nested deeper than {MAX_XML_DEPTH}")));
                }
                let (name, attrs) = element_parts(&start)?;
                stack.push((name, attrs, String::new()));
            }
            Event::Empty(start) => {
                let (name, attrs) = element_parts(&start)?;
                let value = finish_element(attrs, String::new());
                attach(&mut stack, &mut root, name, value);
            }
            Event::End(_) => {
                let (name, attrs, text) =
                    stack.pop().ok_or_else(|| BodyError::Xml("unbalanced end tag".into()))?;
                let value = finish_element(attrs, text);
                attach(&mut stack, &mut root, name, value);
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                if let Some((_, _, t)) = stack.last_mut() {
                    t.push_str(&content);
                } else if !content.trim().is_empty() {
                    return Err(BodyError::Xml("text outside the root element".into()));
                }
            }
            Event::CData(data) => {
                if let Some((_, _, t)) = stack.last_mut() {
                    t.push_str(&data.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                // Without a DTD only character references and the five predefined entities
                // exist; anything else is refused rather than guessed.
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                        .ok_or_else(|| BodyError::Xml("invalid character reference".into()))?
                } else {
                    let name = r.into_inner();
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .map(str::to_string)
                        .ok_or_else(|| BodyError::Xml(format!("unknown entity &{name};")))?
                };
                if let Some((_, _, t)) = stack.last_mut() {
                    t.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(BodyError::Xml("unclosed element at end of document".into()));
    }
    let (name, value) = root.ok_or_else(|| BodyError::Xml("no root element".into()))?;
    let mut top = Map::new();
    top.insert(name, value);
    Ok(Value::Object(top))
}

fn element_parts(
    start: &quick_xml::events::BytesStart<'_>,
) -> Result<(String, Map<String, Value>), BodyError> {
    let name = start.name().as_ref().to_string();
    let mut attrs = Map::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| BodyError::Xml(e.to_string()))?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| BodyError::Xml(e.to_string()))?;
        attrs.insert(format!("@{key}"), Value::String(value.into_owned()));
    }
    Ok((name, attrs))
}

fn finish_element(mut fields: Map<String, Value>, text: String) -> Value {
    let text = text.trim().to_string();
    if fields.is_empty() {
        return Value::String(text);
    }
    if !text.is_empty() {
        fields.insert("#text".into(), Value::String(text));
    }
    Value::Object(fields)
}

fn attach(
    stack: &mut [(String, Map<String, Value>, String)],
    root: &mut Option<(String, Value)>,
    name: String,
    value: Value,
) {
    match stack.last_mut() {
        Some((_, parent, _)) => match parent.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                parent.insert(name, value);
            }
        },
        None => *root = Some((name, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_errors_carry_the_position() {
        let err = parse("application/json", b"{\"a\": 1,\n \"b\": }").unwrap_err();
        assert_eq!(err.category(), "malformed_json");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn xml_becomes_json() {
        let xml = br#"<?xml version="1.0"?><incident id="7"><title>Disk &amp; CPU</title><tag>a</tag><tag>b</tag><empty/></incident>"#;
        let v = parse("application/xml", xml).unwrap();
        assert_eq!(
            v,
            json!({"incident": {"@id": "7", "title": "Disk & CPU", "tag": ["a", "b"], "empty": ""}})
        );
    }

    #[test]
    fn hostile_xml_is_refused() {
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(parse_xml(laughs).unwrap_err().to_string().contains("DTD"));
        let xxe = br#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#;
        assert!(parse_xml(xxe).is_err());
        assert!(parse_xml(b"<x>&undefined;</x>").is_err());
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse_xml(deep.as_bytes()).unwrap_err().to_string().contains("deeper"));
        for bad in [&b"<a><b></a>"[..], b"<a>", b"text", b"<a/><b/>"] {
            assert_eq!(parse_xml(bad).unwrap_err().category(), "malformed_xml", "{bad:?}");
        }
    }

    #[test]
    fn forms_and_text() {
        assert_eq!(
            parse("application/x-www-form-urlencoded", b"a=1&b=x%20y").unwrap(),
            json!({"a": "1", "b": "x y"})
        );
        assert_eq!(parse("text/plain", b"hello").unwrap(), json!("hello"));
        assert_eq!(parse("application/octet-stream", &[0xff, 0xfe]).unwrap(), json!("//4="));
    }

    #[tokio::test]
    async fn the_limit_holds_without_content_length() {
        let chunks = futures_chunks(vec![vec![b'a'; 600], vec![b'a'; 600]]);
        assert_eq!(
            read_limited(chunks, 1000).await.unwrap_err(),
            BodyError::TooLarge { limit: 1000 }
        );
        let chunks = futures_chunks(vec![vec![b'a'; 600]]);
        assert_eq!(read_limited(chunks, 1000).await.unwrap().len(), 600);
    }

    fn futures_chunks(chunks: Vec<Vec<u8>>) -> Body {
        let items = chunks.into_iter().map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c)));
        Body::from_stream(futures_util::stream::iter(items))
    }
}
