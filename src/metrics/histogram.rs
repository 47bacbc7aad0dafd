//! A histogram of durations with fixed buckets, updated with atomics only:
//! observing is a bucket search and two relaxed additions, no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts of durations by bucket, and their sum.
pub(super) struct Histogram {
    /// Upper bounds of the buckets, ascending; a last bucket takes the rest.
    bounds: &'static [Duration],
    /// One count per bucket, not cumulative, the last for over every bound.
    counts: Box<[AtomicU64]>,
    /// Sum of every observation, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// What a histogram held at one moment, as the exposition format wants it.
pub(super) struct Snapshot {
    /// Each bound with the count of observations at or under it.
    pub(super) buckets: Vec<(Duration, u64)>,
    /// Every observation: the `+Inf` bucket and `_count`.
    pub(super) count: u64,
    /// Sum of the observations.
    pub(super) sum: Duration,
}

impl Histogram {
    /// A histogram with buckets up to each of `bounds`, which must ascend.
    pub(super) fn new(bounds: &'static [Duration]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub(super) fn observe(&self, d: Duration) {
        // Buckets are "less than or equal": a value on a bound counts in it.
        let bucket = self.bounds.partition_point(|&b| b < d);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The buckets made cumulative, with the count taken from the same
    /// reads, so that `+Inf` and `_count` always agree.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut total = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, count) in self.counts.iter().enumerate() {
            total = total.saturating_add(count.load(Ordering::Relaxed));
            if let Some(&bound) = self.bounds.get(i) {
                buckets.push((bound, total));
            }
        }
        Snapshot {
            buckets,
            count: total,
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[Duration] = &[
        Duration::from_millis(10),
        Duration::from_millis(100),
        Duration::from_secs(1),
    ];

    #[test]
    fn observations_land_in_their_bucket_cumulatively() {
        let h = Histogram::new(BOUNDS);
        // (observation in ms, cumulative counts after it, for 10ms/100ms/1s)
        let cases = [
            (0, [1, 1, 1], 1),
            (10, [2, 2, 2], 2),
            (11, [2, 3, 3], 3),
            (1000, [2, 3, 4], 4),
            (1001, [2, 3, 4], 5),
            (60_000, [2, 3, 4], 6),
        ];
        let mut sum = Duration::ZERO;
        for (ms, want, count) in cases {
            let d = Duration::from_millis(ms);
            h.observe(d);
            sum += d;
            let s = h.snapshot();
            let counts: Vec<u64> = s.buckets.iter().map(|&(_, n)| n).collect();
            assert_eq!(counts, want, "after {ms}ms");
            assert_eq!(s.count, count, "after {ms}ms");
            assert_eq!(s.sum, sum, "after {ms}ms");
        }
        let bounds: Vec<Duration> = h.snapshot().buckets.iter().map(|&(b, _)| b).collect();
        assert_eq!(bounds, BOUNDS);
    }
}
