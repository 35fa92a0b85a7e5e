//! The published architectures rebuilt by `multitpu_paper::architectures`: the same
//! operators as Coral's files where a file exists, and runnable on TFLite's CPU kernels.

// The library's test helpers: the same environment variables and skip rules.
#[path = "../../tests/common/mod.rs"]
mod common;

use multitpu::backend::{Interpreter, InterpreterOptions};
use multitpu::model::builder::SplitMix64;
use multitpu::model::figures::op_figures;
use multitpu::model::{ElementType, Model};
use multitpu_paper::architectures::{self, EfficientNetEdgeTpu};

/// The rebuilt MobileNet v1 at width 0.25 and 128×128 has the operators of Coral's
/// `mobilenet_v1_0.25_128_quant.tflite`: the same op codes in the same order, the same
/// weight and output shapes, so the same MACs; the published-figure fit relies on
/// `architectures::mobilenet_v1` being the slim architecture.
#[test]
fn rebuilt_mobilenet_v1_matches_corals_file() {
    // Coral's own file, from the shared models (the zoo has no MobileNet v1): skipped loudly
    // where they are absent.
    let Some(bytes) = common::shared_model("mobilenet_v1_0.25_128_quant.tflite") else {
        return;
    };
    let coral = Model::from_bytes(&bytes).expect("Coral's model");
    let rebuilt = architectures::mobilenet_v1(0.25, 128).expect("rebuilt");
    assert_eq!(coral.operators.len(), rebuilt.operators.len());
    fn shape(m: &Model<'_>, t: Option<usize>) -> Option<Vec<i32>> {
        t.map(|t| m.tensors[t].shape.clone())
    }
    for (i, (a, b)) in coral.operators.iter().zip(&rebuilt.operators).enumerate() {
        assert_eq!(a.opcode.builtin, b.opcode.builtin, "op {i}");
        let weights = |m: &Model<'_>, op: &multitpu::model::Operator<'_>| {
            shape(m, op.inputs.get(1).copied().flatten())
                .filter(|_| op_figures(m, i).kind.has_weights())
        };
        assert_eq!(weights(&coral, a), weights(&rebuilt, b), "op {i} weights");
        assert_eq!(
            shape(&coral, a.outputs.first().copied()),
            shape(&rebuilt, b.outputs.first().copied()),
            "op {i} output"
        );
        assert_eq!(
            op_figures(&coral, i).macs,
            op_figures(&rebuilt, i).macs,
            "op {i}"
        );
    }
    let (a, b) = (
        &coral.tensors[coral.inputs[0]],
        &rebuilt.tensors[rebuilt.inputs[0]],
    );
    assert_eq!((&a.shape, a.element_type), (&b.shape, b.element_type));
}

/// The rebuilt published architectures load and run on TFLite's CPU kernels, with outputs of
/// the built shapes. (Their seeded weights are not trained: a classifier's softmax may well
/// saturate to the same output for any input, so that is not checked.)
#[test]
fn rebuilt_architectures_run_on_tflite() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let models = [
        ("mobilenet_v1", architectures::mobilenet_v1(0.25, 128)),
        ("inception_v1", architectures::inception_v1()),
        (
            "efficientnet_edgetpu_s",
            architectures::efficientnet_edgetpu(EfficientNetEdgeTpu::S),
        ),
    ];
    for (name, model) in models {
        let model = model.unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = model.to_bytes().unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, model, "{name}: read back differs");
        let mut interpreter = Interpreter::new(&runtime, bytes, &InterpreterOptions::default())
            .unwrap_or_else(|e| panic!("{name}: interpreter: {e}"));
        let sizes: Vec<(ElementType, usize)> = interpreter
            .inputs()
            .iter()
            .map(|i| (i.element_type, i.byte_size))
            .collect();
        let mut rng = SplitMix64::new(0xA7C1);
        for (index, (element_type, size)) in sizes.into_iter().enumerate() {
            let data = match element_type {
                ElementType::F32 => (0..size / 4)
                    .flat_map(|_| rng.uniform(-1.0, 1.0).to_le_bytes())
                    .collect(),
                _ => rng.bytes(size),
            };
            interpreter
                .set_input(index, &data)
                .unwrap_or_else(|e| panic!("{name}: set_input: {e}"));
        }
        interpreter
            .invoke()
            .unwrap_or_else(|e| panic!("{name}: invoke: {e}"));
        for (info, &t) in interpreter.outputs().iter().zip(&model.outputs) {
            let shape: Vec<usize> = model.tensors[t].shape.iter().map(|&d| d as usize).collect();
            assert_eq!(info.shape, shape, "{name}: output shape");
        }
    }
}
