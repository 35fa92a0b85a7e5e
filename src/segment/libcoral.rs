//! A re-implementation of libcoral's profiling partitioner, kept as a baseline to compare
//! [`Profiled`](super::Profiled) with, and a count of what libcoral pays for its plan.
//!
//! libcoral's `partition_with_profiling` tool (`coral/tools/partitioner/`,
//! `profiling_based_partitioner.cc`) searches like this:
//!
//! 1. Compile the model with `edgetpu_compiler --num_segments N` (equal parameter bytes,
//!    [`UniformByParams`]) and benchmark the N segments as a pipeline once; the fastest and
//!    slowest segments bound a target latency `T` from below and above. These latencies are
//!    not cached.
//! 2. Bisect on `T`. For each `T`, a depth-first search gives segment 0 as many operators as
//!    it can (all but one operator for each later middle segment, and the last segment at
//!    least from the first operator whose outputs no operator reads) and shortens it one step
//!    at a time until its measured latency is ≤ `T`, then searches segment 1 the same way
//!    from there, backtracking to shorten an earlier segment when a later one cannot be
//!    placed. The last segment is never compared with `T` during the search.
//! 3. With a plan found, look up its last segment: if it is faster than `T`, `T` becomes
//!    the upper bound and the plan the best one; otherwise `T` becomes the lower bound (and
//!    the plan the best one if its last segment beats the current upper bound).
//! 4. Stop when upper − lower ≤ the threshold (1 ms by default).
//!
//! **What it costs.** Each latency libcoral asks for is looked up in a cache keyed by the
//! segment's first operator and length. On a miss it cuts the *whole* candidate partition
//! (the segment asked for, the ones before it, and the provisional ones after it), compiles
//! all N segments and benchmarks them as a pipeline once, caching every segment's latency. A
//! round therefore compiles and times N segments, some of them again.
//! [`LibcoralSearch::plan_with_cost`] counts both: [`LibcoralCost::rounds`] (compile-and-
//! benchmark rounds, the first-bounds round included) and
//! [`LibcoralCost::segments_compiled`] (segments compiled and timed, N per round). The
//! plan's [`candidates_profiled`](Plan::candidates_profiled) is the latter, the unit
//! [`Profiled`](super::Profiled) reports (a segment compiled and timed on its own). Writing
//! the chosen segments out compiles them once more; both tools do that, and neither count
//! includes it.
//!
//! **How it ends.** libcoral's tool writes segments only when the bisection found a
//! partition ([`LibcoralOutcome::Found`]). When the compiler's split is already balanced
//! within the threshold it stops after the first round and writes nothing
//! ([`LibcoralOutcome::CompilerSplitKept`]; its log still says the segments were saved). When
//! no target yields a partition, or the compiler's split has equally fast slowest and
//! fastest segments (a failed `CHECK_GT(upper, lower)`), it aborts
//! ([`LibcoralOutcome::Aborted`]). In the last two cases this re-implementation returns the
//! compiler's split, which is what a user of libcoral is left with (they can compile it with
//! `edgetpu_compiler --num_segments N`). [`Profiled`](super::Profiled) has no such cases: it
//! returns the optimal plan under its profiler for any model and segment count it accepts.
//!
//! Differences from the original, none of which changes which plans it can find or what it
//! would pay: steps are whole runs between valid cut points rather than single operators
//! (for models without state every operator boundary is one); latencies come from the
//! profiler segment by segment, where libcoral times segments inside a pipeline; and failed
//! sub-searches are remembered within one `T`, which only saves time (libcoral asks for the
//! same, already cached, segments again). The search is neither exact nor cheap: every round
//! is N compiles and a timed pipeline on hardware, and the result is only as balanced as the
//! threshold and the greedy order allow.

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

/// What libcoral's tool pays for a plan (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibcoralCost {
    /// Compile-and-benchmark rounds: the compiler's split once, then one for every latency
    /// asked for that no earlier round had measured.
    pub rounds: usize,
    /// Segments compiled and timed: N per round, the same segment again whenever a later
    /// round's partition holds it.
    pub segments_compiled: usize,
    /// How libcoral's tool ends.
    pub outcome: LibcoralOutcome,
}

