//! Per-stage counters, updated lock-free by the stage threads, and their snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: latencies are kept to within 1/8 (12.5 %).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets cover 0 ns up to 2^48 ns (about 3 days); longer latencies land in the last bucket.
const MAX_BITS: u32 = 48;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize) * SUB as usize;

/// Bucket of a latency in nanoseconds: exact below `SUB`, then `SUB` buckets per octave.
fn bucket(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros();
    if msb >= MAX_BITS {
        return BUCKETS - 1;
    }
    let shift = msb - SUB_BITS;
    let sub = (ns >> shift) & (SUB - 1);
    ((shift + 1) as u64 * SUB + sub) as usize
}

/// Smallest latency that falls in `index` (inverse of [`bucket`]).
fn bucket_low(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = index / SUB - 1;
    (SUB + index % SUB) << shift
}

/// A fixed-size latency histogram with atomic buckets: recording never allocates or locks.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, ns: u64) {
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn add_to(&self, counts: &mut [u64]) {
        for (sum, b) in counts.iter_mut().zip(self.buckets.iter()) {
            *sum += b.load(Ordering::Relaxed);
        }
    }
}

/// The value at quantile `q` of bucket counts: the midpoint of the bucket holding it.
fn quantile(counts: &[u64], q: f64) -> Duration {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Duration::ZERO;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            let low = bucket_low(i);
            let high = if i + 1 < counts.len() {
                bucket_low(i + 1)
            } else {
                low
            };
            return Duration::from_nanos(low + (high - low) / 2);
        }
    }
    Duration::ZERO
}

/// Counters of one stage instance.
pub(crate) struct Counters {
    pub(crate) invokes: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) wait_input_ns: AtomicU64,
    pub(crate) wait_output_ns: AtomicU64,
    pub(crate) latency: Histogram,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            invokes: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            wait_input_ns: AtomicU64::new(0),
            wait_output_ns: AtomicU64::new(0),
            latency: Histogram::new(),
        }
    }

    pub(crate) fn record_invoke(&self, elapsed: Duration) {
        let ns = nanos(elapsed);
        self.invokes.fetch_add(1, Ordering::Relaxed);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        self.latency.record(ns);
    }

    pub(crate) fn add_wait_input(&self, elapsed: Duration) {
        self.wait_input_ns
            .fetch_add(nanos(elapsed), Ordering::Relaxed);
    }

    pub(crate) fn add_wait_output(&self, elapsed: Duration) {
        self.wait_output_ns
            .fetch_add(nanos(elapsed), Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A snapshot of one stage, summed over its instances.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    /// Stage index.
    pub index: usize,
    /// [`Stage::describe`](crate::backend::Stage::describe) of each instance.
    pub instances: Vec<String>,
    /// Completed runs (successful or not).
    pub invokes: u64,
    /// Mean run latency.
    pub latency_mean: Duration,
    /// Median run latency (to within 12.5 %).
    pub latency_p50: Duration,
    /// 99th percentile run latency (to within 12.5 %).
    pub latency_p99: Duration,
    /// Total time the stage's threads spent waiting for an item to arrive.
    pub waiting_for_input: Duration,
    /// Total time the stage's threads spent waiting for room in the next queue.
    pub waiting_for_room: Duration,
    /// Items queued in front of the stage right now.
    pub queue_depth: usize,
}

impl StageStats {
    pub(crate) fn collect(
        index: usize,
        instances: Vec<String>,
        counters: &[&Counters],
        queue_depth: usize,
    ) -> Self {
        let mut buckets = vec![0u64; BUCKETS];
        let (mut invokes, mut busy, mut wait_in, mut wait_out) = (0u64, 0u64, 0u64, 0u64);
        for c in counters {
            invokes += c.invokes.load(Ordering::Relaxed);
            busy = busy.saturating_add(c.busy_ns.load(Ordering::Relaxed));
            wait_in = wait_in.saturating_add(c.wait_input_ns.load(Ordering::Relaxed));
            wait_out = wait_out.saturating_add(c.wait_output_ns.load(Ordering::Relaxed));
            c.latency.add_to(&mut buckets);
        }
        StageStats {
            index,
            instances,
            invokes,
            latency_mean: Duration::from_nanos(busy.checked_div(invokes).unwrap_or(0)),
            latency_p50: quantile(&buckets, 0.50),
            latency_p99: quantile(&buckets, 0.99),
            waiting_for_input: Duration::from_nanos(wait_in),
            waiting_for_room: Duration::from_nanos(wait_out),
            queue_depth,
        }
    }
}

/// A snapshot of the whole pipeline, from [`Pipeline::stats`](crate::pipeline::Pipeline::stats).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStats {
    /// One entry per stage, in order.
    pub stages: Vec<StageStats>,
    /// Items accepted by `push` so far.
    pub pushed: u64,
    /// Items returned by `pop` so far.
    pub popped: u64,
    /// Finished items waiting to be popped.
    pub output_queue_depth: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_invertible() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 30, (1 << 40) + 12345, u64::MAX / 3]) {
            let b = bucket(ns);
            assert!(b >= last, "bucket({ns}) went backwards");
            assert!(b < BUCKETS);
            last = b;
            if b < BUCKETS - 1 {
                assert!(
                    bucket_low(b) <= ns && ns < bucket_low(b + 1),
                    "ns {ns} bucket {b}"
                );
            }
        }
        for b in 0..BUCKETS {
            assert_eq!(bucket(bucket_low(b)), b);
        }
    }

    #[test]
    fn quantiles_within_resolution() {
        let h = Histogram::new();
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let mut counts = vec![0; BUCKETS];
        h.add_to(&mut counts);
        let p50 = quantile(&counts, 0.5).as_nanos() as f64;
        let p99 = quantile(&counts, 0.99).as_nanos() as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.125, "p50 {p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.125, "p99 {p99}");
        assert_eq!(quantile(&[0; 4], 0.5), Duration::ZERO);
    }

    #[test]
    fn collect_sums_instances() {
        let (a, b) = (Counters::new(), Counters::new());
        a.record_invoke(Duration::from_micros(10));
        b.record_invoke(Duration::from_micros(30));
        a.add_wait_input(Duration::from_micros(5));
        b.add_wait_output(Duration::from_micros(7));
        let s = StageStats::collect(3, vec!["a".into(), "b".into()], &[&a, &b], 2);
        assert_eq!(s.invokes, 2);
        assert_eq!(s.latency_mean, Duration::from_micros(20));
        assert_eq!(s.waiting_for_input, Duration::from_micros(5));
        assert_eq!(s.waiting_for_room, Duration::from_micros(7));
        assert_eq!(s.queue_depth, 2);
        assert_eq!(s.index, 3);
    }
}
