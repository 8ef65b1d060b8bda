//! Webhook signature schemes: parsing of the signature headers and verification of the
//! HMAC-SHA256 over the **raw** request bytes, before anything parses the body.
//!
//! ```text
//!  scheme            signed content                      header(s)
//!  standardWebhooks  {webhook-id}.{webhook-timestamp}.{body}  webhook-signature: v1,<b64> [v1,<b64> ...]
//!  github            {body}                              X-Hub-Signature-256: sha256=<hex>
//!  stripe            {t}.{body}                          Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]
//!  custom            {body}                              <header>: <hex> (or sha256=<hex>)
//! ```
//!
//! Several signatures in one header are allowed (key rotation on the sender's side); one match
//! is enough. Every comparison is constant-time ([`subtle`]). Timestamped schemes refuse
//! requests outside `± tolerance`; replay of a fresh request is caught by its sender id, which
//! the queue remembers ([`super::EventSink::seen`]). The parsers here are what `worker/fuzz` exercises: they take any bytes
//! and either return a typed value or a [`SignatureError`], never panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Most signatures considered in one header (a sender rotating keys sends two or three).
const MAX_SIGNATURES: usize = 16;
/// Longest signature header accepted before parsing.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

/// Standard Webhooks id header.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks timestamp header.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks signature header.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitHub's delivery id header.
pub const GITHUB_DELIVERY: &str = "x-github-delivery";
/// Stripe's signature header.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";

/// The HMAC schemes a webhook source can verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Standard Webhooks (also Svix).
    StandardWebhooks,
    /// GitHub `X-Hub-Signature-256`.
    Github,
    /// Stripe `Stripe-Signature`.
    Stripe,
    /// Hex HMAC-SHA256 of the body in the named header.
    Custom {
        /// Header name, lower case.
        header: String,
    },
}

impl SignatureScheme {
    /// The scheme named in an hmac Credential (`standardWebhooks`, `github`, `stripe`,
    /// `custom`).
    pub fn from_config(scheme: &str, header: Option<&str>) -> Result<Self, SignatureError> {
        match scheme {
            "standardWebhooks" | "" => Ok(SignatureScheme::StandardWebhooks),
            "github" => Ok(SignatureScheme::Github),
            "stripe" => Ok(SignatureScheme::Stripe),
            "custom" => match header {
                Some(h) if !h.is_empty() => {
                    Ok(SignatureScheme::Custom { header: h.to_ascii_lowercase() })
                }
                _ => Err(SignatureError::Config("scheme custom needs a header name".into())),
            },
            other => Err(SignatureError::Config(format!("unknown signature scheme {other:?}"))),
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SignatureScheme::StandardWebhooks => "standardWebhooks",
            SignatureScheme::Github => "github",
            SignatureScheme::Stripe => "stripe",
            SignatureScheme::Custom { .. } => "custom",
        }
    }
}

/// Why a signature was not accepted. Messages never contain the secret or the expected tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("malformed {header} header: {reason}")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signed timestamp is too far from the worker's clock.
    #[error("timestamp {timestamp} is outside the accepted window of ±{tolerance_seconds}s")]
    TimestampOutsideTolerance {
        /// Timestamp of the request.
        timestamp: i64,
        /// The window.
        tolerance_seconds: u32,
    },
    /// No signature in the header matches.
    #[error("no signature matches")]
    Mismatch,
    /// The configured secret cannot be used (for example not base64 after `whsec_`).
    #[error("signing secret unusable: {0}")]
    Config(String),
}

impl SignatureError {
    /// Short category for metrics (`reason` label).
    pub fn category(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "signature_missing",
            SignatureError::Malformed { .. } => "signature_malformed",
            SignatureError::TimestampOutsideTolerance { .. } => "timestamp_out_of_window",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::Config(_) => "credential_unusable",
        }
    }
}

fn malformed(header: &str, reason: &'static str) -> SignatureError {
    SignatureError::Malformed { header: header.to_string(), reason }
}

