//! The TFLite and Edge TPU backends against the real TFLite 2.9 C library and real models.
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_ZOO`, and checks the shared models too when
//! `MULTITPU_TEST_MODELS` is set (see `tests/common`); tests that need an Edge TPU also need
//! `MULTITPU_EDGETPU_LIB` and `MULTITPU_EDGETPU_COMPILER` (`scripts/test` points them at the
//! emulated Edge TPU).

mod common;

use std::path::Path;

use multitpu::Error;
use multitpu::backend::{DeviceSelector, EdgeTpuRuntime, Interpreter, InterpreterOptions, Runtime};
use multitpu::model::ElementType;
use multitpu::model::builder::SplitMix64;
use multitpu::tensor::TensorSpec;
use multitpu::verify::random_tensor;

use common::zoo;

const MNIST: &str = "MNISTnet_uint8_quant.tflite";
const MOBILENET: &str = "mobilenet_v1_0.25_128_quant.tflite";
const MOBILENET_EDGETPU: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
const INVOKING_ERROR: &str = "model_invoking_error.tflite";

/// Fills every input with the same random values (floats in [-1, 1)), invokes, and returns
/// all outputs.
fn run_once(interpreter: &mut Interpreter) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::new(5);
    for i in 0..interpreter.inputs().len() {
        let data = random_tensor(&interpreter.inputs()[i], &mut rng).expect("random input");
        interpreter.set_input(i, &data).expect("set_input");
    }
    interpreter.invoke().expect("invoke");
    (0..interpreter.outputs().len())
        .map(|i| {
            let borrowed = interpreter.output(i).expect("output").to_vec();
            let mut copied = vec![0u8; interpreter.outputs()[i].byte_size];
            interpreter
                .copy_output(i, &mut copied)
                .expect("copy_output");
            assert_eq!(borrowed, copied, "output() and copy_output() disagree");
            borrowed
        })
        .collect()
}

/// Checks a tensor's name, type and shape, and that a quantized type has a positive scale
/// (and a float one none).
fn assert_tensor(info: &TensorSpec, name: &str, element_type: ElementType, shape: &[usize]) {
    assert_eq!(info.name, name);
    assert_eq!(info.element_type, element_type);
    assert_eq!(info.shape, shape);
    let size = element_type.size().expect("fixed-size type");
    assert_eq!(info.byte_size, size * shape.iter().product::<usize>());
    match &info.quantization {
        Some(quantization) => assert!(quantization.scale.iter().all(|&s| s > 0.0), "{name}"),
        None => assert_eq!(element_type, ElementType::F32, "{name} is quantized"),
    }
}

/// Runs a model twice on the same input, on two interpreters, and checks both give the same
/// bytes; a model without state (no variable tensors, which an LSTM keeps from one invoke
/// to the next) must also repeat its first output. Returns the first interpreter and its
/// first outputs.
fn check_repeatable(runtime: &Runtime, name: &str, bytes: Vec<u8>) -> (Interpreter, Vec<Vec<u8>>) {
    let stateful = multitpu::model::Model::from_bytes(&bytes)
        .expect("model reads")
        .tensors
        .iter()
        .any(|t| t.is_variable);
    let bytes: std::sync::Arc<[u8]> = bytes.into();
    let mut runs = Vec::new();
    let mut interpreters = Vec::new();
    for _ in 0..2 {
        let mut interpreter =
            Interpreter::new(runtime, bytes.clone(), &InterpreterOptions::default())
                .expect("interpreter");
        runs.push([run_once(&mut interpreter), run_once(&mut interpreter)]);
        interpreters.push(interpreter);
    }
    assert_eq!(runs[0], runs[1], "{name}: two interpreters differ");
    let [first, second] = runs.swap_remove(0);
    if !stateful {
        assert_eq!(first, second, "{name}: two runs on the same input differ");
    }
    (interpreters.swap_remove(0), first)
}

/// [`check_repeatable`], and the outputs are not one repeated byte. (Some shared models
/// legitimately give constant outputs on random inputs: deeplab's class map is all
/// background.)
fn check_deterministic(runtime: &Runtime, name: &str, bytes: Vec<u8>) -> Interpreter {
    let (interpreter, first) = check_repeatable(runtime, name, bytes);
    assert!(
        first.iter().flatten().any(|&b| b != first[0][0]),
        "{name}: constant output, the model did not really run"
    );
    interpreter
}

#[test]
fn runtime_reports_version_2_9() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    assert!(
        runtime.version().starts_with("2.9."),
        "{}",
        runtime.version()
    );
    let clone = runtime.clone();
    assert_eq!(clone.version(), runtime.version());
    // The process-wide instance loads from the same environment variable.
    let shared = Runtime::load().expect("Runtime::load with MULTITPU_TFLITE_LIB set");
    assert_eq!(shared.version(), runtime.version());
}

#[test]
fn outputs_read_before_the_first_invoke_are_zeroed() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    for (name, bytes) in common::cpu_models() {
        let interpreter =
            Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
        for (i, info) in interpreter.outputs().iter().enumerate() {
            let output = interpreter.output(i).expect("output");
            assert_eq!(output.len(), info.byte_size, "{name}");
            assert!(output.iter().all(|&b| b == 0), "{name}: output {i}");
        }
    }
}

#[test]
fn real_models_run_deterministically_on_cpu() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    for name in zoo::ALL {
        if let Some(bytes) = common::zoo_model(name) {
            check_deterministic(&runtime, name, bytes);
        }
    }
    for name in common::CPU_MODELS {
        if let Some(bytes) = common::shared_model(name) {
            check_repeatable(&runtime, name, bytes);
        }
    }
}

#[test]
fn the_interface_is_the_one_the_converter_wrote() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    // TensorFlow's converter names a signature's inputs `serving_default_<name>:0` and its
    // outputs after the call that makes them.
    let zoo_interfaces = [
        (zoo::CNN_FLOAT_IO, ElementType::F32, [1, 28, 28, 1]),
        (zoo::CNN_INT8, ElementType::I8, [1, 32, 32, 3]),
        (zoo::INCEPTION_UINT8, ElementType::U8, [1, 32, 32, 3]),
    ];
    for (name, element_type, input_shape) in zoo_interfaces {
        let Some(bytes) = common::zoo_model(name) else {
            return;
        };
        let interpreter = check_deterministic(&runtime, name, bytes);
        assert_eq!(interpreter.inputs().len(), 1);
        assert_eq!(interpreter.outputs().len(), 1);
        let input = "serving_default_image:0";
        let output = "StatefulPartitionedCall:0";
        assert_tensor(&interpreter.inputs()[0], input, element_type, &input_shape);
        assert_tensor(&interpreter.outputs()[0], output, element_type, &[1, 10]);
        assert_eq!(interpreter.input_index(input).ok(), Some(0));
        assert_eq!(interpreter.output_index(output).ok(), Some(0));
    }
    if let Some(bytes) = common::shared_model(MNIST) {
        let interpreter = check_deterministic(&runtime, MNIST, bytes);
        assert_eq!(interpreter.inputs().len(), 1);
        assert_eq!(interpreter.outputs().len(), 1);
        let u8 = ElementType::U8;
        assert_tensor(&interpreter.inputs()[0], "input", u8, &[1, 28, 28, 1]);
        let output = "MNISTnet/Predictions/Reshape_1";
        assert_tensor(&interpreter.outputs()[0], output, u8, &[1, 10]);
    }
    if let Some(bytes) = common::shared_model(MOBILENET) {
        let interpreter = check_deterministic(&runtime, MOBILENET, bytes);
        let u8 = ElementType::U8;
        assert_tensor(&interpreter.inputs()[0], "input", u8, &[1, 128, 128, 3]);
        let output = "MobilenetV1/Predictions/Reshape_1";
        assert_tensor(&interpreter.outputs()[0], output, u8, &[1, 1001]);
        assert_eq!(interpreter.input_index("input").ok(), Some(0));
        assert_eq!(interpreter.output_index(output).ok(), Some(0));
    }
}

#[test]
fn several_inputs_and_outputs_are_found_by_name() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::MULTI_IO) else {
        return;
    };
    let interpreter = check_deterministic(&runtime, zoo::MULTI_IO, bytes);
    let inputs: Vec<&str> = interpreter
        .inputs()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        inputs,
        ["serving_default_extra:0", "serving_default_image:0"]
    );
    let i8 = ElementType::I8;
    assert_tensor(&interpreter.inputs()[1], inputs[1], i8, &[1, 24, 24, 3]);
    let shapes: Vec<&[usize]> = interpreter.outputs().iter().map(|t| &t.shape[..]).collect();
    assert_eq!(shapes, [&[1, 5][..], &[1, 6, 6, 16], &[1, 4]]);
    for (i, info) in interpreter.outputs().iter().enumerate() {
        assert_eq!(interpreter.output_index(&info.name).ok(), Some(i));
        let mut copied = vec![0u8; info.byte_size];
        interpreter
            .copy_output(i, &mut copied)
            .expect("copy_output");
    }
}

#[test]
fn threads_and_xnnpack_give_the_same_bytes_as_one_thread() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let models = [
        common::zoo_model(zoo::DEPTHWISE),
        common::shared_model(MOBILENET),
    ];
    for bytes in models.into_iter().flatten() {
        let bytes: std::sync::Arc<[u8]> = bytes.into();
        let mut plain = Interpreter::new(&runtime, bytes.clone(), &InterpreterOptions::default())
            .expect("plain");
        let options = InterpreterOptions::default()
            .with_threads(2)
            .with_xnnpack(true);
        let mut accelerated = Interpreter::new(&runtime, bytes, &options).expect("xnnpack");
        assert_eq!(run_once(&mut plain), run_once(&mut accelerated));
    }
}

#[test]
fn interpreter_moves_to_another_thread() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let mut here = Interpreter::new(&runtime, bytes.clone(), &InterpreterOptions::default())
        .expect("interpreter");
    let expected = run_once(&mut here);
    let mut moved =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    let got = std::thread::spawn(move || run_once(&mut moved))
        .join()
        .expect("worker thread");
    assert_eq!(got, expected);
}

#[test]
fn wrong_input_size_names_the_tensor() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let mut interpreter =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    let err = interpreter
        .set_input(0, &[0u8; 3071])
        .expect_err("one byte short");
    assert!(
        matches!(&err, Error::TensorSize { tensor, expected: 3072, actual: 3071 } if tensor == "serving_default_image:0"),
        "{err:?}"
    );
    let mut out = vec![0u8; 11];
    let err = interpreter
        .copy_output(0, &mut out)
        .expect_err("one byte too many");
    assert!(
        matches!(&err, Error::TensorSize { tensor, expected: 10, actual: 11 } if tensor == "StatefulPartitionedCall:0"),
        "{err:?}"
    );
}

#[test]
fn unknown_names_and_bad_indices_are_typed_errors() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let mut interpreter =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    let err = interpreter.input_index("nope").expect_err("unknown input");
    assert!(matches!(&err, Error::UnknownTensor { kind: "input", name } if name == "nope"));
    // An output's name is not an input's.
    let err = interpreter
        .input_index("StatefulPartitionedCall:0")
        .expect_err("an output name");
    assert!(matches!(err, Error::UnknownTensor { kind: "input", .. }));
    let err = interpreter
        .output_index("serving_default_image:0")
        .expect_err("an input name");
    assert!(matches!(err, Error::UnknownTensor { kind: "output", .. }));

    let err = interpreter
        .set_input(1, &[0u8; 3072])
        .expect_err("one input");
    assert!(matches!(
        err,
        Error::TensorIndex {
            kind: "input",
            index: 1,
            count: 1
        }
    ));
    let err = interpreter.output(5).expect_err("one output");
    assert!(matches!(
        err,
        Error::TensorIndex {
            kind: "output",
            index: 5,
            count: 1
        }
    ));
    let err = interpreter
        .copy_output(usize::MAX, &mut [])
        .expect_err("huge index");
    assert!(matches!(err, Error::TensorIndex { kind: "output", .. }));
}

/// TFLite refuses `bytes` when allocating tensors, naming the custom op it cannot resolve.
fn assert_unresolved_custom_op(runtime: &Runtime, bytes: Vec<u8>, op: &str) {
    let trusted = InterpreterOptions::default().with_trusted(true);
    let err = Interpreter::new(runtime, bytes, &trusted).expect_err("an unresolved custom op");
    match &err {
        Error::Runtime { call, message } => {
            assert_eq!(*call, "TfLiteInterpreterAllocateTensors");
            assert!(message.contains(op), "{message}");
        }
        other => panic!("expected Error::Runtime, got {other:?}"),
    }
    assert!(err.to_string().contains(op), "{err}");
}

#[test]
fn compiled_model_names_the_unresolved_edgetpu_op() {
    let (Some(runtime), Some(compiled)) = (
        common::tflite_runtime(),
        common::compiled_zoo_model(zoo::CNN_INT8),
    ) else {
        return;
    };
    assert_unresolved_custom_op(&runtime, compiled, "edgetpu-custom-op");
    if let Some(bytes) = common::shared_model(MOBILENET_EDGETPU) {
        assert_unresolved_custom_op(&runtime, bytes, "edgetpu-custom-op");
    }
}

#[test]
fn model_with_unknown_custom_op_fails_at_allocation_with_its_name() {
    let (Some(runtime), Some(bytes)) = (common::tflite_runtime(), common::unregistered_op_model())
    else {
        return;
    };
    assert_unresolved_custom_op(&runtime, bytes, common::UNREGISTERED_OP);
    if let Some(bytes) = common::shared_model(INVOKING_ERROR) {
        assert_unresolved_custom_op(&runtime, bytes, "fake-op-double");
    }
}

#[test]
fn invalid_model_bytes_are_rejected() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let err =
        Interpreter::new(&runtime, Vec::new(), &InterpreterOptions::default()).expect_err("empty");
    assert!(
        matches!(
            err,
            Error::Runtime {
                call: "TfLiteModelCreate",
                ..
            }
        ),
        "{err:?}"
    );
    // Read (and refused) before TFLite sees them.
    for bytes in [vec![0u8; 64], common::pattern(1000)] {
        let len = bytes.len();
        let err = Interpreter::new(&runtime, bytes, &InterpreterOptions::default())
            .expect_err("not a model");
        assert!(
            matches!(err, Error::Malformed { .. }),
            "{len} bytes: {err:?}"
        );
    }
}

#[test]
fn zero_threads_is_rejected() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let err = Interpreter::new(
        &runtime,
        bytes,
        &InterpreterOptions::default().with_threads(0),
    )
    .expect_err("zero threads");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}

#[test]
fn missing_tflite_library_is_a_typed_error() {
    let err = Runtime::from_path("/nonexistent/libtensorflowlite_c.so").expect_err("no file");
    match &err {
        Error::Library(libedgetpu_sys::LoadError::Open { path, .. }) => {
            assert_eq!(path, Path::new("/nonexistent/libtensorflowlite_c.so"));
        }
        other => panic!("expected Error::Library(Open), got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/libtensorflowlite_c.so"), "{msg}");
    assert!(msg.contains("MULTITPU_TFLITE_LIB"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_library_is_a_typed_error() {
    let Some(dir) = common::zoo_dir() else {
        return;
    };
    let not_a_library = dir.join(zoo::CNN_INT8);
    let err = Runtime::from_path(&not_a_library).expect_err("a model is not a library");
    assert!(
        matches!(&err, Error::Library(libedgetpu_sys::LoadError::Open { path, .. }) if *path == not_a_library),
        "{err:?}"
    );
}

#[test]
fn missing_edgetpu_library_is_a_typed_error() {
    let err = EdgeTpuRuntime::from_path("/nonexistent/libedgetpu.so.1").expect_err("no file");
    assert!(
        matches!(&err, Error::Library(libedgetpu_sys::LoadError::Open { .. })),
        "{err:?}"
    );
    // Without the environment variable, loading by the default name either finds an
    // installed libedgetpu or fails with the same typed error.
    if std::env::var_os(libedgetpu_sys::EDGETPU_LIB_ENV).is_none() {
        match EdgeTpuRuntime::load() {
            Ok(rt) => eprintln!("libedgetpu is installed here: {}", rt.version()),
            Err(e) => assert!(
                matches!(&e, Error::Library(libedgetpu_sys::LoadError::Open { path, .. })
                    if *path == Path::new(libedgetpu_sys::default_edgetpu_library_name())),
                "{e:?}"
            ),
        }
    }
}

#[test]
fn compiled_model_runs_on_an_edge_tpu() {
    let Some((runtime, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        return;
    };
    let _devices = common::devices();
    if let Some(bytes) = common::zoo_model(zoo::DEPTHWISE) {
        run_on_an_edge_tpu(&runtime, &edgetpu, &compiler, &bytes, &[1, 10]);
    }
    if let Some(bytes) = common::shared_model(MOBILENET) {
        run_on_an_edge_tpu(&runtime, &edgetpu, &compiler, &bytes, &[1, 1001]);
    }
}

/// Compiles `bytes`, runs it twice on the first Edge TPU and checks its output shape, then
/// that the device is free again once the interpreter is gone.
fn run_on_an_edge_tpu(
    runtime: &Runtime,
    edgetpu: &EdgeTpuRuntime,
    compiler: &multitpu::deploy::EdgeTpuCompiler,
    bytes: &[u8],
    output_shape: &[usize],
) {
    let compiled = compiler.compile(bytes).expect("compiles").model;
    let devices = edgetpu.list_devices().expect("device list");
    assert!(!devices.is_empty(), "no Edge TPU attached");
    let delegate = edgetpu
        .open(&DeviceSelector::default(), &[("Performance", "Max")])
        .expect("delegate");
    assert_eq!(delegate.device(), &devices[0]);
    let mut interpreter =
        Interpreter::with_edgetpu(runtime, compiled, &InterpreterOptions::default(), delegate)
            .expect("interpreter with the Edge TPU");
    let first = run_once(&mut interpreter);
    let second = run_once(&mut interpreter);
    assert_eq!(first, second);
    assert_eq!(interpreter.outputs()[0].shape, output_shape);
    // The interpreter frees its delegate after itself, which releases the device.
    drop(interpreter);
    edgetpu
        .open(&DeviceSelector::default(), &[])
        .expect("the device is free again");
}

#[test]
fn selector_beyond_the_attached_devices_is_no_device() {
    let Some(edgetpu) = common::edgetpu_runtime() else {
        return;
    };
    let count = edgetpu.list_devices().expect("device list").len();
    let selector: DeviceSelector = format!(":{count}").parse().expect("selector");
    let err = edgetpu
        .open(&selector, &[])
        .expect_err("one past the last device");
    assert!(matches!(err, Error::NoDevice { available, .. } if available == count));
}
