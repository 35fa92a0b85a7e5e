//! Typed tensors through pipelines and interpreters: specs carry type, shape and
//! quantization; typed views, typed pushes and dequantized outputs check the element type.

mod common;

use multitpu::Error;
use multitpu::backend::{
    CpuBackend, Interpreter, InterpreterOptions, SimCompute, SimulatedEdgeTpuBackend, Stage,
};
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::{ElementType, Graph, Model, paper};
use multitpu::pipeline::PipelineBuilder;
use multitpu::segment::{Plan, UniformByOps};
use multitpu::tensor::TensorSpec;

/// Reads `F32 [4]` and writes a 3-byte `U8` tensor then `F64 [4]` (each value doubled), so
/// the `F64` slot follows an odd-sized one.
struct Widen {
    inputs: [TensorSpec; 1],
    outputs: [TensorSpec; 2],
}

impl Widen {
    fn boxed() -> Box<dyn Stage> {
        Box::new(Widen {
            inputs: [TensorSpec::new("x", ElementType::F32, vec![4], 16)],
            outputs: [
                TensorSpec::bytes("odd", 3),
                TensorSpec::new("wide", ElementType::F64, vec![4], 32),
            ],
        })
    }
}

impl Stage for Widen {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> multitpu::Result<()> {
        let x: &[f32] = self.inputs[0].view(inputs[0])?;
        let doubled: Vec<f64> = x.iter().map(|&v| f64::from(v) * 2.0).collect();
        outputs[0].fill(7);
        self.outputs[1]
            .view_mut::<f64>(outputs[1])?
            .copy_from_slice(&doubled);
        Ok(())
    }
    fn describe(&self) -> String {
        "widen".into()
    }
}

#[test]
fn typed_push_and_typed_outputs_check_the_element_type() {
    let pipeline = PipelineBuilder::new()
        .stage(Widen::boxed())
        .build()
        .unwrap();
    let x = [1.5f32, -2.0, 0.25, 8.0];
    for _ in 0..5 {
        pipeline.push_as(&[("x", &x[..])]).unwrap();
    }
    // The wrong type, count or name is refused before anything is queued.
    let error = pipeline
        .push_as(&[("x", &[1i32, 2, 3, 4][..])])
        .unwrap_err();
    assert!(
        matches!(&error, Error::TensorType { tensor, expected: ElementType::I32, actual: ElementType::F32 } if tensor == "x"),
        "{error}"
    );
    // A typed push counts elements; an untyped one, bytes.
    assert!(matches!(
        pipeline.push_as(&[("x", &x[..3])]),
        Err(Error::ElementCount {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        pipeline.push(&[("x", &[0u8; 12][..])]),
        Err(Error::TensorSize {
            expected: 16,
            actual: 12,
            ..
        })
    ));
    assert!(matches!(
        pipeline.push_as(&[("y", &x[..])]),
        Err(Error::UnknownTensor { .. })
    ));
    pipeline.close().unwrap();
    let mut count = 0;
    for output in &pipeline {
        let output = output.unwrap();
        // Every output buffer is aligned for its type, whatever the sizes before it.
        assert_eq!(
            output.get_as::<f64>("wide").unwrap(),
            [3.0, -4.0, 0.5, 16.0]
        );
        assert_eq!(output.tensor_as::<u8>(0).unwrap(), [7, 7, 7]);
        assert_eq!(output.get_f32("wide").unwrap_err().to_string(), {
            "tensor `wide` holds F64 elements, not F32"
        });
        assert!(matches!(
            output.get_as::<f32>("wide"),
            Err(Error::TensorType {
                expected: ElementType::F32,
                actual: ElementType::F64,
                ..
            })
        ));
        assert!(matches!(
            output.get_as::<u8>("nope"),
            Err(Error::UnknownTensor {
                kind: "pipeline output",
                ..
            })
        ));
        assert!(matches!(
            output.tensor_as::<u8>(2),
            Err(Error::TensorIndex {
                index: 2,
                count: 2,
                ..
            })
        ));
        // The byte-level API still works beside the typed one.
        assert_eq!(output.get("odd"), Some(&[7u8, 7, 7][..]));
        count += 1;
    }
    assert_eq!(count, 5);
}

/// The paper's conv model (float input, int8 output) planned into two segments.
fn conv_plan() -> (Model<'static>, Vec<std::sync::Arc<[u8]>>) {
    let model = paper::conv(32).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 2, &UniformByOps).unwrap();
    let segments = plan
        .segments
        .iter()
        .map(|s| {
            let segment = multitpu::model::extract(&graph, s.ops.clone()).unwrap();
            std::sync::Arc::from(segment.to_bytes().unwrap())
        })
        .collect();
    (model, segments)
}

#[test]
fn simulated_stages_carry_the_model_quantization() {
    let (model, segments) = conv_plan();
    let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
    let pipeline = PipelineBuilder::from_segments(&segments, &backend)
        .unwrap()
        .build()
        .unwrap();
    let output_tensor = &model.tensors[model.outputs[0]];
    let spec = &pipeline.outputs()[0];
    assert_eq!(spec.element_type, ElementType::I8);
    assert_eq!(spec.quantization, output_tensor.quantization);
    assert_eq!(pipeline.inputs()[0].element_type, ElementType::F32);
    assert_eq!(pipeline.inputs()[0].quantization, None);
    let input = &pipeline.inputs()[0];
    pipeline
        .push_as(&[(input.name.as_str(), &vec![0.5f32; input.num_elements()][..])])
        .unwrap();
    let output = pipeline.pop().unwrap().expect("one item");
    // Skipped compute leaves zero bytes: real value scale × (0 − zero point) everywhere.
    let q = spec.quantization.as_ref().unwrap();
    let expected = q.scale[0] * (0 - q.zero_point[0]) as f32;
    let real = output.tensor_f32(0).unwrap();
    assert_eq!(real.len(), spec.num_elements());
    assert!(real.iter().all(|&v| v == expected), "{real:?}");
    assert_eq!(
        output.tensor_as::<i8>(0).unwrap().len(),
        spec.num_elements()
    );
}

#[test]
fn cpu_pipeline_outputs_dequantize_like_the_whole_model() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (model, segments) = conv_plan();
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    let pipeline = PipelineBuilder::from_segments(&segments, &backend)
        .unwrap()
        .build()
        .unwrap();
    let mut whole = Interpreter::new(
        &runtime,
        model.to_bytes().unwrap(),
        &InterpreterOptions::default(),
    )
    .unwrap();
    // The interpreter's specs carry the model's quantization, as the pipeline's do.
    assert_eq!(whole.outputs()[0], pipeline.outputs()[0]);
    let input = pipeline.inputs()[0].clone();
    let values: Vec<f32> = (0..input.num_elements())
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    pipeline
        .push_as(&[(input.name.as_str(), &values[..])])
        .unwrap();
    whole.set_input_as(0, &values).unwrap();
    whole.invoke().unwrap();
    let output = pipeline.pop().unwrap().expect("one item");
    let expected = whole.outputs()[0]
        .dequantize(whole.output_as::<i8>(0).unwrap())
        .unwrap();
    assert_eq!(output.tensor_f32(0).unwrap(), expected);
    assert!(
        expected.iter().any(|&v| v != expected[0]),
        "constant output: the model did not really run"
    );
    // A wrong type through the interpreter's typed API is an error too.
    assert!(matches!(
        whole.set_input_as(0, &vec![0u8; input.num_elements()]),
        Err(Error::TensorType { .. })
    ));
    assert!(matches!(
        whole.output_as::<f32>(0),
        Err(Error::TensorType { .. })
    ));
}
