//! Fuzz the webhook signature header parsers and the verifier (RELIABILITY B3): any bytes in
//! any header must give a typed answer, never a panic, and never an acceptance without the
//! key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_worker::inbound::signature::{
    self, HeaderSource, SignatureScheme, SigningKey, parse_github_signature, parse_hex_tag,
    parse_standard_signatures, parse_stripe_signature, parse_timestamp,
};

/// Header values as a request would carry them (only valid UTF-8 reaches the verifier).
struct Headers(Vec<(&'static str, String)>);

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_standard_signatures(&text);
    let _ = parse_stripe_signature(&text);
    let _ = parse_github_signature(&text);
    let _ = parse_hex_tag("x-signature", &text);
    let _ = parse_timestamp("webhook-timestamp", &text);

    // Split the input into header values and a body, and run the full verification of each
    // scheme with a fixed key: a forged request must never verify.
    let mut parts = data.splitn(4, |b| *b == 0);
    let (id, ts, sig, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = Headers(Vec::new());
    let mut put = |name: &'static str, value: &[u8]| {
        if let Ok(v) = std::str::from_utf8(value) {
            headers.0.push((name, v.to_string()));
        }
    };
    put(signature::WEBHOOK_ID, id);
    put(signature::WEBHOOK_TIMESTAMP, ts);
    put(signature::WEBHOOK_SIGNATURE, sig);
    put(signature::STRIPE_SIGNATURE, sig);
    put(signature::GITHUB_SIGNATURE, sig);
    put("x-signature", sig);
    let schemes = [
        SignatureScheme::StandardWebhooks,
        SignatureScheme::Github,
        SignatureScheme::Stripe,
        SignatureScheme::Custom { header: "x-signature".into() },
    ];
    for scheme in schemes {
        let key = SigningKey::from_secret(&scheme, b"whsec_ZnV6ei1rZXktbm90LWluLXRoZS1pbnB1dA==").unwrap();
        let now = std::str::from_utf8(ts).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        assert!(
            signature::verify(&scheme, &key, &headers, body, now, 300).is_err(),
            "a request verified without the key"
        );
    }
});
