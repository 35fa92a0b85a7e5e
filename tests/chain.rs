//! Chained segments give byte-identical outputs to the whole model, on the real TFLite
//! runtime, for 2, 3 and 4 segments: real models and models built by the library (chains,
//! residual branches, several inputs and outputs). One segment is the whole model rewritten
//! by our writer, so that case checks the writer against the original file.

mod common;

use multitpu::backend::Runtime;
use multitpu::model::builder::{Activation, ModelBuilder, Padding, per_tensor};
use multitpu::model::{ElementType, Graph, Model, paper};
use multitpu::segment::{Plan, Segmenter, UniformByParams};
use multitpu::verify::verify_chain;

const TRIALS: usize = 20;

/// Cuts at evenly spaced operator indices (that are valid cut points).
fn evenly_spaced(graph: &Graph<'_, '_>, segments: usize) -> Plan {
    let ops = graph.op_count();
    let cuts: Vec<usize> = (1..segments).map(|i| i * ops / segments).collect();
    Plan::from_cuts("evenly-spaced", graph, &cuts).expect("evenly spaced cuts are valid")
}

fn check_model(name: &str, bytes: &[u8]) {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    check_bytes(&runtime, name, bytes);
}

fn check_built(name: &str, model: Model<'static>) {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    check_bytes(
        &runtime,
        name,
        &model.to_bytes().expect("built model writes"),
    );
}

fn check_bytes(runtime: &Runtime, name: &str, bytes: &[u8]) {
    let model = Model::from_bytes(bytes).expect("model reads");
    let graph = Graph::new(&model).expect("graph is consistent");
    for segments in 1..=4 {
        let plans = [
            UniformByParams
                .plan(&graph, segments)
                .expect("uniform plan"),
            evenly_spaced(&graph, segments),
        ];
        for plan in plans {
            let segment_bytes = plan
                .extract(&graph)
                .expect("segments extract")
                .iter()
                .map(|m| m.to_bytes().expect("segment writes"))
                .collect();
            let report = verify_chain(runtime, bytes, segment_bytes, TRIALS, segments as u64)
                .unwrap_or_else(|e| panic!("{name}, {} x{segments}: {e}", plan.strategy));
            assert_eq!(
                report.identical, TRIALS,
                "{name}, {} x{segments}: {:?}",
                plan.strategy, report.first_difference
            );
        }
    }
}

/// uint8 CNN with two residual branches, one of which skips two operators.
fn residual_cnn() -> Model<'static> {
    let mut b = ModelBuilder::new(7);
    let x = b
        .input(
            "image",
            ElementType::U8,
            &[1, 16, 16, 3],
            Some(per_tensor(1.0 / 128.0, 128)),
        )
        .unwrap();
    let c1 = b
        .conv2d(x, 8, [3, 3], [1, 1], Padding::Same, Activation::Relu)
        .unwrap();
    let c2 = b
        .conv2d(c1, 8, [3, 3], [1, 1], Padding::Same, Activation::Relu)
        .unwrap();
    let d = b
        .depthwise_conv2d(c2, 1, [3, 3], [1, 1], Padding::Same, Activation::Relu6)
        .unwrap();
    let skip = b.add(c1, d, Activation::None).unwrap();
    let c3 = b
        .conv2d(skip, 8, [1, 1], [1, 1], Padding::Same, Activation::None)
        .unwrap();
    let sum = b.add(skip, c3, Activation::Relu).unwrap();
    let flat = b.reshape(sum, &[1, -1]).unwrap();
    let logits = b.fully_connected(flat, 10, Activation::None).unwrap();
    b.output(logits).unwrap();
    b.build().unwrap()
}

/// int8 network with two inputs and three outputs, one of them taken early.
fn two_inputs_three_outputs() -> Model<'static> {
    let mut b = ModelBuilder::new(11);
    let a = b.input("a", ElementType::F32, &[1, 32], None).unwrap();
    let c = b.input("c", ElementType::F32, &[1, 32], None).unwrap();
    let qa = b
        .quantize(a, ElementType::I8, per_tensor(1.0 / 127.0, 0))
        .unwrap();
    let qc = b
        .quantize(c, ElementType::I8, per_tensor(1.0 / 127.0, 0))
        .unwrap();
    let ha = b.fully_connected(qa, 24, Activation::Relu).unwrap();
    let hc = b.fully_connected(qc, 24, Activation::Relu).unwrap();
    let early = b.dequantize(ha).unwrap();
    let joined = b.concatenation(&[ha, hc], 1).unwrap();
    let h = b.fully_connected(joined, 16, Activation::None).unwrap();
    let t = b.tanh(h).unwrap();
    let out1 = b.dequantize(t).unwrap();
    let h2 = b.fully_connected(t, 4, Activation::None).unwrap();
    let out2 = b.dequantize(h2).unwrap();
    for out in [out1, early, out2] {
        b.output(out).unwrap();
    }
    b.build().unwrap()
}

#[test]
fn built_fc_chain() {
    check_built("paper fc 256", paper::fc(256).unwrap());
}

#[test]
fn built_conv_chain() {
    check_built("paper conv 16", paper::conv(16).unwrap());
}

#[test]
fn built_residual_branches() {
    check_built("residual cnn", residual_cnn());
}

#[test]
fn built_several_inputs_and_outputs() {
    check_built("two inputs, three outputs", two_inputs_three_outputs());
}

real_model_tests!(check_model);