/// An HMAC key decoded for its scheme. Holds key bytes: no `Debug`, zeroed on drop.
pub struct SigningKey {
    bytes: secrecy::SecretSlice<u8>,
}

impl SigningKey {
    /// Key bytes from the content of a secret file for `scheme`.
    ///
    /// Standard Webhooks secrets are base64, optionally prefixed `whsec_` (as the reference
    /// libraries read them); the other schemes use the secret's bytes as they are. A trailing
    /// newline (left by `echo` when the Secret was made) is not part of the key.
    pub fn from_secret(scheme: &SignatureScheme, secret: &[u8]) -> Result<Self, SignatureError> {
        let trimmed = trim_trailing_newline(secret);
        if trimmed.is_empty() {
            return Err(SignatureError::Config("the secret is empty".into()));
        }
        let bytes = match scheme {
            SignatureScheme::StandardWebhooks => {
                let text = trimmed.strip_prefix(b"whsec_").unwrap_or(trimmed);
                BASE64.decode(text).map_err(|_| {
                    SignatureError::Config(
                        "a standardWebhooks secret must be base64, optionally prefixed whsec_"
                            .into(),
                    )
                })?
            }
            _ => trimmed.to_vec(),
        };
        Ok(SigningKey { bytes: bytes.into() })
    }

    fn mac(&self) -> HmacSha256 {
        use secrecy::ExposeSecret;
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        <HmacSha256 as KeyInit>::new_from_slice(self.bytes.expose_secret())
            .expect("HMAC accepts any key length")
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

fn trim_trailing_newline(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

/// Constant-time check of `expected` against each candidate; true when one matches.
fn any_matches(expected: &[u8; TAG_LEN], candidates: &[[u8; TAG_LEN]]) -> bool {
    let mut found = subtle::Choice::from(0u8);
    for candidate in candidates {
        found |= expected.ct_eq(candidate);
    }
    found.into()
}

/// Parse a Standard Webhooks `webhook-signature` value: space-separated `v1,<base64>` entries.
/// Entries of other versions (`v1a` asymmetric signatures) are skipped; a `v1` entry that does
/// not decode to 32 bytes is an error.
pub fn parse_standard_signatures(value: &str) -> Result<Vec<[u8; TAG_LEN]>, SignatureError> {
    if value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(malformed(WEBHOOK_SIGNATURE, "too long"));
    }
    let mut tags = Vec::new();
    for entry in value.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, encoded)) = entry.split_once(',') else {
            return Err(malformed(WEBHOOK_SIGNATURE, "entry without version prefix"));
        };
        if version != "v1" {
            continue;
        }
        // An entry that is not a 32-byte base64 tag can never match; skipping it (rather than
        // failing the request) keeps one stale or foreign entry from hiding a valid one.
        let Some(tag) = BASE64.decode(encoded).ok().and_then(|d| <[u8; TAG_LEN]>::try_from(d).ok())
        else {
            continue;
        };
        if tags.len() == MAX_SIGNATURES {
            return Err(malformed(WEBHOOK_SIGNATURE, "too many signatures"));
        }
        tags.push(tag);
    }
    if tags.is_empty() {
        return Err(malformed(WEBHOOK_SIGNATURE, "no valid v1 signature"));
    }
    Ok(tags)
}

/// Parse a decimal Unix timestamp in seconds.
pub fn parse_timestamp(header: &str, value: &str) -> Result<i64, SignatureError> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(header, "timestamp is not whole seconds"));
    }
    value.parse().map_err(|_| malformed(header, "timestamp is not whole seconds"))
}

/// Parse a hex HMAC-SHA256 tag, with an optional `sha256=` prefix.
pub fn parse_hex_tag(header: &str, value: &str) -> Result<[u8; TAG_LEN], SignatureError> {
    let hex_part = value.trim().strip_prefix("sha256=").unwrap_or(value.trim());
    if hex_part.len() != TAG_LEN * 2 {
        return Err(malformed(header, "signature is not 64 hex digits"));
    }
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_part, &mut tag).map_err(|_| malformed(header, "not hex"))?;
    Ok(tag)
}

