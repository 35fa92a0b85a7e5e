//! Create/destroy cycles of interpreters, segment chains and pipelines on the real runtime,
//! with and without errors: every path that builds native objects also releases them.
//!
//! Run under valgrind's memcheck for a leak summary (docs/reliability.md):
//! `MULTITPU_CYCLES=20 valgrind --leak-check=full <this test binary> --test-threads=1`.

mod common;

use std::sync::Arc;

use multitpu::Error;
use multitpu::backend::{Backend, CpuBackend, Interpreter, InterpreterOptions};
use multitpu::model::{Graph, Model};
use multitpu::pipeline::PipelineBuilder;
use multitpu::segment::{Segmenter, UniformByOps};
use multitpu::verify::verify_chain;

use common::zoo;

/// Cycles per test: `MULTITPU_CYCLES`, default 3.
fn cycles() -> usize {
    std::env::var("MULTITPU_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3)
}

#[test]
fn interpreters_and_chains_come_and_go() {
    let (Some((runtime, bytes)), Some(unresolved)) = (
        common::runtime_and_zoo_model(zoo::RESNET),
        common::unregistered_op_model(),
    ) else {
        return;
    };
    let model = Model::from_bytes(&bytes).unwrap();
    let graph = Graph::new(&model).unwrap();
    let segments: Vec<Vec<u8>> = UniformByOps
        .plan(&graph, 3)
        .unwrap()
        .extract(&graph)
        .unwrap()
        .iter()
        .map(|s| s.to_bytes().unwrap())
        .collect();
    for _ in 0..cycles() {
        let mut interpreter =
            Interpreter::new(&runtime, bytes.clone(), &InterpreterOptions::default()).unwrap();
        interpreter.invoke().unwrap();
        drop(interpreter);
        // Fails in TfLiteInterpreterAllocateTensors, after model, options and interpreter
        // were created.
        let trusted = InterpreterOptions::default().with_trusted(true);
        let failed = Interpreter::new(&runtime, unresolved.clone(), &trusted);
        assert!(matches!(failed, Err(Error::Runtime { .. })));
        let report = verify_chain(&runtime, &bytes, segments.clone(), 2, 1).unwrap();
        assert_eq!(report.identical, 2);
    }
}

#[test]
fn pipelines_come_and_go() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::RESNET) else {
        return;
    };
    let model = Model::from_bytes(&bytes).unwrap();
    let graph = Graph::new(&model).unwrap();
    let segments: Vec<Arc<[u8]>> = UniformByOps
        .plan(&graph, 3)
        .unwrap()
        .extract(&graph)
        .unwrap()
        .iter()
        .map(|s| Arc::from(s.to_bytes().unwrap()))
        .collect();
    let backend = CpuBackend::new(runtime, 1, false);
    for cycle in 0..cycles() {
        let mut builder = PipelineBuilder::new();
        for (i, segment) in segments.iter().enumerate() {
            builder = builder.stage(backend.prepare(Arc::clone(segment), i).unwrap());
        }
        let pipeline = builder.build().unwrap();
        let input = pipeline.inputs()[0].clone();
        let data = common::pattern(input.byte_size);
        for _ in 0..3 {
            pipeline.push(&[(input.name.as_str(), &data)]).unwrap();
        }
        if cycle % 2 == 0 {
            // Drained and closed...
            pipeline.close().unwrap();
            let outputs = (&pipeline).into_iter().count();
            assert_eq!(outputs, 3);
        }
        // ... or dropped with items in flight.
        drop(pipeline);
    }
}
