//! Custom operators on TFLite's CPU interpreters, with the real TFLite 2.9 C library: Rust
//! kernels registered by name run the model's `CUSTOM` nodes; their errors and panics, and
//! TFLite's own messages, come back as typed errors (the `tracing` events: `tflite_events.rs`).

mod common;

use std::sync::Arc;

use multitpu::Error;
use multitpu::backend::{CpuBackend, CustomOp, Interpreter, InterpreterOptions, OpInput, OpOutput};
use multitpu::model::{Model, OpCode, ops};
use multitpu::pipeline::PipelineBuilder;
use multitpu::tensor::TensorSpec;

use common::{UNREGISTERED_OP, custom_node as custom, float_tensor};

/// `y = (2x + 1) × 3` as three custom nodes: `times` (its factor in its options), `plus-one`,
/// `times` again.
fn three_custom_nodes() -> Vec<u8> {
    let tensors = ["x", "a", "b", "y"].map(float_tensor).to_vec();
    let operators = vec![
        custom("times", 0, 1, &[2]),
        custom("plus-one", 1, 2, &[]),
        custom("times", 2, 3, &[3]),
    ];
    Model::new(tensors, operators, vec![0], vec![3])
        .to_bytes()
        .unwrap()
}

/// Multiplies by the factor in the node's one-byte options; refuses other tensors.
struct Times;

impl CustomOp for Times {
    fn prepare(
        &self,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        options: &[u8],
    ) -> multitpu::Result<()> {
        if inputs.len() != 1 || outputs.len() != 1 || options.len() != 1 {
            return Err(Error::stage(
                "times: one input, one output, a one-byte factor",
            ));
        }
        Ok(())
    }

    fn invoke(
        &self,
        inputs: &[OpInput<'_>],
        outputs: &mut [OpOutput<'_>],
        options: &[u8],
    ) -> multitpu::Result<()> {
        let factor = f32::from(options[0]);
        let x = inputs[0].as_slice::<f32>()?;
        for (y, x) in outputs[0].as_mut_slice::<f32>()?.iter_mut().zip(x) {
            *y = factor * x;
        }
        Ok(())
    }
}

fn plus_one(inputs: &[OpInput<'_>], outputs: &mut [OpOutput<'_>]) -> multitpu::Result<()> {
    let x = inputs[0].as_slice::<f32>()?;
    for (y, x) in outputs[0].as_mut_slice::<f32>()?.iter_mut().zip(x) {
        *y = x + 1.0;
    }
    Ok(())
}

fn options() -> InterpreterOptions {
    InterpreterOptions::default()
        .with_custom_op("times", Times)
        .with_custom_op("plus-one", plus_one)
}

#[test]
fn registered_kernels_run_every_custom_node_with_its_options() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let mut interpreter = Interpreter::new(&runtime, three_custom_nodes(), &options()).unwrap();
    for x in [[0.0f32, 1.0, -2.5, 10.0], [3.0, 3.0, 3.0, 3.0]] {
        interpreter.set_input_as(0, &x).unwrap();
        interpreter.invoke().unwrap();
        let expected: Vec<f32> = x.iter().map(|x| (2.0 * x + 1.0) * 3.0).collect();
        assert_eq!(interpreter.output_as::<f32>(0).unwrap(), expected);
    }
}

/// (That TFLite's message also reaches `tracing` is checked in `tests/tflite_events.rs`.)
#[test]
fn a_missing_kernel_is_a_typed_error() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let only_times = InterpreterOptions::default().with_custom_op("times", Times);
    // Strict validation refuses the model before TFLite sees it, naming the operator.
    let error = Interpreter::new(&runtime, three_custom_nodes(), &only_times)
        .expect_err("plus-one has no kernel");
    assert!(
        matches!(&error, Error::InvalidModel { reason, .. } if reason.contains("plus-one")),
        "{error}"
    );
    // Trusted, TFLite itself fails to resolve it, and says so.
    let error = Interpreter::new(
        &runtime,
        three_custom_nodes(),
        &only_times.with_trusted(true),
    )
    .expect_err("plus-one has no kernel");
    assert!(
        matches!(&error, Error::Runtime { message, .. } if message.contains("plus-one")),
        "{error}"
    );
}

#[test]
fn kernel_errors_and_panics_fail_the_call_with_their_message() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let failing = |message: &'static str| {
        move |_: &[OpInput<'_>], _: &mut [OpOutput<'_>]| -> multitpu::Result<()> {
            Err(Error::stage(message))
        }
    };
    let refused = options().with_custom_op("plus-one", failing("no plus today"));
    let mut interpreter = Interpreter::new(&runtime, three_custom_nodes(), &refused).unwrap();
    let error = interpreter.invoke().expect_err("the kernel fails");
    assert!(
        matches!(&error, Error::Runtime { call: "TfLiteInterpreterInvoke", message }
            if message.contains("plus-one") && message.contains("no plus today")),
        "{error}"
    );
    let panicking = options().with_custom_op(
        "plus-one",
        |_: &[OpInput<'_>], _: &mut [OpOutput<'_>]| -> multitpu::Result<()> {
            panic!("kernel bug")
        },
    );
    let mut interpreter = Interpreter::new(&runtime, three_custom_nodes(), &panicking).unwrap();
    let error = interpreter.invoke().expect_err("the kernel panics");
    assert!(error.to_string().contains("kernel bug"), "{error}");
    // The interpreter is still usable once the kernel is fine again.
    let mut interpreter = Interpreter::new(&runtime, three_custom_nodes(), &options()).unwrap();
    interpreter.invoke().unwrap();
}

