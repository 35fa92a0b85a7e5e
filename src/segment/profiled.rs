//! The profiled segmenter: the plan whose slowest segment is fastest, exactly, asking the
//! profiler as little as it can.
//!
//! # Problem
//!
//! Points `0 = p_0 < p_1 < … < p_m = K` are the places the model may be cut (operator 0,
//! the valid cuts, the operator count). A plan of `N` segments is a path `0 → … → m` of `N`
//! steps; segment `a → b` costs `L(a, b)`, the profiler's latency of operators
//! `p_a..p_b`. We want the path that minimises the bottleneck `max L`, and among those the
//! one with the smallest total `Σ L` (summed in segment order). `L` is arbitrary: it need not
//! grow with the segment (extending a segment can shrink the tensor it hands on), so no
//! greedy or bisection over lengths is safe.
//!
//! # Search
//!
//! Every candidate has a cheap *floor* `F(a, b) ≤ L(a, b)` ([`Floors`], from a
//! [`LatencyFloor`]); part of it, `G(a, b) ≤ F(a, b)`, never decreases when the segment grows.
//! The search keeps an *estimate* `E(a, b)`: `L(a, b)` once profiled, `F(a, b)` before.
//! Since `E ≤ L` everywhere, an optimum under `E` is never worse than the optimum under `L`.
//! The *incumbent* is the best path whose segments have all been profiled.
//!
//! 1. Bottleneck. Repeat: find by dynamic programming the path with the smallest bottleneck
//!    under `E` (equal bottlenecks decided by the smaller sum, a heuristic that only picks
//!    which path to look at), using only segments with `G(a, b) ≤ U`, `U` the incumbent's
//!    bottleneck (∞ at first). If the incumbent's bottleneck is no larger than that path's
//!    estimate, it is `B*`, the optimum; otherwise profile the path's unprofiled segments,
//!    make it the incumbent if it is better, and repeat.
//! 2. Total. The same with sums (in segment order) instead of maxima, over the segments with
//!    `G ≤ B*` and `E ≤ B*`, starting from phase 1's incumbent. Its final incumbent is the
//!    plan.
//!
//! # Why it is exact
//!
//! *Pruning is sound.* A segment with `G(a, b) > U` has `L(a, b) > U ≥ B*`, so it is on no
//! optimal path; a segment with `E(a, b) > B*` has `L(a, b) > B*` likewise.
//! *The answer is optimal.* Maxima and rounded sums are monotone in each term, so a path's
//! value under `E` is at most its value under `L`. The dynamic program's value is the least
//! value under `E` over all allowed paths, hence at most the optimum under `L`; an incumbent
//! (a true value) no larger than it is therefore optimal. Phase 1 gives the least bottleneck,
//! phase 2 the least total among the paths that reach it: the lexicographic optimum. Ties
//! keep the path met first (smallest earlier cut), so the result is deterministic.
//! *It ends.* Every round that does not stop profiles at least one new segment.
//!
//! # Tolerance and rounding
//!
//! A floor must stay a hair below the figure it bounds to be safe from rounding (its sums are
//! compensated, then it is shaved by about 10⁻¹⁵ per operator of the model). So a plan that ties
//! with the incumbent to the last bit looks a hair better until it is profiled, and models
//! made of identical blocks have many such ties. By default the search therefore stops when
//! the incumbent is within a relative [`DEFAULT_TOLERANCE`] (10⁻⁹) of the bound: the
//! bottleneck is then at most `1 + 10⁻⁹` times the optimum, and the total likewise among
//! plans with that bottleneck. Latencies that differ by less are equal for any purpose (a
//! picosecond per millisecond); figures more than that apart, such as the test profilers'
//! steps of 1/8, come out exactly as brute force finds them. [`Profiled::with_tolerance`]
//! `(0.0)` is exact to the last bit and pays for it in profiles.
//!
//! # Cost
//!
//! The number of distinct segments profiled is reported as [`Plan::candidates_profiled`].
//! With tight floors (the cost model's own, [`EdgeTpuCostModel`] as [`LatencyFloor`]) most
//! segments are settled by their floor and a plan costs a few profiles per segment. With
//! no floor ([`NoFloor`]) the search is still exact but may profile every candidate of the
//! window — all `O(m²)` in the worst case, which no exact method avoids when nothing bounds
//! an unprofiled segment's latency. Planning time is `O(N · W)` per round, `W` the
//! candidates left after pruning.

use std::ops::Range;

use std::sync::Arc;

use super::search::{Candidates, Places, Slot};
use super::{Plan, SegmentKind, Segmenter, check_segmentable};
use crate::deploy::MAX_DEVICES;
use crate::device::{CpuCostModel, DeviceLayout, DeviceSegments, EdgeTpuCostModel, op_support};
use crate::model::Graph;
use crate::model::figures::op_figures;
use crate::profile::{CachedProfiler, Profiler};
use crate::{Error, Result};

/// Relative amount taken off a floor per operator of the model (plus a few), so that
/// rounding can never lift it above the profiler's own figure: the floor's range sums are
/// compensated (a few rounding errors each), while a profiler that adds up its operators
/// one by one may round once per operator.
const ROUNDING_PER_OP: f64 = 4.0 * f64::EPSILON;

/// Cheap lower bounds on a profiler's segment latencies, for the ranges of one graph.
///
/// The floor of a range is
/// `fixed + Σ per-op + overflow + io`, where
/// - `fixed` is paid once per segment (e.g. the invoke overhead),
/// - `per-op` is a non-negative figure of each operator (e.g. its compute time),
/// - `overflow` prices the bytes by which the operators' parameters exceed a budget (e.g.
///   parameters that cannot all be cached on chip and must be streamed) at the cheapest
///   rates they could have: each operator's bytes carry a price per byte, and the excess is
///   charged to the cheapest bytes of the range first,
/// - `io` is the bytes of the non-constant tensors (activations, variables) the range reads
///   from before it or hands on to later operators (or the model's outputs), times seconds
///   per byte.
///
/// The first three terms never decrease as a range grows ([`Floors::growing_floor_s`]); the
/// io term may, which is why it is kept apart.
#[derive(Debug, Clone)]
pub struct Floors {
    fixed_s: f64,
    /// Compensated prefix sums of the per-operator floors: `(high, low)` parts.
    prefix_s: Vec<(f64, f64)>,
    overflow: Option<Overflow>,
    io: Option<Io>,
    /// `1 −` the relative rounding margin (see [`ROUNDING_PER_OP`]).
    keep: f64,
}

#[derive(Debug, Clone)]
struct Overflow {
    budget_bytes: u64,
    /// One class per distinct price, cheapest first: seconds per byte and prefix sums of
    /// the operators' bytes at that price.
    classes: Vec<(f64, Vec<u64>)>,
}

