//! `${var}` templates, encoded for the place the value lands in.
//!
//! A method's path, query values, header values and body are templates. A template is parsed
//! once against the method's declared variables (an undeclared placeholder is an error, not an
//! empty string) and rendered with one [`Encoding`], chosen by where the text goes:
//!
//! ```text
//!   "${name}" in a JSON body     → JSON string content ("\"", "\\", control characters escaped);
//!   ${n} outside a JSON string   → must itself be a JSON number, true, false or null
//!   XML / SOAP body              → XML text (& < > " ' escaped, forbidden characters refused)
//!   path                         → one percent-encoded path segment ("." and ".." refused)
//!   query value                  → one percent-encoded query component
//!   header value                 → verbatim, but CR, LF, NUL and other controls refused
//! ```
//!
//! Values can therefore never add a header, a path segment, a query parameter, or a JSON or
//! XML structure (RELIABILITY O2). Rendering is a single pass over a bounded template with
//! bounded values: no file, environment or network access, no loops, no recursion (O3).
//!
//! Syntax: `${name}` with a name matching `[A-Za-z_][A-Za-z0-9_]*`; `$${` writes a literal
//! `${`; any other `$` is literal.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::VariableConfig;

/// Longest template source accepted.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Most placeholders in one template.
pub const MAX_PLACEHOLDERS: usize = 1024;
/// Longest rendered output accepted.
pub const MAX_RENDERED_BYTES: usize = 8 * 1024 * 1024;
/// Longest variable name.
pub const MAX_NAME_LENGTH: usize = 63;

/// Characters left as they are in a path segment or query component (RFC 3986 unreserved).
pub(crate) const COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Where a rendered template lands, and so how its values are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A JSON document: values inside strings are string content, others JSON scalars.
    Json,
    /// XML text or attribute content.
    Xml,
    /// A URL path: each value is one percent-encoded segment.
    PathSegment,
    /// A URL query key or value: literals and values are percent-encoded.
    QueryComponent,
    /// An `application/x-www-form-urlencoded` body: values are percent-encoded.
    Form,
    /// An HTTP header value: control characters refused.
    HeaderValue,
    /// Plain text: values as they are.
    Text,
}

impl Encoding {
    /// Short name for errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "JSON body",
            Encoding::Xml => "XML body",
            Encoding::PathSegment => "path",
            Encoding::QueryComponent => "query",
            Encoding::Form => "form body",
            Encoding::HeaderValue => "header",
            Encoding::Text => "text body",
        }
    }
}

/// Why a template could not be parsed or rendered. Messages name variables, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template source is over [`MAX_TEMPLATE_BYTES`].
    #[error("template is {size} bytes, more than the limit of {limit}")]
    TemplateTooLarge {
        /// Size of the source.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_PLACEHOLDERS`] placeholders.
    #[error("template has more than {limit} placeholders")]
    TooManyPlaceholders {
        /// The limit.
        limit: usize,
    },
    /// `${` without a valid name and closing `}`.
    #[error(
        "invalid placeholder at byte {offset}: expected ${{name}} with a name of letters, digits and _"
    )]
    InvalidPlaceholder {
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// A placeholder names no declared variable.
    #[error("placeholder ${{{name}}} is not a declared variable")]
    Undeclared {
        /// The name.
        name: String,
    },
    /// A required variable has no value.
    #[error("variable {name:?} is required and has no value")]
    Missing {
        /// The name.
        name: String,
    },
    /// A value is longer than the variable's `maxLength`.
    #[error(
        "value of variable {name:?} has {length} characters, more than its maxLength {max_length}"
    )]
    TooLong {
        /// The name.
        name: String,
        /// Characters in the value.
        length: usize,
        /// The limit.
        max_length: u32,
    },
    /// A value holds a character that cannot be carried in its context (CR/LF in a header).
    #[error("value of variable {name:?} contains a character not allowed in a {context} ({what})")]
    ForbiddenCharacter {
        /// The name.
        name: String,
        /// Where it was going.
        context: &'static str,
        /// Which character class.
        what: &'static str,
    },
    /// A value used outside a JSON string is not a JSON scalar.
    #[error(
        "variable {name:?} is used outside a JSON string, so its value must be a JSON number, true, false or null"
    )]
    NotJsonScalar {
        /// The name.
        name: String,
    },
    /// A placeholder right after a backslash inside a JSON string.
    #[error("placeholder ${{{name}}} follows a backslash inside a JSON string")]
    AfterEscape {
        /// The name.
        name: String,
    },
    /// A path value of `.` or `..`.
    #[error("value of variable {name:?} is a dot segment, which is not allowed in a path")]
    DotSegment {
        /// The name.
        name: String,
    },
    /// The output is over [`MAX_RENDERED_BYTES`].
    #[error("rendered template is larger than {limit} bytes")]
    RenderedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A rendered JSON body does not parse.
    #[error("rendered body is not valid JSON: {reason}")]
    InvalidJson {
        /// Parser message (positions only; serde_json does not quote input).
        reason: String,
    },
}

