//! A re-implementation of libcoral's profiling partitioner, kept as a baseline to compare
//! [`Profiled`](super::Profiled) with.
//!
//! libcoral's `partition_with_profiling` tool (coral/tools/partitioner) searches like this:
//!
//! 1. Profile the compiler's split (equal parameter bytes, [`UniformByParams`]); its fastest
//!    and slowest segments bound a target latency `T` from below and above.
//! 2. Bisect on `T`. For each `T`, a depth-first search gives segment 0 as many operators as
//!    it can (all but one operator for each later middle segment, and the last segment at
//!    least from the first operator whose outputs no operator reads) and shortens it one step
//!    at a time until its measured latency is ≤ `T`, then searches segment 1 the same way
//!    from there, backtracking to shorten an earlier segment when a later one cannot be
//!    placed. The last segment is never compared with `T` during the search.
//! 3. With a plan found, profile its last segment: if it is faster than `T`, `T` becomes
//!    the upper bound and the plan the best one; otherwise `T` becomes the lower bound (and
//!    the plan the best one if its last segment beats the current upper bound).
//! 4. Stop when upper − lower ≤ the threshold (1 ms by default).
//!
//! Differences from the original, none of which changes which plans it can find: steps are
//! whole runs between valid cut points rather than single operators; a candidate costs one
//! profile of the one segment being examined (libcoral compiles and times every segment
//! of each candidate partition, so it profiles more); failed sub-searches are remembered
//! within one `T`, which only saves time (they would ask for the same, already profiled,
//! segments again); and when no plan is found, or the first bounds are already close, the
//! compiler's split is returned (libcoral keeps the compiler's output then).
//! The search is neither exact nor cheap: every candidate is a compile and a timed run on
//! hardware, and the result is only as balanced as the threshold and the greedy order allow.

use std::collections::HashSet;

use super::search::Candidates;
use super::{Plan, Segmenter, UniformByParams, check_segmentable};
use crate::model::Graph;
use crate::profile::Profiler;
use crate::{Error, Result};

/// libcoral's bisection-and-greedy profiling search, as a comparison baseline.
#[derive(Debug, Clone)]
pub struct LibcoralSearch<P> {
    profiler: P,
    diff_threshold_s: f64,
}

impl<P: Profiler> LibcoralSearch<P> {
    /// libcoral's default threshold between the bisection bounds: 1 ms.
    pub const DEFAULT_DIFF_THRESHOLD_S: f64 = 1e-3;

    /// The search with `profiler` and the default threshold.
    pub fn new(profiler: P) -> Self {
        LibcoralSearch {
            profiler,
            diff_threshold_s: Self::DEFAULT_DIFF_THRESHOLD_S,
        }
    }

    /// Sets the bisection's stopping threshold (seconds, positive and finite).
    pub fn with_diff_threshold(mut self, seconds: f64) -> Result<Self> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(Error::invalid(
                "libcoral search",
                format!("the diff threshold must be a positive number of seconds, not {seconds}"),
            ));
        }
        self.diff_threshold_s = seconds;
        Ok(self)
    }

    /// The profiler the search asks.
    pub fn profiler(&self) -> &P {
        &self.profiler
    }
}

impl<P: Profiler> Segmenter for LibcoralSearch<P> {
    fn name(&self) -> &str {
        "libcoral"
    }

    fn plan(&self, graph: &Graph<'_, '_>, segments: usize) -> Result<Plan> {
        check_segmentable(graph, segments)?;
        let mut candidates = Candidates::new(graph, &self.profiler);
        let uniform = UniformByParams.plan(graph, segments)?;
        let uniform_ends = candidates.ends_of(&uniform)?;
        let mut lower = f64::INFINITY;
        let mut upper = 0.0f64;
        let mut start = 0;
        for &end in &uniform_ends {
            let latency = candidates.latency(start, end)?;
            lower = lower.min(latency);
            upper = upper.max(latency);
            start = end;
        }

        let search = Search {
            segments,
            last_start: last_segment_start(graph, &candidates),
        };
        let mut best: Option<Vec<usize>> = None;
        while upper - lower > self.diff_threshold_s {
            let target = (lower + upper) / 2.0;
            let found = search.partition(&mut candidates, target)?;
            let last_latency = match &found {
                Some(ends) => {
                    let from = ends.len().checked_sub(2).map_or(0, |i| ends[i]);
                    candidates.latency(from, candidates.last())?
                }
                None => f64::INFINITY,
            };
            if last_latency < target {
                best = found;
                upper = target;
            } else {
                if last_latency < upper {
                    best = found;
                    upper = last_latency;
                }
                lower = target;
            }
        }
        let ends = best.unwrap_or(uniform_ends);
        candidates.plan(self.name(), graph, &ends)
    }
}

/// The point where libcoral's search first starts the last segment: at the first operator
/// whose outputs no operator reads (a model output), and at least one step before the end.
fn last_segment_start(graph: &Graph<'_, '_>, candidates: &Candidates<'_, '_>) -> usize {
    let op_count = graph.op_count();
    let first_output_op = (0..op_count)
        .find(|&op| {
            graph.model().operators[op]
                .outputs
                .iter()
                .all(|&t| graph.consumers(t).is_empty())
        })
        .unwrap_or(op_count - 1)
        .min(op_count - 1);
    candidates.point_at_or_before(first_output_op)
}

struct Search {
    segments: usize,
    last_start: usize,
}

impl Search {
    /// The segment ends (points) of the greedy depth-first search for target `target`.
    fn partition(
        &self,
        candidates: &mut Candidates<'_, '_>,
        target: f64,
    ) -> Result<Option<Vec<usize>>> {
        let mut failed = HashSet::new();
        let mut ends = Vec::with_capacity(self.segments);
        if self.place(candidates, target, 0, 0, &mut ends, &mut failed)? {
            Ok(Some(ends))
        } else {
            Ok(None)
        }
    }

    /// Places segment `index` from point `start` on, and the ones after it; pushes their
    /// ends onto `ends` and returns true on success.
    fn place(
        &self,
        candidates: &mut Candidates<'_, '_>,
        target: f64,
        index: usize,
        start: usize,
        ends: &mut Vec<usize>,
        failed: &mut HashSet<(usize, usize)>,
    ) -> Result<bool> {
        let last = candidates.last();
        if index + 1 == self.segments {
            ends.push(last);
            return Ok(true);
        }
        if failed.contains(&(index, start)) {
            return Ok(false);
        }
        // The middle segments after this one get one step each, the last one starts at
        // `last_start` (later if the segments before it need the room).
        let middle_after = self.segments - 2 - index;
        let last_start = self.last_start.max(start + middle_after + 1).min(last - 1);
        let Some(longest_end) = last_start.checked_sub(middle_after) else {
            return Ok(false);
        };
        for end in (start + 1..=longest_end).rev() {
            if candidates.latency(start, end)? <= target {
                ends.push(end);
                if self.place(candidates, target, index + 1, end, ends, failed)? {
                    return Ok(true);
                }
                ends.pop();
            }
        }
        failed.insert((index, start));
        Ok(false)
    }
}