/// Parse a GitHub `X-Hub-Signature-256` value (`sha256=<hex>`; the prefix is required).
pub fn parse_github_signature(value: &str) -> Result<[u8; TAG_LEN], SignatureError> {
    if !value.starts_with("sha256=") {
        return Err(malformed(GITHUB_SIGNATURE, "missing sha256= prefix"));
    }
    parse_hex_tag(GITHUB_SIGNATURE, value)
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSignature {
    /// `t=`.
    pub timestamp: i64,
    /// Every `v1=` tag.
    pub tags: Vec<[u8; TAG_LEN]>,
}

/// Parse a `Stripe-Signature` value: comma-separated `key=value` pairs with one `t` and one or
/// more `v1`; other keys (`v0`, test-mode schemes) are ignored.
pub fn parse_stripe_signature(value: &str) -> Result<StripeSignature, SignatureError> {
    if value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(malformed(STRIPE_SIGNATURE, "too long"));
    }
    let mut timestamp = None;
    let mut tags = Vec::new();
    for pair in value.split(',') {
        let Some((key, val)) = pair.trim().split_once('=') else {
            return Err(malformed(STRIPE_SIGNATURE, "element without ="));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(malformed(STRIPE_SIGNATURE, "two timestamps"));
                }
                timestamp = Some(parse_timestamp(STRIPE_SIGNATURE, val)?);
            }
            "v1" => {
                if tags.len() == MAX_SIGNATURES {
                    return Err(malformed(STRIPE_SIGNATURE, "too many signatures"));
                }
                tags.push(parse_hex_tag(STRIPE_SIGNATURE, val)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed(STRIPE_SIGNATURE, "no t= timestamp"))?;
    if tags.is_empty() {
        return Err(malformed(STRIPE_SIGNATURE, "no v1 signature"));
    }
    Ok(StripeSignature { timestamp, tags })
}

/// What a verified signature establishes about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The sender's message id, when the scheme signs or carries one.
    pub id: Option<String>,
    /// The signed timestamp, when the scheme has one.
    pub timestamp: Option<i64>,
}

/// Read access to request headers by lower-case name.
pub trait HeaderSource {
    /// First value of the header, if it is valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
}

impl HeaderSource for axum::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

fn required<'a>(headers: &'a dyn HeaderSource, name: &str) -> Result<&'a str, SignatureError> {
    headers.header(name).ok_or_else(|| SignatureError::MissingHeader(name.to_string()))
}

fn check_window(timestamp: i64, now: i64, tolerance_seconds: u32) -> Result<(), SignatureError> {
    if (now - timestamp).abs() > i64::from(tolerance_seconds) {
        return Err(SignatureError::TimestampOutsideTolerance { timestamp, tolerance_seconds });
    }
    Ok(())
}