impl TemplateError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        "template"
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder { name: String, in_json_string: bool },
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    encoding: Encoding,
}

impl Template {
    /// Parse `source` for `encoding`, checking every placeholder against `declared`.
    pub fn parse(
        source: &str,
        encoding: Encoding,
        declared: &[VariableConfig],
    ) -> Result<Template, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TemplateTooLarge {
                size: source.len(),
                limit: MAX_TEMPLATE_BYTES,
            });
        }
        let bytes = source.as_bytes();
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut placeholders = 0usize;
        let mut json = JsonScan::default();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$'
                && bytes.get(i + 1) == Some(&b'$')
                && bytes.get(i + 2) == Some(&b'{')
            {
                literal.push_str("${");
                json.feed("${");
                i += 3;
                continue;
            }
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                let start = i + 2;
                let end = source[start..]
                    .find('}')
                    .map(|p| start + p)
                    .ok_or(TemplateError::InvalidPlaceholder { offset: i })?;
                let name = &source[start..end];
                if !valid_name(name) {
                    return Err(TemplateError::InvalidPlaceholder { offset: i });
                }
                if !declared.iter().any(|v| v.name == name) {
                    return Err(TemplateError::Undeclared { name: name.to_string() });
                }
                placeholders += 1;
                if placeholders > MAX_PLACEHOLDERS {
                    return Err(TemplateError::TooManyPlaceholders { limit: MAX_PLACEHOLDERS });
                }
                if encoding == Encoding::Json && json.escaped {
                    return Err(TemplateError::AfterEscape { name: name.to_string() });
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Placeholder {
                    name: name.to_string(),
                    in_json_string: json.in_string,
                });
                i = end + 1;
                continue;
            }
            // Copy one whole UTF-8 character.
            let ch_len = utf8_len(bytes[i]);
            let ch = &source[i..i + ch_len];
            literal.push_str(ch);
            json.feed(ch);
            i += ch_len;
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments, encoding })
    }

    /// The encoding this template renders with.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Names of the variables used, in order of first use.
    pub fn variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Placeholder { name, .. } = segment
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// Render with the values in `vars`.
    pub fn render(&self, vars: &Variables<'_>) -> Result<String, TemplateError> {
        // Room for the literals and short values, so a small body is written without regrowing.
        let literal: usize = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len(),
                Segment::Placeholder { .. } => 32,
            })
            .sum();
        let mut out = String::with_capacity(literal);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => match self.encoding {
                    Encoding::QueryComponent => {
                        out.extend(utf8_percent_encode(text, COMPONENT));
                    }
                    _ => out.push_str(text),
                },
                Segment::Placeholder { name, in_json_string } => {
                    let value = vars.get(name)?;
                    encode_value(&mut out, name, value, self.encoding, *in_json_string)?;
                }
            }
            if out.len() > MAX_RENDERED_BYTES {
                return Err(TemplateError::RenderedTooLarge { limit: MAX_RENDERED_BYTES });
            }
        }
        if self.encoding == Encoding::Json {
            check_json(&out).map_err(|e| TemplateError::InvalidJson { reason: e.to_string() })?;
        }
        Ok(out)
    }
}

