//! Choosing where to cut a model, and cutting it.
//!
//! A [`Segmenter`] turns a [`Graph`] and a segment count into a [`Plan`]: contiguous ranges of
//! operators in execution order. The plan writes each range as a standalone `.tflite`
//! (see [`extract`]), named as Coral's tools name pipeline segments.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::deploy::{SegmentKind, SegmentModel, SegmentModels};
use crate::device::{DeviceSegments, compiled_tail, op_support};
use crate::model::{Graph, Model};
use crate::profile::Profiler;
use crate::{Error, Result};

mod libcoral;
mod profiled;
mod report;
mod search;
mod uniform;

use crate::model::extract;
use crate::model::figures::range_figures;
pub use libcoral::{LibcoralCost, LibcoralOutcome, LibcoralSearch};
pub use profiled::{
    DEFAULT_DEVICE_TOLERANCE, DEFAULT_TOLERANCE, Floors, LatencyFloor, MAX_SEARCH_WORK, NoFloor,
    Profiled,
};
pub use report::{PlanTable, STRATEGY_NAMES, TABLE_WIDTH, strategy};
pub use uniform::{UniformByOps, UniformByParams};

/// A strategy that chooses the cut points of a model.
///
/// A strategy of your own only has to return contiguous ranges; [`Plan::from_cuts`] builds
/// the rest:
///
/// ```
/// use multitpu::model::{Graph, paper};
/// use multitpu::segment::{Plan, Segmenter};
///
/// /// One cut, in the middle of the operators.
/// struct Halves;
///
/// impl Segmenter for Halves {
///     fn name(&self) -> &str {
///         "halves"
///     }
///     fn plan(&self, graph: &Graph<'_, '_>, _segments: usize) -> multitpu::Result<Plan> {
///         Plan::from_cuts(self.name(), graph, &[graph.op_count() / 2])
///     }
/// }
///
/// let model = paper::fc(500)?;
/// let plan = Plan::new(&Graph::new(&model)?, 2, &Halves)?;
/// assert_eq!(plan.strategy, "halves");
/// # Ok::<(), multitpu::Error>(())
/// ```
pub trait Segmenter {
    /// Short name shown in reports (e.g. `uniform`).
    fn name(&self) -> &str;

    /// Splits the graph into contiguous, non-empty ranges of operators for `segments`
    /// devices: exactly `segments` ranges for the uniform strategies and
    /// [`LibcoralSearch`]; for [`Profiled`], a budget of at most `segments` devices, which
    /// may give fewer or more ranges (replicated segments, CPU segments: see its docs).
    ///
    /// # Errors
    ///
    /// [`Error::SegmentCount`] if `segments` is 0 or more than one plus the model's valid cut
    /// points (exact strategies); [`Error::DeviceBudget`] for a budget [`Profiled`] does not
    /// take; [`Error::Unsupported`] for a model compiled for the Edge TPU, or whose
    /// exchanged tensors share a name; profiling strategies also pass on their profiler's
    /// errors.
    fn plan(&self, graph: &Graph<'_, '_>, segments: usize) -> Result<Plan>;
}

/// The kind of operators `ops` of a model, by the Edge TPU's operator support
/// ([`crate::device::op_support`]).
pub(crate) fn kind_of(device_segments: &DeviceSegments, ops: &Range<usize>) -> SegmentKind {
    if device_segments.allows(ops) {
        SegmentKind::EdgeTpu
    } else {
        SegmentKind::Cpu
    }
}

/// One segment of a plan: a range of operators and what it exchanges with the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Operators of the segment, in execution order.
    pub ops: Range<usize>,
    /// Where the segment runs.
    pub kind: SegmentKind,
    /// The operators the segment runs on the host CPU: all of a CPU segment's; of an Edge TPU
    /// segment, those the compiler leaves to the CPU after its device program, in the same
    /// compiled file (empty when it maps them all; see [`crate::device::compiled_tail`]).
    pub cpu_ops: Range<usize>,
    /// How many instances run the segment side by side, each on a device of its own for an
    /// Edge TPU segment; the pipeline hands them items in turn. 1 unless a planner
    /// replicated the segment.
    pub replicas: usize,
    /// Activations the segment reads from the model inputs or earlier segments (tensor
    /// indices of the source model).
    pub inputs: Vec<usize>,
    /// Activations the segment produces for later segments or the model's outputs.
    pub outputs: Vec<usize>,
    /// Activations that cross the boundary in front of the segment (empty for the first):
    /// produced before it and read by it or later. A skip connection is listed at every
    /// boundary it crosses, even where the segment itself does not read it.
    pub crossing: Vec<usize>,
    /// Bytes of the `crossing` tensors: what a pipeline carries across that boundary.
    pub crossing_bytes: u64,
    /// Bytes of constant parameters the segment's operators read, each tensor counted once.
    pub param_bytes: u64,
    /// Multiply-accumulates of one inference of the segment (sum of the operators' figures).
    pub macs: u64,
    /// Predicted or measured seconds of one inference of the segment on one device, when a
    /// profiler was asked (see [`Plan::with_predictions`]).
    pub predicted_latency_s: Option<f64>,
}

