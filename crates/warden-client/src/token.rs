//! The token cache: when a token obtained by client credentials should be replaced.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refresh once this share of a token's lifetime has passed…
const REFRESH_AT_FRACTION: f64 = 0.75;
/// …and at the latest this long before it expires (requests in flight need margin).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// A bearer token and when to replace it.
#[derive(Clone)]
pub struct CachedToken {
    /// The `access_token`.
    pub value: Arc<str>,
    /// From this instant on, get a new one before the next request.
    pub refresh_at: Instant,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("value", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

impl CachedToken {
    /// A token obtained at `obtained` that the authority said lives `expires_in` seconds.
    pub fn new(value: impl Into<Arc<str>>, obtained: Instant, expires_in: u64) -> Self {
        Self {
            value: value.into(),
            refresh_at: obtained + refresh_after(Duration::from_secs(expires_in)),
        }
    }

    /// Whether the token should be replaced before a request sent at `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        now >= self.refresh_at
    }
}

/// How long after obtaining a token of `lifetime` to replace it: at three quarters of its
/// life, but no later than 30 s before it expires (at once for tokens
/// shorter than the margin).
pub fn refresh_after(lifetime: Duration) -> Duration {
    let by_fraction = lifetime.mul_f64(REFRESH_AT_FRACTION);
    let by_margin = lifetime.saturating_sub(REFRESH_MARGIN);
    by_fraction.min(by_margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_token_is_refreshed_at_45_minutes() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2700)
        );
    }

    #[test]
    fn a_short_token_keeps_the_margin() {
        // 100 s: 75 s by the fraction, 70 s by the margin.
        assert_eq!(
            refresh_after(Duration::from_secs(100)),
            Duration::from_secs(70)
        );
        assert_eq!(refresh_after(Duration::from_secs(20)), Duration::ZERO);
    }

    #[test]
    fn staleness_follows_the_clock() {
        let t0 = Instant::now();
        let t = CachedToken::new("abc", t0, 3600);
        assert!(!t.is_stale(t0 + Duration::from_secs(2699)));
        assert!(t.is_stale(t0 + Duration::from_secs(2700)));
        assert!(!format!("{t:?}").contains("abc"));
    }
}
