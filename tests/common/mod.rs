//! Shared set-up for integration tests: the real TFLite library and the real test models.
//!
//! Real models come from two folders. The zoo (`MULTITPU_ZOO`, made by `scripts/fetch-zoo`:
//! Keras models converted by the real TFLite converter, see `scripts/zoo.py`) is there on
//! every machine that runs `scripts/test`; the real-model suites always run on it. The
//! shared models (`MULTITPU_TEST_MODELS`, `../shared/models` where it exists) are extra
//! coverage: tests run on them too, and keep their assertions about those particular files,
//! when the folder is there.
//!
//! Tests that need the runtime, the zoo or the shared models skip loudly (`SKIPPED: ...` on
//! stderr) when their environment variable is unset, as in a plain `cargo test`; a test that
//! checks the zoo and the shared models says so for the part it skips. Under CI (env `CI`
//! set) a missing variable fails the test instead, so a misconfigured pipeline cannot pass
//! by skipping. The model folders are reached only through the helpers here, which is what
//! makes every skip loud: `tests/test_sources.rs` checks that no other test source names
//! their variables.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;

use multitpu::backend::Runtime;
use multitpu::model::{BUILTIN_CUSTOM, ElementType, Model, OpCode, Operator, Tensor};

/// Env var with the path of the TFLite C library.
pub const TFLITE_LIB_ENV: &str = "MULTITPU_TFLITE_LIB";
/// Env var with the directory of the zoo (`scripts/fetch-zoo`); read only by [`zoo_dir`].
const ZOO_ENV: &str = "MULTITPU_ZOO";
/// Env var with the directory of the shared real models (`../shared/models`); read only by
/// [`shared_dir`] and [`shared_model`].
const TEST_MODELS_ENV: &str = "MULTITPU_TEST_MODELS";

/// The models of the zoo (`scripts/zoo.py`); every one runs on TFLite's CPU kernels.
pub mod zoo {
    /// int8, float interface: conv, max pool, fully connected, softmax.
    pub const CNN_FLOAT_IO: &str = "cnn_int8_float_io.tflite";
    /// int8 interface: strided and same-padded conv, average pool, fully connected.
    pub const CNN_INT8: &str = "cnn_int8_io.tflite";
    /// uint8 interface: parallel branches joined by concatenation, mean.
    pub const INCEPTION_UINT8: &str = "inception_uint8_io.tflite";
    /// Residual blocks joined by ADD.
    pub const RESNET: &str = "resnet_int8.tflite";
    /// Depthwise separable convolutions.
    pub const DEPTHWISE: &str = "depthwise_separable_int8.tflite";
    /// One UNIDIRECTIONAL_SEQUENCE_LSTM, float interface.
    pub const LSTM: &str = "lstm_int8_float_io.tflite";
    /// MobileNetV2 at 224x224 with 8.8 M parameters, more than an Edge TPU caches.
    pub const MOBILENET_V2: &str = "mobilenet_v2_1.0_224_5089_int8.tflite";
    /// Two inputs, three outputs, one of which later operators also read.
    pub const MULTI_IO: &str = "multi_io_int8.tflite";
    /// Every model of the zoo.
    pub const ALL: &[&str] = &[
        CNN_FLOAT_IO,
        CNN_INT8,
        INCEPTION_UINT8,
        RESNET,
        DEPTHWISE,
        LSTM,
        MOBILENET_V2,
        MULTI_IO,
    ];
}

