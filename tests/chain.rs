//! Chained segments of real models give byte-identical outputs to the whole model, on the
//! real TFLite runtime, for 2, 3 and 4 segments.

mod common;

use multitpu::model::{Graph, Model};
use multitpu::segment::{Plan, Segmenter, UniformByParams};
use multitpu::verify::verify_chain;

const TRIALS: usize = 20;

/// Cuts at evenly spaced operator indices (that are valid cut points).
fn evenly_spaced(graph: &Graph<'_, '_>, segments: usize) -> Plan {
    let ops = graph.op_count();
    let cuts: Vec<usize> = (1..segments).map(|i| i * ops / segments).collect();
    Plan::from_cuts("evenly-spaced", graph, &cuts).expect("evenly spaced cuts are valid")
}

fn check_model(name: &str) {
    let Some((runtime, bytes)) = common::runtime_and_model(name) else {
        return;
    };
    let model = Model::from_bytes(&bytes).expect("model reads");
    let graph = Graph::new(&model).expect("graph is consistent");
    for segments in 2..=4 {
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
            let report = verify_chain(&runtime, &bytes, segment_bytes, TRIALS, segments as u64)
                .unwrap_or_else(|e| panic!("{name}, {} x{segments}: {e}", plan.strategy));
            assert_eq!(
                report.identical, TRIALS,
                "{name}, {} x{segments}: {:?}",
                plan.strategy, report.first_difference
            );
        }
    }
}

#[test]
fn mnistnet() {
    check_model("MNISTnet_uint8_quant.tflite");
}

#[test]
fn mnistnet_v2_residual() {
    check_model("MNISTnet_v2_uint8_quant.tflite");
}

#[test]
fn mobilenet_v1() {
    check_model("mobilenet_v1_0.25_128_quant.tflite");
}

#[test]
fn mobilenet_v2_uint8() {
    check_model("mobilenet_v2_1.0_224_quant.tflite");
}

#[test]
fn mobilenet_v2_tf2_int8() {
    check_model("tf2_mobilenet_v2_1.0_224_ptq.tflite");
}

#[test]
fn deeplab_v3() {
    check_model("deeplabv3_mnv2_dm05_pascal_quant.tflite");
}

#[test]
fn keras_lstm() {
    check_model("keras_lstm_mnist_ptq.tflite");
}
