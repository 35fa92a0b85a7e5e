//! Shared set-up for integration tests: the real TFLite library and the real test models.
//!
//! Tests that need them skip loudly (`SKIPPED: ...` on stderr) when the environment
//! variables are unset, except under CI (env `CI` set), where a missing variable fails the
//! test so a misconfigured pipeline cannot pass by skipping everything.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::Write;
use std::path::PathBuf;

use multitpu::backend::Runtime;

/// Env var with the path of the TFLite C library.
pub const TFLITE_LIB_ENV: &str = "MULTITPU_TFLITE_LIB";
/// Env var with the directory of the real test models (`shared/models`).
pub const TEST_MODELS_ENV: &str = "MULTITPU_TEST_MODELS";

/// The value of `var`, or `None` after printing a skip notice; panics under CI.
pub fn require_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must be set when CI is set ({what})"
            );
            // Straight to the stream, not `eprintln!`: the harness captures that for passing
            // tests, and a skip must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {var} is not set ({what})");
            None
        }
    }
}

/// The TFLite runtime from `MULTITPU_TFLITE_LIB`; panics if the variable is set but the
/// library does not load.
pub fn tflite_runtime() -> Option<Runtime> {
    let path = require_env(TFLITE_LIB_ENV, "path of libtensorflowlite_c.so")?;
    match Runtime::from_path(&path) {
        Ok(rt) => Some(rt),
        Err(e) => panic!("{TFLITE_LIB_ENV}={path} does not load: {e}"),
    }
}

/// The directory of the real test models from `MULTITPU_TEST_MODELS`.
pub fn test_models_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(require_env(
        TEST_MODELS_ENV,
        "directory of the test models",
    )?);
    assert!(
        dir.is_dir(),
        "{TEST_MODELS_ENV}={} is not a directory",
        dir.display()
    );
    Some(dir)
}

/// The bytes of test model `name`; panics if the file cannot be read.
pub fn model_bytes(name: &str) -> Option<Vec<u8>> {
    let path = test_models_dir()?.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => panic!("cannot read test model {}: {e}", path.display()),
    }
}

/// Both the runtime and the bytes of model `name`, or `None` if either is unavailable.
pub fn runtime_and_model(name: &str) -> Option<(Runtime, Vec<u8>)> {
    let runtime = tflite_runtime()?;
    let bytes = model_bytes(name)?;
    Some((runtime, bytes))
}

/// Deterministic, non-constant input bytes of length `len`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// The models of `shared/models` that run on TFLite's CPU kernels.
pub const CPU_MODELS: &[&str] = &[
    "MNISTnet_uint8_quant.tflite",
    "MNISTnet_v2_uint8_quant.tflite",
    "mobilenet_v1_0.25_128_quant.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "deeplabv3_mnv2_dm05_pascal_quant.tflite",
    "keras_lstm_mnist_ptq.tflite",
];

/// One `#[test]` per model of [`CPU_MODELS`], each calling `$check(file name)`, so the
/// models run in parallel and a failure names its model.
#[macro_export]
macro_rules! cpu_model_tests {
    ($check:ident) => {
        #[test]
        fn mnistnet() {
            $check($crate::common::CPU_MODELS[0]);
        }
        #[test]
        fn mnistnet_v2_residual() {
            $check($crate::common::CPU_MODELS[1]);
        }
        #[test]
        fn mobilenet_v1() {
            $check($crate::common::CPU_MODELS[2]);
        }
        #[test]
        fn mobilenet_v2_uint8() {
            $check($crate::common::CPU_MODELS[3]);
        }
        #[test]
        fn mobilenet_v2_tf2_int8() {
            $check($crate::common::CPU_MODELS[4]);
        }
        #[test]
        fn deeplab_v3() {
            $check($crate::common::CPU_MODELS[5]);
        }
        #[test]
        fn keras_lstm() {
            $check($crate::common::CPU_MODELS[6]);
        }
    };
}

/// Env var with the path of libedgetpu (or of the emulated one, `scripts/emulate`).
pub const EDGETPU_LIB_ENV: &str = "MULTITPU_EDGETPU_LIB";
/// Env var with the path of `edgetpu_compiler` (or of the emulated one).
pub const EDGETPU_COMPILER_ENV: &str = "MULTITPU_EDGETPU_COMPILER";

/// libedgetpu from `MULTITPU_EDGETPU_LIB` (`scripts/test` points it at the emulated Edge
/// TPU); panics if the variable is set but the library does not load.
pub fn edgetpu_runtime() -> Option<multitpu::backend::EdgeTpuRuntime> {
    let path = require_env(
        EDGETPU_LIB_ENV,
        "path of libedgetpu, e.g. from scripts/emulate",
    )?;
    match multitpu::backend::EdgeTpuRuntime::from_path(&path) {
        Ok(rt) => Some(rt),
        Err(e) => panic!("{EDGETPU_LIB_ENV}={path} does not load: {e}"),
    }
}

/// `edgetpu_compiler` from `MULTITPU_EDGETPU_COMPILER`.
pub fn edgetpu_compiler() -> Option<multitpu::profile::EdgeTpuCompiler> {
    let path = require_env(
        EDGETPU_COMPILER_ENV,
        "path of edgetpu_compiler, e.g. from scripts/emulate",
    )?;
    match multitpu::profile::EdgeTpuCompiler::at(&path) {
        Ok(compiler) => Some(compiler),
        Err(e) => panic!("{EDGETPU_COMPILER_ENV}={path}: {e}"),
    }
}

/// Held by every test that opens Edge TPUs: a device serves one delegate at a time, and the
/// tests of one binary run in parallel.
pub fn devices() -> std::sync::MutexGuard<'static, ()> {
    static DEVICES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DEVICES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The paper's fc model with `hidden` neurons, serialized, and its `count` segments under
/// `segmenter`, serialized.
pub fn paper_fc_segments(
    hidden: usize,
    count: usize,
    segmenter: &dyn multitpu::segment::Segmenter,
) -> (std::sync::Arc<[u8]>, Vec<std::sync::Arc<[u8]>>) {
    let model = multitpu::model::paper::fc(hidden).unwrap();
    let graph = multitpu::model::Graph::new(&model).unwrap();
    let plan = multitpu::segment::Plan::new(&graph, count, segmenter).unwrap();
    let segments = plan
        .extract(&graph)
        .unwrap()
        .iter()
        .map(|m| std::sync::Arc::from(m.to_bytes().unwrap()))
        .collect();
    (model.to_bytes().unwrap().into(), segments)
}