/// Where activations live, to price the io term of any range quickly.
#[derive(Debug, Clone)]
struct Io {
    /// Seconds per byte into the segment.
    input_s_per_byte: f64,
    /// Seconds per byte out of the segment.
    output_s_per_byte: f64,
    /// Non-constant tensors: producer (`None` for model inputs and variables), readers
    /// ascending, bytes.
    activations: Vec<(Option<usize>, Vec<usize>, u64)>,
    /// `live_in[a]`: those produced before operator `a` (or not produced) and read at or
    /// after it.
    live_in: Vec<Vec<usize>>,
    /// `live_out[b]`: those produced before operator `b` and read at or after it or that
    /// are model outputs.
    live_out: Vec<Vec<usize>>,
}

fn check_seconds(what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            "latency floor",
            format!("{what} must be a finite, non-negative number, not {value}"),
        ))
    }
}

impl Floors {
    /// No information: every floor is 0.
    pub fn zero(graph: &Graph<'_, '_>) -> Floors {
        Floors {
            fixed_s: 0.0,
            prefix_s: vec![(0.0, 0.0); graph.op_count() + 1],
            overflow: None,
            io: None,
            keep: keep(graph.op_count()),
        }
    }

    /// Floors of `fixed_s` per segment, `per_op_s[i]` for operator `i`, `input_s_per_byte`
    /// per byte of activations into the segment and `output_s_per_byte` per byte out of it.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a figure that is negative or not finite, or a per-operator
    /// list whose length is not the graph's operator count.
    pub fn new(
        graph: &Graph<'_, '_>,
        fixed_s: f64,
        per_op_s: &[f64],
        input_s_per_byte: f64,
        output_s_per_byte: f64,
    ) -> Result<Floors> {
        check_seconds("the fixed floor", fixed_s)?;
        check_seconds("the input floor per byte", input_s_per_byte)?;
        check_seconds("the output floor per byte", output_s_per_byte)?;
        if per_op_s.len() != graph.op_count() {
            return Err(Error::invalid(
                "latency floor",
                format!(
                    "{} per-operator floors for {} operators",
                    per_op_s.len(),
                    graph.op_count()
                ),
            ));
        }
        let mut prefix_s = Vec::with_capacity(per_op_s.len() + 1);
        prefix_s.push((0.0, 0.0));
        for (op, &s) in per_op_s.iter().enumerate() {
            check_seconds(&format!("the floor of operator {op}"), s)?;
            let (high, low) = prefix_s[op];
            let (sum, error) = two_sum(high, s);
            prefix_s.push((sum, low + error));
        }
        let io = (input_s_per_byte > 0.0 || output_s_per_byte > 0.0)
            .then(|| Io::new(graph, input_s_per_byte, output_s_per_byte));
        Ok(Floors {
            fixed_s,
            prefix_s,
            overflow: None,
            io,
            keep: keep(graph.op_count()),
        })
    }

    /// Adds the overflow term: operator `i` holds `per_op_bytes[i]` bytes priced at
    /// `per_op_s_per_byte[i]` seconds each should they exceed `budget_bytes`; the floor
    /// charges the excess of a range to its cheapest bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for lists whose length is not the operator count, or a price that
    /// is negative or not finite.
    pub fn with_overflow(
        mut self,
        budget_bytes: u64,
        per_op_bytes: &[u64],
        per_op_s_per_byte: &[f64],
    ) -> Result<Floors> {
        let op_count = self.op_count();
        if per_op_bytes.len() != op_count || per_op_s_per_byte.len() != op_count {
            return Err(Error::invalid(
                "latency floor",
                format!(
                    "{} byte counts and {} prices for {op_count} operators",
                    per_op_bytes.len(),
                    per_op_s_per_byte.len()
                ),
            ));
        }
        let mut prices: Vec<f64> = Vec::new();
        for (op, &price) in per_op_s_per_byte.iter().enumerate() {
            check_seconds(&format!("the overflow price of operator {op}"), price)?;
            if !prices.contains(&price) {
                prices.push(price);
            }
        }
        prices.sort_by(f64::total_cmp);
        let classes = prices
            .into_iter()
            .map(|price| {
                let mut prefix = Vec::with_capacity(op_count + 1);
                prefix.push(0u64);
                for (op, &bytes) in per_op_bytes.iter().enumerate() {
                    let here = if per_op_s_per_byte[op] == price {
                        bytes
                    } else {
                        0
                    };
                    prefix.push(prefix[op].saturating_add(here));
                }
                (price, prefix)
            })
            .collect();
        self.overflow = Some(Overflow {
            budget_bytes,
            classes,
        });
        Ok(self)
    }

    /// Number of operators these floors describe.
    pub fn op_count(&self) -> usize {
        self.prefix_s.len() - 1
    }

    /// The part of the floor of `ops` that never decreases as the range grows.
    /// Out-of-range operators are ignored.
    pub fn growing_floor_s(&self, ops: Range<usize>) -> f64 {
        self.growing_exact(&ops) * self.keep
    }

    /// The whole floor of `ops`: the growing part plus the io term.
    pub fn floor_s(&self, ops: Range<usize>) -> f64 {
        let io = self.io.as_ref().map_or(0.0, |io| io.floor_s(&ops));
        (self.growing_exact(&ops) + io) * self.keep
    }

    /// The growing part before the rounding margin.
    fn growing_exact(&self, ops: &Range<usize>) -> f64 {
        let end = ops.end.min(self.op_count());
        let start = ops.start.min(end);
        let (high_end, low_end) = self.prefix_s[end];
        let (high_start, low_start) = self.prefix_s[start];
        let per_op = ((high_end - high_start) + (low_end - low_start)).max(0.0);
        let mut floor = self.fixed_s + per_op;
        if let Some(overflow) = &self.overflow {
            let bytes = |prefix: &[u64]| prefix[end].saturating_sub(prefix[start]);
            let total = overflow
                .classes
                .iter()
                .fold(0u64, |sum, (_, prefix)| sum.saturating_add(bytes(prefix)));
            let mut excess = total.saturating_sub(overflow.budget_bytes);
            for (price, prefix) in &overflow.classes {
                if excess == 0 {
                    break;
                }
                let charged = excess.min(bytes(prefix));
                floor += charged as f64 * price;
                excess -= charged;
            }
        }
        floor
    }
}

/// `a + b` and its rounding error (Knuth's two-sum).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let sum = a + b;
    let b_part = sum - a;
    let a_part = sum - b_part;
    (sum, (a - a_part) + (b - b_part))
}