/// The values a render may use: supplied values over fixed ones over declared defaults.
#[derive(Clone, Copy)]
pub struct Variables<'a> {
    declared: &'a [VariableConfig],
    fixed: &'a BTreeMap<String, String>,
    supplied: &'a BTreeMap<String, String>,
}

impl std::fmt::Debug for Variables<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may carry personal data; only names are shown.
        let names: Vec<&str> = self.declared.iter().map(|v| v.name.as_str()).collect();
        f.debug_struct("Variables").field("declared", &names).finish_non_exhaustive()
    }
}

impl<'a> Variables<'a> {
    /// Values for the `declared` variables of a method: `supplied` (per event) win over
    /// `fixed` (per call), which win over each variable's default.
    pub fn new(
        declared: &'a [VariableConfig],
        fixed: &'a BTreeMap<String, String>,
        supplied: &'a BTreeMap<String, String>,
    ) -> Variables<'a> {
        Variables { declared, fixed, supplied }
    }

    /// The value of a declared variable, checked against its `maxLength`.
    pub fn get(&self, name: &str) -> Result<&'a str, TemplateError> {
        let declared = self
            .declared
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| TemplateError::Undeclared { name: name.to_string() })?;
        let value = self
            .supplied
            .get(name)
            .or_else(|| self.fixed.get(name))
            .or(declared.default.as_ref())
            .ok_or_else(|| TemplateError::Missing { name: name.to_string() })?;
        // Count characters only as far as the limit needs, so a huge value costs little.
        let limit = declared.max_length as usize;
        let length = value.chars().take(limit + 1).count();
        if length > limit {
            return Err(TemplateError::TooLong {
                name: name.to_string(),
                length: value.chars().count(),
                max_length: declared.max_length,
            });
        }
        Ok(value.as_str())
    }
}

fn encode_value(
    out: &mut String,
    name: &str,
    value: &str,
    encoding: Encoding,
    in_json_string: bool,
) -> Result<(), TemplateError> {
    match encoding {
        Encoding::Json if in_json_string => escape_json_string(out, value),
        Encoding::Json => {
            let scalar = matches!(
                serde_json::from_str::<serde_json::Value>(value),
                Ok(serde_json::Value::Number(_)
                    | serde_json::Value::Bool(_)
                    | serde_json::Value::Null)
            );
            if !scalar {
                return Err(TemplateError::NotJsonScalar { name: name.to_string() });
            }
            out.push_str(value.trim());
        }
        Encoding::Xml => escape_xml(out, name, value)?,
        Encoding::PathSegment => {
            if value == "." || value == ".." {
                return Err(TemplateError::DotSegment { name: name.to_string() });
            }
            out.extend(utf8_percent_encode(value, COMPONENT));
        }
        Encoding::QueryComponent | Encoding::Form => {
            out.extend(utf8_percent_encode(value, COMPONENT));
        }
        Encoding::HeaderValue => {
            if let Some(what) = header_forbidden(value) {
                return Err(TemplateError::ForbiddenCharacter {
                    name: name.to_string(),
                    context: "header",
                    what,
                });
            }
            out.push_str(value);
        }
        Encoding::Text => out.push_str(value),
    }
    Ok(())
}

/// Why `value` cannot be an HTTP header value, if it cannot.
pub fn header_forbidden(value: &str) -> Option<&'static str> {
    for c in value.chars() {
        match c {
            '\r' | '\n' => return Some("CR or LF"),
            '\0' => return Some("NUL"),
            '\t' => {}
            c if c.is_ascii_control() => return Some("control character"),
            _ => {}
        }
    }
    None
}

/// Append `value` as the content of a JSON string.
pub fn escape_json_string(out: &mut String, value: &str) {
    // Runs of characters that need no escape are copied whole.
    let mut plain = 0;
    for (at, c) in value.char_indices() {
        let escape = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            // HTML-significant and JavaScript line separators are escaped too, so a body that
            // is later embedded in a page or script cannot be broken out of either.
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => None,
            c if (c as u32) < 0x20 || c == '\u{7f}' => None,
            _ => continue,
        };
        out.push_str(&value[plain..at]);
        match escape {
            Some(escape) => out.push_str(escape),
            None => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        plain = at + c.len_utf8();
    }
    out.push_str(&value[plain..]);
}

