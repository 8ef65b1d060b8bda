//! Safe XML reading for SOAP and XML responses (RELIABILITY B2).
//!
//! Every XML document the worker reads from a peer (SOAP responses and faults, XML bodies it
//! renders itself) goes through [`parse_document`], built on quick-xml with these rules:
//!
//! - **no DTD at all**: a `<!DOCTYPE ...>` is refused, so no entity can be declared; this
//!   alone stops billion-laughs expansion and external entities (XXE, no file or URL is ever
//!   read);
//! - only the five predefined entities and character references are resolved; any other
//!   `&name;` is refused;
//! - limits on input size, element depth, node count, attributes per element and total text,
//!   checked while reading, so a hostile document costs at most the limits;
//! - well-formedness: matching end tags, one root element, no text outside it.
//!
//! The result is a small owned tree ([`Element`]) with namespaces resolved, enough to find a
//! SOAP `Body` or `Fault`.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Limits applied while reading one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XmlLimits {
    /// Largest input, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most nodes (elements, text runs, comments, processing instructions).
    pub max_nodes: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Most text, in bytes, over the whole document.
    pub max_text_bytes: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 100_000,
            max_attributes: 64,
            max_text_bytes: 1024 * 1024,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Input over [`XmlLimits::max_bytes`].
    #[error("XML document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Nesting over [`XmlLimits::max_depth`].
    #[error("XML document nests deeper than {limit} elements")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More than [`XmlLimits::max_nodes`] nodes.
    #[error("XML document has more than {limit} nodes")]
    TooManyNodes {
        /// The limit.
        limit: usize,
    },
    /// More than [`XmlLimits::max_attributes`] on one element.
    #[error("an XML element has more than {limit} attributes")]
    TooManyAttributes {
        /// The limit.
        limit: usize,
    },
    /// More than [`XmlLimits::max_text_bytes`] of text.
    #[error("XML document has more than {limit} bytes of text")]
    TooMuchText {
        /// The limit.
        limit: usize,
    },
    /// A document type declaration: DTDs (and so entity declarations) are not accepted.
    #[error("XML document has a DOCTYPE; DTDs and entity declarations are refused")]
    DtdRefused,
    /// A reference to an entity other than the five predefined ones.
    #[error("XML document references the undeclared entity &{name};")]
    EntityRefused {
        /// Entity name (at most 64 characters of it).
        name: String,
    },
    /// The input is not UTF-8.
    #[error("XML document is not UTF-8")]
    NotUtf8,
    /// Not well-formed.
    #[error("XML document is not well-formed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

impl XmlError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        "xml"
    }
}

/// An element with its namespace resolved, its text and its child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, when the name is bound to one.
    pub namespace: Option<String>,
    /// Local name (without prefix).
    pub local_name: String,
    /// Attributes as (qualified name, value).
    pub attributes: Vec<(String, String)>,
    /// Text directly inside this element (text runs and CDATA, concatenated).
    pub text: String,
    /// Child elements, in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, local_name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local_name == local_name)
    }

    /// The first child element, whatever its name.
    pub fn first_child(&self) -> Option<&Element> {
        self.children.first()
    }
}