/// The share of a floor kept after the rounding margin, for a model of `op_count` ops.
fn keep(op_count: usize) -> f64 {
    (1.0 - ROUNDING_PER_OP * (op_count as f64 + 16.0)).max(0.0)
}

impl Io {
    fn new(graph: &Graph<'_, '_>, input_s_per_byte: f64, output_s_per_byte: f64) -> Io {
        let model = graph.model();
        let op_count = graph.op_count();
        let mut activations = Vec::new();
        let mut live_in = vec![Vec::new(); op_count + 1];
        let mut live_out = vec![Vec::new(); op_count + 1];
        for t in 0..model.tensors.len() {
            if model.tensors[t].is_constant() {
                continue;
            }
            let producer = graph.producer(t);
            let readers = graph.consumers(t).to_vec();
            let is_output = model.outputs.contains(&t);
            let bytes = model.tensors[t].byte_size().map_or(0, |b| b as u64);
            let index = activations.len();
            let born = producer.map_or(0, |p| p + 1);
            if let Some(&last_reader) = readers.last() {
                for list in &mut live_in[born..=last_reader.min(op_count)] {
                    list.push(index);
                }
            }
            if producer.is_some() {
                let last_needed = if is_output {
                    op_count
                } else {
                    readers.last().copied().unwrap_or(0)
                };
                if born <= last_needed {
                    for list in &mut live_out[born..=last_needed.min(op_count)] {
                        list.push(index);
                    }
                }
            }
            activations.push((producer, readers, bytes));
        }
        Io {
            input_s_per_byte,
            output_s_per_byte,
            activations,
            live_in,
            live_out,
        }
    }

    fn floor_s(&self, ops: &Range<usize>) -> f64 {
        let (start, end) = (ops.start, ops.end);
        if start >= end || end >= self.live_in.len() {
            return 0.0;
        }
        let mut input = 0u64;
        for &i in &self.live_in[start] {
            let (_, readers, size) = &self.activations[i];
            let first_inside = readers.partition_point(|&r| r < start);
            if readers.get(first_inside).is_some_and(|&r| r < end) {
                input = input.saturating_add(*size);
            }
        }
        let mut output = 0u64;
        for &i in &self.live_out[end] {
            let (producer, _, size) = &self.activations[i];
            if producer.is_some_and(|p| p >= start) {
                output = output.saturating_add(*size);
            }
        }
        input as f64 * self.input_s_per_byte + output as f64 * self.output_s_per_byte
    }
}

/// Something that can bound a profiler's latencies from below, cheaply.
///
/// The contract, on which [`Profiled`]'s exactness rests: for every operator range `r` of
/// the graph, `floors.floor_s(r)` is at most the latency the profiler reports for `r`.
pub trait LatencyFloor {
    /// The floors for the ranges of `graph`.
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors>;
}

/// No floor at all (every bound 0): always sound, prunes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFloor;

impl LatencyFloor for NoFloor {
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        Ok(Floors::zero(graph))
    }
}

impl<T: LatencyFloor + ?Sized> LatencyFloor for &T {
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        (**self).floors(graph)
    }
}

impl<P: LatencyFloor + Profiler> LatencyFloor for CachedProfiler<P> {
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        self.inner().floors(graph)
    }
}

/// The cost model's own floor: invoke overhead, every op's own time
/// ([`EdgeTpuCostModel::op_time_s`]: compute, per-op cost, bytes copied, host conversions),
/// streaming of parameter tensors too large to cache, streaming forced by the on-chip
/// budget, and the transfer of activations.
///
/// Sound for the cost model's predictions: each parameter tensor is priced at its first
/// reader in the whole model, with that reader's layout and stream passes, and only
/// when that reader is in the range (then it is also the first reader in the range, which
/// is where the cost model prices it). Tensors no larger than the largest cacheable one
/// count towards the budget, and whatever exceeds it is streamed at the passes of the
/// cheapest ops in the range (the cost model caches first-fit in execution order, which
/// may leave part of the budget unused: the floor assumes none is). Transfers count every
/// non-constant tensor, as the cost model does.
impl LatencyFloor for EdgeTpuCostModel {
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        self.check()
            .map_err(|reason| Error::invalid("cost model", reason))?;
        let model = graph.model();
        let op_count = graph.op_count();
        let mut per_op_s = vec![0.0; op_count];
        let mut cacheable = vec![0u64; op_count];
        let mut price = vec![0.0; op_count];
        let mut first_reader_seen = vec![false; model.tensors.len()];
        for (op, per_op) in per_op_s.iter_mut().enumerate() {
            let figures = op_figures(model, op);
            // Compute, per-op cost, bytes copied and host conversions: the cost model prices
            // them per op whatever the segment, so they are the floor's own; so is the
            // number of passes a streamed parameter of the op takes (its output's tiles).
            let alone = crate::device::OpWorkload::of_operator(model, op, &DeviceLayout::EDGE_TPU);
            *per_op += self.op_time_s(&alone);
            price[op] = self.stream_passes(&alone) as f64 / self.stream_bytes_per_s;
            for &t in &figures.param_tensors {
                if std::mem::replace(&mut first_reader_seen[t], true) {
                    continue;
                }
                let position = model.operators[op]
                    .inputs
                    .iter()
                    .position(|&i| i == Some(t));
                let (Some(position), Some(tensor)) = (position, model.tensors.get(t)) else {
                    continue;
                };
                let bytes = DeviceLayout::EDGE_TPU.param_bytes(figures.kind, position, tensor);
                if bytes > self.max_cached_tensor_bytes {
                    *per_op += bytes as f64 * price[op];
                } else {
                    cacheable[op] = cacheable[op].saturating_add(bytes);
                }
            }
        }
        Floors::new(
            graph,
            self.invoke_overhead_s,
            &per_op_s,
            1.0 / self.input_bytes_per_s,
            1.0 / self.output_bytes_per_s,
        )?
        .with_overflow(self.on_chip_budget_bytes, &cacheable, &price)
    }
}

impl LatencyFloor for CpuCostModel {
    /// The estimate itself, which adds up per operator: its own exact floor.
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        self.check()
            .map_err(|reason| Error::invalid("CPU cost model", reason))?;
        let model = graph.model();
        let per_op_s: Vec<f64> = (0..graph.op_count())
            .map(|op| self.predict_s(model, op..op + 1) - self.invoke_overhead_s)
            .map(|s| s.max(0.0))
            .collect();
        Floors::new(graph, self.invoke_overhead_s, &per_op_s, 0.0, 0.0)
    }
}

