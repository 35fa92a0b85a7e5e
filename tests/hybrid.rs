//! Hybrid pipelines: plans with CPU segments and replicated Edge TPU segments, built in one
//! call and run on the CPU and simulated backends, give the whole model's outputs.

mod common;

use std::ops::Range;
use std::sync::Arc;

use multitpu::backend::{
    Backend, CpuBackend, Interpreter, InterpreterOptions, Runtime, SimCompute,
    SimulatedEdgeTpuBackend,
};
use multitpu::deploy::SegmentKind;
use multitpu::device::{DeviceSegments, EdgeTpuCostModel, OpSupport, compiled_split, op_support};
use multitpu::model::builder::SplitMix64;
use multitpu::model::options::{BuiltinOptions, FieldValue};
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model, OpCode, ops, paper};
use multitpu::pipeline::Pipeline;
use multitpu::profile::{Profiler, SegmentProfile};
use multitpu::segment::{Plan, Profiled, Segmenter};
use multitpu::verify::random_tensor;
use multitpu::{Error, Result};

/// A profiler charging `per_op_s` per operator and `fixed_s` per segment.
struct Linear {
    fixed_s: f64,
    per_op_s: f64,
}

impl Profiler for Linear {
    fn profile(&self, _model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        Ok(SegmentProfile {
            latency_s: self.fixed_s + self.per_op_s * ops.len() as f64,
            on_chip_bytes: 0,
            off_chip_bytes: 0,
        })
    }
}

/// Simulated USB Edge TPUs whose outputs (and CPU segments) are computed on `runtime`.
fn simulated_with_cpu(runtime: &Runtime) -> SimulatedEdgeTpuBackend {
    SimulatedEdgeTpuBackend::new(
        EdgeTpuCostModel::usb_default(),
        SimCompute::Cpu {
            runtime: runtime.clone(),
            threads: 1,
        },
    )
}

/// A CPU profile of 0.1 ms per segment and per operator.
const CPU_ESTIMATE: Linear = Linear {
    fixed_s: 1e-4,
    per_op_s: 1e-4,
};

/// Runs `items` seeded random inputs through the whole model on one interpreter and through
/// `pipeline`, and asserts every output is identical.
fn assert_same_as_whole(runtime: &Runtime, whole: &[u8], pipeline: &Pipeline, items: usize) {
    let options = InterpreterOptions::default();
    assert_same_as_whole_with(runtime, whole, &options, pipeline, items);
}

/// [`assert_same_as_whole`] with the whole model's interpreter built with `options`.
fn assert_same_as_whole_with(
    runtime: &Runtime,
    whole: &[u8],
    options: &InterpreterOptions,
    pipeline: &Pipeline,
    items: usize,
) {
    let mut interpreter =
        Interpreter::new(runtime, Arc::<[u8]>::from(whole.to_vec()), options).expect("whole model");
    let mut rng = SplitMix64::new(7);
    let mut expected = Vec::new();
    for _ in 0..items {
        let inputs: Vec<(String, Vec<u8>)> = interpreter
            .inputs()
            .to_vec()
            .iter()
            .map(|info| {
                (
                    info.name.clone(),
                    random_tensor(info, &mut rng).expect("input"),
                )
            })
            .collect();
        for (i, (_, data)) in inputs.iter().enumerate() {
            interpreter.set_input(i, data).expect("set input");
        }
        interpreter.invoke().expect("invoke");
        let outputs: Vec<(String, Vec<u8>)> = (0..interpreter.outputs().len())
            .map(|o| {
                (
                    interpreter.outputs()[o].name.clone(),
                    interpreter.output(o).expect("output").to_vec(),
                )
            })
            .collect();
        let named: Vec<(&str, &[u8])> = inputs
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        pipeline.push(&named).expect("push");
        expected.push(outputs);
    }
    pipeline.close().expect("close");
    for (item, outputs) in expected.iter().enumerate() {
        let got = pipeline.pop().expect("pop").expect("an item");
        for (name, bytes) in outputs {
            assert_eq!(
                got.get(name).expect("output by name"),
                bytes.as_slice(),
                "item {item}, output {name}"
            );
        }
    }
    assert!(pipeline.pop().expect("pop").is_none());
}

/// The paper's fc model with its second `TANH` made a `LEAKY_RELU`: an int8 operator TFLite's
/// CPU kernels run and the Edge TPU does not.
fn fc_with_a_cpu_operator() -> Model<'static> {
    let mut model = paper::fc(300).expect("fc").into_owned();
    let tanh = model
        .operators
        .iter()
        .enumerate()
        .filter(|(_, op)| op.opcode.builtin == ops::TANH)
        .map(|(i, _)| i)
        .nth(1)
        .expect("a second TANH");
    let (union, kind) = ops::default_options_for(ops::LEAKY_RELU).expect("LEAKY_RELU options");
    let op = &mut model.operators[tanh];
    op.opcode = OpCode {
        builtin: ops::LEAKY_RELU,
        custom: None,
        version: 2,
    };
    op.builtin_options = Some(
        BuiltinOptions::new(union, kind)
            .with("alpha", FieldValue::F32(0.25))
            .expect("alpha"),
    );
    model
}

