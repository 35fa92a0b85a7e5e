//! The measured profilers against the real TFLite runtime and real models.
//!
//! No assertion here depends on how fast anything runs: latencies are only checked to be
//! positive and finite. Edge TPU profiling needs `MULTITPU_EDGETPU_LIB` and
//! `MULTITPU_EDGETPU_COMPILER` (`scripts/test` points them at the emulated Edge TPU).

mod common;

use multitpu::Error;
use multitpu::backend::{DeviceSelector, EdgeTpuRuntime, InterpreterOptions};
use multitpu::deploy::EdgeTpuCompiler;
use multitpu::model::Model;
use multitpu::model::figures::param_bytes;
use multitpu::profile::{CachedProfiler, CpuProfiler, EdgeTpuProfiler, Profiler};

use common::zoo;

const MNIST: &str = "MNISTnet_uint8_quant.tflite";
const MNIST_RESIDUAL: &str = "MNISTnet_v2_uint8_quant.tflite";
const INVOKING_ERROR: &str = "model_invoking_error.tflite";

/// A quick CPU profiler: few runs, enough to exercise warm-up and the median.
fn quick(runtime: multitpu::backend::Runtime) -> CpuProfiler {
    CpuProfiler {
        warmup: 1,
        runs: 3,
        ..CpuProfiler::new(runtime)
    }
}

#[test]
fn cpu_profiles_every_range_of_real_models() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let zoo = [zoo::CNN_INT8, zoo::RESNET].map(|name| (name, common::zoo_model(name)));
    let shared = [MNIST, MNIST_RESIDUAL].map(|name| (name, common::shared_model(name)));
    for (name, bytes) in zoo.into_iter().chain(shared) {
        let Some(bytes) = bytes else { continue };
        let runtime = runtime.clone();
        let model = Model::from_bytes(&bytes).expect("valid model");
        let profiler = quick(runtime);
        let n = model.operators.len();
        for start in 0..n {
            for end in start + 1..=n {
                let profile = profiler
                    .profile(&model, start..end)
                    .unwrap_or_else(|e| panic!("{name} {start}..{end}: {e}"));
                assert!(
                    profile.latency_s.is_finite() && profile.latency_s > 0.0,
                    "{name} {start}..{end}: {profile:?}"
                );
                assert_eq!(profile.on_chip_bytes, param_bytes(&model, &(start..end)));
                assert_eq!(profile.off_chip_bytes, 0);
            }
        }
        let whole = profiler.profile(&model, 0..n).expect("whole model");
        assert!(whole.on_chip_bytes > 0, "{name} has parameters");
    }
}

#[test]
fn cpu_profiler_errors_are_typed() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("valid model");
    let n = model.operators.len();
    let profiler = quick(runtime.clone());
    let reversed = std::ops::Range { start: 3, end: 2 };
    for range in [0..0, reversed, 0..n + 1, n..n + 2] {
        assert!(
            matches!(
                profiler.profile(&model, range.clone()),
                Err(Error::Invalid { .. })
            ),
            "{range:?}"
        );
    }
    let no_runs = CpuProfiler {
        runs: 0,
        ..CpuProfiler::new(runtime.clone())
    };
    assert!(matches!(
        no_runs.profile(&model, 0..n),
        Err(Error::Invalid { .. })
    ));
    let no_threads = CpuProfiler {
        options: multitpu::backend::InterpreterOptions::default().with_threads(0),
        ..CpuProfiler::new(runtime)
    };
    assert!(matches!(
        no_threads.profile(&model, 0..n),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn cpu_profiler_reports_runtime_failures() {
    let (Some(runtime), Some(bytes)) = (common::tflite_runtime(), common::unregistered_op_model())
    else {
        return;
    };
    for bytes in [Some(bytes), common::shared_model(INVOKING_ERROR)]
        .into_iter()
        .flatten()
    {
        let model = Model::from_bytes(&bytes).expect("valid model");
        let n = model.operators.len();
        let err = quick(runtime.clone())
            .profile(&model, 0..n)
            .expect_err("the model has an unknown custom op");
        assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
        let trusting = CpuProfiler {
            options: InterpreterOptions::default().with_trusted(true),
            ..quick(runtime.clone())
        };
        let err = trusting
            .profile(&model, 0..n)
            .expect_err("TFLite has no kernel for the custom op");
        assert!(matches!(err, Error::Runtime { .. }), "{err}");
    }
}

#[test]
fn cached_cpu_profiler_runs_each_range_once() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("valid model");
    let n = model.operators.len();
    let cached = CachedProfiler::new(quick(runtime));
    let first = cached.profile(&model, 0..n).expect("profiles");
    let second = cached.profile(&model, 0..n).expect("profiles");
    assert_eq!(first, second, "the second answer comes from the cache");
    assert_eq!(cached.calls(), 1);
    cached.profile(&model, 1..n).expect("profiles");
    assert_eq!(cached.calls(), 2);
    assert!(cached.profile(&model, 0..n + 1).is_err());
    assert_eq!(cached.calls(), 3);
}

#[test]
fn missing_compiler_and_library_are_typed_errors() {
    let err = EdgeTpuCompiler::at("/nonexistent-multitpu/edgetpu_compiler").unwrap_err();
    assert!(matches!(err, Error::ToolNotFound { .. }), "{err}");
    let err = EdgeTpuRuntime::from_path("/nonexistent-multitpu/libedgetpu.so.1").unwrap_err();
    assert!(matches!(err, Error::Library(_)), "{err}");

    // `load` looks for the compiler first, then the libraries: whatever this machine
    // lacks, the error names it.
    match EdgeTpuProfiler::load(DeviceSelector::default()) {
        Ok(profiler) => assert!(profiler.compiler.program().is_file()),
        Err(Error::ToolNotFound { program, hint }) => {
            assert!(EdgeTpuCompiler::find().is_err(), "{program}");
            assert!(hint.contains("MULTITPU_EDGETPU_COMPILER"));
        }
        Err(Error::Library(e)) => {
            assert!(EdgeTpuCompiler::find().is_ok(), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn edgetpu_profiles_real_segments() {
    let Some((tflite, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        return;
    };
    let _devices = common::devices();
    let models = [
        common::zoo_model(zoo::CNN_INT8),
        common::shared_model(MNIST),
    ];
    for bytes in models.into_iter().flatten() {
        let model = Model::from_bytes(&bytes).expect("valid model");
        let n = model.operators.len();
        let profiler = CachedProfiler::new(EdgeTpuProfiler::new(
            compiler.clone(),
            edgetpu.clone(),
            tflite.clone(),
            DeviceSelector::default(),
        ));
        for range in [0..n, 0..n / 2, n / 2..n] {
            let profile = profiler.profile(&model, range.clone()).expect("profiles");
            assert!(profile.latency_s.is_finite() && profile.latency_s > 0.0);
            assert!(
                profile.on_chip_bytes + profile.off_chip_bytes > 0,
                "{range:?}: {profile:?}"
            );
        }
        profiler.profile(&model, 0..n).expect("cached");
        assert_eq!(profiler.calls(), 3);
    }
}