/// The optimal min-bottleneck segmenter over a [`Profiler`]'s figures, ties broken by the
/// least total latency: exact up to a relative [`DEFAULT_TOLERANCE`] by default, to the
/// last bit with [`with_tolerance(0.0)`](Profiled::with_tolerance) (see the module docs for
/// the search and why it is optimal).
///
/// [`plan`](Segmenter::plan)`(graph, n)` plans for a budget of `n` devices. The planner
/// chooses the cuts, how many devices to use, and which segments to replicate over spare
/// devices (a segment that cannot be cut further can still be run by two devices taking
/// items in turn; never a segment that keeps state between items, such as an LSTM's), and
/// maximises the throughput, `1 / max(latency / replicas)`. It uses
/// fewer devices when more would shorten the bottleneck by less than a relative
/// [`device tolerance`](Profiled::with_device_tolerance) ([`DEFAULT_DEVICE_TOLERANCE`]);
/// [`with_exact_devices`](Profiled::with_exact_devices) gives every one of the `n` devices
/// one segment instead, as the paper's pipelines do.
///
/// With [`Profiled::new`] every operator runs on the profiled device. With
/// [`with_cpu_segments`](Profiled::with_cpu_segments) (which [`Profiled::cost_model`]
/// applies, with the CPU estimate), the Edge TPU's operator support
/// ([`op_support`]) decides: a segment that holds an operator only the CPU runs
/// is a CPU segment, profiled by the CPU profiler, taking no device; two CPU segments are
/// never adjacent (they would be one), and host quantisation never gets a stage of its own:
/// it rides at the edge of a device segment, as in a compiled model.
///
/// `F` bounds the profiler's latencies from below to prune candidates without profiling
/// them; the default, [`NoFloor`], prunes nothing. The floor must hold for this profiler
/// ([`LatencyFloor`]'s contract), or the result may not be optimal. CPU segments are bounded
/// by [`with_cpu_floor`](Profiled::with_cpu_floor)'s floor ([`Profiled::cost_model`] gives
/// the CPU estimate's own), else by 0.
///
/// ```
/// use multitpu::model::{Graph, paper};
/// use multitpu::device::EdgeTpuCostModel;
/// use multitpu::segment::{Profiled, Segmenter};
///
/// let model = paper::fc(2000)?;
/// let graph = Graph::new(&model)?;
/// let plan = Profiled::cost_model(EdgeTpuCostModel::usb_default()).plan(&graph, 4)?;
/// assert!(plan.devices() <= 4);
/// println!("{}", plan.summary_line("model-usb"));
/// # Ok::<(), multitpu::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Profiled<P, F = NoFloor> {
    profiler: P,
    floor: F,
    tolerance: f64,
    host: Host,
    devices: DeviceUse,
}

/// Where the operators of a plan may run.
#[derive(Clone)]
enum Host {
    /// Every operator on the profiled device (segments labelled Edge TPU).
    Device,
    /// Every operator on the host CPU: the profiler times CPU stages, and the budget counts
    /// stages (segments labelled CPU).
    CpuOnly,
    /// By the Edge TPU's operator support, CPU segments profiled by this profiler, bounded
    /// from below by this floor if one is given.
    Split(
        Arc<dyn Profiler + Send + Sync>,
        Option<Arc<dyn LatencyFloor + Send + Sync>>,
    ),
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Host::Device => "Device",
            Host::CpuOnly => "CpuOnly",
            Host::Split(..) => "Split(<cpu profiler>)",
        })
    }
}

/// How the planner uses its device budget.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DeviceUse {
    /// At most the budget, replicating segments if `replicate`, preferring fewer devices
    /// within a relative `tolerance`.
    Budget { replicate: bool, tolerance: f64 },
    /// Exactly one segment per device of the budget, no replicas.
    Exactly,
}

/// Relative shortening of the bottleneck below which the planner does not take another
/// device: 2 %.
pub const DEFAULT_DEVICE_TOLERANCE: f64 = 0.02;

impl<P: Profiler> Profiled<P> {
    /// The segmenter over `profiler`, with no floor, every operator on the profiled device.
    pub fn new(profiler: P) -> Self {
        Profiled {
            profiler,
            floor: NoFloor,
            tolerance: DEFAULT_TOLERANCE,
            host: Host::Device,
            devices: DeviceUse::Budget {
                replicate: true,
                tolerance: DEFAULT_DEVICE_TOLERANCE,
            },
        }
    }

    /// The segmenter for a pipeline of CPU stages timed by `profiler`: every segment is a
    /// CPU segment, and the budget counts stages.
    pub fn cpu(profiler: P) -> Self {
        Profiled {
            host: Host::CpuOnly,
            ..Profiled::new(profiler)
        }
    }
}

impl Profiled<EdgeTpuCostModel, EdgeTpuCostModel> {
    /// The segmenter over the cost model, pruned by the cost model's own floor, with the
    /// Edge TPU's operator support: what the Edge TPU cannot run goes to CPU segments, priced
    /// by the CPU cost estimate ([`CpuCostModel::default`]; replace it with
    /// [`with_cpu_segments`](Profiled::with_cpu_segments)).
    pub fn cost_model(cost_model: EdgeTpuCostModel) -> Self {
        let floor = cost_model.clone();
        Profiled::new(cost_model)
            .with_floor(floor)
            .with_cpu_segments(CpuCostModel::default())
            .with_cpu_floor(CpuCostModel::default())
    }
}

impl<P: Profiler, F: LatencyFloor> Profiled<P, F> {
    /// The same segmenter with `floor` as the source of lower bounds.
    pub fn with_floor<G: LatencyFloor>(self, floor: G) -> Profiled<P, G> {
        Profiled {
            profiler: self.profiler,
            floor,
            tolerance: self.tolerance,
            host: self.host,
            devices: self.devices,
        }
    }

    /// Places operators by the Edge TPU's operator support: segments the compiler cannot map
    /// whole run on the host CPU, timed by `cpu`, and take no device.
    pub fn with_cpu_segments(mut self, cpu: impl Profiler + Send + Sync + 'static) -> Self {
        self.host = Host::Split(Arc::new(cpu), None);
        self
    }

    /// Bounds the CPU segments' latencies from below by `floor`, which must hold for the CPU
    /// profiler of [`with_cpu_segments`](Profiled::with_cpu_segments) (without it a CPU
    /// segment's floor is 0, and the search may time many to rule them out). Does nothing
    /// unless the plan has CPU segments.
    pub fn with_cpu_floor(mut self, floor: impl LatencyFloor + Send + Sync + 'static) -> Self {
        if let Host::Split(_, cpu_floor) = &mut self.host {
            *cpu_floor = Some(Arc::new(floor));
        }
        self
    }

    /// Whether the planner may run a segment on several devices (default: yes).
    pub fn with_replication(mut self, replicate: bool) -> Self {
        if let DeviceUse::Budget { tolerance, .. } = self.devices {
            self.devices = DeviceUse::Budget {
                replicate,
                tolerance,
            };
        }
        self
    }

