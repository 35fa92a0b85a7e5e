//! Isolated checks with a real child on the real runtime: this test binary is the child (its
//! `main` starts with `run_if_child`, which is why it runs without the test harness).
//!
//! A model that crashes TFLite would need a defect validation misses; the parent's handling
//! of crashes, hangs and aborts is tested against stand-in children in `src/isolate/tests.rs`.
//! Here: the real child gives the in-process results, TFLite's errors come back typed, and a
//! model larger than the memory limit ends in an error, not in the death of this process.

mod common;

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multitpu::ChildExit;
use multitpu::Error;
use multitpu::backend::{Backend, CpuBackend, CustomOps, OpInput, OpOutput, Runtime};
use multitpu::isolate::{self, IsolatedBackend, Isolation, NamedModel};
use multitpu::model::builder::{ModelBuilder, Padding};
use multitpu::model::options::{BuiltinOptions, FieldValue};
use multitpu::model::{ElementType, Graph, Model, OpCode, Operator, Tensor, ops};
use multitpu::pipeline::PipelineBuilder;
use multitpu::segment::{Segmenter, UniformByOps};
use multitpu::verify::verify_chain;

/// `model` cut into `n` segments of about equal operator counts, named as `SegmentModels::write`
/// would name them.
fn segments(model: &[u8], n: usize) -> Vec<NamedModel> {
    let model = Model::from_bytes(model).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = UniformByOps.plan(&graph, n).unwrap();
    plan.extract(&graph)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let name = multitpu::deploy::segment_file_name(
                "model",
                i,
                n,
                multitpu::deploy::SegmentKind::EdgeTpu,
                1,
            );
            NamedModel::new(name, segment.to_bytes().unwrap())
        })
        .collect()
}

fn verify_chain_gives_the_in_process_report(runtime: &Runtime) {
    let zoo = [
        common::zoo::RESNET,
        common::zoo::LSTM,
        common::zoo::MULTI_IO,
    ]
    .map(|name| (name, common::zoo_model(name)));
    let shared = [
        "MNISTnet_v2_uint8_quant.tflite",
        "keras_lstm_mnist_ptq.tflite",
    ]
    .map(|name| (name, common::shared_model(name)));
    for (name, bytes) in zoo.into_iter().chain(shared) {
        let Some(bytes) = bytes else { continue };
        let parts = segments(&bytes, 3);
        let isolated = Isolation::new()
            .verify_chain(runtime, &NamedModel::new(name, bytes.clone()), &parts, 3, 7)
            .unwrap();
        let in_process = verify_chain(
            runtime,
            &bytes,
            parts.iter().map(|p| p.bytes().to_vec()).collect(),
            3,
            7,
        )
        .unwrap();
        assert_eq!(isolated, in_process, "{name}");
        assert_eq!(isolated.identical, 3, "{name}: {isolated:?}");
    }
}

fn every_real_cpu_model_passes_the_check(runtime: &Runtime) {
    let models: Vec<NamedModel> = common::cpu_models()
        .into_iter()
        .map(|(name, bytes)| NamedModel::new(name, bytes))
        .collect();
    let start = Instant::now();
    Isolation::new().check(runtime, &models, 1, 0).unwrap();
    println!(
        "  {} models checked in one child in {:.1} s",
        models.len(),
        start.elapsed().as_secs_f64()
    );
}

fn tflite_errors_come_back_typed(runtime: &Runtime) {
    // Compiled for the Edge TPU: TFLite cannot resolve its custom op without the delegate.
    let compiled = common::compiled_zoo_model(common::zoo::CNN_INT8);
    let edgetpu = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
    let shared = common::shared_model(edgetpu);
    for (name, bytes) in [("compiled zoo model", compiled), (edgetpu, shared)] {
        let Some(bytes) = bytes else { continue };
        match Isolation::new().check(runtime, &[NamedModel::new(name, bytes)], 1, 0) {
            Err(Error::Runtime { call, message }) => {
                assert_eq!(call, "TfLiteInterpreterAllocateTensors");
                assert!(message.contains("edgetpu-custom-op"), "{message}");
            }
            other => panic!("{name}: expected a TFLite error, got {other:?}"),
        }
    }
}

