//! Parsing an import file into records: CSV, JSON, JSON Lines and XML.
//!
//! ```text
//!  bytes (≤ maxBytes) ──▶ csv       header names (or c0..cn) → {name: text}, one per line
//!                     ├─▶ json      the array at recordsPointer, each element an object
//!                     ├─▶ jsonLines one object per non-empty line
//!                     └─▶ xml       every <recordElement>; its child elements become fields
//!                                   (safe reader: no DTD, no entities, node limits)
//!  ──▶ Vec<ParsedRow { row, Ok(record) | Err(reason) }>
//! ```
//!
//! A problem confined to one row (a CSV line with the wrong number of cells, a JSON Lines line
//! that is not JSON, an element that is not an object) rejects that row with a reason; a file
//! that cannot be read as a whole (not UTF-8 JSON, no array at the pointer, malformed XML)
//! fails the run with a [`ParseError`]. Nothing panics on hostile input. Cell values are kept
//! as text exactly as written: a CSV cell such as `=HYPERLINK(...)` is data, never a formula.

use serde_json::{Map, Value};

use crate::config::FileImportConfig;
use crate::outbound::xml::{Element, XmlLimits, parse_document};

/// One row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    /// 1-based row number (CSV header excluded; JSON Lines counts non-empty lines).
    pub row: u64,
    /// The record, or why this row cannot be one.
    pub record: Result<Map<String, Value>, String>,
}

/// Why a file could not be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The format or its settings are invalid.
    #[error("import settings invalid: {0}")]
    Settings(String),
    /// The file is not valid for its format.
    #[error("the file is not valid {format}: {reason}")]
    Malformed {
        /// `csv`, `json`, `jsonLines` or `xml`.
        format: &'static str,
        /// What is wrong (position and kind, never content).
        reason: String,
    },
}

impl ParseError {
    /// Short category.
    pub fn category(&self) -> &'static str {
        match self {
            ParseError::Settings(_) => "config",
            ParseError::Malformed { .. } => "malformed_file",
        }
    }
}

/// Parse `bytes` as the configured format.
pub fn parse_file(bytes: &[u8], config: &FileImportConfig) -> Result<Vec<ParsedRow>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match config.format.as_str() {
        "csv" => parse_csv(bytes, config),
        "json" => parse_json(bytes, config.records_pointer.as_deref().unwrap_or("")),
        "jsonLines" => Ok(parse_json_lines(bytes)),
        "xml" => {
            let element = config
                .record_element
                .as_deref()
                .filter(|e| !e.is_empty())
                .ok_or_else(|| ParseError::Settings("xml imports need recordElement".into()))?;
            parse_xml(bytes, element, config.max_bytes)
        }
        other => Err(ParseError::Settings(format!(
            "format {other:?} is not one of csv, json, jsonLines, xml"
        ))),
    }
}

