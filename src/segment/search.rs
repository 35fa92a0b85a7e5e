//! What the profiling strategies share: the places where a model may be cut, and a memo of
//! the candidate segments profiled so far.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{Plan, is_valid_cut};
use crate::model::{Graph, Model};
use crate::profile::Profiler;
use crate::{Error, Result};

/// Cut points of one graph and the latencies profiled between them.
///
/// Points are numbered `0..=last()`: point 0 is operator 0, the last point is the operator
/// count, and those between are the valid cuts in ascending order. A candidate segment runs
/// from point `a` to point `b > a`. Each candidate is handed to the profiler at most once.
pub(crate) struct Candidates<'g, 'p> {
    model: &'g Model<'g>,
    profiler: &'p dyn Profiler,
    /// Operator index of every point.
    points: Vec<usize>,
    /// Latency (seconds) of every candidate profiled: `profiled[a][&b]` for `a..b`.
    profiled: Vec<BTreeMap<usize, f64>>,
    count: usize,
}

impl<'g, 'p> Candidates<'g, 'p> {
    pub(crate) fn new(graph: &Graph<'g, '_>, profiler: &'p dyn Profiler) -> Self {
        let op_count = graph.op_count();
        let mut points = vec![0];
        points.extend((1..op_count).filter(|&c| is_valid_cut(graph, c)));
        points.push(op_count);
        Candidates {
            model: graph.model(),
            profiler,
            profiled: vec![BTreeMap::new(); points.len()],
            points,
            count: 0,
        }
    }

    /// Index of the last point (the operator count): the number of single-step segments.
    pub(crate) fn last(&self) -> usize {
        self.points.len() - 1
    }

    /// Operator index of point `p`.
    pub(crate) fn op(&self, p: usize) -> usize {
        self.points[p]
    }

    /// The point at operator `op`, if `op` is a point.
    pub(crate) fn point_of(&self, op: usize) -> Option<usize> {
        self.points.binary_search(&op).ok()
    }

    /// The last point at or before operator `op`.
    pub(crate) fn point_at_or_before(&self, op: usize) -> usize {
        self.points.partition_point(|&p| p <= op).saturating_sub(1)
    }

    /// Operators of candidate `a..b`.
    pub(crate) fn ops(&self, a: usize, b: usize) -> Range<usize> {
        self.points[a]..self.points[b]
    }

    /// The latency of candidate `a..b` if it has been profiled.
    pub(crate) fn known(&self, a: usize, b: usize) -> Option<f64> {
        self.profiled.get(a)?.get(&b).copied()
    }

    /// The candidates from point `a` profiled so far: end point and latency, ascending ends.
    pub(crate) fn known_from(&self, a: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.profiled[a].iter().map(|(&b, &latency)| (b, latency))
    }

    /// The latency of candidate `a..b`, profiling it on first use.
    pub(crate) fn latency(&mut self, a: usize, b: usize) -> Result<f64> {
        if let Some(latency) = self.known(a, b) {
            return Ok(latency);
        }
        let ops = self.ops(a, b);
        let latency = self.profiler.profile(self.model, ops.clone())?.latency_s;
        if !(latency.is_finite() && latency >= 0.0) {
            return Err(Error::invalid(
                "profile",
                format!(
                    "operators {}..{} profiled at {latency} s, not a finite non-negative time",
                    ops.start, ops.end
                ),
            ));
        }
        self.profiled[a].insert(b, latency);
        self.count += 1;
        Ok(latency)
    }

    /// How many distinct candidates have been profiled.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The plan whose segments end at `ends` (points, ascending, the last one `last()`),
    /// with every segment's latency filled in (profiled now if need be) and the number of
    /// candidates profiled.
    pub(crate) fn plan(
        &mut self,
        strategy: &str,
        graph: &Graph<'_, '_>,
        ends: &[usize],
    ) -> Result<Plan> {
        let cuts: Vec<usize> = ends
            .iter()
            .take(ends.len().saturating_sub(1))
            .map(|&p| self.op(p))
            .collect();
        let mut plan = Plan::from_cuts(strategy, graph, &cuts)?;
        let mut start = 0;
        for (segment, &end) in plan.segments.iter_mut().zip(ends) {
            segment.predicted_latency_s = Some(self.latency(start, end)?);
            start = end;
        }
        plan.candidates_profiled = self.count();
        Ok(plan)
    }

    /// The points of a plan's segment ends, or an error if a cut is not a point.
    pub(crate) fn ends_of(&self, plan: &Plan) -> Result<Vec<usize>> {
        plan.segments
            .iter()
            .map(|s| {
                self.point_of(s.ops.end).ok_or_else(|| Error::InvalidCut {
                    cut: s.ops.end,
                    reason: "it is not a valid cut point".to_string(),
                })
            })
            .collect()
    }
}
