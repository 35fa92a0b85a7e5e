//! The Edge TPU and simulated Edge TPU backends as pipeline stages, on the real TFLite 2.9
//! runtime and real models.
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_ZOO`, and checks the shared models too when
//! `MULTITPU_TEST_MODELS` is set (see `tests/common`). Tests that need Edge TPUs also need
//! `MULTITPU_EDGETPU_LIB` and `MULTITPU_EDGETPU_COMPILER`, with two USB devices
//! (`scripts/test` points them at the emulated Edge TPU).

mod common;

use std::process::Command;
use std::sync::Arc;

use multitpu::Error;
use multitpu::backend::{
    Backend, CpuBackend, DeviceSelector, EdgeTpuBackend, Interpreter, InterpreterOptions,
    Performance, Runtime, SimCompute, SimulatedEdgeTpuBackend, check_compiled,
};
use multitpu::deploy::EdgeTpuCompiler;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::{Graph, Model};
use multitpu::pipeline::PipelineBuilder;
use multitpu::segment::{Segmenter, UniformByParams};

use common::zoo;

const MOBILENET: &str = "mobilenet_v1_0.25_128_quant.tflite";
const MOBILENET_EDGETPU: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
const SSD_SEGMENTS: [&str; 2] = [
    "ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_2_edgetpu.tflite",
    "ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite",
];

/// What the whole model computes for `input` on one CPU interpreter.
fn reference(runtime: &Runtime, whole: &Arc<[u8]>, input: &[u8]) -> Vec<u8> {
    let mut interpreter =
        Interpreter::new(runtime, Arc::clone(whole), &InterpreterOptions::default()).unwrap();
    interpreter.set_input(0, input).unwrap();
    interpreter.invoke().unwrap();
    interpreter.output(0).unwrap().to_vec()
}

/// Float inputs in [-1, 1) for the paper's fc model, different for each `i`.
fn fc_input(i: usize) -> Vec<u8> {
    (0..64)
        .flat_map(|k| {
            let x = (((k * 37 + i * 11) % 200) as f32 / 100.0) - 1.0;
            x.to_le_bytes()
        })
        .collect()
}

#[test]
fn simulated_cpu_pipeline_matches_the_whole_model() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (whole, segments) = common::paper_fc_segments(300, 3, &UniformByParams);
    let backend = SimulatedEdgeTpuBackend::new(
        EdgeTpuCostModel::usb_default(),
        SimCompute::Cpu {
            runtime: runtime.clone(),
            threads: 1,
        },
    );
    let pipeline = PipelineBuilder::from_segments(&segments, &backend)
        .unwrap()
        .build()
        .unwrap();
    for stage in pipeline.stats().stages {
        let desc = &stage.instances[0];
        assert!(desc.starts_with("simulated Edge TPU (usb)"), "{desc}");
    }
    let name = pipeline.inputs()[0].name.clone();
    let inputs: Vec<Vec<u8>> = (0..6).map(fc_input).collect();
    for input in &inputs {
        pipeline.push(&[(&name, input)]).unwrap();
    }
    pipeline.close().unwrap();
    let outputs: Vec<Vec<u8>> = (&pipeline)
        .into_iter()
        .map(|o| o.unwrap().tensor(0).unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = inputs
        .iter()
        .map(|input| reference(&runtime, &whole, input))
        .collect();
    assert!(expected.windows(2).any(|w| w[0] != w[1]), "outputs vary");
    assert_eq!(outputs, expected);
    let stats = pipeline.stats();
    assert!(stats.stages.iter().all(|s| s.invokes == 6));
    // Every stage lasts at least its prediction.
    for (stage, segment) in stats.stages.iter().zip(&segments) {
        let predicted = backend.predict(segment).unwrap().latency_s;
        assert!(
            stage.latency_mean.as_secs_f64() >= predicted,
            "stage {}: mean {:?} < predicted {predicted} s",
            stage.index,
            stage.latency_mean
        );
    }
}

#[test]
fn skipped_outputs_have_the_interpreters_shapes() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let models = [
        common::zoo_model(zoo::MULTI_IO),
        common::zoo_model(zoo::LSTM),
        common::shared_model(MOBILENET),
    ];
    for bytes in models.into_iter().flatten() {
        let bytes: Arc<[u8]> = bytes.into();
        let skip = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip)
            .prepare(Arc::clone(&bytes), 0)
            .unwrap();
        let cpu = CpuBackend::new(runtime.clone(), 1, false)
            .prepare(bytes, 0)
            .unwrap();
        assert_eq!(skip.inputs(), cpu.inputs());
        assert_eq!(skip.outputs(), cpu.outputs());
    }
}

#[test]
fn simulation_refuses_compiled_models() {
    let Some(compiled) = common::compiled_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
    for bytes in [Some(compiled), common::shared_model(MOBILENET_EDGETPU)]
        .into_iter()
        .flatten()
    {
        let result = backend.prepare(bytes.into(), 0);
        assert!(
            matches!(&result, Err(Error::Unsupported { feature }) if feature.contains("compiled")),
            "{:?}",
            result.map(|s| s.describe())
        );
    }
}

#[test]
fn edgetpu_backend_refuses_uncompiled_segments() {
    let (Some(plain), Some(compiled)) = (
        common::zoo_model(zoo::CNN_INT8),
        common::compiled_zoo_model(zoo::CNN_INT8),
    ) else {
        return;
    };
    let err = check_compiled(&plain, 2).expect_err("a CPU model");
    assert!(matches!(err, Error::NotCompiled { index: 2 }), "{err:?}");
    assert!(err.to_string().contains("edgetpu_compiler"), "{err}");
    check_compiled(&compiled, 0).expect("compiled for the Edge TPU");
    if let Some(plain) = common::shared_model(MOBILENET) {
        assert!(matches!(
            check_compiled(&plain, 2),
            Err(Error::NotCompiled { index: 2 })
        ));
    }
    for name in [MOBILENET_EDGETPU].iter().chain(&SSD_SEGMENTS) {
        if let Some(bytes) = common::shared_model(name) {
            check_compiled(&bytes, 0).expect(name);
        }
    }
    // The paper's models, cut by multitpu, are not compiled either.
    let (_, segments) = common::paper_fc_segments(100, 2, &UniformByParams);
    for (i, segment) in segments.iter().enumerate() {
        let err = check_compiled(segment, i).expect_err("uncompiled segment");
        assert!(matches!(err, Error::NotCompiled { index } if index == i));
    }
}

/// Env var that makes `missing_library_child` act; set only by `missing_library_is_typed`.
const CHILD_ENV: &str = "MULTITPU_TEST_MISSING_EDGETPU_CHILD";

#[test]
fn missing_library_is_typed() {
    // `EdgeTpuBackend::load` reads `MULTITPU_EDGETPU_LIB` once per process, so the check runs
    // in a child process of this test binary with the variable pointing nowhere.
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args(["--exact", "missing_library_child", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env("MULTITPU_EDGETPU_LIB", "/nonexistent/libedgetpu.so.1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}");
    assert!(
        stdout.contains("CHILD: Library error"),
        "child did not run the check:\n{stdout}"
    );
}

#[test]
fn missing_library_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // runs only as the child of `missing_library_is_typed`
    }
    let err = EdgeTpuBackend::load().expect_err("no libedgetpu at that path");
    match &err {
        Error::Library(_) => println!("CHILD: Library error: {err}"),
        other => panic!("expected Error::Library, got {other:?}"),
    }
    assert!(err.to_string().contains("MULTITPU_EDGETPU_LIB"), "{err}");
}

/// The Edge TPU backend over every device, and the compiler, from the environment
/// (`scripts/test` points both at the emulated Edge TPU).
fn edgetpu_backend() -> Option<(EdgeTpuBackend, EdgeTpuCompiler)> {
    let runtime = common::tflite_runtime()?;
    let edgetpu = common::edgetpu_runtime()?;
    let compiler = common::edgetpu_compiler()?;
    let backend = EdgeTpuBackend::new(runtime, edgetpu)
        .expect("at least one Edge TPU")
        .performance(Performance::High);
    Some((backend, compiler))
}

#[test]
fn edgetpu_stage_runs_a_compiled_model_and_holds_its_device() {
    let Some((backend, compiler)) = edgetpu_backend() else {
        return;
    };
    let _devices = common::devices();
    let models = [
        common::zoo_model(zoo::DEPTHWISE),
        common::shared_model(MOBILENET),
    ];
    for plain in models.into_iter().flatten() {
        run_one_stage_on_device_0(&backend, &compiler, &plain);
    }
}

/// Compiles `plain` (refused before that), runs it as a stage on device 0, and checks the
/// device stays taken until the stage is dropped.
fn run_one_stage_on_device_0(backend: &EdgeTpuBackend, compiler: &EdgeTpuCompiler, plain: &[u8]) {
    let err = backend
        .prepare(Arc::from(plain), 0)
        .map(|s| s.describe())
        .expect_err("not compiled");
    assert!(matches!(err, Error::NotCompiled { index: 0 }), "{err:?}");
    let bytes: Arc<[u8]> = compiler.compile(plain).unwrap().model.into();
    let mut stage = backend.prepare(Arc::clone(&bytes), 0).unwrap();
    assert!(
        stage.describe().starts_with("edgetpu #0"),
        "{}",
        stage.describe()
    );
    let input = common::pattern(stage.inputs()[0].byte_size);
    let mut output = vec![0u8; stage.outputs()[0].byte_size];
    stage.run(&[&input], &mut [&mut output]).unwrap();
    assert!(output.iter().any(|&b| b != 0), "some scores");
    let err = backend
        .prepare(Arc::clone(&bytes), 0)
        .map(|s| s.describe())
        .expect_err("device 0 is taken");
    assert!(
        matches!(err, Error::DeviceTaken { index: 0, .. }),
        "{err:?}"
    );
    drop(stage);
    backend.prepare(bytes, 0).expect("released with the stage");
}

#[test]
fn edgetpu_pipeline_runs_compiled_segments_on_two_devices() {
    let Some((backend, compiler)) = edgetpu_backend() else {
        return;
    };
    assert!(backend.devices().len() >= 2, "two Edge TPUs");
    // The zoo's MobileNetV2 holds more parameters than one Edge TPU caches.
    let models = [
        common::zoo_model(zoo::MOBILENET_V2),
        common::shared_model(MOBILENET),
    ];
    for plain in models.into_iter().flatten() {
        run_two_segments(&backend, &compiler, &plain);
    }
}

/// Cuts `plain` in two, compiles both segments, and runs four equal items through them on
/// devices 0 and 1.
fn run_two_segments(backend: &EdgeTpuBackend, compiler: &EdgeTpuCompiler, plain: &[u8]) {
    let model = Model::from_bytes(plain).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = UniformByParams.plan(&graph, 2).unwrap();
    let _devices = common::devices();
    let mut builder = PipelineBuilder::new();
    for (i, segment) in plan.extract(&graph).unwrap().iter().enumerate() {
        let compiled = compiler.compile(&segment.to_bytes().unwrap()).unwrap();
        builder = builder.stage(backend.prepare(compiled.model.into(), i).unwrap());
    }
    let pipeline = builder.build().unwrap();
    let inputs: Vec<(String, Vec<u8>)> = pipeline
        .inputs()
        .iter()
        .map(|spec| (spec.name.clone(), common::pattern(spec.byte_size)))
        .collect();
    for _ in 0..4 {
        let named: Vec<(&str, &[u8])> = inputs
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        pipeline.push(&named).unwrap();
    }
    pipeline.close().unwrap();
    let outputs: Vec<_> = (&pipeline).into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(outputs.len(), 4);
    assert!(
        outputs.windows(2).all(|w| w[0].tensor(0) == w[1].tensor(0)),
        "same input, same output"
    );
}

#[test]
fn two_selectors_for_one_device_fail_at_build_time() {
    let (Some(runtime), Some(edgetpu)) = (common::tflite_runtime(), common::edgetpu_runtime())
    else {
        return;
    };
    let selectors: Vec<DeviceSelector> = ["usb:0", "usb:1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    EdgeTpuBackend::with_devices(runtime.clone(), edgetpu.clone(), &selectors)
        .expect("two USB devices");
    let same: Vec<DeviceSelector> = ["usb:0", ":0"].iter().map(|s| s.parse().unwrap()).collect();
    let err = EdgeTpuBackend::with_devices(runtime, edgetpu, &same).expect_err("one device twice");
    assert!(
        matches!(err, Error::DeviceTaken { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn model_helpers_build_valid_segments() {
    // Guards the helpers above: the segments chain into the whole model's interface.
    let (whole, segments) = common::paper_fc_segments(64, 2, &UniformByParams);
    let whole = Model::from_bytes(&whole).unwrap();
    let first = Model::from_bytes(&segments[0]).unwrap();
    let last = Model::from_bytes(&segments[1]).unwrap();
    assert_eq!(
        first.tensors[first.inputs[0]].name,
        whole.tensors[whole.inputs[0]].name
    );
    assert_eq!(
        last.tensors[last.outputs[0]].name,
        whole.tensors[whole.outputs[0]].name
    );
}