/// True under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Writes a skip notice where it is seen: straight to the stream, not `eprintln!`, which the
/// harness captures for passing tests.
pub fn skip_notice(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

/// The value of `var`, or `None` after printing a skip notice; panics under CI.
pub fn require_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(!under_ci(), "{var} must be set when CI is set ({what})");
            skip_notice(&format!("{var} is not set ({what})"));
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

/// A directory from `var`, which must exist when set.
fn dir_from(var: &str, value: String) -> PathBuf {
    let dir = PathBuf::from(value);
    assert!(dir.is_dir(), "{var}={} is not a directory", dir.display());
    dir
}

/// The zoo's directory from `MULTITPU_ZOO`.
pub fn zoo_dir() -> Option<PathBuf> {
    let value = require_env(ZOO_ENV, "directory of the test zoo, from scripts/fetch-zoo")?;
    Some(dir_from(ZOO_ENV, value))
}

/// The benchmark zoo's directory from `MULTITPU_BENCH_ZOO` (`scripts/fetch-zoo --bench`).
pub fn bench_zoo_dir() -> Option<PathBuf> {
    const BENCH_ZOO_ENV: &str = "MULTITPU_BENCH_ZOO";
    let value = require_env(
        BENCH_ZOO_ENV,
        "directory of the benchmark zoo, from scripts/fetch-zoo --bench",
    )?;
    Some(dir_from(BENCH_ZOO_ENV, value))
}

/// The shared models' directory from `MULTITPU_TEST_MODELS`, or `None` after a skip
/// notice for what needs them; panics under CI, where it must be set.
fn shared_dir_for(what: &str) -> Option<PathBuf> {
    let value = require_env(TEST_MODELS_ENV, what)?;
    Some(dir_from(TEST_MODELS_ENV, value))
}

/// The shared models' directory from `MULTITPU_TEST_MODELS`, or `None` after a skip notice
/// (they are extra coverage beside the zoo); panics under CI, where it must be set.
pub fn shared_dir() -> Option<PathBuf> {
    shared_dir_for("the shared models, checked beside the zoo")
}

fn read_model(dir: PathBuf, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read test model {}: {e}", path.display()))
}

/// The bytes of zoo model `name`; panics if the file cannot be read.
pub fn zoo_model(name: &str) -> Option<Vec<u8>> {
    Some(read_model(zoo_dir()?, name))
}

/// The bytes of shared model `name`, or `None` after a skip notice naming it when the
/// shared models are not there; panics under CI, or if the file cannot be read.
pub fn shared_model(name: &str) -> Option<Vec<u8>> {
    let dir = shared_dir_for(&format!("shared model {name}"))?;
    Some(read_model(dir, name))
}

/// The shared models of [`CPU_MODELS`], as `(file name, bytes)`: none, after a skip notice,
/// when the shared models are not there.
pub fn shared_cpu_models() -> Vec<(String, Vec<u8>)> {
    let Some(dir) = shared_dir_for("the shared models that run on TFLite's CPU kernels") else {
        return Vec::new();
    };
    CPU_MODELS
        .iter()
        .map(|name| (name.to_string(), read_model(dir.clone(), name)))
        .collect()
}

/// Both the runtime and the bytes of zoo model `name`, or `None` if either is unavailable.
pub fn runtime_and_zoo_model(name: &str) -> Option<(Runtime, Vec<u8>)> {
    let runtime = tflite_runtime()?;
    let bytes = zoo_model(name)?;
    Some((runtime, bytes))
}

/// Every model that runs on TFLite's CPU kernels, as `(file name, bytes)`: the zoo's, then
/// the shared ones of [`CPU_MODELS`] when the shared models are there.
pub fn cpu_models() -> Vec<(String, Vec<u8>)> {
    let mut models = Vec::new();
    if let Some(dir) = zoo_dir() {
        for name in zoo::ALL {
            models.push((name.to_string(), read_model(dir.clone(), name)));
        }
    }
    models.extend(shared_cpu_models());
    models
}

/// Every `.tflite` file of the zoo and of the shared models, as `(file name, bytes)`
/// sorted by name: compiled Edge TPU models and models TFLite cannot run included.
pub fn every_model_file() -> Vec<(String, Vec<u8>)> {
    let mut models = Vec::new();
    for dir in [zoo_dir(), shared_dir()].into_iter().flatten() {
        for entry in std::fs::read_dir(&dir).expect("list the test models") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "tflite") {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("UTF-8 file name")
                    .to_owned();
                let bytes = std::fs::read(&path).expect("read model");
                models.push((name, bytes));
            }
        }
    }
    models.sort();
    models
}

/// Deterministic, non-constant input bytes of length `len`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// The shared models that run on TFLite's CPU kernels.
pub const CPU_MODELS: &[&str] = &[
    "MNISTnet_uint8_quant.tflite",
    "MNISTnet_v2_uint8_quant.tflite",
    "mobilenet_v1_0.25_128_quant.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "deeplabv3_mnv2_dm05_pascal_quant.tflite",
    "keras_lstm_mnist_ptq.tflite",
];

