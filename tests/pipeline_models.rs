//! Pipelined outputs of every runnable real model (the zoo's, and the shared ones when
//! present) equal the whole model's, on TFLite CPU interpreters, for 2, 3 and 4 segments,
//! with queues of capacity 1.
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_ZOO` (see `tests/common`).

mod common;

use std::sync::Arc;

use multitpu::backend::{CpuBackend, Interpreter, InterpreterOptions};
use multitpu::model::builder::SplitMix64;
use multitpu::model::{Graph, Model};
use multitpu::pipeline::Pipeline;
use multitpu::segment::{Plan, UniformByParams};
use multitpu::tensor::TensorSpec;
use multitpu::verify::random_tensor;

const ITEMS: usize = 12;

fn check_model(name: &str, bytes: &[u8]) {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let model = Model::from_bytes(bytes).unwrap();
    let graph = Graph::new(&model).unwrap();
    let mut whole = Interpreter::new(
        &runtime,
        Arc::<[u8]>::from(bytes),
        &InterpreterOptions::default(),
    )
    .unwrap();
    let mut rng = SplitMix64::new(42);
    let inputs: Vec<Vec<(String, Vec<u8>)>> = (0..ITEMS)
        .map(|_| {
            whole
                .inputs()
                .iter()
                .map(|info| (info.name.clone(), random_tensor(info, &mut rng).unwrap()))
                .collect()
        })
        .collect();
    let expected: Vec<Vec<(String, Vec<u8>)>> = inputs
        .iter()
        .map(|item| {
            for (slot, (_, data)) in item.iter().enumerate() {
                whole.set_input(slot, data).unwrap();
            }
            whole.invoke().unwrap();
            (0..whole.outputs().len())
                .map(|i| {
                    (
                        whole.outputs()[i].name.clone(),
                        whole.output(i).unwrap().to_vec(),
                    )
                })
                .collect()
        })
        .collect();

    let backend = CpuBackend::new(runtime.clone(), 1, false);
    for segments in 2..=4 {
        let plan = Plan::new(&graph, segments, &UniformByParams).unwrap();
        let pipeline = Pipeline::from_models(
            &plan.segment_models(&graph).expect("segment models"),
            &backend,
        )
        .unwrap();
        run_pipeline(&pipeline, &inputs, &expected, name, segments);
    }
}

fn run_pipeline(
    pipeline: &Pipeline,
    inputs: &[Vec<(String, Vec<u8>)>],
    expected: &[Vec<(String, Vec<u8>)>],
    name: &str,
    segments: usize,
) {
    // The pipeline takes and gives the model's tensors, in the model's order.
    let names = |tensors: &[(String, Vec<u8>)]| -> Vec<String> {
        tensors.iter().map(|(n, _)| n.clone()).collect()
    };
    let specs =
        |specs: &[TensorSpec]| -> Vec<String> { specs.iter().map(|s| s.name.clone()).collect() };
    assert_eq!(
        specs(pipeline.inputs()),
        names(&inputs[0]),
        "{name} x{segments}"
    );
    assert_eq!(
        specs(pipeline.outputs()),
        names(&expected[0]),
        "{name} x{segments}"
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for item in inputs {
                let named: Vec<(&str, &[u8])> = item
                    .iter()
                    .map(|(n, d)| (n.as_str(), d.as_slice()))
                    .collect();
                pipeline.push(&named).unwrap();
            }
            pipeline.close().unwrap();
        });
        let mut count = 0;
        for (i, output) in pipeline.into_iter().enumerate() {
            let output = output.unwrap();
            assert_eq!(output.seq(), i as u64);
            for (tensor, data) in &expected[i] {
                assert_eq!(
                    output.get(tensor),
                    Some(data.as_slice()),
                    "{name} x{segments}: item {i}, output `{tensor}`"
                );
            }
            count += 1;
        }
        assert_eq!(count, inputs.len(), "{name} x{segments}");
    });
}

real_model_tests!(check_model);