    /// Takes another device only if it shortens the bottleneck by more than the relative
    /// `tolerance` (default [`DEFAULT_DEVICE_TOLERANCE`]); 0 takes every device that helps
    /// at all.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] unless `tolerance` is in `[0, 1)`.
    pub fn with_device_tolerance(mut self, tolerance: f64) -> Result<Self> {
        if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
            return Err(Error::invalid(
                "profiled segmenter",
                format!("the device tolerance must be in [0, 1), not {tolerance}"),
            ));
        }
        let replicate = match self.devices {
            DeviceUse::Budget { replicate, .. } => replicate,
            DeviceUse::Exactly => true,
        };
        self.devices = DeviceUse::Budget {
            replicate,
            tolerance,
        };
        Ok(self)
    }

    /// Gives every device of the budget exactly one segment and replicates nothing: the
    /// paper's pipelines, one segment per Edge TPU.
    pub fn with_exact_devices(mut self) -> Self {
        self.devices = DeviceUse::Exactly;
        self
    }

    /// Accepts a plan once no unprofiled alternative can beat it by more than the relative
    /// `tolerance` (default [`DEFAULT_TOLERANCE`]). The plan's bottleneck is then at most
    /// `(1 + tolerance)` times the optimum, and its total at most `(1 + tolerance)` times the
    /// least total among the plans whose bottleneck is no larger than the plan's.
    ///
    /// 0 is exact to the last bit, at a price: a tie between the best plan and an
    /// unprofiled one can only be settled by profiling it, since a floor must stay a hair
    /// below the figure it bounds to be safe from rounding; models of repeated identical
    /// blocks have many such ties (the planning bench shows thousands of extra candidates).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] unless `tolerance` is in `[0, 1)`.
    pub fn with_tolerance(mut self, tolerance: f64) -> Result<Self> {
        if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
            return Err(Error::invalid(
                "profiled segmenter",
                format!("the tolerance must be in [0, 1), not {tolerance}"),
            ));
        }
        self.tolerance = tolerance;
        Ok(self)
    }

    /// The profiler the segmenter asks.
    pub fn profiler(&self) -> &P {
        &self.profiler
    }
}

impl<P: Profiler, F: LatencyFloor> Segmenter for Profiled<P, F> {
    fn name(&self) -> &str {
        "profiled"
    }

    fn plan(&self, graph: &Graph<'_, '_>, devices: usize) -> Result<Plan> {
        let _span = tracing::info_span!("plan", strategy = "profiled", devices).entered();
        check_plannable(graph, devices)?;
        let floors = self.floor.floors(graph)?;
        if floors.op_count() != graph.op_count() {
            return Err(Error::invalid(
                "latency floor",
                format!(
                    "floors for {} operators, but the graph has {}",
                    floors.op_count(),
                    graph.op_count()
                ),
            ));
        }
        let model = graph.model();
        let (places, host): (Places, Option<&dyn Profiler>) = match &self.host {
            Host::Device => (Places::All(SegmentKind::EdgeTpu), None),
            Host::CpuOnly => (Places::All(SegmentKind::Cpu), None),
            Host::Split(cpu, _) => (
                Places::EdgeTpu(DeviceSegments::new(model, &op_support(model))),
                Some(cpu.as_ref() as &dyn Profiler),
            ),
        };
        let cpu_floors = match &self.host {
            Host::Split(_, Some(floor)) => Some(floor.floors(graph)?),
            _ => None,
        };
        let mut candidates = Candidates::placed(graph, &self.profiler, host, places);
        let (counts, replicate, device_tolerance) = match self.devices {
            DeviceUse::Exactly => (devices..=devices, false, 0.0),
            DeviceUse::Budget {
                replicate,
                tolerance,
            } => (0..=devices, replicate, tolerance),
        };
        let search = |count: usize| Lazy {
            floors: &floors,
            cpu_floors: cpu_floors.as_ref(),
            devices: count,
            replicate,
            tolerance: self.tolerance,
        };
        let chosen = choose_device_count(counts, device_tolerance, |count, cap| {
            search(count).least_bottleneck(&mut candidates, cap)
        })?;
        let Some((count, bottleneck, steps)) = chosen else {
            // Only an exact count can find nothing (a budget always has the all-CPU plan):
            // the model has fewer runs of device operators than devices. Say how many.
            let most = (1..devices)
                .rev()
                .find_map(|count| {
                    search(count)
                        .least_bottleneck(&mut candidates, f64::INFINITY)
                        .map(|found| found.map(|_| count))
                        .transpose()
                })
                .transpose()?
                .unwrap_or(0);
            return Err(Error::DeviceSegmentCount {
                requested: devices,
                max: most,
            });
        };
        let steps = search(count).least_total(&mut candidates, bottleneck, steps)?;
        let steps: Vec<(usize, usize)> = steps.iter().map(|s| (s.end, s.replicas)).collect();
        let plan = candidates.plan_with_replicas(self.name(), graph, &steps)?;
        tracing::debug!(
            devices = plan.devices(),
            segments = plan.segments.len(),
            candidates = plan.candidates_profiled,
            "planned"
        );
        Ok(plan)
    }
}

/// The fewest devices of `counts` whose least bottleneck is within `tolerance` of the least
/// over all counts, with that bottleneck and a plan reaching it.
///
/// `least(count, cap)` is the least bottleneck on `count` devices if it is below `cap`. The
/// counts are tried as the answer from the fewest devices up: a count is the answer unless
/// another beats its bottleneck by more than the tolerance, and each other count is only
/// asked that, with that cap, so it profiles nothing when its floors cannot beat it. The
/// answer is the one the uncapped searches would give.
fn choose_device_count(
    counts: impl Iterator<Item = usize>,
    tolerance: f64,
    mut least: impl FnMut(usize, f64) -> Result<Option<(f64, Vec<Step>)>>,
) -> Result<Option<(usize, f64, Vec<Step>)>> {
    let counts: Vec<usize> = counts.collect();
    // The count that beat the last candidate is asked first (it likely beats the next one
    // too), then the others from the most devices down: most candidates are settled by one
    // question.
    let mut beater: Option<usize> = None;
    'candidates: for &count in &counts {
        let Some((bottleneck, steps)) = least(count, f64::INFINITY)? else {
            continue;
        };
        let cap = bottleneck / (1.0 + tolerance);
        let others = beater
            .into_iter()
            .chain(counts.iter().rev().copied().filter(|&o| Some(o) != beater))
            .filter(|&other| other != count);
        for other in others {
            if least(other, cap)?.is_some() {
                beater = Some(other);
                continue 'candidates;
            }
        }
        return Ok(Some((count, bottleneck, steps)));
    }
    Ok(None)
}

