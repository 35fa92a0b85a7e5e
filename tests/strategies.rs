//! Segmentation strategies on random graphs and on real models: plans are well formed, the
//! profiled plan is the exact optimum (checked by brute force on small graphs, with a
//! deliberately non-monotone test profiler), and it beats the uniform splits and the
//! libcoral-style search while profiling fewer candidates.

mod common;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Range;

use multitpu::deploy::SegmentKind;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::validate::Validation;
use multitpu::model::{ElementType, Graph, Model, OpCode, Operator, Tensor, paper};
use multitpu::profile::{CachedProfiler, Profiler, SegmentProfile};
use multitpu::segment::{
    DEFAULT_DEVICE_TOLERANCE, Floors, LatencyFloor, LibcoralOutcome, LibcoralSearch, Plan,
    Profiled, Segmenter, UniformByOps, UniformByParams,
};
use multitpu::{Error, Result};
use proptest::prelude::*;

/// Description of a random graph: for each operator, the earlier activations it reads
/// (indices into "model input, then each operator's output"), its weight bytes, and
/// whether it touches the shared variable.
#[derive(Debug, Clone)]
struct Shape {
    reads: Vec<Vec<usize>>,
    weights: Vec<usize>,
    stateful: Vec<bool>,
}

fn tensor(name: String, bytes: usize, data: bool) -> Tensor<'static> {
    Tensor {
        name: Cow::Owned(name),
        element_type: ElementType::U8,
        shape: vec![bytes as i32],
        shape_signature: None,
        quantization: None,
        data: data.then(|| Cow::Owned(vec![1u8; bytes])),
        is_variable: false,
        has_rank: false,
    }
}

/// `PACK`, the operator of [`build`]'s graphs: one the Edge TPU runs and validation does not
/// model, so that a trusted graph ([`trusted_graph`]) takes it with whatever inputs the
/// shape gives, and the budget planner may put it on a device.
const PACK: i32 = 83;

/// The graph of a model from [`build`], or of any model, validated as trusted: the random
/// graphs' operators are not ones TFLite could run.
fn trusted_graph<'m, 'a>(model: &'m Model<'a>) -> Result<Graph<'m, 'a>> {
    Graph::with_validation(model, &Validation::trusted())
}

fn build(shape: &Shape) -> Model<'static> {
    let n = shape.reads.len();
    // Tensor i (0..=n) is the activation written by op i - 1 (0 = model input).
    let mut tensors: Vec<_> = (0..=n)
        .map(|i| tensor(format!("x{i}"), 4 + i % 3, false))
        .collect();
    let mut state = tensor("state".to_string(), 4, false);
    state.is_variable = true;
    tensors.push(state);
    let state_index = n + 1;
    let mut read_somewhere = vec![false; n + 1];
    let mut operators = Vec::new();
    for i in 0..n {
        let mut inputs: Vec<Option<usize>> =
            shape.reads[i].iter().map(|&r| Some(r % (i + 1))).collect();
        inputs.dedup();
        for t in inputs.iter().flatten() {
            read_somewhere[*t] = true;
        }
        if shape.weights[i] > 0 {
            tensors.push(tensor(format!("w{i}"), shape.weights[i], true));
            inputs.push(Some(tensors.len() - 1));
        }
        if shape.stateful[i] {
            inputs.push(Some(state_index));
        }
        operators.push(Operator {
            opcode: OpCode {
                builtin: PACK,
                custom: None,
                version: 1,
            },
            inputs,
            outputs: vec![i + 1],
            intermediates: Vec::new(),
            builtin_options: None,
            custom_options: None,
            custom_options_format: 0,
            mutating_variable_inputs: Vec::new(),
        });
    }
    let outputs: Vec<usize> = (1..=n).filter(|&t| !read_somewhere[t] || t == n).collect();
    Model::new(tensors, operators, vec![0], outputs)
}

/// Chains (each op reads the previous output) or branching graphs (any earlier tensor).
fn shape(max_ops: usize, branching: bool) -> impl Strategy<Value = Shape> {
    (2..=max_ops).prop_flat_map(move |n| {
        let reads = if branching {
            prop::collection::vec(prop::collection::vec(0usize..64, 1..=2), n).boxed()
        } else {
            Just((0..n).map(|i| vec![i]).collect::<Vec<_>>()).boxed()
        };
        (
            reads,
            prop::collection::vec(prop_oneof![Just(0usize), 1usize..40], n),
            prop::collection::vec(prop::bool::weighted(0.15), n),
        )
            .prop_map(|(reads, weights, stateful)| Shape {
                reads,
                weights,
                stateful,
            })
    })
}

/// A test profiler whose latency is far from monotone in the segment length: a per-op
/// cost, a cost for the boundary the segment ends at (its output transfer, which can be
/// large at one cut and small at the next) and a per-range jitter. Every value is a
/// multiple of 1/8, so sums are exact and ties are common.
#[derive(Debug, Clone, Copy)]
struct Bumpy {
    seed: u64,
}

impl Bumpy {
    const FIXED: f64 = 1.0;