/// One `#[test]` per zoo model, each calling `$check(file name, bytes)`, so the models run
/// in parallel and a failure names its model; and `shared_models`, which calls it on each of
/// [`CPU_MODELS`], or says it skips them when the shared models are not there.
#[macro_export]
macro_rules! real_model_tests {
    ($check:ident) => {
        mod zoo_models {
            fn check(name: &str) {
                if let Some(bytes) = $crate::common::zoo_model(name) {
                    super::$check(name, &bytes);
                }
            }
            #[test]
            fn cnn_float_io() {
                check($crate::common::zoo::CNN_FLOAT_IO);
            }
            #[test]
            fn cnn_int8() {
                check($crate::common::zoo::CNN_INT8);
            }
            #[test]
            fn inception_uint8() {
                check($crate::common::zoo::INCEPTION_UINT8);
            }
            #[test]
            fn resnet() {
                check($crate::common::zoo::RESNET);
            }
            #[test]
            fn depthwise_separable() {
                check($crate::common::zoo::DEPTHWISE);
            }
            #[test]
            fn lstm() {
                check($crate::common::zoo::LSTM);
            }
            #[test]
            fn mobilenet_v2() {
                check($crate::common::zoo::MOBILENET_V2);
            }
            #[test]
            fn multi_io() {
                check($crate::common::zoo::MULTI_IO);
            }
        }
        #[test]
        fn shared_models() {
            for (name, bytes) in $crate::common::shared_cpu_models() {
                $check(&name, &bytes);
            }
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
pub fn edgetpu_compiler() -> Option<multitpu::deploy::EdgeTpuCompiler> {
    let path = require_env(
        EDGETPU_COMPILER_ENV,
        "path of edgetpu_compiler, e.g. from scripts/emulate",
    )?;
    match multitpu::deploy::EdgeTpuCompiler::at(&path) {
        Ok(compiler) => Some(compiler),
        Err(e) => panic!("{EDGETPU_COMPILER_ENV}={path}: {e}"),
    }
}

/// TFLite, libedgetpu and `edgetpu_compiler`, or `None` after a skip notice for each that
/// is missing (all are asked, so every notice is printed).
pub fn edgetpu_toolchain() -> Option<(
    Runtime,
    multitpu::backend::EdgeTpuRuntime,
    multitpu::deploy::EdgeTpuCompiler,
)> {
    let (runtime, edgetpu, compiler) = (tflite_runtime(), edgetpu_runtime(), edgetpu_compiler());
    Some((runtime?, edgetpu?, compiler?))
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

/// Zoo model `name` compiled by `edgetpu_compiler` from the environment (the emulated one
/// under `scripts/test`): a model with an `edgetpu-custom-op`.
pub fn compiled_zoo_model(name: &str) -> Option<Vec<u8>> {
    let compiler = edgetpu_compiler()?;
    let bytes = zoo_model(name)?;
    let compiled = compiler
        .compile(&bytes)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
    Some(compiled.model)
}

/// The custom operator of [`unregistered_op_model`], which no TFLite build registers (the
/// name of the shared `model_invoking_error.tflite`'s).
pub const UNREGISTERED_OP: &str = "fake-op-double";

/// A zoo model whose middle operator is turned into the custom operator
/// [`UNREGISTERED_OP`]: it reads, validates and cuts like any model, and TFLite refuses it
/// when allocating tensors.
pub fn unregistered_op_model() -> Option<Vec<u8>> {
    let bytes = zoo_model(zoo::CNN_INT8)?;
    let mut model = multitpu::model::Model::from_bytes(&bytes)
        .expect("zoo model reads")
        .into_owned();
    let middle = model.operators.len() / 2;
    let op = &mut model.operators[middle];
    op.opcode = multitpu::model::OpCode {
        builtin: multitpu::model::ops::CUSTOM,
        custom: Some(UNREGISTERED_OP.into()),
        version: 1,
    };
    op.builtin_options = None;
    Some(model.to_bytes().expect("the writer takes the model"))
}

/// A float `[1, 4]` activation named `name`, for hand-built models.
pub fn float_tensor(name: &'static str) -> Tensor<'static> {
    Tensor {
        name: Cow::Borrowed(name),
        element_type: ElementType::F32,
        shape: vec![1, 4],
        shape_signature: None,
        quantization: None,
        data: None,
        is_variable: false,
        has_rank: true,
    }
}

/// A `CUSTOM` node `name` from tensor `input` to tensor `output`, with `options` (none when
/// empty).
pub fn custom_node(
    name: &'static str,
    input: usize,
    output: usize,
    options: &[u8],
) -> Operator<'static> {
    Operator {
        opcode: OpCode {
            builtin: BUILTIN_CUSTOM,
            custom: Some(Cow::Borrowed(name)),
            version: 1,
        },
        inputs: vec![Some(input)],
        outputs: vec![output],
        intermediates: Vec::new(),
        builtin_options: None,
        custom_options: (!options.is_empty()).then(|| Cow::Owned(options.to_vec())),
        custom_options_format: 0,
        mutating_variable_inputs: Vec::new(),
    }
}

/// One `CUSTOM` node named `name`, float `[1, 4]` in (`x`) and out (`y`), as a file.
pub fn one_custom_node(name: &'static str) -> Vec<u8> {
    let tensors = vec![float_tensor("x"), float_tensor("y")];
    Model::new(
        tensors,
        vec![custom_node(name, 0, 1, &[])],
        vec![0],
        vec![1],
    )
    .to_bytes()
    .unwrap()
}

/// The paper's fc model (N = 1000), `items` inputs (input `i` a pattern turned by `i`
/// bytes), and the output the whole model gives for each on a TFLite CPU interpreter.
pub fn fc_items_and_outputs(
    runtime: &Runtime,
    items: usize,
) -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let bytes = multitpu::model::paper::fc(1000)
        .and_then(|model| model.to_bytes())
        .expect("the paper's fc model");
    let mut whole = multitpu::verify::SegmentChain::new(
        runtime,
        [bytes.clone()],
        &multitpu::backend::InterpreterOptions::default(),
    )
    .expect("the whole model loads");
    let input = whole.interpreters()[0].inputs()[0].clone();
    let output = whole.interpreters()[0].outputs()[0].name.clone();
    let inputs: Vec<Vec<u8>> = (0..items)
        .map(|i| {
            let mut data = pattern(input.byte_size);
            data.rotate_left(i % input.byte_size);
            data
        })
        .collect();
    let outputs = inputs
        .iter()
        .map(|data| {
            let produced = whole
                .run(&[(input.name.clone(), data.clone())])
                .expect("the whole model runs");
            produced
                .into_iter()
                .find(|(name, _)| *name == output)
                .map(|(_, bytes)| bytes)
                .expect("the model's output")
        })
        .collect();
    (bytes, inputs, outputs)
}