impl Segment {
    /// Where the segment runs, as tables show it: `edgetpu`, `edgetpu x2` for two replicas,
    /// `edgetpu+cpu` for an Edge TPU segment whose last operators run on the CPU, or `cpu`.
    pub fn runs_on(&self) -> String {
        let place = match self.kind {
            SegmentKind::EdgeTpu if !self.cpu_ops.is_empty() => "edgetpu+cpu",
            kind => kind.as_str(),
        };
        match self.replicas {
            1 => place.to_string(),
            r => format!("{place} x{r}"),
        }
    }

    /// The operators the segment runs on an Edge TPU (with the host quantisation at their
    /// edges): all but [`cpu_ops`](Self::cpu_ops).
    pub fn device_ops(&self) -> Range<usize> {
        match self.kind {
            SegmentKind::EdgeTpu => self.ops.start..self.cpu_ops.start.max(self.ops.start),
            SegmentKind::Cpu => self.ops.start..self.ops.start,
        }
    }
}

/// The ordered segments of a model, as chosen by a [`Segmenter`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Name of the strategy that made the plan.
    pub strategy: String,
    /// The segments, covering every operator once, in order.
    pub segments: Vec<Segment>,
    /// How many distinct operator ranges the strategy had profiled on the device to choose
    /// the cuts: on hardware, each one compiled by `edgetpu_compiler` and timed (0 for
    /// strategies that profile nothing). The unit of [`LibcoralCost::segments_compiled`].
    pub candidates_profiled: usize,
    /// How many CPU segments (which take no device and are not compiled) the strategy had
    /// timed on the host profiler to choose the cuts.
    pub cpu_candidates_timed: usize,
}

impl Plan {
    /// The plan `segmenter` makes for `graph` and `segments` devices (a segment count for
    /// the uniform strategies, a device budget for [`Profiled`]): the same as
    /// `segmenter.plan(graph, segments)`, callable without importing [`Segmenter`].
    ///
    /// ```
    /// use multitpu::model::{Graph, paper};
    /// use multitpu::segment::{Plan, UniformByParams};
    ///
    /// let model = paper::fc(1000)?;
    /// let plan = Plan::new(&Graph::new(&model)?, 2, &UniformByParams)?;
    /// assert_eq!(plan.segments.len(), 2);
    /// # Ok::<(), multitpu::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Segmenter::plan`].
    pub fn new<S: Segmenter + ?Sized>(
        graph: &Graph<'_, '_>,
        segments: usize,
        segmenter: &S,
    ) -> Result<Plan> {
        let _span = tracing::info_span!("plan", segments, operators = graph.op_count()).entered();
        segmenter.plan(graph, segments)
    }

    /// Makes the plan whose segments start at operator 0 and at each of `cuts` (ascending),
    /// each segment labelled by where it runs (by the Edge TPU's operator support), with one replica.
    ///
    /// ```
    /// use multitpu::deploy::SegmentKind;
    /// use multitpu::model::{Graph, paper};
    /// use multitpu::segment::Plan;
    ///
    /// let model = paper::fc(500)?;
    /// let graph = Graph::new(&model)?;
    /// let plan = Plan::from_cuts("by hand", &graph, &[5])?;
    /// assert_eq!(plan.segments[1].ops.start, 5);
    /// assert!(plan.segments.iter().all(|s| s.kind == SegmentKind::EdgeTpu));
    /// # Ok::<(), multitpu::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCut`] if a cut is out of order or out of range, or if it would split
    /// the state of a stateful operator (variable tensors) over two segments;
    /// [`Error::Invalid`] for a model without operators; [`Error::Unsupported`] if two
    /// tensors the segments exchange share a name.
    pub fn from_cuts(strategy: &str, graph: &Graph<'_, '_>, cuts: &[usize]) -> Result<Plan> {
        let model = graph.model();
        let support = op_support(model);
        Plan::from_cuts_placed(strategy, graph, cuts, |ops| {
            match compiled_tail(model, &support, ops.clone()) {
                Some(tail) => (SegmentKind::EdgeTpu, tail),
                None => (SegmentKind::Cpu, ops.clone()),
            }
        })
    }