    fn hash(&self, x: u64) -> u64 {
        let mut h = x
            .wrapping_add(self.seed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^ (h >> 32)
    }

    fn op_cost(&self, op: usize) -> f64 {
        (self.hash(op as u64) % 8) as f64 / 8.0
    }
}

impl Profiler for Bumpy {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        if ops.start >= ops.end || ops.end > model.operators.len() {
            return Err(Error::Invalid {
                what: "segment range",
                reason: format!("{ops:?}"),
            });
        }
        let work: f64 = ops.clone().map(|op| self.op_cost(op)).sum();
        let boundary = (self.hash(1000 + ops.end as u64) % 32) as f64 / 8.0;
        let jitter = (self.hash((ops.start * 1000 + ops.end) as u64) % 4) as f64 / 8.0;
        Ok(SegmentProfile {
            latency_s: Self::FIXED + work + boundary + jitter,
            on_chip_bytes: 0,
            off_chip_bytes: 0,
        })
    }
}

/// A sound floor for [`Bumpy`]: the fixed cost and the per-op costs.
impl LatencyFloor for Bumpy {
    fn floors(&self, graph: &Graph<'_, '_>) -> Result<Floors> {
        let per_op: Vec<f64> = (0..graph.op_count()).map(|op| self.op_cost(op)).collect();
        Floors::new(graph, Self::FIXED, &per_op, 0.0, 0.0)
    }
}

fn valid_cuts(graph: &Graph<'_, '_>) -> Vec<usize> {
    (1..graph.op_count())
        .filter(|&c| multitpu::segment::is_valid_cut(graph, c))
        .collect()
}

/// (bottleneck, total in segment order) of the segments starting at 0 and each cut.
fn objective(profiler: &dyn Profiler, model: &Model, cuts: &[usize]) -> (f64, f64) {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(model.operators.len());
    let mut worst = 0.0f64;
    let mut total = 0.0;
    for w in bounds.windows(2) {
        let latency = profiler
            .profile(model, w[0]..w[1])
            .expect("valid range")
            .latency_s;
        worst = worst.max(latency);
        total += latency;
    }
    (worst, total)
}

/// The lexicographic optimum over every set of `segments - 1` valid cuts.
fn brute_force(
    profiler: &dyn Profiler,
    model: &Model,
    valid: &[usize],
    segments: usize,
) -> (f64, f64) {
    fn walk(
        profiler: &dyn Profiler,
        model: &Model,
        valid: &[usize],
        left: usize,
        chosen: &mut Vec<usize>,
        best: &mut Option<(f64, f64)>,
    ) {
        if left == 0 {
            let value = objective(profiler, model, chosen);
            if best.is_none_or(|b| value.0 < b.0 || (value.0 == b.0 && value.1 < b.1)) {
                *best = Some(value);
            }
            return;
        }
        for (i, &cut) in valid.iter().enumerate() {
            chosen.push(cut);
            walk(profiler, model, &valid[i + 1..], left - 1, chosen, best);
            chosen.pop();
        }
    }
    let mut best = None;
    walk(
        profiler,
        model,
        valid,
        segments - 1,
        &mut Vec::new(),
        &mut best,
    );
    best.expect("enough valid cuts")
}

/// Every operator in exactly one segment, in order, at valid cuts; every segment input
/// produced by an earlier segment or a model input; every model output produced.
fn check_well_formed(graph: &Graph<'_, '_>, plan: &Plan, segments: usize) {
    let model = graph.model();
    assert_eq!(plan.segments.len(), segments);
    let mut next = 0;
    let mut available: BTreeSet<usize> = model.inputs.iter().copied().collect();
    let mut produced = BTreeSet::new();
    for segment in &plan.segments {
        assert_eq!(
            segment.ops.start, next,
            "segments are contiguous and in order"
        );
        assert!(segment.ops.end > segment.ops.start, "no empty segment");
        if segment.ops.start > 0 {
            assert!(multitpu::segment::is_valid_cut(graph, segment.ops.start));
        }
        for &t in &segment.inputs {
            assert!(
                available.contains(&t),
                "input {t} of {:?} comes from nowhere",
                segment.ops
            );
        }
        for op in segment.ops.clone() {
            produced.extend(model.operators[op].outputs.iter().copied());
        }
        available.extend(segment.outputs.iter().copied());
        next = segment.ops.end;
    }
    assert_eq!(next, model.operators.len());
    for t in &model.outputs {
        assert!(produced.contains(t), "model output {t} is never produced");
        assert!(
            plan.segments.iter().any(|s| s.outputs.contains(t)),
            "model output {t} is no segment's output"
        );
    }
}