/// Checks that a model can be planned for `devices`: not compiled for the Edge TPU, and a
/// budget of 1 to [`MAX_DEVICES`] devices. The search solves the problem for each device
/// count up to the budget, each in time that grows with the square of the count and of the
/// model's cut points, so the whole grows with the cube of the budget; the planning bench
/// (`cargo bench --bench planning`) prints what budgets of 2, 4 and 8 cost.
fn check_plannable(graph: &Graph<'_, '_>, devices: usize) -> Result<()> {
    check_segmentable(graph, 1)?;
    if !(1..=MAX_DEVICES).contains(&devices) {
        return Err(Error::DeviceBudget {
            requested: devices,
            max: MAX_DEVICES,
        });
    }
    // One round of the dynamic programme visits every (devices used, point, next point,
    // replicas) once: refused up front where even a few rounds would take minutes.
    let points = (1..graph.op_count())
        .filter(|&cut| super::is_valid_cut(graph, cut))
        .count() as u128
        + 2;
    let work = points * points * (devices as u128 + 1) * (devices as u128 + 1);
    if work > MAX_SEARCH_WORK {
        return Err(Error::unsupported(format!(
            "planning {points} cut points for {devices} devices exactly: one round of the \
             search would visit {work} states, above {MAX_SEARCH_WORK}; give a smaller \
             budget, or cut with the uniform strategies"
        )));
    }
    Ok(())
}

/// The most states one round of the profiled search may visit (cut points squared times the
/// budget plus one squared). The benchmark zoo's largest plan, ResNet-152 v2 (369 points) for
/// 32 devices, visits 1.5·10⁸ per round and took 11.5 s in all with the cost model
/// (`segment MODEL --segments 32 --strategy profiled`, x86_64 VM, 2 cores): this bound is
/// about 27 times that.
pub const MAX_SEARCH_WORK: u128 = 4_000_000_000;

/// Relative differences the search does not profile to settle by default: one part in a
/// billion (a picosecond per millisecond), far below what a measurement resolves.
pub const DEFAULT_TOLERANCE: f64 = 1e-9;

/// One segment of a path: the point where it ends and how many instances run it (1 for a
/// segment that takes no device).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    end: usize,
    replicas: usize,
}

/// What a round of dynamic programming minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Objective {
    /// The largest segment estimate per replica, over segments with growing floor per
    /// replica ≤ the bound.
    Bottleneck { upper: f64 },
    /// The sum of segment estimates, over segments whose estimate and growing floor per
    /// replica are both ≤ the optimal bottleneck.
    Total { bottleneck: f64 },
}

/// The exact search for plans on exactly `devices` devices.
struct Lazy<'f> {
    floors: &'f Floors,
    /// Floors of the CPU segments, if the host profiler has one (else 0).
    cpu_floors: Option<&'f Floors>,
    devices: usize,
    replicate: bool,
    tolerance: f64,
}

/// The true value of a profiled path under `objective`: its bottleneck, or its total (in
/// segment order); infinite for a total if a segment is above the bottleneck bound.
fn path_value(
    candidates: &Candidates<'_, '_>,
    steps: &[Step],
    objective: Objective,
) -> Result<f64> {
    let mut value = 0.0f64;
    let mut start = 0;
    for step in steps {
        let latency = candidates.known(start, step.end).ok_or_else(|| {
            Error::invalid("profiled plan", "a segment of the path was not profiled")
        })?;
        let period = latency / step.replicas as f64;
        value = match objective {
            Objective::Bottleneck { .. } => value.max(period),
            Objective::Total { bottleneck } if period > bottleneck => f64::INFINITY,
            Objective::Total { .. } => value + latency,
        };
        start = step.end;
    }
    Ok(value)
}

/// Best path into one state of the dynamic program.
#[derive(Debug, Clone, Copy)]
struct Entry {
    value: f64,
    sum: f64,
    /// The state before the last segment and that segment's replicas.
    parent: Option<(usize, usize)>,
}

const UNREACHED: Entry = Entry {
    value: f64::INFINITY,
    sum: f64::INFINITY,
    parent: None,
};