/// Check that `text` is one JSON document as [`serde_json::Value`] would read it (numbers in
/// range included), without building the value.
fn check_json(text: &str) -> Result<(), serde_json::Error> {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Checked;
    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
            deserializer.deserialize_any(Checked)
        }
    }
    impl<'de> Visitor<'de> for Checked {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E>(self) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Checked, A::Error> {
            while items.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Checked, A::Error> {
            while entries.next_entry::<Checked, Checked>()?.is_some() {}
            Ok(Checked)
        }
    }
    serde_json::from_str::<Checked>(text).map(|_| ())
}

fn escape_xml(out: &mut String, name: &str, value: &str) -> Result<(), TemplateError> {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as character references so that XML end-of-line and attribute
            // normalisation do not change them.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                return Err(TemplateError::ForbiddenCharacter {
                    name: name.to_string(),
                    context: "XML document",
                    what: "character not allowed in XML 1.0",
                });
            }
            c => out.push(c),
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    name.len() <= MAX_NAME_LENGTH && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Tracks whether the literal text so far ends inside a JSON string.
#[derive(Default)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.in_string = false;
                }
            } else if c == '"' {
                self.in_string = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, default: Option<&str>, max_length: u32) -> VariableConfig {
        VariableConfig { name: name.into(), default: default.map(Into::into), max_length }
    }

    fn render(source: &str, encoding: Encoding, value: &str) -> Result<String, TemplateError> {
        let declared = [var("v", None, 1000)];
        let fixed = BTreeMap::new();
        let supplied = BTreeMap::from([("v".to_string(), value.to_string())]);
        Template::parse(source, encoding, &declared)?
            .render(&Variables::new(&declared, &fixed, &supplied))
    }

    #[test]
    fn json_string_values_cannot_close_the_string() {
        let out = render(r#"{"a":"${v}"}"#, Encoding::Json, "x\",\"admin\":true,\"y\":\"").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 1);
        assert_eq!(parsed["a"], "x\",\"admin\":true,\"y\":\"");
    }

    #[test]
    fn json_string_values_are_escaped_and_read_back_unchanged() {
        let value = "plain é\"q\\b\n\r\t<a href>&\u{2028}\u{2029}\u{1}\u{7f}😀 end";
        let out = render(r#"{"a":"${v}","b":[1,{"c":null}]}"#, Encoding::Json, value).unwrap();
        assert_eq!(
            out,
            r#"{"a":"plain é\"q\\b\n\r\t\u003ca href\u003e\u0026\u2028\u2029\u0001\u007f😀 end","b":[1,{"c":null}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["a"], value);
        // The rendered document is checked whole: what a value cannot break, a template can.
        assert!(matches!(
            render(r#"{"a":"${v}",}"#, Encoding::Json, "x"),
            Err(TemplateError::InvalidJson { .. })
        ));
        assert!(matches!(
            render(r#"{"a":"${v}"} {}"#, Encoding::Json, "x"),
            Err(TemplateError::InvalidJson { .. })
        ));
    }

    #[test]
    fn json_scalars_outside_strings_must_be_scalars() {
        assert_eq!(render(r#"{"n":${v}}"#, Encoding::Json, "42").unwrap(), r#"{"n":42}"#);
        // Found by fuzzing: a number no parser can hold.
        assert!(matches!(
            render("2e88888", Encoding::Json, ""),
            Err(TemplateError::InvalidJson { .. })
        ));
        assert!(matches!(
            render("${v}", Encoding::Json, "2e88888"),
            Err(TemplateError::NotJsonScalar { .. })
        ));
        assert!(matches!(
            render(r#"{"n":${v}}"#, Encoding::Json, "1,\"admin\":true"),
            Err(TemplateError::NotJsonScalar { .. })
        ));
        assert!(matches!(
            render(r#"{"n":${v}}"#, Encoding::Json, "[1]"),
            Err(TemplateError::NotJsonScalar { .. })
        ));
    }

    #[test]
    fn a_placeholder_after_a_backslash_is_refused() {
        assert!(matches!(
            render(r#"{"a":"\${v}"}"#, Encoding::Json, "x"),
            Err(TemplateError::AfterEscape { .. })
        ));
    }

    #[test]
    fn xml_values_are_text() {
        let out = render("<a>${v}</a>", Encoding::Xml, "</a><b x='1'>&").unwrap();
        assert_eq!(out, "<a>&lt;/a&gt;&lt;b x=&apos;1&apos;&gt;&amp;</a>");
        assert!(render("<a>${v}</a>", Encoding::Xml, "\u{1}").is_err());
    }

    #[test]
    fn path_and_query_values_are_one_component() {
        assert_eq!(
            render("/a/${v}", Encoding::PathSegment, "b/../c?d#e").unwrap(),
            "/a/b%2F..%2Fc%3Fd%23e"
        );
        assert!(matches!(
            render("/a/${v}", Encoding::PathSegment, ".."),
            Err(TemplateError::DotSegment { .. })
        ));
        assert_eq!(render("x ${v}", Encoding::QueryComponent, "1&b=2").unwrap(), "x%201%26b%3D2");
    }

    #[test]
    fn header_values_refuse_line_breaks() {
        for bad in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b", "a\u{7f}"] {
            assert!(matches!(
                render("t ${v}", Encoding::HeaderValue, bad),
                Err(TemplateError::ForbiddenCharacter { .. })
            ));
        }
        assert_eq!(render("t ${v}", Encoding::HeaderValue, "a\tb é").unwrap(), "t a\tb é");
    }

    #[test]
    fn syntax_errors_and_undeclared_names() {
        let declared = [var("v", None, 10)];
        for bad in ["${", "${v", "${1x}", "${}", "${v-w}"] {
            assert!(
                matches!(
                    Template::parse(bad, Encoding::Text, &declared),
                    Err(TemplateError::InvalidPlaceholder { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Template::parse("${w}", Encoding::Text, &declared),
            Err(TemplateError::Undeclared { name: "w".into() })
        );
        assert_eq!(render("$${v} $ ${v}", Encoding::Text, "x").unwrap(), "${v} $ x");
    }

    #[test]
    fn defaults_fixed_supplied_and_limits() {
        let declared = [var("a", Some("dflt"), 4), var("b", None, 3)];
        let fixed = BTreeMap::from([("b".to_string(), "fix".to_string())]);
        let none = BTreeMap::new();
        let t = Template::parse("${a}-${b}", Encoding::Text, &declared).unwrap();
        assert_eq!(t.render(&Variables::new(&declared, &fixed, &none)).unwrap(), "dflt-fix");
        let supplied = BTreeMap::from([("b".to_string(), "sup".to_string())]);
        assert_eq!(t.render(&Variables::new(&declared, &fixed, &supplied)).unwrap(), "dflt-sup");
        let long = BTreeMap::from([("b".to_string(), "four".to_string())]);
        assert!(matches!(
            t.render(&Variables::new(&declared, &fixed, &long)),
            Err(TemplateError::TooLong { length: 4, max_length: 3, .. })
        ));
        assert!(matches!(
            t.render(&Variables::new(&declared, &none, &none)),
            Err(TemplateError::Missing { .. })
        ));
        // Length is counted in characters, not bytes.
        let wide = BTreeMap::from([("b".to_string(), "ééé".to_string())]);
        assert_eq!(t.render(&Variables::new(&declared, &fixed, &wide)).unwrap(), "dflt-ééé");
    }

    #[test]
    fn size_limits() {
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            Template::parse(&big, Encoding::Text, &[]),
            Err(TemplateError::TemplateTooLarge { .. })
        ));
        let declared = [var("v", None, 10)];
        let many = "${v}".repeat(MAX_PLACEHOLDERS + 1);
        assert!(matches!(
            Template::parse(&many, Encoding::Text, &declared),
            Err(TemplateError::TooManyPlaceholders { .. })
        ));
    }
}