/// [`fc_with_a_cpu_operator`] planned with the Edge TPU's operator support: the
/// `LEAKY_RELU` is a CPU segment between Edge TPU segments (the CPU is cheaper per operator
/// than a device, but not enough to run everything), and spare devices replicate the
/// slowest of those.
fn hybrid_fc_plan(graph: &Graph<'_, '_>, devices: usize) -> Plan {
    Profiled::new(Linear {
        fixed_s: 1e-3,
        per_op_s: 1e-3,
    })
    .with_cpu_segments(Linear {
        fixed_s: 0.0,
        per_op_s: 5e-4,
    })
    .plan(graph, devices)
    .expect("plan")
}

#[test]
fn host_quantisation_rides_on_device_segments_and_cpu_operators_get_cpu_segments() {
    let model = paper::fc(300).expect("fc");
    let graph = Graph::new(&model).expect("graph");
    let support = op_support(&model);
    assert_eq!(support[0], OpSupport::HostQuantize);
    assert_eq!(support[support.len() - 1], OpSupport::HostDequantize);
    // Nothing only the CPU runs: no CPU segment, whatever the budget.
    for devices in 1..=4 {
        let plan = hybrid_fc_plan(&graph, devices);
        assert!(
            plan.segments.iter().all(|s| s.kind == SegmentKind::EdgeTpu),
            "{:?}",
            plan.segments
        );
    }

    let model = fc_with_a_cpu_operator();
    let graph = Graph::new(&model).expect("graph");
    let support = op_support(&model);
    let plan = hybrid_fc_plan(&graph, 3);
    assert_eq!(plan.devices(), 3);
    for segment in &plan.segments {
        let cpu_op = segment
            .ops
            .clone()
            .any(|op| matches!(support[op], OpSupport::Cpu(_)));
        assert_eq!(segment.kind == SegmentKind::Cpu, cpu_op, "{segment:?}");
        if segment.kind == SegmentKind::EdgeTpu {
            assert!(
                segment.ops.clone().any(|op| support[op].is_edgetpu()),
                "an Edge TPU segment without Edge TPU work: {segment:?}"
            );
        }
    }
    assert!(
        plan.segments.iter().any(|s| s.replicas > 1),
        "{:?}",
        plan.segments
    );
}

fn check_hybrid_on(backend: &dyn Backend, runtime: &Runtime) {
    let model = fc_with_a_cpu_operator();
    let bytes = model.to_bytes().expect("bytes");
    let graph = Graph::new(&model).expect("graph");
    for devices in 1..=4 {
        let plan = hybrid_fc_plan(&graph, devices);
        let pipeline = Pipeline::from_models(
            &plan.segment_models(&graph).expect("segment models"),
            backend,
        )
        .expect("pipeline");
        let instances: Vec<usize> = pipeline
            .stats()
            .stages
            .iter()
            .map(|s| s.instances.len())
            .collect();
        let replicas: Vec<usize> = plan.segments.iter().map(|s| s.replicas).collect();
        assert_eq!(instances, replicas, "one instance per replica");
        assert_same_as_whole(runtime, &bytes, &pipeline, 12);
    }
}

#[test]
fn hybrid_plans_run_on_the_cpu_backend_with_the_whole_models_outputs() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    check_hybrid_on(&CpuBackend::new(runtime.clone(), 1, false), &runtime);
}

#[test]
fn hybrid_plans_run_on_simulated_devices_with_the_whole_models_outputs() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let backend = simulated_with_cpu(&runtime);
    check_hybrid_on(&backend, &runtime);
    // The stages say where they run.
    let model = fc_with_a_cpu_operator();
    let graph = Graph::new(&model).expect("graph");
    let pipeline = Pipeline::from_models(
        &hybrid_fc_plan(&graph, 2)
            .segment_models(&graph)
            .expect("segment models"),
        &backend,
    )
    .expect("pipeline");
    let described: Vec<String> = pipeline
        .stats()
        .stages
        .iter()
        .map(|s| s.instances[0].clone())
        .collect();
    assert!(
        described
            .iter()
            .any(|d| d.starts_with("simulated Edge TPU")),
        "{described:?}"
    );
    assert!(
        described
            .iter()
            .any(|d| d.starts_with("tflite-cpu host") && d.contains("simulated")),
        "{described:?}"
    );
}