fn check_small(
    shape: &Shape,
    segments: usize,
    seed: u64,
) -> std::result::Result<(), TestCaseError> {
    let model = build(shape);
    let graph = trusted_graph(&model).expect("a well-formed graph");
    let valid = valid_cuts(&graph);
    prop_assume!(valid.len() + 1 >= segments);
    let bumpy = Bumpy { seed };

    let uniform = UniformByParams
        .plan(&graph, segments)
        .expect("uniform plan");
    let by_ops = UniformByOps
        .plan(&graph, segments)
        .expect("uniform-ops plan");
    let exact = Profiled::new(bumpy)
        .with_exact_devices()
        .with_tolerance(0.0)
        .expect("tolerance")
        .plan(&graph, segments)
        .expect("profiled plan");
    let unfloored = Profiled::new(bumpy)
        .with_exact_devices()
        .plan(&graph, segments)
        .expect("profiled plan");
    let floored = Profiled::new(bumpy)
        .with_exact_devices()
        .with_floor(bumpy)
        .plan(&graph, segments)
        .expect("profiled plan");
    let libcoral = LibcoralSearch::new(bumpy)
        .plan(&graph, segments)
        .expect("libcoral plan");
    for plan in [&uniform, &by_ops, &exact, &unfloored, &floored, &libcoral] {
        check_well_formed(&graph, plan, segments);
    }

    let best = brute_force(&bumpy, &model, &valid, segments);
    for plan in [&exact, &unfloored, &floored] {
        let value = (
            plan.bottleneck_s().expect("predicted"),
            plan.total_latency_s().expect("predicted"),
        );
        prop_assert_eq!(
            value,
            best,
            "profiled plan {:?} is not the optimum",
            plan.cuts()
        );
        prop_assert_eq!(value, objective(&bumpy, &model, &plan.cuts()));
        prop_assert!(plan.candidates_profiled >= segments);
    }
    let libcoral_value = libcoral.bottleneck_s().expect("predicted");
    prop_assert!(best.0 <= libcoral_value);
    for mut plan in [uniform, by_ops] {
        plan.with_predictions(&model, &bumpy, &bumpy)
            .expect("predictions");
        prop_assert!(best.0 <= plan.bottleneck_s().expect("predicted"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn profiled_is_the_brute_force_optimum_on_chains(
        shape in shape(10, false), segments in 1usize..=4, seed in any::<u64>()
    ) {
        check_small(&shape, segments, seed)?;
    }

    #[test]
    fn profiled_is_the_brute_force_optimum_on_branching_graphs(
        shape in shape(10, true), segments in 1usize..=4, seed in any::<u64>()
    ) {
        check_small(&shape, segments, seed)?;
    }

    #[test]
    fn plans_of_larger_graphs_are_well_formed(
        shape in shape(60, true), segments in 1usize..=8, seed in any::<u64>()
    ) {
        let model = build(&shape);
        let graph = trusted_graph(&model).expect("a well-formed graph");
        prop_assume!(valid_cuts(&graph).len() + 1 >= segments);
        let bumpy = Bumpy { seed };
        let profiled = Profiled::new(bumpy)
            .with_exact_devices()
            .with_floor(bumpy)
            .plan(&graph, segments)
            .expect("profiled");
        let libcoral = LibcoralSearch::new(bumpy).plan(&graph, segments).expect("libcoral");
        for plan in [
            UniformByParams.plan(&graph, segments).expect("uniform"),
            UniformByOps.plan(&graph, segments).expect("uniform-ops"),
            profiled.clone(),
            libcoral.clone(),
        ] {
            check_well_formed(&graph, &plan, segments);
        }
        prop_assert!(
            profiled.bottleneck_s().expect("predicted")
                <= libcoral.bottleneck_s().expect("predicted")
        );
    }
}

/// A chain of `ops` operators, each with 8 bytes of weights and no state.
fn chain(ops: usize) -> Model<'static> {
    build(&Shape {
        reads: (0..ops).map(|i| vec![i]).collect(),
        weights: vec![8; ops],
        stateful: vec![false; ops],
    })
}

/// `shape`'s graph with the operators flagged in `cpu` made custom operators, which only
/// the CPU runs.
fn build_with_cpu_ops(shape: &Shape, cpu: &[bool]) -> Model<'static> {
    let mut model = build(shape);
    for (op, _) in cpu.iter().enumerate().filter(|(_, on_cpu)| **on_cpu) {
        model.operators[op].opcode = OpCode {
            builtin: 32,
            custom: Some(Cow::Borrowed("TestCpuOp")),
            version: 1,
        };
    }
    model
}

/// A device range of a graph from [`build_with_cpu_ops`]: no custom operator, at least one
/// other (the graphs have no quantisation at their edges).
fn is_device_range(model: &Model, ops: &Range<usize>) -> bool {
    ops.clone()
        .all(|op| model.operators[op].opcode.builtin != 32)
}

/// What the budget planner must return, by brute force: over every set of valid cuts, with
/// each range a device segment if `is_device` says so and a CPU segment otherwise (never
/// two CPU segments in a row), and every way of giving the device segments one device or
/// more (exactly one without `replicate`, or for a segment holding a stateful operator), at
/// most `budget` in all: per number of devices
/// the least (bottleneck, total), where the bottleneck is the largest latency per replica;
/// then the fewest devices whose bottleneck is within `tolerance` of the best. Returns
/// (bottleneck, total, devices).
#[allow(clippy::too_many_arguments)]
fn brute_force_budget(
    device: &dyn Profiler,
    cpu: &dyn Profiler,
    model: &Model,
    valid: &[usize],
    budget: usize,
    replicate: bool,
    tolerance: f64,
    is_device: &dyn Fn(&Range<usize>) -> bool,
) -> Option<(f64, f64, usize)> {
    let n = model.operators.len();
    let mut best_per_count: Vec<Option<(f64, f64)>> = vec![None; budget + 1];
    for mask in 0u32..(1 << valid.len()) {
        let mut bounds = vec![0];
        bounds.extend(
            valid
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, &c)| c),
        );
        bounds.push(n);
        let ranges: Vec<Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
        let on_device: Vec<bool> = ranges.iter().map(is_device).collect();
        if on_device.windows(2).any(|w| !w[0] && !w[1]) {
            continue;
        }
        let latency: Vec<f64> = ranges
            .iter()
            .zip(&on_device)
            .map(|(r, &d)| {
                let profiler = if d { device } else { cpu };
                profiler.profile(model, r.clone()).expect("range").latency_s
            })
            .collect();
        let total: f64 = latency.iter().sum();
        let device_segments: Vec<usize> = (0..ranges.len()).filter(|&i| on_device[i]).collect();
        let stateful: Vec<bool> = device_segments
            .iter()
            .map(|&i| {
                ranges[i].clone().any(|op| {
                    model.operators[op]
                        .inputs
                        .iter()
                        .flatten()
                        .any(|&t| model.tensors[t].is_variable)
                })
            })
            .collect();
        // Every assignment of replicas to the device segments.
        let mut replicas = vec![1usize; device_segments.len()];
        loop {
            let used: usize = replicas.iter().sum();
            if used <= budget {
                let mut bottleneck = 0.0f64;
                let mut k = 0;
                for (i, &l) in latency.iter().enumerate() {
                    let r = if on_device[i] {
                        k += 1;
                        replicas[k - 1]
                    } else {
                        1
                    };
                    bottleneck = bottleneck.max(l / r as f64);
                }
                let slot = &mut best_per_count[used];
                if slot.is_none_or(|(b, t)| bottleneck < b || (bottleneck == b && total < t)) {
                    *slot = Some((bottleneck, total));
                }
            }
            // Next assignment (odometer), each replica count 1..=budget.
            let Some(i) =
                (0..replicas.len()).find(|&i| replicate && !stateful[i] && replicas[i] < budget)
            else {
                break;
            };
            replicas[i] += 1;
            for r in &mut replicas[..i] {
                *r = 1;
            }
        }
    }
    let best = best_per_count
        .iter()
        .flatten()
        .map(|(b, _)| *b)
        .fold(f64::INFINITY, f64::min);
    best_per_count
        .iter()
        .enumerate()
        .find_map(|(count, value)| {
            value
                .filter(|(b, _)| *b <= best * (1.0 + tolerance))
                .map(|(b, t)| (b, t, count))
        })
}

