//! What the profiling strategies share: the places where a model may be cut, and a memo of
//! the candidate segments profiled so far.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{Plan, SegmentKind, is_valid_cut};
use crate::device::DeviceSegments;
use crate::model::{Graph, Model};
use crate::profile::Profiler;
use crate::{Error, Result};

/// Where the candidates of a plan may run.
#[derive(Debug, Clone)]
pub(crate) enum Places {
    /// Every candidate runs on the profiled target and is labelled `kind`.
    All(SegmentKind),
    /// The Edge TPU's operator support decides: candidates the compiler maps whole are Edge
    /// TPU segments; candidates holding an operator only the CPU runs are CPU segments,
    /// which take no device; the others (host quantisation alone, say) are no segment of
    /// their own, except the whole model when nothing else can hold it.
    EdgeTpu(DeviceSegments),
}

/// What one candidate segment can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A segment on the budgeted devices (or, for [`Places::All`], a stage of the budget).
    Budgeted,
    /// A CPU segment, taking no device.
    Free,
    /// Not a segment of any plan.
    Never,
}

impl Places {
    /// What candidate `ops` can be.
    pub(crate) fn slot(&self, ops: &Range<usize>) -> Slot {
        match self {
            Places::All(_) => Slot::Budgeted,
            Places::EdgeTpu(device) if device.allows(ops) => Slot::Budgeted,
            Places::EdgeTpu(device)
                if device.needs_cpu(ops) || (ops.start == 0 && ops.end == device.op_count()) =>
            {
                Slot::Free
            }
            Places::EdgeTpu(_) => Slot::Never,
        }
    }

    /// Where candidate `ops` runs.
    pub(crate) fn kind(&self, ops: &Range<usize>) -> SegmentKind {
        match self {
            Places::All(kind) => *kind,
            Places::EdgeTpu(device) => super::kind_of(device, ops),
        }
    }
}

/// Cut points of one graph and the latencies profiled between them.
///
/// Points are numbered `0..=last()`: point 0 is operator 0, the last point is the operator
/// count, and those between are the valid cuts in ascending order. A candidate segment runs
/// from point `a` to point `b > a`. Each candidate is handed to the profiler at most once.
pub(crate) struct Candidates<'g, 'p> {
    model: &'g Model<'g>,
    profiler: &'p dyn Profiler,
    /// Profiles the candidates that take no device (CPU segments), if any can.
    host: Option<&'p dyn Profiler>,
    places: Places,
    /// `stateful_before[op]`: how many operators before `op` keep state between items.
    stateful_before: Vec<usize>,
    /// Operator index of every point.
    points: Vec<usize>,
    /// Latency (seconds) of every candidate profiled: `profiled[a][&b]` for `a..b`.
    profiled: Vec<BTreeMap<usize, f64>>,
    /// Distinct candidates profiled on the device (each one compiled and timed, on
    /// hardware), and those timed on the host (CPU segments, nothing compiled).
    count: usize,
    host_count: usize,
}

impl<'g, 'p> Candidates<'g, 'p> {
    /// Candidates that all run on `profiler`'s target, as Edge TPU segments.
    pub(crate) fn new(graph: &Graph<'g, '_>, profiler: &'p dyn Profiler) -> Self {
        Self::placed(graph, profiler, None, Places::All(SegmentKind::EdgeTpu))
    }

    /// Candidates placed by `places`: those that take a device are profiled by `profiler`,
    /// the others by `host`.
    pub(crate) fn placed(
        graph: &Graph<'g, '_>,
        profiler: &'p dyn Profiler,
        host: Option<&'p dyn Profiler>,
        places: Places,
    ) -> Self {
        let op_count = graph.op_count();
        let mut points = vec![0];
        points.extend((1..op_count).filter(|&c| is_valid_cut(graph, c)));
        points.push(op_count);
        let mut stateful_before = vec![0; op_count + 1];
        for op in 0..op_count {
            stateful_before[op + 1] = stateful_before[op] + usize::from(graph.is_stateful(op));
        }
        Candidates {
            stateful_before,
            model: graph.model(),
            profiler,
            host,
            places,
            profiled: vec![BTreeMap::new(); points.len()],
            points,
            count: 0,
            host_count: 0,
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
        let on_device = self.places.slot(&ops) == Slot::Budgeted;
        let profiler = if on_device {
            self.profiler
        } else {
            self.host.ok_or_else(|| {
                Error::invalid(
                    "profile",
                    format!(
                        "operators {}..{} form a CPU segment, and no CPU profiler was given",
                        ops.start, ops.end
                    ),
                )
            })?
        };
        let latency = profiler.profile(self.model, ops.clone())?.latency_s;
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
        if on_device {
            self.count += 1;
        } else {
            self.host_count += 1;
        }
        Ok(latency)
    }

    /// What candidate `a..b` can be.
    pub(crate) fn slot(&self, a: usize, b: usize) -> Slot {
        self.places.slot(&self.ops(a, b))
    }

    /// Whether candidate `a..b` may run on several devices side by side: not if it keeps
    /// state between items (each replica would see only its share of them).
    pub(crate) fn replicable(&self, a: usize, b: usize) -> bool {
        let ops = self.ops(a, b);
        self.stateful_before[ops.end] == self.stateful_before[ops.start]
    }

    /// Whether some candidates take no device (CPU segments).
    pub(crate) fn has_free(&self) -> bool {
        !matches!(self.places, Places::All(_))
    }

    /// The plan whose segments end at the points of `steps`, each run by its number of
    /// replicas, labelled by where its candidate runs, with every segment's latency filled in
    /// and the number of candidates profiled.
    pub(crate) fn plan_with_replicas(
        &mut self,
        strategy: &str,
        graph: &Graph<'_, '_>,
        steps: &[(usize, usize)],
    ) -> Result<Plan> {
        let ends: Vec<usize> = steps.iter().map(|&(end, _)| end).collect();
        let cuts: Vec<usize> = ends
            .iter()
            .take(ends.len().saturating_sub(1))
            .map(|&p| self.op(p))
            .collect();
        let mut plan = Plan::from_cuts_placed(strategy, graph, &cuts, |ops| {
            // The planner's segments run wholly on the device or wholly on the CPU.
            match self.places.kind(ops) {
                SegmentKind::EdgeTpu => (SegmentKind::EdgeTpu, ops.end..ops.end),
                SegmentKind::Cpu => (SegmentKind::Cpu, ops.clone()),
            }
        })?;
        let mut start = 0;
        for (segment, &(end, replicas)) in plan.segments.iter_mut().zip(steps) {
            segment.predicted_latency_s = Some(self.latency(start, end)?);
            segment.replicas = replicas;
            start = end;
        }
        plan.candidates_profiled = self.count;
        plan.cpu_candidates_timed = self.host_count;
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