fn a_model_larger_than_the_memory_limit_is_contained(runtime: &Runtime) {
    // A valid model whose tensors need 2 × 256 MiB, checked with 256 MiB of address space.
    let mut b = ModelBuilder::new(1);
    let x = b
        .input(
            "x",
            ElementType::U8,
            &[1, 8192, 8192, 4],
            Some(multitpu::model::builder::per_tensor(0.1, 0)),
        )
        .unwrap();
    let y = b.max_pool_2d(x, [1, 1], [1, 1], Padding::Valid).unwrap();
    b.output(y).unwrap();
    let model = b.build().unwrap();
    model.validate().unwrap();
    let model = NamedModel::new("the large model", model.to_bytes().unwrap());
    let result = Isolation::new()
        .with_memory_limit(Some(256 << 20))
        .check(runtime, &[model], 1, 0);
    println!("  256 MiB limit, 512 MiB of tensors: {result:?}");
    match result {
        Err(Error::Isolated {
            reason: ChildExit::OutOfMemory { .. } | ChildExit::Signal(_),
            what,
            ..
        }) => assert_eq!(what, "loading the large model"),
        // TFLite may also report the failed allocation itself.
        Err(Error::Runtime { .. }) => {}
        other => panic!("expected the child to run out of memory, got {other:?}"),
    }
}

/// The bytes of `segments`, for pipelines.
fn bytes_of(segments: &[NamedModel]) -> Vec<Arc<[u8]>> {
    segments.iter().map(|s| Arc::clone(s.bytes())).collect()
}

/// Runs `items` inputs made by `common::pattern` through a pipeline of `segments` on
/// `backend`, returning every output's bytes in order.
fn run_pipeline(backend: &dyn Backend, segments: &[Arc<[u8]>], items: usize) -> Vec<Vec<u8>> {
    let pipeline = PipelineBuilder::from_segments(segments, backend)
        .and_then(|b| b.build())
        .unwrap();
    let inputs = pipeline.inputs().to_vec();
    let mut outputs = Vec::new();
    for item in 0..items {
        let data: Vec<Vec<u8>> = inputs
            .iter()
            .map(|spec| {
                let mut data = common::pattern(spec.byte_size + item);
                data.drain(..item);
                data
            })
            .collect();
        let named: Vec<(&str, &[u8])> = inputs
            .iter()
            .zip(&data)
            .map(|(spec, d)| (spec.name.as_str(), d.as_slice()))
            .collect();
        pipeline.push(&named).unwrap();
    }
    pipeline.close().unwrap();
    for output in &pipeline {
        let output = output.unwrap();
        outputs.push(
            (0..output.len())
                .flat_map(|i| output.tensor(i).unwrap_or_default().to_vec())
                .collect(),
        );
    }
    outputs
}

fn isolated_stages_give_the_in_process_outputs(runtime: &Runtime) {
    for name in [
        common::zoo::RESNET,
        common::zoo::LSTM,
        common::zoo::CNN_INT8,
    ] {
        let Some(bytes) = common::zoo_model(name) else {
            continue;
        };
        let parts = bytes_of(&segments(&bytes, 3));
        let isolated = IsolatedBackend::new(runtime, Isolation::new());
        let in_process = CpuBackend::new(runtime.clone(), 1, false);
        let expected = run_pipeline(&in_process, &parts, 6);
        assert_eq!(run_pipeline(&isolated, &parts, 6), expected, "{name}");
        assert_eq!(expected.len(), 6);
    }
}

