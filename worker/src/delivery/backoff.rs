//! Backoff between attempts: exponential with full jitter and a cap, or the peer's
//! `Retry-After` (RELIABILITY D2, D3).
//!
//! The delay before retry `n` (the first retry is `n = 1`) is a uniformly random duration in
//! `[0, min(maxBackoff, initialBackoff × 2^(n-1))]` ("full jitter": concurrent deliveries
//! that failed together do not retry together). A `Retry-After` header (delay seconds or an
//! HTTP date) replaces the random delay, capped at `maxBackoff`.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::config::RetryConfig;

/// The upper bound of the delay before retry `retry` (1-based).
pub fn backoff_ceiling(policy: &RetryConfig, retry: u32) -> Duration {
    let exponent = retry.saturating_sub(1).min(63);
    let grown = policy.initial_backoff_ms.saturating_mul(1u64 << exponent);
    Duration::from_millis(grown.min(policy.max_backoff_ms))
}

/// The delay before retry `retry` (1-based): `Retry-After` capped at `maxBackoff` when the
/// peer sent one, a full-jitter exponential delay otherwise.
pub fn backoff_delay(policy: &RetryConfig, retry: u32, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_millis(policy.max_backoff_ms);
    if let Some(asked) = retry_after {
        return asked.min(cap);
    }
    let ceiling = backoff_ceiling(policy, retry).as_millis() as u64;
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

/// Parse a `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate, RFC 850 or
/// asctime) relative to `now`. A date in the past means no delay.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let date =
        DateTime::parse_from_rfc2822(value).map(|d| d.with_timezone(&Utc)).ok().or_else(|| {
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryConfig {
        RetryConfig { max_attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 1000 }
    }

    #[test]
    fn ceilings_grow_and_cap() {
        let ceilings: Vec<u64> =
            (1..=6).map(|n| backoff_ceiling(&policy(), n).as_millis() as u64).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ceiling(&policy(), 200), Duration::from_millis(1000));
    }

    #[test]
    fn jittered_delays_stay_under_the_ceiling_and_vary() {
        let delays: Vec<Duration> = (0..200).map(|_| backoff_delay(&policy(), 3, None)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 10, "full jitter spreads delays");
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        assert_eq!(
            backoff_delay(&policy(), 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            backoff_delay(&policy(), 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