fn parse_csv(bytes: &[u8], config: &FileImportConfig) -> Result<Vec<ParsedRow>, ParseError> {
    let delimiter = match config.csv_delimiter.as_deref().unwrap_or(",") {
        "\\t" | "\t" => b'\t',
        d if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        other => {
            return Err(ParseError::Settings(format!(
                "csv delimiter {other:?} must be one ASCII character"
            )));
        }
    };
    let header = config.csv_header.unwrap_or(true);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let malformed = |reason: String| ParseError::Malformed { format: "csv", reason };
    let mut records = reader.byte_records();
    let names: Option<Vec<String>> = if header {
        match records.next() {
            None => return Ok(Vec::new()),
            Some(Err(e)) => return Err(malformed(format!("header: {}", csv_error(&e)))),
            Some(Ok(h)) => {
                let names = h
                    .iter()
                    .map(|n| std::str::from_utf8(n).map(|s| s.trim().to_string()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| malformed("the header is not UTF-8".into()))?;
                let mut seen = std::collections::BTreeSet::new();
                for n in &names {
                    if n.is_empty() {
                        return Err(malformed("the header has an empty column name".into()));
                    }
                    if !seen.insert(n) {
                        return Err(malformed(format!("the header names column {n:?} twice")));
                    }
                }
                Some(names)
            }
        }
    } else {
        None
    };
    let mut rows = Vec::new();
    for (i, record) in records.enumerate() {
        let row = i as u64 + 1;
        let record = match record {
            Err(e) => Err(format!("cannot read the line: {}", csv_error(&e))),
            Ok(r) => {
                let expected = names.as_ref().map(Vec::len);
                match expected {
                    Some(n) if r.len() != n => {
                        Err(format!("has {} cells, the header has {n}", r.len()))
                    }
                    _ => r
                        .iter()
                        .enumerate()
                        .map(|(c, cell)| {
                            let name = match &names {
                                Some(names) => names[c].clone(),
                                None => format!("c{c}"),
                            };
                            std::str::from_utf8(cell)
                                .map(|text| (name.clone(), Value::String(text.to_string())))
                                .map_err(|_| format!("cell {name:?} is not UTF-8"))
                        })
                        .collect::<Result<Map<String, Value>, String>>(),
                }
            }
        };
        rows.push(ParsedRow { row, record });
    }
    Ok(rows)
}

/// A csv error's kind and position, without the offending text.
fn csv_error(error: &csv::Error) -> String {
    let position = error.position().map(|p| format!(" at line {}", p.line())).unwrap_or_default();
    let kind = match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8",
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of cells",
        csv::ErrorKind::Io(_) => "read error",
        _ => "malformed line",
    };
    format!("{kind}{position}")
}

fn object_or_reason(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("the record is a JSON {}, not an object", json_type(&other))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_json(bytes: &[u8], pointer: &str) -> Result<Vec<ParsedRow>, ParseError> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Malformed {
        format: "json",
        reason: format!("{} at line {} column {}", json_error_kind(&e), e.line(), e.column()),
    })?;
    let records =
        if pointer.is_empty() { Some(document) } else { document.pointer(pointer).cloned() };
    match records {
        Some(Value::Array(items)) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| ParsedRow { row: i as u64 + 1, record: object_or_reason(v) })
            .collect()),
        Some(other) => Err(ParseError::Malformed {
            format: "json",
            reason: format!("{pointer:?} holds a {}, not an array of records", json_type(&other)),
        }),
        None => Err(ParseError::Malformed {
            format: "json",
            reason: format!("nothing at recordsPointer {pointer:?}"),
        }),
    }
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of file",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    }
}

fn parse_json_lines(bytes: &[u8]) -> Vec<ParsedRow> {
    bytes
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .enumerate()
        .map(|(i, line)| ParsedRow {
            row: i as u64 + 1,
            record: serde_json::from_slice::<Value>(line)
                .map_err(|e| {
                    format!(
                        "the line is not JSON ({} at column {})",
                        json_error_kind(&e),
                        e.column()
                    )
                })
                .and_then(object_or_reason),
        })
        .collect()
}

fn parse_xml(
    bytes: &[u8],
    record_element: &str,
    max_bytes: u64,
) -> Result<Vec<ParsedRow>, ParseError> {
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX).max(1024);
    let limits = XmlLimits {
        max_bytes: limit,
        max_depth: 64,
        max_nodes: 20_000_000,
        max_attributes: 64,
        max_text_bytes: limit,
    };
    let root = parse_document(bytes, &limits)
        .map_err(|e| ParseError::Malformed { format: "xml", reason: e.to_string() })?;
    let mut found = Vec::new();
    collect_records(&root, record_element, &mut found);
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(i, element)| ParsedRow { row: i as u64 + 1, record: Ok(element_fields(element)) })
        .collect())
}

fn collect_records<'a>(element: &'a Element, name: &str, out: &mut Vec<&'a Element>) {
    if element.local_name == name {
        out.push(element);
        return;
    }
    for child in &element.children {
        collect_records(child, name, out);
    }
}