/// How libcoral's `partition_with_profiling` ends (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LibcoralOutcome {
    /// The bisection found a partition; libcoral writes its segments.
    Found,
    /// The compiler's split is already balanced within the threshold: libcoral stops after
    /// the first round and writes nothing.
    CompilerSplitKept,
    /// No target gave a partition, or the compiler's split had equal fastest and slowest
    /// segments: libcoral stops on a failed check and writes nothing.
    Aborted,
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
    ///
    /// # Errors
    ///
    /// If `seconds` is not a positive, finite number.
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

    /// The plan libcoral's search arrives at (the compiler's split when it writes none), and
    /// what libcoral's tool pays for it. The plan's
    /// [`candidates_profiled`](Plan::candidates_profiled) is
    /// [`LibcoralCost::segments_compiled`].
    ///
    /// # Errors
    ///
    /// If the model cannot be cut into `segments`, or the profiler fails.
    pub fn plan_with_cost(
        &self,
        graph: &Graph<'_, '_>,
        segments: usize,
    ) -> Result<(Plan, LibcoralCost)> {
        check_segmentable(graph, segments)?;
        let mut candidates = Candidates::new(graph, &self.profiler);
        let uniform = UniformByParams.plan(graph, segments)?;
        let uniform_ends = candidates.ends_of(&uniform)?;
        // The first round: the compiler's split, benchmarked once and not cached.
        let mut rounds = Rounds::new(segments);
        rounds.count_uncached_round();
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
        let outcome = if upper <= lower {
            LibcoralOutcome::Aborted
        } else if upper - lower <= self.diff_threshold_s {
            LibcoralOutcome::CompilerSplitKept
        } else {
            while upper - lower > self.diff_threshold_s {
                let target = (lower + upper) / 2.0;
                let found = search.partition(&mut candidates, &mut rounds, target)?;
                let last_latency = match &found {
                    Some(ends) => rounds.latency(&mut candidates, ends, ends.len() - 1)?,
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
            if best.is_some() {
                LibcoralOutcome::Found
            } else {
                LibcoralOutcome::Aborted
            }
        };
        let ends = best.unwrap_or(uniform_ends);
        // Labelled as its segments run once compiled (the device program, and the CPU
        // operators after it), as the compiler's split would be; priced by its own profiles.
        let cuts: Vec<usize> = ends[..ends.len() - 1]
            .iter()
            .map(|&p| candidates.op(p))
            .collect();
        let mut plan = Plan::from_cuts(self.name(), graph, &cuts)?;
        let mut start = 0;
        for (segment, &end) in plan.segments.iter_mut().zip(&ends) {
            segment.predicted_latency_s = Some(candidates.latency(start, end)?);
            start = end;
        }
        let cost = LibcoralCost {
            rounds: rounds.rounds,
            segments_compiled: rounds.rounds * segments,
            outcome,
        };
        plan.candidates_profiled = cost.segments_compiled;
        Ok((plan, cost))
    }
}

impl<P: Profiler> Segmenter for LibcoralSearch<P> {
    fn name(&self) -> &str {
        "libcoral"
    }

    /// [`plan_with_cost`](LibcoralSearch::plan_with_cost) without the cost.
    fn plan(&self, graph: &Graph<'_, '_>, segments: usize) -> Result<Plan> {
        Ok(self.plan_with_cost(graph, segments)?.0)
    }
}

/// libcoral's latency cache and its rounds: a segment (pair of points) is known once a
/// round has benchmarked a partition holding it.
struct Rounds {
    segments: usize,
    rounds: usize,
    cached: HashSet<(usize, usize)>,
}

impl Rounds {
    fn new(segments: usize) -> Self {
        Rounds {
            segments,
            rounds: 0,
            cached: HashSet::new(),
        }
    }

    /// A round whose latencies libcoral does not cache (the compiler's split).
    fn count_uncached_round(&mut self) {
        self.rounds += 1;
    }

    /// The latency of segment `index` of the partition whose segments end at `ends` (all
    /// N of them). On a cache miss, one round: every segment of the partition is measured
    /// and cached.
    fn latency(
        &mut self,
        candidates: &mut Candidates<'_, '_>,
        ends: &[usize],
        index: usize,
    ) -> Result<f64> {
        debug_assert_eq!(ends.len(), self.segments);
        let start = |i: usize| if i == 0 { 0 } else { ends[i - 1] };
        if !self.cached.contains(&(start(index), ends[index])) {
            self.rounds += 1;
            for (i, &end) in ends.iter().enumerate() {
                candidates.latency(start(i), end)?;
                self.cached.insert((start(i), end));
            }
        }
        candidates.latency(start(index), ends[index])
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
        rounds: &mut Rounds,
        target: f64,
    ) -> Result<Option<Vec<usize>>> {
        let mut failed = HashSet::new();
        let mut ends = Vec::with_capacity(self.segments);
        let mut search = Placing {
            candidates,
            rounds,
            target,
            failed: &mut failed,
        };
        if self.place(&mut search, 0, 0, &mut ends)? {
            Ok(Some(ends))
        } else {
            Ok(None)
        }
    }

    /// Places segment `index` from point `start` on, and the ones after it; pushes their
    /// ends onto `ends` and returns true on success.
    fn place(
        &self,
        search: &mut Placing<'_, '_, '_>,
        index: usize,
        start: usize,
        ends: &mut Vec<usize>,
    ) -> Result<bool> {
        let last = search.candidates.last();
        if index + 1 == self.segments {
            ends.push(last);
            return Ok(true);
        }
        if search.failed.contains(&(index, start)) {
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
            // libcoral's candidate partition while it measures this segment: the segments
            // placed so far, this one, the next one up to one step past the longest end,
            // one step for each middle segment after that, and the last segment.
            let mut partition = ends.clone();
            partition.push(end);
            partition.extend((1..=middle_after).map(|k| longest_end + k));
            partition.push(last);
            let latency = search
                .rounds
                .latency(search.candidates, &partition, index)?;
            if latency <= search.target {
                ends.push(end);
                if self.place(search, index + 1, end, ends)? {
                    return Ok(true);
                }
                ends.pop();
            }
        }
        search.failed.insert((index, start));
        Ok(false)
    }
}

/// The state of one greedy search for a target.
struct Placing<'c, 'g, 'p> {
    candidates: &'c mut Candidates<'g, 'p>,
    rounds: &'c mut Rounds,
    target: f64,
    /// (segment index, start point) pairs from which no placement meets the target.
    failed: &'c mut HashSet<(usize, usize)>,
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;
    use crate::model::figures::tests::{model, operator, quantized, tensor};
    use crate::model::{ElementType, Model, ops};
    use crate::profile::SegmentProfile;

    /// Four dense layers with weights of equal size, in a chain.
    fn chain() -> Model<'static> {
        use ElementType::I8;
        let mut tensors = vec![tensor("x", I8, &[1, 8], false)];
        let mut operators = Vec::new();
        for i in 0..4 {
            tensors.push(tensor(&format!("w{i}"), I8, &[8, 8], true));
            tensors.push(tensor(&format!("h{i}"), I8, &[1, 8], false));
            let input = if i == 0 { 0 } else { 2 * i };
            operators.push(operator(
                ops::FULLY_CONNECTED,
                &[Some(input), Some(2 * i + 1)],
                &[2 * i + 2],
            ));
        }
        quantized(model(tensors, operators, &[0], &[8]))
    }

    /// Operator `i` takes `i + 1` seconds.
    struct Rising;

    impl Profiler for Rising {
        fn profile(&self, _model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
            Ok(SegmentProfile {
                latency_s: ops.map(|op| op as f64 + 1.0).sum(),
                on_chip_bytes: 0,
                off_chip_bytes: 0,
            })
        }
    }

    /// Worked by hand: the compiler's split [0..2, 2..4] takes 3 and 7 s (round 1, not
    /// cached). Target 5: segment 0..3 (6 s) misses it (round 2 measures 0..3 and 3..4),
    /// 0..2 meets it (round 3 measures 0..2 and 2..4, since round 1 was not cached), and the
    /// last segment 2..4 is cached. Every later target finds its segments in the cache.
    #[test]
    fn counts_rounds_and_segments_as_libcoral_pays_them() {
        let m = chain();
        let graph = Graph::new(&m).expect("graph");
        assert_eq!(
            UniformByParams.plan(&graph, 2).expect("plan").cuts(),
            vec![2]
        );
        let (plan, cost) = LibcoralSearch::new(Rising)
            .plan_with_cost(&graph, 2)
            .expect("plan");
        assert_eq!(plan.cuts(), vec![3]);
        assert_eq!(plan.bottleneck_s(), Some(6.0));
        assert_eq!(
            cost,
            LibcoralCost {
                rounds: 3,
                segments_compiled: 6,
                outcome: LibcoralOutcome::Found,
            }
        );
        assert_eq!(plan.candidates_profiled, 6);
    }

    #[test]
    fn outcomes_where_libcoral_writes_nothing() {
        let m = chain();
        let graph = Graph::new(&m).expect("graph");
        // 3 s against 7 s: within a 10 s threshold, libcoral keeps the compiler's split.
        let (plan, cost) = LibcoralSearch::new(Rising)
            .with_diff_threshold(10.0)
            .expect("threshold")
            .plan_with_cost(&graph, 2)
            .expect("plan");
        assert_eq!(plan.cuts(), vec![2]);
        assert_eq!(
            (cost.rounds, cost.segments_compiled, cost.outcome),
            (1, 2, LibcoralOutcome::CompilerSplitKept)
        );
        // One segment: its fastest and slowest segment are the same; libcoral refuses.
        let (plan, cost) = LibcoralSearch::new(Rising)
            .plan_with_cost(&graph, 1)
            .expect("plan");
        assert_eq!(plan.segments.len(), 1);
        assert_eq!(cost.outcome, LibcoralOutcome::Aborted);
    }
}
