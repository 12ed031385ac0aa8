//! Limits and quotas: the generic cell rate algorithm (GCRA) behind a queue's lease rate and
//! a tenant's enqueue rate, and the shapes of queue limits and tenant quotas.
//!
//! GCRA keeps one number per limited thing, the *theoretical arrival time* (TAT): when the
//! next cell would be due if cells came exactly at the rate. A cell conforms when it is not
//! more than the tolerance `τ` early. It needs no timer and no background refill, and its
//! state fits in one column, so it can live in the row the claim already locks.

use serde::{Deserialize, Serialize};

/// The largest rate accepted (per second), and the largest burst or count limit.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The largest burst, concurrency, queued or running limit accepted.
pub const MAX_COUNT: u64 = 1_000_000_000;

/// A rate limit: `rate_per_sec` cells per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    /// Emission interval `T` in microseconds (at least 1).
    interval: i64,
    /// Tolerance `τ = T·(burst − 1)` in microseconds.
    tolerance: i64,
}

impl Gcra {
    /// A limit of `rate_per_sec` (> 0) with `burst` (≥ 1) cells at once.
    pub fn new(rate_per_sec: f64, burst: u64) -> Self {
        let interval = ((1_000_000.0 / rate_per_sec).ceil() as i64).max(1);
        let burst = burst.max(1) as i64;
        Self {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        }
    }

    /// Take as many of `want` cells as conform at `now` (all times in microseconds),
    /// returning how many were granted and the new TAT. `tat = None` is a fresh limit.
    pub fn take_up_to(&self, tat: Option<i64>, now: i64, want: u64) -> (u64, i64) {
        let base = tat.map_or(now, |t| t.max(now));
        let slack = now + self.tolerance - base;
        if slack < 0 || want == 0 {
            return (0, base);
        }
        let granted = ((slack / self.interval) as u64 + 1).min(want);
        (granted, base + granted as i64 * self.interval)
    }

    /// Admit a batch of `n` cells at once if the limit is not already exhausted (the batch
    /// may overdraw it: later cells then wait until the average rate is restored). Returns
    /// the new TAT, or how many microseconds to wait before the next cell conforms.
    pub fn admit(&self, tat: Option<i64>, now: i64, n: u64) -> Result<i64, i64> {
        let base = tat.map_or(now, |t| t.max(now));
        let early = base - now - self.tolerance;
        if early > 0 {
            return Err(early);
        }
        Ok(base.saturating_add((n as i64).saturating_mul(self.interval)))
    }
}

/// A queue's limits (`PUT /api/v1/queues/{name}/limits`); `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueLimits {
    /// Leases per second, GCRA.
    pub rate_per_sec: Option<f64>,
    /// Leases at once within the rate (default 1 when a rate is set).
    pub burst: Option<u64>,
    /// Running jobs of the queue across all workers and nodes.
    pub max_concurrency: Option<u64>,
}

impl QueueLimits {
    /// The lease rate limit, if one is set.
    pub fn gcra(&self) -> Option<Gcra> {
        self.rate_per_sec
            .map(|r| Gcra::new(r, self.burst.unwrap_or(1)))
    }
}

/// A tenant's quota (`PUT /api/v1/quota`); `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantQuota {
    /// Jobs waiting (pending, available or retrying) at most; beyond it an enqueue is
    /// `429 QUOTA_EXCEEDED`.
    pub max_queued: Option<u64>,
    /// Jobs running at most; leases hand out fewer jobs beyond it.
    pub max_running: Option<u64>,
    /// Enqueued jobs per second on average (one second of burst); beyond it an enqueue
    /// is `429 RATE_LIMITED` with `Retry-After`.
    pub enqueue_per_sec: Option<f64>,
}

impl TenantQuota {
    /// The enqueue rate limit, if one is set: one second's worth may come at once.
    pub fn enqueue_gcra(&self) -> Option<Gcra> {
        self.enqueue_per_sec
            .map(|r| Gcra::new(r, (r.ceil() as u64).max(1)))
    }
}

/// A rate for an audit entry's metadata, which holds no floating-point numbers (their
/// canonical form is not unambiguous): the shortest decimal text that reads back exactly.
pub fn rate_text(rate: Option<f64>) -> serde_json::Value {
    rate.map_or(serde_json::Value::Null, |r| {
        serde_json::Value::String(r.to_string())
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEC: i64 = 1_000_000;

    #[test]
    fn a_fresh_limit_grants_the_burst_then_one_cell_per_interval() {
        let g = Gcra::new(10.0, 5);
        let (n, tat) = g.take_up_to(None, 0, 100);
        assert_eq!(n, 5, "the burst at once");
        let (n, tat) = g.take_up_to(Some(tat), 0, 100);
        assert_eq!(n, 0, "nothing more at the same instant");
        let (n, _) = g.take_up_to(Some(tat), SEC / 10, 100);
        assert_eq!(n, 1, "one more after one interval");
    }

    #[test]
    fn admit_lets_one_batch_overdraw_then_asks_to_wait() {
        let g = Gcra::new(100.0, 100);
        let tat = g.admit(None, 0, 1_000).expect("the first batch goes");
        assert_eq!(tat, 10 * SEC, "1,000 cells at 100/s reach 10 s ahead");
        let wait = g.admit(Some(tat), 0, 1).expect_err("exhausted");
        // τ = 99 intervals of 10 ms: the next cell conforms at 10 s − 0.99 s.
        assert_eq!(wait, 10 * SEC - 990_000);
        assert!(
            g.admit(Some(tat), 9 * SEC + 10_000, 1).is_ok(),
            "conforms again"
        );
    }

    proptest! {
        /// Over any window, no more cells conform than the burst plus the rate's share.
        #[test]
        fn granted_cells_never_exceed_burst_plus_rate_times_time(
            rate in 0.5f64..2_000.0,
            burst in 1u64..50,
            steps in prop::collection::vec((0i64..200_000, 0u64..20), 1..200),
        ) {
            let g = Gcra::new(rate, burst);
            let (mut now, mut tat, mut total) = (0i64, None, 0u64);
            for (dt, want) in steps {
                now += dt;
                let (n, t) = g.take_up_to(tat, now, want);
                prop_assert!(n <= want);
                tat = Some(t);
                total += n;
                let allowed = burst as f64 + (now as f64 / g.interval as f64);
                prop_assert!(total as f64 <= allowed + 1e-9, "{total} > {allowed}");
            }
        }

        /// A caller that always asks gets the full rate in the long run.
        #[test]
        fn a_greedy_caller_gets_the_rate(rate in 1.0f64..1_000.0, burst in 1u64..20) {
            let g = Gcra::new(rate, burst);
            let (mut tat, mut total) = (None, 0u64);
            let step = 1_000; // 1 ms
            for i in 0..10_000i64 {
                let (n, t) = g.take_up_to(tat, i * step, u64::MAX);
                tat = Some(t);
                total += n;
            }
            // Polling every millisecond, a cell may be taken up to one step late.
            let most = burst as f64 + 10.0 * SEC as f64 / g.interval as f64;
            let least = 10.0 * SEC as f64 / (g.interval + step) as f64 - 1.0;
            prop_assert!((least..=most + 1e-9).contains(&(total as f64)), "{total} not in {least}..={most}");
        }
    }
}