/// Verify `body` against the signature headers of `scheme`.
///
/// `now` is the worker's clock in Unix seconds; `tolerance_seconds` bounds the clock
/// difference for timestamped schemes. The timestamp is checked before the MAC so that an
/// old, validly signed request gets the precise reason.
pub fn verify(
    scheme: &SignatureScheme,
    key: &SigningKey,
    headers: &dyn HeaderSource,
    body: &[u8],
    now: i64,
    tolerance_seconds: u32,
) -> Result<Verified, SignatureError> {
    match scheme {
        SignatureScheme::StandardWebhooks => {
            let id = required(headers, WEBHOOK_ID)?;
            let ts_text = required(headers, WEBHOOK_TIMESTAMP)?;
            let tags = parse_standard_signatures(required(headers, WEBHOOK_SIGNATURE)?)?;
            if id.is_empty() || id.len() > 256 {
                return Err(malformed(WEBHOOK_ID, "empty or longer than 256 bytes"));
            }
            let timestamp = parse_timestamp(WEBHOOK_TIMESTAMP, ts_text)?;
            check_window(timestamp, now, tolerance_seconds)?;
            let expected = key.tag(&[id.as_bytes(), b".", ts_text.as_bytes(), b".", body]);
            if !any_matches(&expected, &tags) {
                return Err(SignatureError::Mismatch);
            }
            Ok(Verified { id: Some(id.to_string()), timestamp: Some(timestamp) })
        }
        SignatureScheme::Github => {
            let tag = parse_github_signature(required(headers, GITHUB_SIGNATURE)?)?;
            if !any_matches(&key.tag(&[body]), &[tag]) {
                return Err(SignatureError::Mismatch);
            }
            let id = headers.header(GITHUB_DELIVERY).map(str::to_string);
            Ok(Verified { id, timestamp: None })
        }
        SignatureScheme::Stripe => {
            let parsed = parse_stripe_signature(required(headers, STRIPE_SIGNATURE)?)?;
            check_window(parsed.timestamp, now, tolerance_seconds)?;
            let ts_text = parsed.timestamp.to_string();
            let expected = key.tag(&[ts_text.as_bytes(), b".", body]);
            if !any_matches(&expected, &parsed.tags) {
                return Err(SignatureError::Mismatch);
            }
            Ok(Verified { id: None, timestamp: Some(parsed.timestamp) })
        }
        SignatureScheme::Custom { header } => {
            let tag = parse_hex_tag(header, required(headers, header)?)?;
            if !any_matches(&key.tag(&[body]), &[tag]) {
                return Err(SignatureError::Mismatch);
            }
            Ok(Verified::default())
        }
    }
}