impl Lazy<'_> {
    /// Phase 1: the least bottleneck of a plan on exactly `self.devices` devices and a plan
    /// that reaches it, if some plan's bottleneck is below `cap` (`None` otherwise, or if no
    /// plan uses exactly that many devices). A finite cap spares the profiles that could
    /// only settle plans at or above it.
    fn least_bottleneck(
        &self,
        candidates: &mut Candidates<'_, '_>,
        cap: f64,
    ) -> Result<Option<(f64, Vec<Step>)>> {
        let slack = 1.0 + self.tolerance;
        // The best fully profiled path so far: its bottleneck and its steps.
        let mut incumbent: Option<(f64, Vec<Step>)> = None;
        loop {
            let upper = incumbent.as_ref().map_or(cap, |(value, _)| *value);
            let Some((estimate, steps)) =
                self.best_path(candidates, Objective::Bottleneck { upper })?
            else {
                if incumbent.is_none() {
                    return Ok(None);
                }
                return Err(floors_broken(self.devices));
            };
            match &incumbent {
                Some((value, _)) if *value <= estimate * slack => return Ok(incumbent),
                // Every plan is at or above the cap (to within the tolerance, which also
                // settles ties with a floor shaved a hair below its figure): nothing to
                // profile.
                None if estimate * slack >= cap => return Ok(None),
                _ => {}
            }
            self.profile_path(candidates, &steps)?;
            let value = path_value(candidates, &steps, Objective::Bottleneck { upper })?;
            if value < upper {
                incumbent = Some((value, steps));
            }
        }
    }

    /// Phase 2: among the plans on `self.devices` devices whose bottleneck is at most
    /// `bound`, the least total, starting from `steps`, one of them.
    fn least_total(
        &self,
        candidates: &mut Candidates<'_, '_>,
        bound: f64,
        steps: Vec<Step>,
    ) -> Result<Vec<Step>> {
        let slack = 1.0 + self.tolerance;
        let objective = Objective::Total { bottleneck: bound };
        let mut incumbent = (path_value(candidates, &steps, objective)?, steps);
        loop {
            let (estimate, steps) = self
                .best_path(candidates, objective)?
                .ok_or_else(|| floors_broken(self.devices))?;
            if incumbent.0 <= estimate * slack {
                return Ok(incumbent.1);
            }
            self.profile_path(candidates, &steps)?;
            let value = path_value(candidates, &steps, objective)?;
            if value < incumbent.0 {
                incumbent = (value, steps);
            }
        }
    }

    /// Profiles the segments of the path not profiled yet.
    fn profile_path(&self, candidates: &mut Candidates<'_, '_>, steps: &[Step]) -> Result<()> {
        let mut start = 0;
        for step in steps {
            candidates.latency(start, step.end)?;
            start = step.end;
        }
        Ok(())
    }

    /// The best path under the current estimates: its value and its steps; `None` if no
    /// path stays within the bounds.
    ///
    /// States are (devices used, point, whether the last segment takes no device): a
    /// segment that takes no device may not follow another one.
    fn best_path(
        &self,
        candidates: &Candidates<'_, '_>,
        objective: Objective,
    ) -> Result<Option<(f64, Vec<Step>)>> {
        let d = self.devices;
        let m = candidates.last();
        let width = m + 1;
        let index = |used: usize, point: usize, free: usize| (used * width + point) * 2 + free;
        // For the bottleneck, equal values are decided by the sum: a heuristic (it picks
        // which path to examine, not the answer), so that the path phase 1 settles on is
        // often phase 2's answer already.
        let mut table = vec![UNREACHED; (d + 1) * width * 2];
        table[index(0, 0, 0)] = Entry {
            value: 0.0,
            sum: 0.0,
            parent: None,
        };
        let limit = match objective {
            Objective::Bottleneck { upper } => upper,
            Objective::Total { bottleneck } => bottleneck,
        };
        let has_free = candidates.has_free();
        for a in 0..m {
            for used in 0..=d {
                for free in 0..2 {
                    let here = table[index(used, a, free)];
                    if here.value == f64::INFINITY {
                        continue;
                    }
                    // The most replicas any segment from `a` may have; stateful segments
                    // have one.
                    let widest = if self.replicate {
                        d - used
                    } else {
                        1.min(d - used)
                    };
                    let mut known = candidates.known_from(a).peekable();
                    for b in a + 1..=m {
                        let ops = candidates.ops(a, b);
                        let slot = candidates.slot(a, b);
                        if slot == Slot::Never {
                            continue;
                        }
                        let budgeted = slot == Slot::Budgeted;
                        let most_replicas = if candidates.replicable(a, b) {
                            widest
                        } else {
                            1.min(widest)
                        };
                        if budgeted && most_replicas == 0 {
                            continue;
                        }
                        let growing = if budgeted {
                            self.floors.growing_floor_s(ops.clone())
                        } else {
                            0.0
                        };
                        if budgeted && growing / widest.max(1) as f64 > limit {
                            // Growing floors only grow with `b`: nothing later from `a` fits
                            // unless it takes no device.
                            if has_free {
                                continue;
                            }
                            break;
                        }
                        if !budgeted && free == 1 {
                            continue;
                        }
                        while known.peek().is_some_and(|&(end, _)| end < b) {
                            known.next();
                        }
                        let estimate = match known.peek() {
                            Some(&(end, latency)) if end == b => latency,
                            _ if budgeted => self.floors.floor_s(ops),
                            _ => self.cpu_floors.map_or(0.0, |f| f.floor_s(ops)),
                        };
                        let choices = if budgeted { 1..=most_replicas } else { 1..=1 };
                        for replicas in choices {
                            let r = replicas as f64;
                            if growing / r > limit {
                                continue;
                            }
                            let period = estimate / r;
                            let candidate_sum = here.sum + estimate;
                            let candidate = match objective {
                                Objective::Bottleneck { .. } => here.value.max(period),
                                Objective::Total { bottleneck } => {
                                    if period > bottleneck {
                                        continue;
                                    }
                                    candidate_sum
                                }
                            };
                            let (next_used, next_free) = if budgeted {
                                (used + replicas, 0)
                            } else {
                                (used, 1)
                            };
                            let slot = &mut table[index(next_used, b, next_free)];
                            if candidate < slot.value
                                || (candidate == slot.value && candidate_sum < slot.sum)
                            {
                                *slot = Entry {
                                    value: candidate,
                                    sum: candidate_sum,
                                    parent: Some((index(used, a, free), replicas)),
                                };
                            }
                        }
                    }
                }
            }
        }
        let finals = [index(d, m, 0), index(d, m, 1)];
        let Some(&last) = finals.iter().min_by(|&&x, &&y| {
            let (x, y) = (table[x], table[y]);
            x.value.total_cmp(&y.value).then(x.sum.total_cmp(&y.sum))
        }) else {
            return Ok(None);
        };
        if table[last].value == f64::INFINITY {
            return Ok(None);
        }
        let mut steps = Vec::new();
        let mut state = last;
        while let Some((previous, replicas)) = table[state].parent {
            steps.push(Step {
                end: state / 2 % width,
                replicas,
            });
            state = previous;
        }
        steps.reverse();
        Ok(Some((table[last].value, steps)))
    }
}

