//! Fuzz the safe XML reader and the SOAP response reader: any input must end in a tree or
//! an error within the limits, never a panic, and no DTD is ever accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_worker::outbound::soap;
use switchboard_worker::outbound::xml::{XmlLimits, parse_document};

fuzz_target!(|data: &[u8]| {
    let limits = XmlLimits { max_depth: 32, max_nodes: 2_000, ..XmlLimits::default() };
    let parsed = parse_document(data, &limits);
    if let Ok(root) = &parsed {
        assert!(depth(root) <= limits.max_depth);
    }
    if starts_with_doctype(data) {
        assert!(parsed.is_err(), "a document with a DTD was accepted");
    }
    let _ = soap::parse_response(data, &limits);
});

fn depth(element: &switchboard_worker::outbound::xml::Element) -> usize {
    1 + element.children.iter().map(depth).max().unwrap_or(0)
}

/// Whether the prolog (after an optional XML declaration and white space) is a DOCTYPE.
fn starts_with_doctype(data: &[u8]) -> bool {
    let mut rest = data.trim_ascii_start();
    if rest.starts_with(b"<?xml")
        && let Some(end) = rest.windows(2).position(|w| w == b"?>")
    {
        rest = rest[end + 2..].trim_ascii_start();
    }
    rest.starts_with(b"<!DOCTYPE")
}
