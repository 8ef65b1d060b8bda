//! SOAP 1.1 and 1.2 envelopes and faults.
//!
//! | | SOAP 1.1 | SOAP 1.2 |
//! |---|---|---|
//! | envelope namespace | `http://schemas.xmlsoap.org/soap/envelope/` | `http://www.w3.org/2003/05/soap-envelope` |
//! | content type | `text/xml; charset=utf-8` | `application/soap+xml; charset=utf-8; action="..."` |
//! | action | `SOAPAction: "..."` header | `action` parameter of the content type |
//! | fault | `faultcode`, `faultstring` | `Code/Value` (+ `Subcode`), `Reason/Text` |
//!
//! The method body template is the content of `<soap:Body>`. Responses are read with the
//! safe XML reader ([`super::xml`]); a fault becomes a [`SoapFault`] whose code tells a
//! sender (client) fault, which will fail again, from a receiver (server) fault, which may not.

use super::xml::{Element, XmlError, XmlLimits, parse_document};

/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// A SOAP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1.
    V11,
    /// SOAP 1.2.
    V12,
}

impl SoapVersion {
    /// Parse the config's `soapVersion` (default 1.1).
    pub fn from_config(version: Option<&str>) -> Result<SoapVersion, String> {
        match version {
            None | Some("1.1") => Ok(SoapVersion::V11),
            Some("1.2") => Ok(SoapVersion::V12),
            Some(other) => Err(format!("unknown SOAP version {other:?} (1.1 or 1.2)")),
        }
    }

    /// Envelope namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    /// Content type of a request with this `action`.
    pub fn content_type(self, action: Option<&str>) -> String {
        match (self, action) {
            (SoapVersion::V11, _) => "text/xml; charset=utf-8".into(),
            (SoapVersion::V12, Some(action)) => {
                format!("application/soap+xml; charset=utf-8; action=\"{action}\"")
            }
            (SoapVersion::V12, None) => "application/soap+xml; charset=utf-8".into(),
        }
    }
}

/// Wrap rendered body content in an envelope.
pub fn envelope(version: SoapVersion, body_content: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"{}\"><soap:Body>{}</soap:Body></soap:Envelope>",
        version.namespace(),
        body_content
    )
}

/// A SOAP fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoapFault {
    /// Fault code as written (`soap:Client`, `env:Sender`, ...), with a 1.2 subcode appended
    /// after `/`.
    pub code: String,
    /// Fault string or first reason text.
    pub reason: String,
}

impl SoapFault {
    /// Whether the fault blames the request (it will fail again as it is).
    pub fn is_sender_fault(&self) -> bool {
        let main = self.code.split('/').next().unwrap_or_default();
        let local = main.rsplit(':').next().unwrap_or_default();
        let local = local.split('.').next().unwrap_or_default();
        matches!(
            local,
            "Client" | "Sender" | "VersionMismatch" | "MustUnderstand" | "DataEncodingUnknown"
        )
    }
}

impl std::fmt::Display for SoapFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SOAP fault {}: {}", self.code, self.reason)
    }
}

/// Read a SOAP response envelope; `Ok(Some(fault))` when its body is a fault.
pub fn parse_response(body: &[u8], limits: &XmlLimits) -> Result<Option<SoapFault>, XmlError> {
    let root = parse_document(body, limits)?;
    let is_envelope_ns =
        |e: &Element| matches!(e.namespace.as_deref(), Some(SOAP11_NS) | Some(SOAP12_NS));
    if root.local_name != "Envelope" || !is_envelope_ns(&root) {
        return Err(XmlError::Malformed { reason: "the response is not a SOAP envelope".into() });
    }
    let soap_body = root
        .children
        .iter()
        .find(|c| c.local_name == "Body" && c.namespace == root.namespace)
        .ok_or_else(|| XmlError::Malformed { reason: "the SOAP envelope has no Body".into() })?;
    let Some(fault) = soap_body
        .children
        .iter()
        .find(|c| c.local_name == "Fault" && c.namespace == root.namespace)
    else {
        return Ok(None);
    };
    let text = |e: Option<&Element>| e.map(|e| e.text.trim().to_string()).unwrap_or_default();
    let parsed = if root.namespace.as_deref() == Some(SOAP12_NS) {
        let code = fault.child("Code");
        let mut code_text = text(code.and_then(|c| c.child("Value")));
        let subcode = text(code.and_then(|c| c.child("Subcode")).and_then(|s| s.child("Value")));
        if !subcode.is_empty() {
            code_text = format!("{code_text}/{subcode}");
        }
        SoapFault {
            code: code_text,
            reason: text(fault.child("Reason").and_then(|r| r.child("Text"))),
        }
    } else {
        SoapFault { code: text(fault.child("faultcode")), reason: text(fault.child("faultstring")) }
    };
    Ok(Some(SoapFault { code: bounded(&parsed.code, 128), reason: bounded(&parsed.reason, 512) }))
}

fn bounded(text: &str, max_chars: usize) -> String {
    super::http::sanitize_excerpt(text.as_bytes(), max_chars, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap11_fault() {
        let body = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>Bad
 input</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        let fault = parse_response(body.as_bytes(), &XmlLimits::default()).unwrap().unwrap();
        assert_eq!(fault, SoapFault { code: "s:Client".into(), reason: "Bad input".into() });
        assert!(fault.is_sender_fault());
    }

    #[test]
    fn soap12_fault_and_success() {
        let body = format!(
            r#"<env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>m:Busy</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">Try later</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#
        );
        let fault = parse_response(body.as_bytes(), &XmlLimits::default()).unwrap().unwrap();
        assert_eq!(fault.code, "env:Receiver/m:Busy");
        assert!(!fault.is_sender_fault());
        let ok = envelope(SoapVersion::V12, "<m:Ok xmlns:m=\"urn:m\"/>");
        assert_eq!(parse_response(ok.as_bytes(), &XmlLimits::default()), Ok(None));
        assert!(parse_response(b"<a/>", &XmlLimits::default()).is_err());
    }
}