/// Sign `body` the way a Standard Webhooks sender does: `v1,<base64>`. Used by tests, the
/// benchmark driver and `switchboard dev` to produce requests this verifier accepts.
pub fn sign_standard(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = key.tag(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Headers(Vec<(&'static str, String)>);
    impl HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
        }
    }

    // The Standard Webhooks specification's published example (also in every reference
    // library's tests).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_headers(signature: &str) -> Headers {
        Headers(vec![
            (WEBHOOK_ID, SPEC_ID.into()),
            (WEBHOOK_TIMESTAMP, SPEC_TS.to_string()),
            (WEBHOOK_SIGNATURE, signature.into()),
        ])
    }

    fn spec_key() -> SigningKey {
        SigningKey::from_secret(&SignatureScheme::StandardWebhooks, SPEC_SECRET.as_bytes()).unwrap()
    }

    #[test]
    fn standard_webhooks_spec_vector_signs_and_verifies() {
        assert_eq!(sign_standard(&spec_key(), SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        let v = verify(
            &SignatureScheme::StandardWebhooks,
            &spec_key(),
            &spec_headers(SPEC_SIG),
            SPEC_BODY,
            SPEC_TS,
            300,
        )
        .unwrap();
        assert_eq!(v.id.as_deref(), Some(SPEC_ID));
    }

    #[test]
    fn whsec_prefix_is_optional() {
        let bare = SPEC_SECRET.strip_prefix("whsec_").unwrap();
        let key =
            SigningKey::from_secret(&SignatureScheme::StandardWebhooks, bare.as_bytes()).unwrap();
        assert_eq!(sign_standard(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn rotation_accepts_any_listed_signature_and_skips_other_versions() {
        let header =
            format!("v1a,AAAA v1,!! v1,bm9wZQ== v1,{} {SPEC_SIG}", BASE64.encode([7u8; 32]));
        let scheme = SignatureScheme::StandardWebhooks;
        verify(&scheme, &spec_key(), &spec_headers(&header), SPEC_BODY, SPEC_TS, 300).unwrap();
    }

    #[test]
    fn tampered_body_and_wrong_key_are_refused() {
        let scheme = SignatureScheme::StandardWebhooks;
        let err =
            verify(&scheme, &spec_key(), &spec_headers(SPEC_SIG), b"{}", SPEC_TS, 300).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch);
        let other = SigningKey::from_secret(&scheme, b"whsec_c2VjcmV0").unwrap();
        let err =
            verify(&scheme, &other, &spec_headers(SPEC_SIG), SPEC_BODY, SPEC_TS, 300).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch);
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_both_ways() {
        let scheme = SignatureScheme::StandardWebhooks;
        let h = spec_headers(SPEC_SIG);
        assert!(verify(&scheme, &spec_key(), &h, SPEC_BODY, SPEC_TS + 300, 300).is_ok());
        assert!(verify(&scheme, &spec_key(), &h, SPEC_BODY, SPEC_TS - 300, 300).is_ok());
        for now in [SPEC_TS + 301, SPEC_TS - 301] {
            let err = verify(&scheme, &spec_key(), &h, SPEC_BODY, now, 300).unwrap_err();
            assert_eq!(err.category(), "timestamp_out_of_window");
        }
    }

    #[test]
    fn malformed_standard_headers_have_precise_reasons() {
        for bad in ["", "v1", "v1,!!!", "v1,AAAA", "v2,AAAA"] {
            let err = parse_standard_signatures(bad).unwrap_err();
            assert_eq!(err.category(), "signature_malformed", "{bad:?}");
        }
        let missing = Headers(vec![(WEBHOOK_ID, "x".into())]);
        let err = verify(&SignatureScheme::StandardWebhooks, &spec_key(), &missing, b"", 0, 300)
            .unwrap_err();
        assert_eq!(err, SignatureError::MissingHeader(WEBHOOK_TIMESTAMP.into()));
    }

    #[test]
    fn github_documented_example_verifies() {
        // docs.github.com, "Validating webhook deliveries": secret and payload with their
        // published signature.
        let key = SigningKey::from_secret(&SignatureScheme::Github, b"It's a Secret to Everybody")
            .unwrap();
        let h = Headers(vec![(
            GITHUB_SIGNATURE,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".into(),
        )]);
        verify(&SignatureScheme::Github, &key, &h, b"Hello, World!", 0, 300).unwrap();
        let err = verify(&SignatureScheme::Github, &key, &h, b"Hello, World?", 0, 300).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch);
    }

    #[test]
    fn github_requires_the_prefix() {
        let bare = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(parse_github_signature(bare).unwrap_err().category(), "signature_malformed");
    }

    #[test]
    fn stripe_scheme_signs_timestamp_and_body() {
        let scheme = SignatureScheme::Stripe;
        let key = SigningKey::from_secret(&scheme, b"whsec_stripe_test\n").unwrap();
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let ts = 1_700_000_000i64;
        let good = hex::encode(key.tag(&[ts.to_string().as_bytes(), b".", body]));
        let header = format!("t={ts},v1={},v1={good},v0=deadbeef", "0".repeat(64));
        let h = Headers(vec![(STRIPE_SIGNATURE, header)]);
        let v = verify(&scheme, &key, &h, body, ts + 10, 300).unwrap();
        assert_eq!(v.timestamp, Some(ts));
        assert!(verify(&scheme, &key, &h, body, ts + 301, 300).is_err());
        assert_eq!(
            verify(&scheme, &key, &h, b"{}", ts, 300).unwrap_err(),
            SignatureError::Mismatch
        );
    }

    #[test]
    fn stripe_parser_refuses_garbage() {
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,t=2,v1=00", "garbage"] {
            assert!(parse_stripe_signature(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn custom_header_takes_bare_or_prefixed_hex() {
        let scheme = SignatureScheme::from_config("custom", Some("X-Signature")).unwrap();
        let key = SigningKey::from_secret(&scheme, b"k").unwrap();
        let tag = hex::encode(key.tag(&[b"body"]));
        for value in [tag.clone(), format!("sha256={tag}")] {
            let h = Headers(vec![("x-signature", value)]);
            verify(&scheme, &key, &h, b"body", 0, 300).unwrap();
        }
    }

    #[test]
    fn an_unusable_secret_is_a_config_error_without_its_value() {
        let err = SigningKey::from_secret(&SignatureScheme::StandardWebhooks, b"whsec_%%canary%%")
            .err()
            .unwrap();
        assert_eq!(err.category(), "credential_unusable");
        assert!(!err.to_string().contains("canary"));
    }
}