/// `x [1, 1, 1, 8] f32 -> LOCAL_RESPONSE_NORMALIZATION(radius 2^30) -> y`: TFLite 2.9's
/// kernel sums the window the radius spans, far outside the tensor, and dies of it on the
/// first invoke. Strict validation refuses the operator; the test trusts it to make a
/// crashing stage.
fn crashing_model() -> Vec<u8> {
    let tensor = |name: &'static str| Tensor {
        name: Cow::Borrowed(name),
        element_type: ElementType::F32,
        shape: vec![1, 1, 1, 8],
        shape_signature: None,
        quantization: None,
        data: None,
        is_variable: false,
        has_rank: true,
    };
    let options = BuiltinOptions::by_name("LocalResponseNormalizationOptions")
        .and_then(|o| o.with("radius", FieldValue::I32(1 << 30)))
        .and_then(|o| o.with("bias", FieldValue::F32(1.0)))
        .and_then(|o| o.with("alpha", FieldValue::F32(1.0)))
        .and_then(|o| o.with("beta", FieldValue::F32(0.5)))
        .expect("options");
    let lrn = Operator {
        opcode: OpCode {
            builtin: ops::LOCAL_RESPONSE_NORMALIZATION,
            custom: None,
            version: 1,
        },
        inputs: vec![Some(0)],
        outputs: vec![1],
        intermediates: Vec::new(),
        builtin_options: Some(options),
        custom_options: None,
        custom_options_format: 0,
        mutating_variable_inputs: Vec::new(),
    };
    Model::new(vec![tensor("x"), tensor("y")], vec![lrn], vec![0], vec![1])
        .to_bytes()
        .unwrap()
}