/// A second bumpy profiler, for CPU segments.
fn bumpy_cpu(seed: u64) -> Bumpy {
    Bumpy {
        seed: seed.wrapping_add(0x5DEE_CE66),
    }
}

fn check_budget(
    shape: &Shape,
    cpu_ops: &[bool],
    budget: usize,
    seed: u64,
) -> std::result::Result<(), TestCaseError> {
    let model = build_with_cpu_ops(shape, cpu_ops);
    let graph = trusted_graph(&model).expect("a well-formed graph");
    let valid = valid_cuts(&graph);
    let bumpy = Bumpy { seed };
    let cpu = bumpy_cpu(seed);
    let with_cpu = cpu_ops.iter().any(|&c| c);
    let is_device = |r: &Range<usize>| !with_cpu || is_device_range(&model, r);
    let planner = |replicate: bool, floored: bool| {
        let planner = Profiled::new(bumpy)
            .with_tolerance(0.0)
            .expect("tolerance")
            .with_replication(replicate);
        let planner = if with_cpu {
            planner.with_cpu_segments(cpu)
        } else {
            planner
        };
        if floored {
            planner.with_floor(bumpy).plan(&graph, budget)
        } else {
            planner.plan(&graph, budget)
        }
    };
    for replicate in [true, false] {
        let expected = brute_force_budget(
            &bumpy,
            &cpu,
            &model,
            &valid,
            budget,
            replicate,
            DEFAULT_DEVICE_TOLERANCE,
            &is_device,
        );
        for floored in [false, true] {
            let plan = planner(replicate, floored);
            let Some(expected) = expected else {
                prop_assert!(plan.is_err(), "brute force finds no plan, the planner did");
                continue;
            };
            let plan = plan.expect("a plan");
            check_well_formed(&graph, &plan, plan.segments.len());
            let value = (
                plan.bottleneck_s().expect("predicted"),
                plan.total_latency_s().expect("predicted"),
                plan.devices(),
            );
            prop_assert_eq!(
                value,
                expected,
                "plan {:?} replicate={}",
                plan.segments,
                replicate
            );
            for segment in &plan.segments {
                let device = segment.kind == SegmentKind::EdgeTpu;
                let stateful = segment.ops.clone().any(|op| shape.stateful[op]);
                prop_assert!(
                    !stateful || segment.replicas == 1,
                    "a stateful segment replicated"
                );
                prop_assert_eq!(device, is_device(&segment.ops), "{:?}", segment);
                prop_assert!(device || segment.replicas == 1);
                prop_assert!(replicate || segment.replicas == 1);
            }
            prop_assert!(
                plan.segments
                    .windows(2)
                    .all(|w| w[0].kind == SegmentKind::EdgeTpu || w[1].kind == SegmentKind::EdgeTpu),
                "two CPU segments in a row"
            );
        }
    }
    Ok(())
}