/// The search found no path within bounds that an earlier round had met: the floors were
/// above some true latency.
fn floors_broken(devices: usize) -> Error {
    Error::invalid(
        "profiled plan",
        format!(
            "no plan on {devices} devices within the bounds (the floors do not hold for this profiler)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::figures::tests::{model, operator, quantized, tensor};
    use crate::model::{ElementType, Model, ops};
    use crate::profile::SegmentProfile;

    /// `layers` dense layers of 32 units in a chain.
    fn dense_chain(layers: usize) -> Model<'static> {
        let mut tensors = vec![tensor("x", ElementType::I8, &[1, 32], false)];
        let mut operators = Vec::new();
        for i in 0..layers {
            tensors.push(tensor(&format!("w{i}"), ElementType::I8, &[32, 32], true));
            tensors.push(tensor(&format!("h{i}"), ElementType::I8, &[1, 32], false));
            let input = if i == 0 { 0 } else { 2 * i };
            operators.push(operator(
                ops::FULLY_CONNECTED,
                &[Some(input), Some(2 * i + 1)],
                &[2 * i + 2],
            ));
        }
        quantized(model(tensors, operators, &[0], &[2 * layers]))
    }

    /// Latency: the number of operators, or `value` for ranges starting at 1.
    struct Odd {
        value: f64,
    }

    impl Profiler for Odd {
        fn profile(&self, _model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
            let latency_s = if ops.start == 1 {
                self.value
            } else {
                ops.len() as f64
            };
            Ok(SegmentProfile {
                latency_s,
                on_chip_bytes: 0,
                off_chip_bytes: 0,
            })
        }
    }

    #[test]
    fn bad_floor_figures_are_refused() {
        let m = dense_chain(3);
        let graph = Graph::new(&m).expect("graph");
        assert!(Floors::new(&graph, -1.0, &[0.0; 3], 0.0, 0.0).is_err());
        assert!(Floors::new(&graph, 0.0, &[0.0; 2], 0.0, 0.0).is_err());
        assert!(Floors::new(&graph, 0.0, &[0.0, f64::NAN, 0.0], 0.0, 0.0).is_err());
        assert!(Floors::new(&graph, 0.0, &[0.0; 3], f64::INFINITY, 0.0).is_err());
        let floors = Floors::new(&graph, 1.0, &[1.0, 2.0, 3.0], 0.0, 0.0).expect("floors");
        assert!(
            floors
                .clone()
                .with_overflow(10, &[1, 2], &[1.0; 3])
                .is_err()
        );
        assert!(
            floors
                .clone()
                .with_overflow(10, &[1, 2, 3], &[1.0; 2])
                .is_err()
        );
        assert!(
            floors
                .clone()
                .with_overflow(10, &[1, 2, 3], &[1.0, -1.0, 1.0])
                .is_err()
        );
        let floors = floors
            .with_overflow(4, &[3, 3, 3], &[0.5, 2.0, 0.25])
            .expect("overflow");
        let close =
            |floor: f64, expected: f64| floor <= expected && floor > expected * (1.0 - 1e-12);
        // 1 + (2 + 3) + (6 − 4) bytes at the cheaper price 0.25.
        assert!(close(floors.floor_s(1..3), 6.5), "{}", floors.floor_s(1..3));
        // 1 + 6 + (9 − 4) bytes: 3 at 0.25, 2 at 0.5.
        assert!(
            close(floors.floor_s(0..3), 8.75),
            "{}",
            floors.floor_s(0..3)
        );
        assert!(close(floors.floor_s(0..1), 2.0));
        assert_eq!(floors.growing_floor_s(0..3), floors.floor_s(0..3));
    }

    #[test]
    fn io_floor_counts_the_activations_crossing_the_range_edges() {
        let m = dense_chain(3);
        let graph = Graph::new(&m).expect("graph");
        let floors = Floors::new(&graph, 0.0, &[0.0; 3], 1.0, 1.0).expect("floors");
        // Every segment reads 32 bytes and hands on 32 bytes (the last one as model output).
        for range in [0..1, 0..3, 1..2, 2..3] {
            let floor = floors.floor_s(range.clone());
            assert!((floor - 64.0).abs() < 1e-9, "{range:?}: {floor}");
            assert_eq!(floors.growing_floor_s(range), 0.0);
        }
    }

    #[test]
    fn non_finite_or_negative_latencies_are_errors() {
        let m = dense_chain(4);
        let graph = Graph::new(&m).expect("graph");
        for value in [f64::NAN, f64::INFINITY, -1.0] {
            let result = Profiled::new(Odd { value }).plan(&graph, 2);
            assert!(
                matches!(
                    result,
                    Err(Error::Invalid {
                        what: "profile",
                        ..
                    })
                ),
                "{value}"
            );
        }
        assert!(
            Profiled::new(Odd { value: 1.0 })
                .with_tolerance(1.0)
                .is_err()
        );
        assert!(
            Profiled::new(Odd { value: 1.0 })
                .with_tolerance(-0.1)
                .is_err()
        );
    }

    #[test]
    fn a_cheap_odd_segment_is_found() {
        // Ranges from operator 1 cost 0.5 whatever their length: the best 2-segment plan
        // is 0..1 + 1..4 (bottleneck 1), the best 3-segment one 0..1, 1..k, k..4.
        let m = dense_chain(4);
        let graph = Graph::new(&m).expect("graph");
        let exact = Profiled::new(Odd { value: 0.5 }).with_exact_devices();
        let plan = exact.plan(&graph, 2).expect("plan");
        assert_eq!(plan.cuts(), vec![1]);
        assert_eq!(plan.bottleneck_s(), Some(1.0));
        assert_eq!(plan.total_latency_s(), Some(1.5));
        let plan = exact.plan(&graph, 3).expect("plan");
        assert_eq!(plan.cuts(), vec![1, 3]);
        assert_eq!(plan.total_latency_s(), Some(2.5));
        // With a budget of 3, two devices share the first operator instead: period 0.5.
        let plan = Profiled::new(Odd { value: 0.5 })
            .plan(&graph, 3)
            .expect("plan");
        assert_eq!(plan.cuts(), vec![1]);
        assert_eq!(
            plan.segments.iter().map(|s| s.replicas).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(plan.bottleneck_s(), Some(0.5));
        assert_eq!(plan.devices(), 3);
    }

    #[test]
    fn budgets_outside_the_planners_range_are_typed_errors() {
        let m = dense_chain(3);
        let graph = Graph::new(&m).expect("graph");
        for devices in [0, MAX_DEVICES + 1] {
            let result = Profiled::new(Odd { value: 1.0 }).plan(&graph, devices);
            assert!(
                matches!(result, Err(Error::DeviceBudget { requested, max }) if requested == devices && max == MAX_DEVICES),
                "{devices}: {result:?}"
            );
        }
        // The largest budget is taken, on a model with fewer operators than devices.
        let plan = Profiled::new(Odd { value: 1.0 })
            .plan(&graph, MAX_DEVICES)
            .expect("plan");
        assert!(plan.devices() <= MAX_DEVICES);
    }

    /// A model with too many cut points for the budget is refused before any profile, with
    /// the reason, rather than planned for hours.
    #[test]
    fn searches_beyond_the_work_bound_are_refused_up_front() {
        // 2000 points at 32 devices: 4.4·10⁹ states per round.
        let m = dense_chain(1999);
        let graph = Graph::new(&m).expect("graph");
        let profiler = Arc::new(CachedProfiler::new(Odd { value: 1.0 }));
        let result = Profiled::new(Arc::clone(&profiler)).plan(&graph, MAX_DEVICES);
        match result {
            Err(Error::Unsupported { feature }) => assert!(feature.contains("states"), "{feature}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(profiler.calls(), 0);
        // The same model on one device is planned.
        assert!(Profiled::new(Odd { value: 1.0 }).plan(&graph, 1).is_ok());
    }

    #[test]
    fn cost_model_plan_is_balanced_and_counts_its_candidates() {
        let m = dense_chain(8);
        let graph = Graph::new(&m).expect("graph");
        let plan = Profiled::cost_model(EdgeTpuCostModel::usb_default())
            .with_exact_devices()
            .plan(&graph, 4)
            .expect("plan");
        assert_eq!(plan.strategy, "profiled");
        assert_eq!(plan.segments.len(), 4);
        assert!(plan.candidates_profiled >= 4);
        assert!(
            plan.segments
                .iter()
                .all(|s| s.predicted_latency_s.is_some())
        );
        let floors = EdgeTpuCostModel::usb_default()
            .floors(&graph)
            .expect("floors");
        assert_eq!(floors.op_count(), 8);
    }
}
