//! An event-level model of a [`Pipeline`](super::Pipeline)'s timing: how long a batch takes
//! when every stage's latency is known, without running it.
//!
//! It follows the pipeline's protocol item by item. A stage takes the next item out of the
//! queue in front of it as soon as it is free and the item is there, runs it for its latency
//! plus a fixed per-item overhead, then hands it on as soon as the queue behind it has room
//! (a queue of capacity `c` has room for item `k` once the next stage has taken item
//! `k − c`). The caller pushes the whole batch at once, blocking while the input queue is
//! full; the output queue is unbounded. So the model includes filling and draining the
//! pipeline, and stages blocked by a slower neighbour.
//!
//! Use it where running the pipeline would take as long as the devices it simulates (a sweep
//! over hundreds of plans); `cargo run --release -p multitpu-paper --bin event_model` prints
//! it beside real pipelines of simulated Edge TPUs.

use crate::{Error, Result};

/// Per stage and item, what the pipeline itself adds to a stage's latency: routing the
/// item's tensors and the two queue hand-offs. The `pipeline_overhead` bench measures 1.0 µs
/// per item for one stage and 4.1–5.8 µs per item and stage for two to four stages on a
/// machine with a free core; this is the upper end.
pub const DEFAULT_STAGE_OVERHEAD_S: f64 = 5e-6;

/// The timing model of one pipeline: stage latencies and queue capacities.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineTiming {
    /// Seconds one run of each stage takes, in stage order.
    pub stage_latency_s: Vec<f64>,
    /// Seconds the pipeline adds per item to every stage (see [`DEFAULT_STAGE_OVERHEAD_S`]).
    pub stage_overhead_s: f64,
    /// Capacity of the queue in front of the first stage.
    pub input_capacity: usize,
    /// Capacity of the queues between stages.
    pub queue_capacity: usize,
}