fn cpu_flags(max_ops: usize) -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(prop::bool::weighted(0.25), max_ops)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn budget_plans_are_the_brute_force_optimum(
        shape in shape(8, true), budget in 1usize..=4, seed in any::<u64>()
    ) {
        let no_cpu = vec![false; shape.reads.len()];
        check_budget(&shape, &no_cpu, budget, seed)?;
    }

    #[test]
    fn budget_plans_with_cpu_operators_are_the_brute_force_optimum(
        shape in shape(8, true), cpu in cpu_flags(8), budget in 1usize..=4, seed in any::<u64>()
    ) {
        let cpu = &cpu[..shape.reads.len()];
        check_budget(&shape, cpu, budget, seed)?;
    }

    #[test]
    fn the_bottleneck_never_rises_with_the_budget(
        shape in shape(12, true), cpu in cpu_flags(12), seed in any::<u64>()
    ) {
        let model = build_with_cpu_ops(&shape, &cpu[..shape.reads.len()]);
        let graph = trusted_graph(&model).expect("graph");
        let bumpy = Bumpy { seed };
        let mut previous = f64::INFINITY;
        for budget in 1..=6 {
            let plan = Profiled::new(bumpy)
                .with_floor(bumpy)
                .with_cpu_segments(bumpy_cpu(seed))
                .plan(&graph, budget)
                .expect("plan");
            prop_assert!(plan.devices() <= budget);
            let bottleneck = plan.bottleneck_s().expect("predicted");
            prop_assert!(bottleneck <= previous, "budget {}: {} after {}", budget, bottleneck, previous);
            previous = bottleneck;
        }
    }
}

#[test]
fn one_device_runs_the_whole_model() {
    let model = chain(6);
    let graph = trusted_graph(&model).expect("graph");
    let plan = Profiled::new(Bumpy { seed: 3 })
        .plan(&graph, 1)
        .expect("plan");
    assert_eq!(plan.segments.len(), 1);
    assert_eq!(plan.segments[0].ops, 0..6);
    assert_eq!(plan.devices(), 1);
}

#[test]
fn uniform_by_ops_splits_operator_counts_evenly() {
    let shape = Shape {
        reads: (0..10).map(|i| vec![i]).collect(),
        weights: vec![1; 10],
        stateful: vec![false; 10],
    };
    let model = build(&shape);
    let graph = trusted_graph(&model).expect("graph");
    let plan = UniformByOps.plan(&graph, 3).expect("plan");
    assert_eq!(plan.cuts(), vec![3, 7]);
    let plan = UniformByOps.plan(&graph, 4).expect("plan");
    assert_eq!(plan.cuts(), vec![2, 5, 7]);
    assert_eq!(
        UniformByOps.plan(&graph, 10).expect("plan").cuts(),
        (1..10).collect::<Vec<_>>()
    );
    assert!(UniformByOps.plan(&graph, 11).is_err());
}

#[test]
fn uniform_by_ops_steps_around_stateful_operators() {
    // Ops 2..=5 share the variable: no cut at 3, 4 or 5.
    let shape = Shape {
        reads: (0..8).map(|i| vec![i]).collect(),
        weights: vec![1; 8],
        stateful: (0..8).map(|i| (2..=5).contains(&i)).collect(),
    };
    let model = build(&shape);
    let graph = trusted_graph(&model).expect("graph");
    assert_eq!(valid_cuts(&graph), vec![1, 2, 6, 7]);
    assert_eq!(UniformByOps.plan(&graph, 2).expect("plan").cuts(), vec![2]);
    assert_eq!(
        UniformByOps.plan(&graph, 5).expect("plan").cuts(),
        vec![1, 2, 6, 7]
    );
}

/// What planning cost, summed over cases: ours in segments compiled and timed (distinct
/// candidates profiled), libcoral's in compile-and-benchmark rounds and in segments compiled
/// and timed (N per round).
#[derive(Debug, Default, Clone, Copy)]
struct Costs {
    ours: usize,
    libcoral_rounds: usize,
    libcoral_segments: usize,
}

impl std::ops::AddAssign for Costs {
    fn add_assign(&mut self, other: Costs) {
        self.ours += other.ours;
        self.libcoral_rounds += other.libcoral_rounds;
        self.libcoral_segments += other.libcoral_segments;
    }
}

