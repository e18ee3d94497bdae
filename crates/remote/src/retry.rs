//! When to try an upstream again, and how long to wait first.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// No wait, whether computed or asked for by the upstream, is longer: a caller is waiting.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// Whether an HTTP status is worth another attempt: rate limits and server faults pass, any other
/// client error would fail again the same way.
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The wait before retry number `retry` (0 for the first): `initial · 2^retry`, capped at
/// [`MAX_WAIT`], then scaled by a random factor in [0.5, 1) so that clients failed by the same
/// outage do not all come back at the same instant.
pub(crate) fn backoff(initial: Duration, retry: u32) -> Duration {
    let exponential = initial
        .checked_mul(2u32.saturating_pow(retry))
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    exponential.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// `Retry-After` in seconds, capped at [`MAX_WAIT`]. The HTTP-date form is ignored (the caller
/// falls back to its own backoff): chat upstreams send seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds.min(MAX_WAIT.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let initial = Duration::from_millis(100);
        for retry in 0..4 {
            let full = initial * 2u32.pow(retry);
            let wait = backoff(initial, retry);
            assert!(wait >= full / 2 && wait < full, "retry {retry}: {wait:?}");
        }
        assert!(backoff(initial, 40) <= MAX_WAIT);
        assert!(backoff(Duration::from_secs(u64::MAX / 2), 3) <= MAX_WAIT);
    }

    #[test]
    fn retry_after_reads_seconds_and_caps_them() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(500)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&headers), Some(MAX_WAIT));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-3"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(is_retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_retryable(StatusCode::BAD_REQUEST));
        assert!(!is_retryable(StatusCode::UNAUTHORIZED));
        assert!(!is_retryable(StatusCode::NOT_FOUND));
        assert!(!is_retryable(StatusCode::UNPROCESSABLE_ENTITY));
    }
}
