//! Retry timing: the capped exponential backoff of docs/cxone.md (Retries and backoff)
//! with its jitter modes, and `Retry-After` parsing (delta-seconds or HTTP-date).

use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::config::{Jitter, RetryConfig};

/// Longest `Retry-After` honoured; a bigger value is treated as this (a broken upstream
/// must not park an action for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The un-jittered delay before the `n`-th retry (n = 1, 2, ...):
/// `min(base_delay * backoff_factor^n, max_delay)`.
pub fn ceiling(config: &RetryConfig, n: u32) -> Duration {
    let exp = config.backoff_factor.powi(n.min(1024) as i32);
    let secs = config.base_delay.as_secs_f64() * exp;
    let max = config.max_delay.as_secs_f64();
    if !secs.is_finite() || secs >= max {
        config.max_delay
    } else {
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// The delay before the `n`-th retry with the configured jitter.
pub fn delay(config: &RetryConfig, n: u32, rng: &mut impl Rng) -> Duration {
    jittered(ceiling(config, n), config.jitter, rng)
}

/// Applies a jitter mode to a ceiling `d`.
pub fn jittered(d: Duration, jitter: Jitter, rng: &mut impl Rng) -> Duration {
    let secs = d.as_secs_f64();
    match jitter {
        Jitter::None => d,
        Jitter::Full => Duration::from_secs_f64(rng.random_range(0.0..=secs)),
        Jitter::Equal => Duration::from_secs_f64(secs / 2.0 + rng.random_range(0.0..=secs / 2.0)),
    }
}

/// The wait before repeating after a response that carried `retry_after`: the backoff
/// delay, unless `Retry-After` asks for longer (docs/cxone.md, Retries and backoff).
pub fn with_retry_after(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(ra) => backoff.max(ra.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

/// Parses a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP-date, measured
/// from `now`. A date in the past means "now" (zero). Garbage gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// The delay before the `n`-th redelivery of a dead letter: 1s doubling, capped.
pub fn redelivery_delay(n: u32, max: Duration) -> Duration {
    let secs = 1u64.checked_shl(n.saturating_sub(1).min(40)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn cfg(jitter: Jitter) -> RetryConfig {
        RetryConfig {
            max_retries: 5,
            base_delay: Duration::from_secs(2),
            backoff_factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter,
        }
    }

    #[test]
    fn ceiling_grows_exponentially_then_caps() {
        let c = cfg(Jitter::None);
        assert_eq!(ceiling(&c, 1), Duration::from_secs(4));
        assert_eq!(ceiling(&c, 2), Duration::from_secs(8));
        assert_eq!(ceiling(&c, 3), Duration::from_secs(16));
        assert_eq!(ceiling(&c, 4), Duration::from_secs(30));
        assert_eq!(ceiling(&c, 1000), Duration::from_secs(30));
    }

    #[test]
    fn no_jitter_waits_the_ceiling() {
        let mut rng = SmallRng::seed_from_u64(1);
        for n in 1..8 {
            assert_eq!(delay(&cfg(Jitter::None), n, &mut rng), ceiling(&cfg(Jitter::None), n));
        }
    }

    #[test]
    fn full_jitter_stays_in_zero_to_ceiling() {
        let mut rng = SmallRng::seed_from_u64(2);
        let c = cfg(Jitter::Full);
        for n in 1..8 {
            for _ in 0..500 {
                let d = delay(&c, n, &mut rng);
                assert!(d <= ceiling(&c, n), "{d:?} above ceiling for n={n}");
            }
        }
    }

    #[test]
    fn equal_jitter_stays_in_upper_half() {
        let mut rng = SmallRng::seed_from_u64(3);
        let c = cfg(Jitter::Equal);
        for n in 1..8 {
            let top = ceiling(&c, n);
            for _ in 0..500 {
                let d = delay(&c, n, &mut rng);
                assert!(d >= top / 2 && d <= top, "{d:?} outside [{:?}, {top:?}]", top / 2);
            }
        }
    }

    #[test]
    fn full_jitter_actually_varies() {
        let mut rng = SmallRng::seed_from_u64(4);
        let c = cfg(Jitter::Full);
        let first = delay(&c, 3, &mut rng);
        assert!((0..50).any(|_| delay(&c, 3, &mut rng) != first));
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn retry_after_wins_only_when_longer() {
        let b = Duration::from_secs(2);
        assert_eq!(
            with_retry_after(b, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(with_retry_after(b, Some(Duration::from_secs(1))), b);
        assert_eq!(with_retry_after(b, None), b);
    }

    #[test]
    fn redelivery_doubles_from_one_second_and_caps() {
        let max = Duration::from_secs(300);
        assert_eq!(redelivery_delay(1, max), Duration::from_secs(1));
        assert_eq!(redelivery_delay(2, max), Duration::from_secs(2));
        assert_eq!(redelivery_delay(4, max), Duration::from_secs(8));
        assert_eq!(redelivery_delay(40, max), max);
    }
}