impl std::fmt::Display for Costs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "profiled {} segments compiled and timed; libcoral {} rounds, {} segments compiled and timed",
            self.ours, self.libcoral_rounds, self.libcoral_segments
        )
    }
}

/// Compares the strategies on one model with the cost model; returns what each paid.
fn compare(name: &str, model: &Model, segments: usize) -> Costs {
    let graph = Graph::new(model).expect("graph");
    let cost_model = EdgeTpuCostModel::usb_default();
    // The baselines put every operator on a device, one segment per device: so does the
    // plan they are held against.
    let profiled = Profiled::new(cost_model.clone())
        .with_floor(cost_model.clone())
        .with_exact_devices()
        .plan(&graph, segments)
        .expect("profiled");
    // The budget planner also chooses replicas and how many devices, with no segment
    // without Edge TPU work: never slower than one segment per device, by its tolerance.
    let exact = Profiled::cost_model(cost_model.clone())
        .with_exact_devices()
        .plan(&graph, segments);
    let budget = Profiled::cost_model(cost_model.clone())
        .plan(&graph, segments)
        .expect("profiled on a budget");
    assert!(budget.devices() <= segments);
    if let Ok(exact) = exact {
        assert!(
            budget.bottleneck_s().expect("predicted")
                <= exact.bottleneck_s().expect("predicted") * (1.0 + DEFAULT_DEVICE_TOLERANCE),
            "{name}: the budget plan is slower than one segment per device"
        );
    }
    let search = LibcoralSearch::new(CachedProfiler::new(cost_model.clone()));
    let (libcoral, cost) = search.plan_with_cost(&graph, segments).expect("libcoral");
    check_well_formed(&graph, &profiled, segments);
    check_well_formed(&graph, &libcoral, segments);
    assert_eq!(libcoral.candidates_profiled, cost.segments_compiled);
    assert_eq!(cost.segments_compiled, cost.rounds * segments);
    // Every distinct segment libcoral's search looked at was compiled in some round.
    assert!(search.profiler().calls() <= cost.segments_compiled);
    let ours = profiled.bottleneck_s().expect("predicted");
    assert!(
        ours <= libcoral.bottleneck_s().expect("predicted"),
        "{name}: libcoral found a better plan"
    );
    for mut uniform in [
        UniformByParams.plan(&graph, segments).expect("uniform"),
        UniformByOps.plan(&graph, segments).expect("uniform-ops"),
    ] {
        uniform
            .with_predictions(model, &cost_model, &cost_model)
            .expect("predictions");
        assert!(
            ours <= uniform.bottleneck_s().expect("predicted"),
            "{name}: {} is better",
            uniform.strategy
        );
    }
    eprintln!(
        "{name} N={segments}: profiled {:.3} ms with {} segments; libcoral {:.3} ms with {} \
         rounds, {} segments ({:?})",
        ours * 1e3,
        profiled.candidates_profiled,
        libcoral.bottleneck_s().unwrap_or(f64::NAN) * 1e3,
        cost.rounds,
        cost.segments_compiled,
        cost.outcome
    );
    Costs {
        ours: profiled.candidates_profiled,
        libcoral_rounds: cost.rounds,
        libcoral_segments: cost.segments_compiled,
    }
}

#[test]
fn profiled_beats_uniform_and_libcoral_on_paper_models() {
    let mut costs = Costs::default();
    for hidden in [100, 1000, 1580, 2000, 3000] {
        let model = paper::fc(hidden).expect("fc model");
        for segments in 2..=4 {
            costs += compare(&format!("fc({hidden})"), &model, segments);
        }
    }
    for filters in [32, 128, 384, 742] {
        let model = paper::conv(filters).expect("conv model");
        for segments in 2..=4 {
            costs += compare(&format!("conv({filters})"), &model, segments);
        }
    }
    eprintln!("paper models, 2-4 segments: {costs}");
    assert!(costs.ours < costs.libcoral_segments, "{costs}");
}

#[test]
fn profiled_beats_uniform_and_libcoral_on_real_models() {
    let models = common::cpu_models();
    if models.is_empty() {
        return; // skipped without the zoo, with a notice
    }
    let mut costs = Costs::default();
    let mut eight = Costs::default();
    for (name, bytes) in &models {
        let model = Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = Graph::new(&model).expect("graph");
        let places = valid_cuts(&graph).len() + 1;
        for segments in [2, 3, 4, 8].into_iter().filter(|&n| n <= places) {
            let case = compare(name, &model, segments);
            if segments == 8 {
                eight += case;
            } else {
                costs += case;
            }
        }
    }
    eprintln!("real models, 2-4 segments: {costs}");
    eprintln!("real models, 8 segments: {eight}");
    assert!(costs.ours < costs.libcoral_segments, "{costs}");
    assert!(eight.ours < eight.libcoral_segments, "{eight}");
}