/// Read a whole document under `limits` into its root [`Element`].
pub fn parse_document(input: &[u8], limits: &XmlLimits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge { limit: limits.max_bytes });
    }
    let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut nodes = 0usize;
    let mut text_bytes = 0usize;

    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        let namespace = match resolved {
            ResolveResult::Bound(ns) => Some(ns.into_inner().to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(XmlError::Malformed {
                    reason: format!("unbound namespace prefix {:?}", truncate(&prefix, 64)),
                });
            }
        };
        match event {
            Event::DocType(_) => return Err(XmlError::DtdRefused),
            Event::Start(ref start) | Event::Empty(ref start) => {
                nodes += 1;
                if nodes > limits.max_nodes {
                    return Err(XmlError::TooManyNodes { limit: limits.max_nodes });
                }
                if root.is_some() {
                    return Err(XmlError::Malformed {
                        reason: "more than one root element".into(),
                    });
                }
                let mut attributes = Vec::new();
                for attribute in start.attributes().with_checks(true) {
                    let attribute = attribute
                        .map_err(|e| XmlError::Malformed { reason: format!("attribute: {e}") })?;
                    if attributes.len() == limits.max_attributes {
                        return Err(XmlError::TooManyAttributes { limit: limits.max_attributes });
                    }
                    let value = attribute.normalized_value(XmlVersion::Implicit1_0).map_err(
                        |e| match e {
                            quick_xml::Error::Escape(
                                quick_xml::escape::EscapeError::UnrecognizedEntity(_, name),
                            ) => XmlError::EntityRefused { name: truncate(&name, 64) },
                            other => malformed(other),
                        },
                    )?;
                    text_bytes += value.len();
                    if text_bytes > limits.max_text_bytes {
                        return Err(XmlError::TooMuchText { limit: limits.max_text_bytes });
                    }
                    let key = attribute.key.as_ref().to_string();
                    attributes.push((key, value.into_owned()));
                }
                let element = Element {
                    namespace,
                    local_name: start.local_name().as_ref().to_string(),
                    attributes,
                    text: String::new(),
                    children: Vec::new(),
                };
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep { limit: limits.max_depth });
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    close(element, &mut stack, &mut root);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| XmlError::Malformed {
                    reason: "end tag without start tag".into(),
                })?;
                close(element, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                add_text(&content, &mut stack, &mut nodes, &mut text_bytes, limits)?;
            }
            Event::CData(t) => {
                let content = t.xml10_content();
                if stack.is_empty() {
                    return Err(XmlError::Malformed {
                        reason: "CDATA outside the root element".into(),
                    });
                }
                add_text(&content, &mut stack, &mut nodes, &mut text_bytes, limits)?;
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(malformed)? {
                        Some(c) if is_xml_char(c) => c.to_string(),
                        _ => {
                            return Err(XmlError::Malformed {
                                reason: "character reference to a character not allowed in XML"
                                    .into(),
                            });
                        }
                    }
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(value) => value.to_string(),
                        None => return Err(XmlError::EntityRefused { name: truncate(&name, 64) }),
                    }
                };
                if stack.is_empty() {
                    return Err(XmlError::Malformed {
                        reason: "reference outside the root element".into(),
                    });
                }
                add_text(&resolved, &mut stack, &mut nodes, &mut text_bytes, limits)?;
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {
                nodes += 1;
                if nodes > limits.max_nodes {
                    return Err(XmlError::TooManyNodes { limit: limits.max_nodes });
                }
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed { reason: "unclosed element at end of document".into() });
    }
    root.ok_or_else(|| XmlError::Malformed { reason: "no root element".into() })
}

/// Whether `input` is one well-formed, safe document under `limits`.
pub fn check_well_formed(input: &[u8], limits: &XmlLimits) -> Result<(), XmlError> {
    parse_document(input, limits).map(|_| ())
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn add_text(
    content: &str,
    stack: &mut [Element],
    nodes: &mut usize,
    text_bytes: &mut usize,
    limits: &XmlLimits,
) -> Result<(), XmlError> {
    *nodes += 1;
    if *nodes > limits.max_nodes {
        return Err(XmlError::TooManyNodes { limit: limits.max_nodes });
    }
    match stack.last_mut() {
        Some(parent) => {
            *text_bytes += content.len();
            if *text_bytes > limits.max_text_bytes {
                return Err(XmlError::TooMuchText { limit: limits.max_text_bytes });
            }
            parent.text.push_str(content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed { reason: "text outside the root element".into() }),
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

fn malformed(error: quick_xml::Error) -> XmlError {
    XmlError::Malformed { reason: truncate(&error.to_string(), 200) }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Element, XmlError> {
        parse_document(text.as_bytes(), &XmlLimits::default())
    }

    #[test]
    fn reads_namespaces_text_and_predefined_entities() {
        let root = parse(
            r#"<?xml version="1.0"?><s:E xmlns:s="urn:s"><s:B a="x&amp;y">1 &lt; 2 &#65;<![CDATA[<c>]]></s:B></s:E>"#,
        )
        .unwrap();
        assert_eq!(root.namespace.as_deref(), Some("urn:s"));
        let b = root.child("B").unwrap();
        assert_eq!(b.text, "1 < 2 A<c>");
        assert_eq!(b.attributes, vec![("a".to_string(), "x&y".to_string())]);
    }

    #[test]
    fn refuses_dtds_and_entities() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert_eq!(parse(laughs), Err(XmlError::DtdRefused));
        let xxe = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert_eq!(parse(xxe), Err(XmlError::DtdRefused));
        assert_eq!(parse("<foo>&xxe;</foo>"), Err(XmlError::EntityRefused { name: "xxe".into() }));
        assert_eq!(parse("<foo a='&xxe;'/>"), Err(XmlError::EntityRefused { name: "xxe".into() }));
    }

    #[test]
    fn enforces_limits_and_well_formedness() {
        let limits = XmlLimits { max_depth: 3, max_nodes: 10, ..XmlLimits::default() };
        assert_eq!(
            parse_document(b"<a><b><c><d/></c></b></a>", &limits),
            Err(XmlError::TooDeep { limit: 3 })
        );
        let wide = format!("<a>{}</a>", "<b/>".repeat(20));
        assert_eq!(
            parse_document(wide.as_bytes(), &limits),
            Err(XmlError::TooManyNodes { limit: 10 })
        );
        for bad in ["<a>", "<a></b>", "<a/><b/>", "text<a/>", "", "<a>&#0;</a>", "<p:a/>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_document(&[0xff, 0xfe], &limits), Err(XmlError::NotUtf8));
    }
}