#[test]
fn simulated_devices_that_compute_nothing_refuse_cpu_segments() {
    let model = fc_with_a_cpu_operator();
    let graph = Graph::new(&model).expect("graph");
    let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
    let plan = hybrid_fc_plan(&graph, 2);
    let cpu_index = plan
        .segments
        .iter()
        .position(|s| s.kind == SegmentKind::Cpu)
        .expect("a CPU segment");
    match Pipeline::from_models(
        &plan.segment_models(&graph).expect("segment models"),
        &backend,
    ) {
        Err(Error::Segment { index, source, .. }) => {
            assert_eq!(index, cpu_index);
            assert!(matches!(*source, Error::Unsupported { .. }), "{source}");
        }
        other => panic!("expected a segment error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn written_segments_carry_their_kind_and_replicas_to_the_pipeline() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let model = fc_with_a_cpu_operator();
    let bytes = model.to_bytes().expect("bytes");
    let graph = Graph::new(&model).expect("graph");
    let plan = hybrid_fc_plan(&graph, 3);
    let dir = std::env::temp_dir().join(format!("multitpu-hybrid-{}", std::process::id()));
    let written = plan
        .segment_models(&graph)
        .and_then(|models| models.write(&dir, "fc"))
        .expect("write");
    let files = written.segments;
    for (file, segment) in files.iter().zip(&plan.segments) {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(
            name.contains("_cpu"),
            segment.kind == SegmentKind::Cpu,
            "{name}"
        );
        assert_eq!(
            name.contains(&format!("_x{}", segment.replicas)),
            segment.replicas > 1,
            "{name}"
        );
    }
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    let pipeline = Pipeline::from_segment_files(&files, &backend).expect("pipeline");
    let instances: Vec<usize> = pipeline
        .stats()
        .stages
        .iter()
        .map(|s| s.instances.len())
        .collect();
    let replicas: Vec<usize> = plan.segments.iter().map(|s| s.replicas).collect();
    assert_eq!(
        instances, replicas,
        "the files' pipeline runs the plan's replicas"
    );
    assert_same_as_whole(&runtime, &bytes, &pipeline, 5);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The zoo's CNN with its middle operator made the custom operator TFLite lacks, and the
/// segment of `plan` that holds that operator.
fn custom_op_segment<'p>(model: &Model<'_>, plan: &'p Plan) -> &'p multitpu::segment::Segment {
    let custom = model
        .operators
        .iter()
        .position(|op| op.opcode.custom.as_deref() == Some(common::UNREGISTERED_OP))
        .expect("the custom operator");
    plan.segments
        .iter()
        .find(|s| s.ops.contains(&custom))
        .expect("a segment holds the custom operator")
}

/// A custom operator in the middle of a real model (the zoo's CNN with its middle operator
/// made `fake-op-double`): planned as a CPU segment between Edge TPU segments, and run on
/// the CPU backend with a kernel registered for it, the pipeline gives the whole model's
/// outputs.
#[test]
fn a_custom_operator_in_the_middle_is_a_cpu_segment_between_devices() {
    let (Some(runtime), Some(bytes)) = (common::tflite_runtime(), common::unregistered_op_model())
    else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("model");
    // The CPU backend below registers a kernel for the custom operator.
    let validation = Validation::strict().with_custom_op(common::UNREGISTERED_OP);
    let graph = Graph::with_validation(&model, &validation).expect("graph");
    let plan = Profiled::cost_model(EdgeTpuCostModel::usb_default())
        .with_cpu_segments(CPU_ESTIMATE)
        .plan(&graph, 2)
        .expect("plan");
    assert_eq!(
        custom_op_segment(&model, &plan).kind,
        SegmentKind::Cpu,
        "{:?}",
        plan.segments
    );
    assert!(
        plan.segments.iter().any(|s| s.kind == SegmentKind::EdgeTpu),
        "{:?}",
        plan.segments
    );
    // Any deterministic kernel will do: the whole model runs the same one.
    let zero = |_: &[multitpu::backend::OpInput<'_>],
                outputs: &mut [multitpu::backend::OpOutput<'_>]| {
        for output in outputs.iter_mut() {
            output.bytes_mut().fill(0);
        }
        Ok(())
    };
    let options = InterpreterOptions::default().with_custom_op(common::UNREGISTERED_OP, zero);
    let backend =
        CpuBackend::new(runtime.clone(), 1, false).with_custom_op(common::UNREGISTERED_OP, zero);
    let pipeline = Pipeline::from_models(
        &plan.segment_models(&graph).expect("segment models"),
        &backend,
    )
    .expect("pipeline");
    assert_same_as_whole_with(&runtime, &bytes, &options, &pipeline, 3);
}

/// On a real model, for budgets of 1 to 4 devices: no Edge TPU segment without Edge TPU
/// work, what only the CPU runs on CPU segments, a device used from a budget of 2 and never
/// more than the budget, a bottleneck that never rises with the budget;
/// the 4-device plan (CPU segments and replicas included) gives the whole model's outputs
/// on simulated devices.
fn check_real_model_plans(name: &str, bytes: &[u8]) {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let model = Model::from_bytes(bytes).expect("model");
    let graph = Graph::new(&model).expect("graph");
    let support = op_support(&model);
    // What may be a device segment is what the compiler would map whole.
    let device = DeviceSegments::new(&model, &support);
    let n = support.len();
    for start in 0..n {
        for end in start + 1..=n {
            let (program, cpu) = compiled_split(&model, &support, start..end);
            assert_eq!(
                device.allows(&(start..end)),
                !program.is_empty() && cpu.is_empty(),
                "{name}: {start}..{end}"
            );
        }
    }
    let planner =
        Profiled::cost_model(EdgeTpuCostModel::usb_default()).with_cpu_segments(CPU_ESTIMATE);
    let mut previous = f64::INFINITY;
    let mut plan = None;
    for budget in 1..=4 {
        let planned = planner.plan(&graph, budget).expect("plan");
        assert!(planned.devices() <= budget, "{name}: {planned:?}");
        for segment in &planned.segments {
            if segment.kind == SegmentKind::EdgeTpu {
                assert!(
                    segment.ops.clone().any(|op| support[op].is_edgetpu()),
                    "{name}: an Edge TPU segment without Edge TPU work: {segment:?}"
                );
            }
            // What only the CPU runs (DeepLab's final ARG_MAX, say) is on a CPU segment.
            let cpu_only = segment
                .ops
                .clone()
                .any(|op| matches!(support[op], OpSupport::Cpu(_)));
            assert!(
                !cpu_only || segment.kind == SegmentKind::Cpu,
                "{name}: {segment:?}"
            );
        }
        // Every model here has Edge TPU work; from two devices on, they do it faster than
        // this test's CPU profile (0.1 ms per operator) does the whole model.
        if budget >= 2 {
            assert!(
                planned.devices() >= 1,
                "{name}: budget {budget}: {planned:?}"
            );
        }
        let bottleneck = planned.bottleneck_s().expect("predicted");
        assert!(bottleneck <= previous, "{name}: budget {budget}");
        previous = bottleneck;
        plan = Some(planned);
    }
    let plan = plan.expect("a plan");
    let backend = simulated_with_cpu(&runtime);
    let pipeline = Pipeline::from_models(
        &plan.segment_models(&graph).expect("segment models"),
        &backend,
    )
    .expect("pipeline");
    assert_same_as_whole(&runtime, bytes, &pipeline, 2);
}

real_model_tests!(check_real_model_plans);

/// An operator the CPU runtime lacks is planned as a CPU segment, and checking the chained
/// segments ends in an error that names it (what `segment --verify` prints).
#[test]
fn an_operator_the_cpu_runtime_lacks_is_planned_on_the_cpu_and_named_by_the_check() {
    let (Some(runtime), Some(bytes)) = (common::tflite_runtime(), common::unregistered_op_model())
    else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("model");
    // Trusted: no kernel is given for the custom operator, the check finds it missing.
    let graph = Graph::with_validation(&model, &Validation::trusted()).expect("graph");
    let plan = Profiled::cost_model(EdgeTpuCostModel::usb_default())
        .plan(&graph, 2)
        .expect("plan");
    assert_eq!(custom_op_segment(&model, &plan).kind, SegmentKind::Cpu);
    let segments = plan
        .extract(&graph)
        .expect("segments")
        .iter()
        .map(Model::to_bytes)
        .collect::<Result<Vec<_>>>()
        .expect("bytes");
    let error = multitpu::verify::verify_chain(&runtime, &bytes, segments, 2, 1)
        .expect_err("TFLite lacks the operator");
    assert!(
        error.to_string().contains(common::UNREGISTERED_OP),
        "{error}"
    );
}

#[test]
fn an_exact_device_count_the_model_cannot_fill_says_how_many_it_can() {
    let Some(bytes) = common::zoo_model(common::zoo::LSTM) else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("model");
    let graph = Graph::new(&model).expect("graph");
    let exact = Profiled::cost_model(EdgeTpuCostModel::usb_default()).with_exact_devices();
    let most = (1..=4)
        .take_while(|&n| exact.plan(&graph, n).is_ok())
        .last()
        .expect("one Edge TPU segment at least");
    assert!(
        most < 4,
        "the float interface and the LSTM leave fewer than 4 device runs"
    );
    match exact.plan(&graph, most + 1) {
        Err(Error::DeviceSegmentCount { requested, max }) => {
            assert_eq!((requested, max), (most + 1, most));
        }
        other => panic!("expected DeviceSegmentCount, got {other:?}"),
    }
}