    /// [`Plan::from_cuts`] with each segment's kind and CPU operators from `kind_of` (a
    /// planner that knows where its segments run already).
    pub(crate) fn from_cuts_placed(
        strategy: &str,
        graph: &Graph<'_, '_>,
        cuts: &[usize],
        kind_of: impl Fn(&Range<usize>) -> (SegmentKind, Range<usize>),
    ) -> Result<Plan> {
        let op_count = graph.op_count();
        if op_count == 0 {
            return Err(Error::invalid("model", "the model has no operators"));
        }
        let mut starts = Vec::with_capacity(cuts.len() + 1);
        starts.push(0);
        for &cut in cuts {
            let previous = *starts.last().unwrap_or(&0);
            if cut <= previous || cut >= op_count {
                return Err(Error::InvalidCut {
                    cut,
                    reason: format!("cuts must be ascending and in {}..{op_count}", previous + 1),
                });
            }
            if !is_valid_cut(graph, cut) {
                return Err(Error::InvalidCut {
                    cut,
                    reason: "it would split a stateful operator's variables".to_string(),
                });
            }
            starts.push(cut);
        }
        let model = graph.model();
        let segments: Vec<Segment> = starts
            .iter()
            .zip(starts.iter().skip(1).chain(std::iter::once(&op_count)))
            .map(|(&start, &end)| {
                let ops = start..end;
                let (inputs, outputs) = crate::model::interface(graph, &ops);
                let crossing = if start == 0 {
                    Vec::new()
                } else {
                    graph.crossing(start)
                };
                let (param_bytes, macs) = range_figures(model, &ops);
                let (kind, cpu_ops) = kind_of(&ops);
                Segment {
                    kind,
                    cpu_ops,
                    replicas: 1,
                    crossing_bytes: crossing
                        .iter()
                        .map(|&t| model.tensors[t].byte_size().unwrap_or(0) as u64)
                        .sum(),
                    crossing,
                    param_bytes,
                    macs,
                    predicted_latency_s: None,
                    ops,
                    inputs,
                    outputs,
                }
            })
            .collect();
        if segments.len() > 1 {
            check_unique_names(graph.model(), &segments)?;
        }
        Ok(Plan {
            strategy: strategy.to_string(),
            segments,
            candidates_profiled: 0,
            cpu_candidates_timed: 0,
        })
    }

    /// The cut points of the plan: the first operator of every segment but the first.
    pub fn cuts(&self) -> Vec<usize> {
        self.segments.iter().skip(1).map(|s| s.ops.start).collect()
    }

    /// The pipeline's steady-state period: the largest predicted segment latency divided by
    /// the segment's replicas. `None` unless every segment has a prediction.
    pub fn bottleneck_s(&self) -> Option<f64> {
        self.segments
            .iter()
            .map(|s| s.predicted_latency_s.map(|l| l / s.replicas.max(1) as f64))
            .try_fold(0.0f64, |max, period| period.map(|p| max.max(p)))
    }