#[test]
fn prepare_refuses_tensors_it_cannot_run() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    // Register `times` for the node without options: its prepare refuses it.
    let strict = options().with_custom_op("plus-one", Times);
    let error = Interpreter::new(&runtime, three_custom_nodes(), &strict).expect_err("refused");
    assert!(
        matches!(&error, Error::Runtime { call: "TfLiteInterpreterAllocateTensors", message }
            if message.contains("one-byte factor")),
        "{error}"
    );
}

#[test]
fn a_typed_accessor_of_the_wrong_type_is_an_error_not_a_panic() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let wrong = options().with_custom_op(
        "plus-one",
        |inputs: &[OpInput<'_>], _: &mut [OpOutput<'_>]| -> multitpu::Result<()> {
            inputs[0].as_slice::<i32>().map(|_| ())
        },
    );
    let mut interpreter = Interpreter::new(&runtime, three_custom_nodes(), &wrong).unwrap();
    let error = interpreter.invoke().expect_err("F32 read as I32");
    assert!(
        error.to_string().contains("holds F32 elements, not I32"),
        "{error}"
    );
}

#[test]
fn cpu_pipeline_stages_run_custom_operators() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let backend = CpuBackend::new(runtime, 1, false)
        .with_custom_op("times", Times)
        .with_custom_op("plus-one", plus_one);
    let segment: Arc<[u8]> = Arc::from(three_custom_nodes());
    let pipeline = PipelineBuilder::from_segments(&[segment], &backend)
        .unwrap()
        .build()
        .unwrap();
    pipeline
        .push_as(&[("x", &[1.0f32, 2.0, 3.0, 4.0][..])])
        .unwrap();
    let output = pipeline.pop().unwrap().expect("one item");
    assert_eq!(output.get_as::<f32>("y").unwrap(), [9.0, 15.0, 21.0, 27.0]);
}

/// The zoo's CNN with its RESHAPE turned into a custom operator no TFLite build registers:
/// refused as it is, and, once a kernel that copies the bytes (what a reshape does) is
/// registered, it gives the outputs of the original model.
#[test]
fn the_unknown_custom_operator_of_a_real_model_runs_once_registered() {
    let (Some(runtime), Some(original)) = (
        common::tflite_runtime(),
        common::zoo_model(common::zoo::CNN_INT8),
    ) else {
        return;
    };
    let mut model = Model::from_bytes(&original).unwrap().into_owned();
    let reshape = model
        .operators
        .iter_mut()
        .find(|op| op.opcode.builtin == ops::RESHAPE)
        .expect("the zoo's CNN flattens with a RESHAPE");
    reshape.opcode = OpCode {
        builtin: ops::CUSTOM,
        custom: Some(UNREGISTERED_OP.into()),
        version: 1,
    };
    reshape.builtin_options = None;
    let bytes = model.to_bytes().unwrap();
    let error = Interpreter::new(&runtime, bytes.clone(), &InterpreterOptions::default())
        .expect_err("the custom operator has no kernel");
    assert!(
        matches!(&error, Error::InvalidModel { reason, .. } if reason.contains(UNREGISTERED_OP)),
        "{error}"
    );

    let copy = |inputs: &[OpInput<'_>], outputs: &mut [OpOutput<'_>]| {
        outputs[0].bytes_mut().copy_from_slice(inputs[0].bytes());
        Ok(())
    };
    let options = InterpreterOptions::default().with_custom_op(UNREGISTERED_OP, copy);
    let mut custom = Interpreter::new(&runtime, bytes, &options).unwrap();
    let mut reference =
        Interpreter::new(&runtime, original, &InterpreterOptions::default()).unwrap();
    let input = common::pattern(reference.inputs()[0].byte_size);
    for interpreter in [&mut custom, &mut reference] {
        interpreter.set_input(0, &input).unwrap();
        interpreter.invoke().unwrap();
    }
    assert_eq!(custom.output(0).unwrap(), reference.output(0).unwrap());
}

/// The shared `model_invoking_error.tflite`, whose `fake-op-double` no TFLite build
/// registers, runs with a kernel for it.
#[test]
fn the_shared_models_unknown_custom_operator_runs_once_registered() {
    let (Some(runtime), Some(bytes)) = (
        common::tflite_runtime(),
        common::shared_model("model_invoking_error.tflite"),
    ) else {
        return;
    };
    // `fake-op-double`: U8 [1, 3] in, F32 scalar out. This kernel sums and doubles.
    let double_sum = |inputs: &[OpInput<'_>], outputs: &mut [OpOutput<'_>]| {
        let sum: f32 = inputs[0]
            .as_slice::<u8>()?
            .iter()
            .map(|&v| f32::from(v))
            .sum();
        outputs[0].as_mut_slice::<f32>()?[0] = 2.0 * sum;
        Ok(())
    };
    let options = InterpreterOptions::default().with_custom_op("fake-op-double", double_sum);
    let mut interpreter = Interpreter::new(&runtime, bytes, &options).unwrap();
    interpreter.set_input_as(0, &[1u8, 2, 3]).unwrap();
    interpreter.invoke().unwrap();
    assert_eq!(interpreter.output_as::<f32>(0).unwrap(), [12.0]);
}