impl PipelineTiming {
    /// A pipeline with these stage latencies and the default queues of
    /// [`PipelineBuilder`](super::PipelineBuilder) (capacity 1) and overhead.
    pub fn new(stage_latency_s: Vec<f64>) -> Self {
        PipelineTiming {
            stage_latency_s,
            stage_overhead_s: DEFAULT_STAGE_OVERHEAD_S,
            input_capacity: super::DEFAULT_QUEUE_CAPACITY,
            queue_capacity: super::DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Seconds from the first push of a batch of `items` to the last output being ready.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if there is no stage, a latency or the overhead is negative or not
    /// finite, or a capacity is 0.
    ///
    /// ```
    /// use multitpu::pipeline::PipelineTiming;
    ///
    /// let mut timing = PipelineTiming::new(vec![1.0, 3.0, 1.0]);
    /// timing.stage_overhead_s = 0.0;
    /// // The first item crosses every stage (5 s); each later one follows 3 s behind.
    /// assert_eq!(timing.batch_s(10)?, 5.0 + 9.0 * 3.0);
    /// # Ok::<(), multitpu::Error>(())
    /// ```
    pub fn batch_s(&self, items: usize) -> Result<f64> {
        self.check()?;
        let stages = self.stage_latency_s.len();
        // start[s][k]: when stage s takes item k; handed[s][k]: when it has handed it on.
        let mut start = vec![vec![0.0f64; items]; stages];
        let mut handed = vec![vec![0.0f64; items]; stages];
        for k in 0..items {
            for s in 0..stages {
                // The item is in the queue in front of stage s.
                let arrived = if s == 0 {
                    // The caller pushes item k once the input queue has room.
                    room(&start[0], k, self.input_capacity)
                } else {
                    handed[s - 1][k]
                };
                let free = if k == 0 { 0.0 } else { handed[s][k - 1] };
                start[s][k] = arrived.max(free);
                let done = start[s][k] + self.stage_latency_s[s] + self.stage_overhead_s;
                handed[s][k] = if s + 1 == stages {
                    done
                } else {
                    done.max(room(&start[s + 1], k, self.queue_capacity))
                };
            }
        }
        Ok(handed[stages - 1].last().copied().unwrap_or(0.0))
    }

    /// Seconds per item of a batch of `items`: [`batch_s`](Self::batch_s) / `items`.
    ///
    /// # Errors
    ///
    /// As [`batch_s`](Self::batch_s), and if `items` is 0.
    pub fn per_item_s(&self, items: usize) -> Result<f64> {
        if items == 0 {
            return Err(Error::invalid("batch", "a batch needs at least one item"));
        }
        Ok(self.batch_s(items)? / items as f64)
    }

    fn check(&self) -> Result<()> {
        if self.stage_latency_s.is_empty() {
            return Err(Error::invalid("pipeline timing", "no stage"));
        }
        if self.input_capacity == 0 || self.queue_capacity == 0 {
            return Err(Error::invalid("pipeline timing", "a queue capacity is 0"));
        }
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        if let Some(s) = self.stage_latency_s.iter().position(|&l| bad(l)) {
            return Err(Error::invalid(
                "pipeline timing",
                format!("stage {s} latency {} s", self.stage_latency_s[s]),
            ));
        }
        if bad(self.stage_overhead_s) {
            return Err(Error::invalid(
                "pipeline timing",
                format!("stage overhead {} s", self.stage_overhead_s),
            ));
        }
        Ok(())
    }
}

/// When a queue of `capacity` in front of a stage whose take times are `taken` has room for
/// item `k`: once item `k − capacity` has been taken out.
fn room(taken: &[f64], k: usize, capacity: usize) -> f64 {
    k.checked_sub(capacity).map_or(0.0, |j| taken[j])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(latencies: &[f64]) -> PipelineTiming {
        PipelineTiming {
            stage_overhead_s: 0.0,
            ..PipelineTiming::new(latencies.to_vec())
        }
    }

    #[test]
    fn one_stage_runs_items_back_to_back() {
        assert_eq!(timing(&[2.0]).batch_s(5).unwrap(), 10.0);
        assert_eq!(timing(&[2.0]).per_item_s(5).unwrap(), 2.0);
    }

    #[test]
    fn the_slowest_stage_sets_the_pace_after_filling() {
        for latencies in [[1.0, 4.0, 2.0], [4.0, 1.0, 1.0], [1.0, 1.0, 4.0]] {
            let total: f64 = latencies.iter().sum();
            assert_eq!(timing(&latencies).batch_s(20).unwrap(), total + 19.0 * 4.0);
        }
    }

    #[test]
    fn a_slow_stage_blocks_the_one_in_front_of_it() {
        // Stage 0 (1 s) can run at most one item ahead of stage 1's queue: with capacity 1 it
        // finishes item 2 at 3 s but waits to hand it on until stage 1 takes item 1 (at 11 s).
        let t = timing(&[1.0, 10.0]);
        assert_eq!(t.batch_s(3).unwrap(), 1.0 + 30.0);
        let mut deep = t.clone();
        deep.queue_capacity = 8;
        assert_eq!(deep.batch_s(3).unwrap(), 31.0);
    }

    #[test]
    fn overhead_is_paid_per_stage_and_item() {
        let mut t = timing(&[1.0, 1.0]);
        t.stage_overhead_s = 0.5;
        assert_eq!(t.batch_s(4).unwrap(), 3.0 + 3.0 * 1.5);
    }

    #[test]
    fn bad_timings_are_errors() {
        assert!(timing(&[]).batch_s(1).is_err());
        assert!(timing(&[f64::NAN]).batch_s(1).is_err());
        assert!(timing(&[-1.0]).batch_s(1).is_err());
        assert!(timing(&[1.0]).per_item_s(0).is_err());
        let mut t = timing(&[1.0]);
        t.queue_capacity = 0;
        assert!(t.batch_s(1).is_err());
    }

    proptest::proptest! {
        /// Never faster than the slowest stage's pace, nor than one item crossing every
        /// stage; never slower than running the items one at a time.
        #[test]
        fn batch_time_is_bounded(
            latencies in proptest::collection::vec(0.0f64..10.0, 1..6),
            items in 1usize..40,
        ) {
            let t = timing(&latencies);
            let batch = t.batch_s(items).unwrap();
            let total: f64 = latencies.iter().sum();
            let slowest = latencies.iter().copied().fold(0.0, f64::max);
            let eps = 1e-9 * (1.0 + total * items as f64);
            proptest::prop_assert!(batch + eps >= total + (items as f64 - 1.0) * slowest);
            proptest::prop_assert!(batch <= total * items as f64 + eps);
        }
    }
}