fn a_crashing_stage_fails_with_its_worker_and_loses_nothing_silently(runtime: &Runtime) {
    let model: Arc<[u8]> = Arc::from(crashing_model());
    // Strict validation refuses it before any worker starts.
    let strict = IsolatedBackend::new(runtime, Isolation::new());
    assert!(matches!(
        PipelineBuilder::from_segments(&[Arc::clone(&model)], &strict).and_then(|b| b.build()),
        Err(Error::Segment { .. })
    ));
    let trusting = IsolatedBackend::new(runtime, Isolation::new()).trusting_models();
    let pipeline = PipelineBuilder::from_segments(&[model], &trusting)
        .and_then(|b| b.build())
        .unwrap();
    let input = pipeline.inputs()[0].clone();
    let pushed = 5u64;
    let mut accepted = 0;
    for _ in 0..pushed {
        if pipeline
            .push(&[(&input.name, &vec![0u8; input.byte_size])])
            .is_ok()
        {
            accepted += 1;
        }
    }
    let _ = pipeline.close();
    let (mut popped, mut lost) = (0u64, Vec::new());
    loop {
        match pipeline.pop() {
            Ok(Some(_)) => popped += 1,
            Ok(None) => break,
            Err(Error::StageFailed { cause, lost: l, .. }) => {
                match cause.as_deref() {
                    Some(Error::Isolated {
                        reason: ChildExit::Signal(_),
                        what,
                        ..
                    }) => assert!(what.contains("invoking"), "{what}"),
                    other => panic!("expected the worker's death, got {other:?}"),
                }
                lost = l;
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    println!(
        "  crashing worker: {popped} popped, {} lost of {accepted} pushed",
        lost.len()
    );
    assert_eq!(popped + lost.len() as u64, accepted);
    assert!(!lost.is_empty());
}

/// `y = x + 1` by the custom operator `plus-one`, whose kernel the worker program (this test
/// binary, through `run_if_child_with`) registers.
fn plus_one_model() -> Vec<u8> {
    common::one_custom_node("plus-one")
}

fn plus_one(inputs: &[OpInput<'_>], outputs: &mut [OpOutput<'_>]) -> multitpu::Result<()> {
    let x = inputs[0].as_slice::<f32>()?;
    for (y, x) in outputs[0].as_mut_slice::<f32>()?.iter_mut().zip(x) {
        *y = x + 1.0;
    }
    Ok(())
}

fn custom_operators_run_in_the_workers(runtime: &Runtime) {
    let model: Arc<[u8]> = Arc::from(plus_one_model());
    let backend = IsolatedBackend::new(runtime, Isolation::new()).with_custom_op("plus-one");
    let pipeline = PipelineBuilder::from_segments(&[Arc::clone(&model)], &backend)
        .and_then(|b| b.build())
        .unwrap();
    pipeline
        .push_as(&[("x", &[1.0f32, 2.0, 3.0, 4.0][..])])
        .unwrap();
    let out = pipeline.pop().unwrap().unwrap();
    assert_eq!(out.tensor_f32(0).unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    // A name the worker program has no kernel for is the worker's typed error.
    let missing = IsolatedBackend::new(runtime, Isolation::new()).with_custom_op("plus-two");
    let mut renamed = Model::from_bytes(&model).unwrap().into_owned();
    renamed.operators[0].opcode.custom = Some(Cow::Borrowed("plus-two"));
    let renamed: Arc<[u8]> = Arc::from(renamed.to_bytes().unwrap());
    match PipelineBuilder::from_segments(&[renamed], &missing).and_then(|b| b.build()) {
        Err(Error::Segment { source, .. }) => {
            assert!(source.to_string().contains("plus-two"), "{source}")
        }
        other => panic!("{:?}", other.err()),
    }
}

fn a_hanging_worker_is_killed_at_the_time_limit(runtime: &Runtime) {
    // A program that never greets: the stage is refused once the time limit passes.
    let program = std::env::temp_dir().join(format!("multitpu-sleeper-{}", std::process::id()));
    std::fs::write(&program, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let isolation = Isolation::new()
        .with_program(&program)
        .with_timeout(Duration::from_millis(300));
    let backend = IsolatedBackend::new(runtime, isolation);
    // A small job fits in the pipe; a large one (the paper's fc N = 500, 0.8 MB) would
    // block a parent that wrote it itself, since the program never reads it.
    let large = multitpu::model::paper::fc(500).unwrap().to_bytes().unwrap();
    for model in [plus_one_model(), large] {
        let started = Instant::now();
        let result = backend
            .clone()
            .with_custom_op("plus-one")
            .prepare(Arc::from(model), 0);
        match result.err() {
            Some(Error::Isolated {
                reason: ChildExit::Timeout(_),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    std::fs::remove_file(&program).ok();
}

/// The largest windows validation lets through run: convolutions whose 3×3 filters are
/// dilated to span 32767 rows and columns (the most TFLite's 16-bit padding holds) and a
/// depthwise convolution of 2048 channels, all with SAME padding, checked in a child.
fn the_largest_windows_validation_allows_run(runtime: &Runtime) {
    let mut b = ModelBuilder::new(3);
    let q = Some(multitpu::model::builder::per_tensor(0.05, 0));
    let x = b.input("x", ElementType::I8, &[1, 6, 6, 8], q).unwrap();
    let same = Padding::Same;
    let relu = multitpu::model::builder::Activation::None;
    let y = b.conv2d(x, 8, [3, 3], [1, 1], same, relu).unwrap();
    let z = b
        .depthwise_conv2d(y, 256, [3, 3], [1, 1], same, relu)
        .unwrap();
    b.output(z).unwrap();
    let mut model = b.build().unwrap();
    for op in &mut model.operators {
        let options = op.builtin_options.take().expect("options");
        op.builtin_options = Some(
            options
                .with("dilation_h_factor", FieldValue::I32(16383))
                .and_then(|o| o.with("dilation_w_factor", FieldValue::I32(16383)))
                .expect("fields"),
        );
    }
    model.validate().expect("within the limits");
    let bytes = model.to_bytes().unwrap();
    Isolation::new()
        .check(
            runtime,
            &[NamedModel::new("the widest windows", bytes)],
            4,
            9,
        )
        .expect("TFLite runs the widest windows validation allows");
}

/// Marks this program, started by [`workers_die_with_their_parent`], as a parent that
/// starts a worker, leaves it busy and dies.
const ORPHANING_PARENT_ENV: &str = "MULTITPU_TEST_ORPHANING_PARENT";

/// Sleeps for a minute: a worker stuck in a kernel, as in a hang of TFLite's.
fn sleep_a_minute(_: &[OpInput<'_>], _: &mut [OpOutput<'_>]) -> multitpu::Result<()> {
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}

/// The parent that dies: a pipeline whose one stage's worker is busy in a kernel that
/// sleeps, its pid printed, then an abort (no destructor runs, nothing is closed politely).
fn orphan_a_busy_worker(runtime: &Runtime) -> ! {
    let mut model = Model::from_bytes(&plus_one_model()).unwrap().into_owned();
    model.operators[0].opcode.custom = Some(Cow::Borrowed("sleep-a-minute"));
    let model: Arc<[u8]> = Arc::from(model.to_bytes().unwrap());
    let backend = IsolatedBackend::new(runtime, Isolation::new()).with_custom_op("sleep-a-minute");
    let pipeline = PipelineBuilder::from_segments(&[model], &backend)
        .and_then(|b| b.build())
        .unwrap();
    pipeline.push_as(&[("x", &[1.0f32; 4][..])]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let worker = &pipeline.stats().stages[0].instances[0];
    println!("{worker}");
    std::process::abort()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it has exited).
fn exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn workers_die_with_their_parent(_: &Runtime) {
    let parent = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ORPHANING_PARENT_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!parent.status.success(), "the parent aborts");
    let said = String::from_utf8_lossy(&parent.stdout);
    // "isolated tflite-cpu (worker process <pid>, 1 thread)"
    let pid = said
        .split("worker process ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no worker pid in {said:?}"))
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(&pid) {
        assert!(
            Instant::now() < deadline,
            "worker {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test: its name and body.
type Test = (&'static str, fn(&Runtime));

fn main() -> ExitCode {
    let mut kernels = CustomOps::default();
    kernels.insert("plus-one", Arc::new(plus_one));
    kernels.insert("sleep-a-minute", Arc::new(sleep_a_minute));
    isolate::run_if_child_with(&kernels);
    let Some(runtime) = common::tflite_runtime() else {
        return ExitCode::SUCCESS;
    };
    if std::env::var_os(ORPHANING_PARENT_ENV).is_some() {
        orphan_a_busy_worker(&runtime);
    }
    let tests: &[Test] = &[
        (
            "verify_chain_gives_the_in_process_report",
            verify_chain_gives_the_in_process_report,
        ),
        (
            "every_real_cpu_model_passes_the_check",
            every_real_cpu_model_passes_the_check,
        ),
        (
            "tflite_errors_come_back_typed",
            tflite_errors_come_back_typed,
        ),
        (
            "a_model_larger_than_the_memory_limit_is_contained",
            a_model_larger_than_the_memory_limit_is_contained,
        ),
        (
            "isolated_stages_give_the_in_process_outputs",
            isolated_stages_give_the_in_process_outputs,
        ),
        (
            "a_crashing_stage_fails_with_its_worker_and_loses_nothing_silently",
            a_crashing_stage_fails_with_its_worker_and_loses_nothing_silently,
        ),
        (
            "custom_operators_run_in_the_workers",
            custom_operators_run_in_the_workers,
        ),
        (
            "a_hanging_worker_is_killed_at_the_time_limit",
            a_hanging_worker_is_killed_at_the_time_limit,
        ),
        (
            "workers_die_with_their_parent",
            workers_die_with_their_parent,
        ),
        (
            "the_largest_windows_validation_allows_run",
            the_largest_windows_validation_allows_run,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        let ok = catch_unwind(AssertUnwindSafe(|| test(&runtime))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