/// The cost model's floor is below its prediction for every range (the soundness the
/// profiled search's optimality rests on), and its growing part never decreases as a range
/// grows.
fn check_cost_model_floor(name: &str, model: &Model) {
    let graph = trusted_graph(model).expect("graph");
    for cost_model in [
        EdgeTpuCostModel::usb_default(),
        EdgeTpuCostModel::pcie_default(),
        tight_budget(),
    ] {
        let floors = cost_model.floors(&graph).expect("floors");
        let k = graph.op_count();
        for a in 0..k {
            let mut growing = 0.0;
            for b in a + 1..=k {
                let latency = cost_model.profile(model, a..b).expect("profile").latency_s;
                let floor = floors.floor_s(a..b);
                assert!(
                    floor <= latency,
                    "{name} {a}..{b}: floor {floor} above latency {latency}"
                );
                let next = floors.growing_floor_s(a..b);
                assert!(
                    next >= growing && next <= floor,
                    "{name} {a}..{b}: growing floor"
                );
                growing = next;
            }
        }
    }
}

/// A cost model with a small on-chip budget, so that budget overflow shows in small models.
fn tight_budget() -> EdgeTpuCostModel {
    EdgeTpuCostModel {
        on_chip_budget_bytes: 20_000,
        max_cached_tensor_bytes: 12_000,
        ..EdgeTpuCostModel::usb_default()
    }
}

#[test]
fn cost_model_floor_is_sound_on_paper_models() {
    for hidden in [100, 1580, 3000] {
        check_cost_model_floor("fc", &paper::fc(hidden).expect("fc"));
    }
    for filters in [32, 384] {
        check_cost_model_floor("conv", &paper::conv(filters).expect("conv"));
    }
}

#[test]
fn cost_model_floor_is_sound_on_real_models() {
    let zoo = [
        common::zoo::RESNET,
        common::zoo::DEPTHWISE,
        common::zoo::MOBILENET_V2,
        common::zoo::LSTM,
        common::zoo::MULTI_IO,
    ]
    .map(|name| (name, common::zoo_model(name)));
    let shared = [
        "MNISTnet_v2_uint8_quant.tflite",
        "mobilenet_v1_0.25_128_quant.tflite",
        "mobilenet_v2_1.0_224_quant.tflite",
        "keras_lstm_mnist_ptq.tflite",
    ]
    .map(|name| (name, common::shared_model(name)));
    for (name, bytes) in zoo.into_iter().chain(shared) {
        let Some(bytes) = bytes else { continue };
        let model = Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_cost_model_floor(name, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cost_model_floor_is_sound_on_random_graphs(shape in shape(24, true)) {
        check_cost_model_floor("random", &build(&shape));
    }
}

#[test]
fn libcoral_search_keeps_the_compiler_split_when_its_segments_are_close() {
    let model = chain(8);
    let graph = trusted_graph(&model).expect("graph");
    // Latencies here are seconds of the order of 1–10: a threshold of 100 s stops at once.
    let search = LibcoralSearch::new(Bumpy { seed: 7 })
        .with_diff_threshold(100.0)
        .expect("threshold");
    let (plan, cost) = search.plan_with_cost(&graph, 3).expect("plan");
    let uniform = UniformByParams.plan(&graph, 3).expect("uniform");
    assert_eq!(plan.cuts(), uniform.cuts());
    // One round: the compiler's split, compiled and timed; libcoral writes nothing then.
    assert_eq!(plan.candidates_profiled, 3);
    assert_eq!((cost.rounds, cost.segments_compiled), (1, 3));
    assert_eq!(cost.outcome, LibcoralOutcome::CompilerSplitKept);
    assert!(
        LibcoralSearch::new(Bumpy { seed: 7 })
            .with_diff_threshold(0.0)
            .is_err()
    );
    assert!(
        LibcoralSearch::new(Bumpy { seed: 7 })
            .with_diff_threshold(f64::NAN)
            .is_err()
    );
}

/// A profiler where libcoral's greedy search (longest first segment that meets the target)
/// misses the optimum: ops cost 1 each, plus 10 for a segment that ends right after op 2.
struct Trap;

impl Profiler for Trap {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        if ops.start >= ops.end || ops.end > model.operators.len() {
            return Err(Error::Invalid {
                what: "segment range",
                reason: format!("{ops:?}"),
            });
        }
        let trap = if ops.end == 3 { 10.0 } else { 0.0 };
        Ok(SegmentProfile {
            latency_s: ops.len() as f64 + trap,
            on_chip_bytes: 0,
            off_chip_bytes: 0,
        })
    }
}

#[test]
fn profiled_finds_the_optimum_where_latency_is_not_monotone() {
    let model = chain(6);
    let graph = trusted_graph(&model).expect("graph");
    let valid = valid_cuts(&graph);
    for segments in 1..=4 {
        let plan = Profiled::new(Trap)
            .with_exact_devices()
            .plan(&graph, segments)
            .expect("plan");
        let value = (
            plan.bottleneck_s().expect("predicted"),
            plan.total_latency_s().expect("predicted"),
        );
        assert_eq!(
            value,
            brute_force(&Trap, &model, &valid, segments),
            "N={segments}"
        );
        assert!(!plan.cuts().contains(&3), "no segment may end after op 2");
        let libcoral = LibcoralSearch::new(Trap)
            .plan(&graph, segments)
            .expect("plan");
        assert!(
            plan.bottleneck_s().expect("predicted") <= libcoral.bottleneck_s().expect("predicted")
        );
    }
    // Two segments: 3 + 3 would be best but the first segment ending at op 2 costs 13;
    // the optimum is 2 + 4 or 4 + 2.
    let plan = Profiled::new(Trap)
        .with_exact_devices()
        .plan(&graph, 2)
        .expect("plan");
    assert_eq!(plan.bottleneck_s(), Some(4.0));
}

/// Latencies measured once per range and replayed, so that several searches and the brute
/// force see the same (noisy, non-monotone) figures.
#[derive(Clone)]
struct Recorded(std::sync::Arc<std::collections::HashMap<Range<usize>, f64>>);

impl Profiler for Recorded {
    fn profile(&self, _model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        let latency_s = *self.0.get(&ops).ok_or_else(|| Error::Invalid {
            what: "segment range",
            reason: format!("{ops:?} was not measured"),
        })?;
        Ok(SegmentProfile {
            latency_s,
            on_chip_bytes: 0,
            off_chip_bytes: 0,
        })
    }
}

#[test]
fn profiled_is_optimal_on_cpu_measurements() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(common::zoo::RESNET) else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("model");
    let graph = Graph::new(&model).expect("graph");
    let cpu = multitpu::profile::CpuProfiler {
        runs: 3,
        ..multitpu::profile::CpuProfiler::new(runtime)
    };
    let k = graph.op_count();
    let mut measured = std::collections::HashMap::new();
    for a in 0..k {
        for b in a + 1..=k {
            let latency = cpu.profile(&model, a..b).expect("measured").latency_s;
            assert!(latency > 0.0, "{a}..{b}");
            measured.insert(a..b, latency);
        }
    }
    let recorded = Recorded(std::sync::Arc::new(measured));
    let valid = valid_cuts(&graph);
    for segments in 2..=4 {
        let plan = Profiled::new(recorded.clone())
            .with_exact_devices()
            .plan(&graph, segments)
            .expect("profiled");
        check_well_formed(&graph, &plan, segments);
        let value = (
            plan.bottleneck_s().expect("predicted"),
            plan.total_latency_s().expect("predicted"),
        );
        let best = brute_force(&recorded, &model, &valid, segments);
        assert!(
            value.0 <= best.0 * (1.0 + 1e-9),
            "N={segments}: {value:?} against {best:?}"
        );
        let libcoral = LibcoralSearch::new(recorded.clone())
            .plan(&graph, segments)
            .expect("libcoral");
        assert!(value.0 <= libcoral.bottleneck_s().expect("predicted"));
    }
}