/// An element's fields: attributes, then child elements (text, or nested fields for
/// elements with children; repeated names become arrays).
fn element_fields(element: &Element) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, value) in &element.attributes {
        if !name.starts_with("xmlns") {
            fields.insert(name.clone(), Value::String(value.clone()));
        }
    }
    for child in &element.children {
        let value = if child.children.is_empty() {
            Value::String(child.text.trim().to_string())
        } else {
            Value::Object(element_fields(child))
        };
        match fields.get_mut(&child.local_name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                fields.insert(child.local_name.clone(), value);
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(format: &str) -> FileImportConfig {
        FileImportConfig {
            fetch: serde_json::from_value(serde_json::json!({
                "endpoint": {"name": "f", "url": "https://files.example", "protocol": "rest", "timeoutMs": 1000,
                    "retry": {"maxAttempts": 1, "initialBackoffMs": 1, "maxBackoffMs": 1},
                    "circuitBreaker": {"failureThreshold": 5, "openForMs": 1000}},
                "method": {"name": "get", "httpMethod": "GET", "path": "/f"}
            }))
            .unwrap(),
            format: format.into(),
            csv_delimiter: None,
            csv_header: None,
            records_pointer: None,
            record_element: Some("row".into()),
            max_bytes: 1 << 20,
            max_rejected_percent: 5,
        }
    }

    #[test]
    fn csv_with_header_keeps_formulas_as_text_and_rejects_short_lines() {
        let rows = parse_file(
            b"\xef\xbb\xbfid,name\n1,\"=HYPERLINK(\"\"http://x\"\")\"\n2\n3,\"a,b\"\n",
            &config("csv"),
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].record.as_ref().unwrap()["name"], "=HYPERLINK(\"http://x\")");
        assert_eq!(rows[1].record, Err("has 1 cells, the header has 2".into()));
        assert_eq!(rows[2].row, 3);
        assert_eq!(rows[2].record.as_ref().unwrap()["name"], "a,b");
    }

    #[test]
    fn csv_without_header_and_other_delimiters() {
        let mut c = config("csv");
        c.csv_header = Some(false);
        c.csv_delimiter = Some(";".into());
        let rows = parse_file(b"a;b\nc;d\n", &c).unwrap();
        assert_eq!(rows[1].record.as_ref().unwrap()["c1"], "d");
        c.csv_delimiter = Some("ab".into());
        assert!(matches!(parse_file(b"", &c), Err(ParseError::Settings(_))));
        let mut h = config("csv");
        h.csv_header = Some(true);
        assert!(parse_file(b"a,a\n1,2\n", &h).is_err());
        assert!(parse_file(b"a,\xff\n", &h).is_err());
    }

    #[test]
    fn json_and_json_lines() {
        let mut c = config("json");
        c.records_pointer = Some("/data/items".into());
        let rows = parse_file(br#"{"data":{"items":[{"a":1},2]}}"#, &c).unwrap();
        assert_eq!(rows[0].record.as_ref().unwrap()["a"], 1);
        assert!(rows[1].record.is_err());
        assert!(parse_file(br#"{"data":{"items":"#, &c).is_err());
        assert!(parse_file(br#"{"data":{}}"#, &c).is_err());
        let rows = parse_file(b"{\"a\":1}\r\n\n{oops\n[1]\n", &config("jsonLines")).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].record.is_ok() && rows[1].record.is_err() && rows[2].record.is_err());
    }

    #[test]
    fn xml_records_and_refusals() {
        let rows = parse_file(
            br#"<export><rows><row id="7"><name> Ada </name><tag>a</tag><tag>b</tag><addr><city>X</city></addr></row><row><name/></row></rows></export>"#,
            &config("xml"),
        )
        .unwrap();
        let first = rows[0].record.as_ref().unwrap();
        assert_eq!(first["id"], "7");
        assert_eq!(first["name"], "Ada");
        assert_eq!(first["tag"], serde_json::json!(["a", "b"]));
        assert_eq!(first["addr"]["city"], "X");
        assert_eq!(rows[1].record.as_ref().unwrap()["name"], "");
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><export><row><n>&b;</n></row></export>"#;
        assert!(matches!(parse_file(laughs, &config("xml")), Err(ParseError::Malformed { .. })));
        assert!(parse_file(b"<export><row>", &config("xml")).is_err());
    }
}
