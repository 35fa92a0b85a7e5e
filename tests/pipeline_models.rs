//! Pipelined outputs of every runnable model in `shared/models` equal the whole model's, on
//! TFLite CPU interpreters, for 2, 3 and 4 segments, with queues of capacity 1.
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_TEST_MODELS` (see `tests/common`).

mod common;

use std::sync::Arc;

use multitpu::backend::{CpuBackend, Interpreter, InterpreterOptions, Runtime};
use multitpu::model::builder::SplitMix64;
use multitpu::model::{Graph, Model};
use multitpu::pipeline::{Backend, PipelineBuilder};
use multitpu::segment::{Segmenter, UniformByParams};
use multitpu::verify::random_tensor;

const ITEMS: usize = 12;

fn check_model(name: &str) {
    let Some((runtime, bytes)) = common::runtime_and_model(name) else {
        return;
    };
    let model = Model::from_bytes(&bytes).unwrap();
    let graph = Graph::new(&model).unwrap();
    let mut whole = Interpreter::new(
        &runtime,
        Arc::<[u8]>::from(bytes.as_slice()),
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

    for segments in 2..=4 {
        let plan = UniformByParams.plan(&graph, segments).unwrap();
        run_pipeline(
            &runtime,
            &plan.extract(&graph).unwrap(),
            &inputs,
            &expected,
            name,
            segments,
        );
    }
}

fn run_pipeline(
    runtime: &Runtime,
    parts: &[Model<'_>],
    inputs: &[Vec<(String, Vec<u8>)>],
    expected: &[Vec<(String, Vec<u8>)>],
    name: &str,
    segments: usize,
) {
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    let mut builder = PipelineBuilder::new();
    for (device, part) in parts.iter().enumerate() {
        let bytes: Arc<[u8]> = part.to_bytes().unwrap().into();
        builder = builder.stage(backend.prepare(bytes, device).unwrap());
    }
    let output_names: Vec<String> = expected[0].iter().map(|(n, _)| n.clone()).collect();
    let pipeline = builder.outputs(output_names).build().unwrap();
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
        for (i, output) in (&pipeline).into_iter().enumerate() {
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

cpu_model_tests!(check_model);