/// The budget planner (`segment --strategy profiled`) compiles and times no more device
/// segments than libcoral's search compiles, on every real model (the test zoo, the shared
/// CPU models, the benchmark zoo) and budget of 2 to 4, model by model; CPU segments, which
/// are timed on the host and never compiled, are counted apart.
fn budget_planner_profiles_no_more_than_libcoral(models: &[(String, Vec<u8>)]) {
    let cost_model = EdgeTpuCostModel::usb_default();
    for (name, bytes) in models {
        let model = Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = Graph::new(&model).expect("graph");
        let places = valid_cuts(&graph).len() + 1;
        for budget in (2..=4).filter(|&n| n <= places) {
            let ours = Profiled::cost_model(cost_model.clone())
                .plan(&graph, budget)
                .unwrap_or_else(|e| panic!("{name} {budget}: {e}"));
            let (_, cost) = LibcoralSearch::new(CachedProfiler::new(cost_model.clone()))
                .plan_with_cost(&graph, budget)
                .unwrap_or_else(|e| panic!("{name} {budget}: {e}"));
            eprintln!(
                "{name} budget {budget}: profiled {} device segments (+{} CPU timed), libcoral {}",
                ours.candidates_profiled, ours.cpu_candidates_timed, cost.segments_compiled
            );
            assert!(
                ours.candidates_profiled <= cost.segments_compiled,
                "{name} budget {budget}: profiled {} > libcoral {}",
                ours.candidates_profiled,
                cost.segments_compiled
            );
        }
    }
}

#[test]
fn budget_planner_profiles_no_more_than_libcoral_on_real_models() {
    budget_planner_profiles_no_more_than_libcoral(&common::cpu_models());
}

#[test]
fn budget_planner_profiles_no_more_than_libcoral_on_the_benchmark_zoo() {
    let Some(dir) = common::bench_zoo_dir() else {
        return;
    };
    let mut models: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("list the benchmark zoo")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "tflite"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    models.sort();
    assert_eq!(models.len(), 10, "the benchmark zoo's ten networks");
    budget_planner_profiles_no_more_than_libcoral(&models);
}