    /// The Edge TPUs the plan occupies: one per replica of every Edge TPU segment.
    pub fn devices(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| s.kind == SegmentKind::EdgeTpu)
            .map(|s| s.replicas)
            .sum()
    }

    /// The sum of the predicted segment latencies, added in segment order: the latency of one
    /// input through the whole pipeline. `None` unless every segment has a prediction.
    pub fn total_latency_s(&self) -> Option<f64> {
        self.segments
            .iter()
            .map(|s| s.predicted_latency_s)
            .try_fold(0.0f64, |sum, latency| latency.map(|l| sum + l))
    }

    /// Fills [`Segment::predicted_latency_s`] of every segment (any plan, whatever strategy
    /// made it) the way the segment runs: its device operators by `device`, its CPU
    /// operators by `cpu`, added ([`Segment::device_ops`], [`Segment::cpu_ops`]). Leaves
    /// [`Plan::candidates_profiled`] alone: these profiles describe the result, they did not
    /// choose it. With the cost models, `device` is an [`EdgeTpuCostModel`](crate::device::EdgeTpuCostModel)
    /// and `cpu` the [`CpuCostModel`](crate::device::CpuCostModel).
    ///
    /// # Errors
    ///
    /// The profilers' errors, for the first segment one cannot profile.
    pub fn with_predictions(
        &mut self,
        model: &Model<'_>,
        device: &dyn Profiler,
        cpu: &dyn Profiler,
    ) -> Result<()> {
        for segment in &mut self.segments {
            let device_ops = segment.device_ops();
            let mut latency = 0.0;
            if !device_ops.is_empty() {
                latency += device.profile(model, device_ops)?.latency_s;
            }
            if !segment.cpu_ops.is_empty() {
                latency += cpu.profile(model, segment.cpu_ops.clone())?.latency_s;
            }
            segment.predicted_latency_s = Some(latency);
        }
        Ok(())
    }

    /// Whether some operator of the plan runs on the host CPU (a CPU segment, or the CPU
    /// tail of an Edge TPU segment).
    pub fn runs_on_cpu(&self) -> bool {
        self.segments.iter().any(|s| !s.cpu_ops.is_empty())
    }

    /// Cuts every segment out of the graph's model as a standalone model.
    ///
    /// # Errors
    ///
    /// Those of [`extract`] for the first segment that cannot be cut.
    pub fn extract<'a>(&self, graph: &Graph<'_, 'a>) -> Result<Vec<Model<'a>>> {
        self.segments
            .iter()
            .map(|segment| extract(graph, segment.ops.clone()))
            .collect()
    }

    /// The segments as standalone models, each with where it runs and its replicas, joined
    /// into a pipeline whose inputs and outputs are the model's, in the model's order
    /// (leaving out any that no segment reads or writes): what
    /// [`Pipeline::from_models`](crate::pipeline::Pipeline::from_models) runs,
    /// [`SegmentModels::compile`] compiles for the Edge TPU and [`SegmentModels::write`]
    /// writes beside a plan manifest.
    ///
    /// ```
    /// use multitpu::model::{Graph, paper};
    /// use multitpu::segment::{Plan, UniformByParams};
    ///
    /// # fn main() -> multitpu::Result<()> {
    /// let model = paper::fc(1000)?;
    /// let graph = Graph::new(&model)?;
    /// let plan = Plan::new(&graph, 2, &UniformByParams)?;
    /// let dir = std::env::temp_dir().join(format!("plan-write-{}", std::process::id()));
    /// let written = plan.segment_models(&graph)?.write(&dir, "fc")?;
    /// assert!(written.segments[1].ends_with("fc_segment_1_of_2.tflite"));
    /// assert!(written.manifest.ends_with("fc.plan"));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Plan::extract`] and [`Model::to_bytes`] for a segment that cannot be cut
    /// out, as [`Error::Segment`] naming it.
    pub fn segment_models(&self, graph: &Graph<'_, '_>) -> Result<SegmentModels> {
        let model = graph.model();
        let read: BTreeSet<usize> = self
            .segments
            .iter()
            .flat_map(|s| s.inputs.clone())
            .collect();
        let written: BTreeSet<usize> = self
            .segments
            .iter()
            .flat_map(|s| s.outputs.clone())
            .collect();
        let names = |tensors: &[usize], used: &BTreeSet<usize>| -> Vec<String> {
            tensors
                .iter()
                .filter(|t| used.contains(t))
                .map(|&t| model.tensors[t].name.to_string())
                .collect()
        };
        let segments = self
            .segments
            .iter()
            .enumerate()
            .map(|(index, segment)| {
                extract(graph, segment.ops.clone())
                    .and_then(|m| m.to_bytes())
                    .and_then(|bytes| SegmentModel::planned(segment.kind, segment.replicas, bytes))
                    .map_err(|source| Error::Segment {
                        index,
                        file: None,
                        source: Box::new(source),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        SegmentModels::new(
            segments,
            names(&model.inputs, &read),
            names(&model.outputs, &written),
        )
    }
}

/// Segments are joined by tensor name, so every tensor they exchange (and every model input
/// and output) needs a name, and one no other such tensor has.
fn check_unique_names(model: &Model<'_>, segments: &[Segment]) -> Result<()> {
    let mut by_name = std::collections::BTreeMap::new();
    let exchanged = segments
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let inputs = s
                .inputs
                .iter()
                .map(move |&t| (t, format!("an input of segment {i}")));
            let outputs =
                (s.outputs.iter()).map(move |&t| (t, format!("an output of segment {i}")));
            inputs.chain(outputs)
        })
        .chain(
            model
                .inputs
                .iter()
                .map(|&t| (t, "a model input".to_owned())),
        )
        .chain(
            model
                .outputs
                .iter()
                .map(|&t| (t, "a model output".to_owned())),
        );
    for (t, role) in exchanged {
        let name = model.tensors[t].name.as_ref();
        if name.is_empty() {
            return Err(Error::unsupported(format!(
                "tensor {t} has no name, but it is {role}, and segments are joined by tensor name"
            )));
        }
        match by_name.insert(name, t) {
            Some(other) if other != t => {
                return Err(Error::unsupported(format!(
                    "tensors {other} and {t} are both named `{name}`, but segments are joined by tensor name"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the graph may be cut before operator `cut`.
pub fn is_valid_cut(graph: &Graph<'_, '_>, cut: usize) -> bool {
    cut > 0 && cut < graph.op_count() && !graph.cut_splits_state(cut)
}

/// Checks that a model can be cut into `segments`: not a model compiled for the Edge TPU
/// (its one custom op cannot be split), and 1 to valid cut points + 1 segments.
pub(crate) fn check_segmentable(graph: &Graph<'_, '_>, segments: usize) -> Result<()> {
    if crate::model::edgetpu::is_compiled(graph.model()) {
        return Err(Error::unsupported(
            "a model compiled for the Edge TPU cannot be split: split the uncompiled model, then compile each segment",
        ));
    }
    let valid_cuts = (1..graph.op_count())
        .filter(|&c| is_valid_cut(graph, c))
        .count();
    if segments == 0 || segments > valid_cuts + 1 {
        return Err(Error::SegmentCount {
            requested: segments,
            max: valid_cuts + 1,
            operators: graph.op_count(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ElementType;
    use crate::model::figures::tests::{model, operator, tensor};
    use crate::model::validate::Validation;

    /// The custom operator of [`chain`].
    const TEST_OP: &str = "test-op";

    /// The graph of a [`chain`], whose custom operator the caller has a kernel for.
    fn chain_graph<'m>(model: &'m Model<'static>) -> Result<Graph<'m, 'static>> {
        Graph::with_validation(model, &Validation::strict().with_custom_op(TEST_OP))
    }

    /// `x0 -> op0 -> x1 -> ... -> x{n}`; op i also reads constant `w{i}` of `weight_bytes[i]`
    /// bytes; with `skip`, the last operator also reads `x1`. The operators are a custom op,
    /// whose output shapes validation takes as recorded.
    fn chain(weight_bytes: &[usize], skip: bool) -> Model<'static> {
        let n = weight_bytes.len();
        let mut tensors: Vec<_> = (0..=n)
            .map(|i| tensor(&format!("x{i}"), ElementType::U8, &[4], false))
            .collect();
        let mut operators = Vec::new();
        for (i, &bytes) in weight_bytes.iter().enumerate() {
            tensors.push(tensor(
                &format!("w{i}"),
                ElementType::U8,
                &[bytes as i32],
                true,
            ));
            let weight = tensors.len() - 1;
            let mut inputs = vec![Some(i), Some(weight)];
            if skip && i == n - 1 && n > 2 {
                inputs.push(Some(1));
            }
            let mut op = operator(crate::model::BUILTIN_CUSTOM, &inputs, &[i + 1]);
            op.opcode.custom = Some(TEST_OP.into());
            operators.push(op);
        }
        model(tensors, operators, &[0], &[n])
    }

    #[test]
    fn uniform_balances_parameter_bytes() {
        let model = chain(&[10, 10, 10, 10, 10, 10], false);
        let graph = chain_graph(&model).unwrap();
        let plan = UniformByParams.plan(&graph, 3).unwrap();
        let ranges: Vec<_> = plan.segments.iter().map(|s| s.ops.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..4, 4..6]);
        assert!(plan.segments.iter().all(|s| s.param_bytes == 20));
    }

    #[test]
    fn uniform_gives_every_segment_an_operator() {
        let model = chain(&[100, 1, 1, 1], false);
        let graph = chain_graph(&model).unwrap();
        for n in 1..=4 {
            let plan = UniformByParams.plan(&graph, n).unwrap();
            assert_eq!(plan.segments.len(), n);
            assert!(plan.segments.iter().all(|s| !s.ops.is_empty()));
            assert_eq!(plan.segments.last().unwrap().ops.end, 4);
        }
        for requested in [0, 5] {
            assert!(matches!(
                UniformByParams.plan(&graph, requested),
                Err(Error::SegmentCount {
                    max: 4,
                    operators: 4,
                    ..
                })
            ));
        }
    }

    #[test]
    fn skip_connection_is_an_input_of_the_reader_and_an_output_of_the_producer() {
        let model = chain(&[1, 1, 1, 1], true);
        let graph = chain_graph(&model).unwrap();
        let plan = Plan::from_cuts("test", &graph, &[1, 2, 3]).unwrap();
        // x1 is produced by op 0 and read by ops 1 and 3.
        assert_eq!(plan.segments[0].outputs, vec![1]);
        assert_eq!(plan.segments[1].inputs, vec![1]);
        assert_eq!(plan.segments[3].inputs, vec![1, 3]);
        assert_eq!(plan.segments[2].crossing, vec![1, 2]);
        assert_eq!(plan.segments[3].crossing, vec![1, 3]);
        assert_eq!(plan.segments[3].crossing_bytes, 8);
        assert!(plan.segments[0].crossing.is_empty());
    }

    #[test]
    fn extracted_segment_is_renumbered_and_keeps_names() {
        let model = chain(&[3, 5, 7], true);
        let graph = chain_graph(&model).unwrap();
        let segment = extract(&graph, 1..3).unwrap();
        let names: Vec<_> = segment.tensors.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, vec!["x1", "x2", "x3", "w1", "w2"]);
        assert_eq!(segment.inputs, vec![0]);
        assert_eq!(segment.outputs, vec![2]);
        assert_eq!(segment.operators[1].inputs, vec![Some(1), Some(4), Some(0)]);
        assert!(chain_graph(&segment).is_ok());
    }

    #[test]
    fn bad_cuts_are_refused() {
        let model = chain(&[1, 1, 1], false);
        let graph = chain_graph(&model).unwrap();
        for (cuts, bad) in [(&[0][..], 0), (&[2, 1][..], 1), (&[3][..], 3)] {
            assert!(matches!(
                Plan::from_cuts("t", &graph, cuts),
                Err(Error::InvalidCut { cut, .. }) if cut == bad
            ));
        }
        assert!(extract(&graph, 2..2).is_err());
        assert!(extract(&graph, 0..4).is_err());
    }

    /// Latency: one second per operator.
    struct PerOp;

    impl Profiler for PerOp {
        fn profile(
            &self,
            _model: &Model,
            ops: Range<usize>,
        ) -> Result<crate::profile::SegmentProfile> {
            Ok(crate::profile::SegmentProfile {
                latency_s: ops.len() as f64,
                on_chip_bytes: 0,
                off_chip_bytes: 0,
            })
        }
    }

    #[test]
    fn predictions_fill_every_segment_and_give_bottleneck_and_total() {
        let model = chain(&[10, 20, 30, 40], false);
        let graph = chain_graph(&model).unwrap();
        let mut plan = Plan::from_cuts("test", &graph, &[1, 3]).unwrap();
        assert_eq!(plan.cuts(), vec![1, 3]);
        assert_eq!(plan.bottleneck_s(), None);
        assert_eq!(plan.total_latency_s(), None);
        plan.with_predictions(&model, &PerOp, &PerOp).unwrap();
        let predicted: Vec<_> = plan
            .segments
            .iter()
            .map(|s| s.predicted_latency_s)
            .collect();
        assert_eq!(predicted, vec![Some(1.0), Some(2.0), Some(1.0)]);
        assert_eq!(plan.bottleneck_s(), Some(2.0));
        assert_eq!(plan.total_latency_s(), Some(4.0));
        assert_eq!(plan.candidates_profiled, 0);
    }

    #[test]
    fn segment_macs_add_up_the_operators() {
        use crate::model::figures::tests::{model as build, operator, quantized, tensor};
        use crate::model::ops::FULLY_CONNECTED;
        let tensors = vec![
            tensor("x", ElementType::I8, &[1, 8], false),
            tensor("w0", ElementType::I8, &[4, 8], true),
            tensor("h", ElementType::I8, &[1, 4], false),
            tensor("w1", ElementType::I8, &[2, 4], true),
            tensor("y", ElementType::I8, &[1, 2], false),
        ];
        let operators = vec![
            operator(FULLY_CONNECTED, &[Some(0), Some(1)], &[2]),
            operator(FULLY_CONNECTED, &[Some(2), Some(3)], &[4]),
        ];
        let model = quantized(build(tensors, operators, &[0], &[4]));
        let graph = Graph::new(&model).unwrap();
        let whole = Plan::from_cuts("test", &graph, &[]).unwrap();
        assert_eq!(whole.segments[0].macs, 32 + 8);
        let split = Plan::from_cuts("test", &graph, &[1]).unwrap();
        let macs: Vec<_> = split.segments.iter().map(|s| s.macs).collect();
        assert_eq!(macs, vec![32, 8]);
    }

    #[test]
    fn exchanged_tensors_need_unique_names() {
        let mut model = chain(&[1, 1, 1], false);
        model.tensors[2].name = model.tensors[1].name.clone();
        let graph = chain_graph(&model).unwrap();
        assert!(Plan::from_cuts("t", &graph, &[]).is_ok());
        let err = Plan::from_cuts("t", &graph, &[1, 2]).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }

    #[test]
    fn exchanged_tensors_need_a_name() {
        let mut model = chain(&[1, 1, 1], false);
        model.tensors[2].name = "".into();
        let graph = chain_graph(&model).unwrap();
        // Tensor 2 is inside the only segment: nothing joins by its name.
        assert!(Plan::from_cuts("t", &graph, &[]).is_ok());
        let err = Plan::from_cuts("t", &graph, &[2]).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("tensor 2 has no name, but it is an output of segment 0"),
            "{err}"
        );
        let mut model = chain(&[1, 1, 1], false);
        model.tensors[0].name = "".into();
        let graph = chain_graph(&model).unwrap();
        let err = Plan::from_cuts("t", &graph, &[1]).unwrap_err();
        assert!(
            err.to_string()
                .contains("tensor 0 has no name, but it is an input of segment 0"),
            "{err}"
        );
    }

    #[test]
    fn a_graph_is_only_built_of_a_model_that_validates() {
        let model = chain(&[1, 1], false);
        // Strict by default: the custom operator needs a kernel, or trust.
        assert!(matches!(
            Graph::new(&model),
            Err(Error::InvalidModel {
                field: "opcode.custom_code",
                ..
            })
        ));
        assert!(Graph::with_validation(&model, &Validation::trusted()).is_ok());
        assert!(chain_graph(&model).is_ok());
    }

    #[test]
    fn graph_rejects_reading_before_writing() {
        let mut model = chain(&[1, 1], false);
        model.operators.swap(0, 1);
        assert!(matches!(chain_graph(&model), Err(Error::Invalid { .. })));
    }

    #[test]
    fn stems_stay_inside_the_folder_and_links_are_replaced() {
        let model = chain(&[1, 1], false);
        let graph = chain_graph(&model).unwrap();
        let plan = Plan::from_cuts("t", &graph, &[1]).unwrap();
        let dir = std::env::temp_dir().join(format!("multitpu-stems-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for stem in ["../x", "a/b", "", "..", "a\\b", "a\0b"] {
            let err = plan
                .segment_models(&graph)
                .unwrap()
                .write(&dir, stem)
                .unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{stem:?}: {err}");
        }
        // A link where a segment goes is replaced by the segment, its target untouched.
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, dir.join("t_segment_0_of_2.tflite")).unwrap();
        let files = plan
            .segment_models(&graph)
            .unwrap()
            .write(&dir, "t")
            .unwrap()
            .segments;
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let written = std::fs::symlink_metadata(&files[0]).unwrap();
        assert!(written.file_type().is_file());
        assert!(Model::from_bytes(&std::fs::read(&files[0]).unwrap()).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
