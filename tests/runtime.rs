//! The TFLite and Edge TPU backends against the real TFLite 2.9 C library and real models.
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_TEST_MODELS` (see `tests/common`); tests that
//! need an Edge TPU also need `MULTITPU_EDGETPU_LIB` and `MULTITPU_EDGETPU_COMPILER`
//! (`scripts/test` points them at the emulated Edge TPU).

mod common;

use std::path::Path;

use multitpu::Error;
use multitpu::backend::{DeviceSelector, EdgeTpuRuntime, Interpreter, InterpreterOptions, Runtime};
use multitpu::model::ElementType;
use multitpu::tensor::TensorSpec;

const MNIST: &str = "MNISTnet_uint8_quant.tflite";
const MOBILENET: &str = "mobilenet_v1_0.25_128_quant.tflite";
const MOBILENET_EDGETPU: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
const INVOKING_ERROR: &str = "model_invoking_error.tflite";

/// Fills every input with the deterministic pattern, invokes, and returns all outputs.
fn run_once(interpreter: &mut Interpreter) -> Vec<Vec<u8>> {
    for i in 0..interpreter.inputs().len() {
        let data = common::pattern(interpreter.inputs()[i].byte_size);
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

fn assert_u8_tensor(info: &TensorSpec, name: &str, shape: &[usize]) {
    assert_eq!(info.name, name);
    assert_eq!(info.element_type, ElementType::U8);
    assert_eq!(info.shape, shape);
    assert_eq!(info.byte_size, shape.iter().product::<usize>());
    let quantization = info.quantization.as_ref().expect("quantized tensor");
    assert_eq!(quantization.scale.len(), 1, "per-tensor quantization");
    assert!(quantization.scale[0] > 0.0);
}

/// Runs `model` twice on the same input and checks the outputs are identical bytes.
fn check_deterministic(model: &str, options: &InterpreterOptions) -> Option<Interpreter> {
    let (runtime, bytes) = common::runtime_and_model(model)?;
    let mut interpreter = Interpreter::new(&runtime, bytes, options).expect("interpreter");
    let first = run_once(&mut interpreter);
    let second = run_once(&mut interpreter);
    assert_eq!(first, second, "{model}: two runs on the same input differ");
    assert!(
        first.iter().flatten().any(|&b| b != first[0][0]),
        "{model}: constant output, the model did not really run"
    );
    Some(interpreter)
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
    let Some((runtime, bytes)) = common::runtime_and_model(MNIST) else {
        return;
    };
    let interpreter =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    assert_eq!(interpreter.output(0).expect("output"), &[0u8; 10]);
}

#[test]
fn mnist_runs_deterministically_on_cpu() {
    let Some(interpreter) = check_deterministic(MNIST, &InterpreterOptions::default()) else {
        return;
    };
    assert_eq!(interpreter.inputs().len(), 1);
    assert_eq!(interpreter.outputs().len(), 1);
    assert_u8_tensor(&interpreter.inputs()[0], "input", &[1, 28, 28, 1]);
    assert_u8_tensor(
        &interpreter.outputs()[0],
        "MNISTnet/Predictions/Reshape_1",
        &[1, 10],
    );
}

#[test]
fn mobilenet_runs_deterministically_on_cpu() {
    let Some(interpreter) = check_deterministic(MOBILENET, &InterpreterOptions::default()) else {
        return;
    };
    assert_u8_tensor(&interpreter.inputs()[0], "input", &[1, 128, 128, 3]);
    assert_u8_tensor(
        &interpreter.outputs()[0],
        "MobilenetV1/Predictions/Reshape_1",
        &[1, 1001],
    );
    assert_eq!(interpreter.input_index("input").ok(), Some(0));
    assert_eq!(
        interpreter
            .output_index("MobilenetV1/Predictions/Reshape_1")
            .ok(),
        Some(0)
    );
}

#[test]
fn threads_and_xnnpack_give_the_same_bytes_as_one_thread() {
    let Some((runtime, bytes)) = common::runtime_and_model(MOBILENET) else {
        return;
    };
    let bytes: std::sync::Arc<[u8]> = bytes.into();
    let mut plain =
        Interpreter::new(&runtime, bytes.clone(), &InterpreterOptions::default()).expect("plain");
    let options = InterpreterOptions::default()
        .with_threads(2)
        .with_xnnpack(true);
    let mut accelerated = Interpreter::new(&runtime, bytes, &options).expect("xnnpack");
    assert_eq!(run_once(&mut plain), run_once(&mut accelerated));
}

#[test]
fn interpreter_moves_to_another_thread() {
    let Some((runtime, bytes)) = common::runtime_and_model(MNIST) else {
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
    let Some((runtime, bytes)) = common::runtime_and_model(MNIST) else {
        return;
    };
    let mut interpreter =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    let err = interpreter
        .set_input(0, &[0u8; 783])
        .expect_err("one byte short");
    assert!(
        matches!(&err, Error::TensorSize { tensor, expected: 784, actual: 783 } if tensor == "input"),
        "{err:?}"
    );
    let mut out = vec![0u8; 11];
    let err = interpreter
        .copy_output(0, &mut out)
        .expect_err("one byte too many");
    assert!(
        matches!(&err, Error::TensorSize { tensor, expected: 10, actual: 11 } if tensor == "MNISTnet/Predictions/Reshape_1"),
        "{err:?}"
    );
}

#[test]
fn unknown_names_and_bad_indices_are_typed_errors() {
    let Some((runtime, bytes)) = common::runtime_and_model(MNIST) else {
        return;
    };
    let mut interpreter =
        Interpreter::new(&runtime, bytes, &InterpreterOptions::default()).expect("interpreter");
    let err = interpreter.input_index("nope").expect_err("unknown input");
    assert!(matches!(&err, Error::UnknownTensor { kind: "input", name } if name == "nope"));
    // An output's name is not an input's.
    let err = interpreter
        .input_index("MNISTnet/Predictions/Reshape_1")
        .expect_err("an output name");
    assert!(matches!(err, Error::UnknownTensor { kind: "input", .. }));
    let err = interpreter
        .output_index("input")
        .expect_err("an input name");
    assert!(matches!(err, Error::UnknownTensor { kind: "output", .. }));

    let err = interpreter
        .set_input(1, &[0u8; 784])
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

#[test]
fn compiled_model_names_the_unresolved_edgetpu_op() {
    let Some((runtime, bytes)) = common::runtime_and_model(MOBILENET_EDGETPU) else {
        return;
    };
    let err = Interpreter::new(&runtime, bytes, &InterpreterOptions::default())
        .expect_err("no Edge TPU delegate");
    match &err {
        Error::Runtime { call, message } => {
            assert_eq!(*call, "TfLiteInterpreterAllocateTensors");
            assert!(message.contains("edgetpu-custom-op"), "{message}");
        }
        other => panic!("expected Error::Runtime, got {other:?}"),
    }
    assert!(err.to_string().contains("edgetpu-custom-op"), "{err}");
}

#[test]
fn model_with_unknown_custom_op_fails_at_allocation_with_its_name() {
    let Some((runtime, bytes)) = common::runtime_and_model(INVOKING_ERROR) else {
        return;
    };
    let err = Interpreter::new(&runtime, bytes, &InterpreterOptions::default())
        .expect_err("fake-op-double is not registered");
    match &err {
        Error::Runtime { call, message } => {
            assert_eq!(*call, "TfLiteInterpreterAllocateTensors");
            assert!(message.contains("fake-op-double"), "{message}");
        }
        other => panic!("expected Error::Runtime, got {other:?}"),
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
    let Some((runtime, bytes)) = common::runtime_and_model(MNIST) else {
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
    let Some(dir) = common::test_models_dir() else {
        return;
    };
    let not_a_library = dir.join(MNIST);
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
    let Some((runtime, bytes)) = common::runtime_and_model(MOBILENET) else {
        return;
    };
    let (Some(edgetpu), Some(compiler)) = (common::edgetpu_runtime(), common::edgetpu_compiler())
    else {
        return;
    };
    let compiled = compiler.compile(&bytes).expect("compiles").model;
    let _devices = common::devices();
    let devices = edgetpu.list_devices().expect("device list");
    assert!(!devices.is_empty(), "no Edge TPU attached");
    let delegate = edgetpu
        .open(&DeviceSelector::default(), &[("Performance", "Max")])
        .expect("delegate");
    assert_eq!(delegate.device(), &devices[0]);
    let mut interpreter =
        Interpreter::with_edgetpu(&runtime, compiled, &InterpreterOptions::default(), delegate)
            .expect("interpreter with the Edge TPU");
    let first = run_once(&mut interpreter);
    let second = run_once(&mut interpreter);
    assert_eq!(first, second);
    assert_eq!(interpreter.outputs()[0].shape, [1, 1001]);
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
