//! Fuzz `${var}` templates: any source, any value, every encoding. Parsing and rendering
//! must never panic, and what they return must keep the encoding's promises.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use switchboard_worker::config::VariableConfig;
use switchboard_worker::outbound::template::{Encoding, Template, Variables};

const ENCODINGS: [Encoding; 7] = [
    Encoding::Json,
    Encoding::Xml,
    Encoding::PathSegment,
    Encoding::QueryComponent,
    Encoding::Form,
    Encoding::HeaderValue,
    Encoding::Text,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let encoding = ENCODINGS[selector as usize % ENCODINGS.len()];
    let text = String::from_utf8_lossy(rest);
    let (source, value) = text.split_once('\u{0}').unwrap_or((&text, "value"));
    let declared = [
        VariableConfig { name: "v".into(), default: None, max_length: 4096 },
        VariableConfig { name: "w".into(), default: Some("d\"<&".into()), max_length: 16 },
    ];
    let Ok(template) = Template::parse(source, encoding, &declared) else { return };
    let fixed = BTreeMap::new();
    let supplied = BTreeMap::from([("v".to_string(), value.to_string())]);
    let Ok(out) = template.render(&Variables::new(&declared, &fixed, &supplied)) else { return };
    match encoding {
        Encoding::HeaderValue => {
            if !source.contains(['\r', '\n', '\0']) {
                assert!(
                    !out.contains(['\r', '\n', '\0']),
                    "a value added a line break to a header"
                );
            }
        }
        Encoding::QueryComponent => {
            assert!(
                out.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "a query component is not fully encoded"
            );
        }
        Encoding::Json => {
            // render() promises valid JSON for this encoding.
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "rendered JSON does not parse"
            );
        }
        _ => {}
    }
});
