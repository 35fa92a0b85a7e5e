//! The pipeline over real TFLite CPU interpreters (the TFLite 2.9 C library and real models).
//!
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_ZOO` (see `tests/common`). Stages that compare
//! scores as bytes run the zoo's uint8 model.

mod common;
mod stages;

use std::sync::Arc;

use multitpu::Error;
use multitpu::backend::{Backend, CpuBackend, Interpreter, InterpreterOptions, Stage};
use multitpu::pipeline::PipelineBuilder;
use multitpu::segment::UniformByOps;
use multitpu::tensor::TensorSpec;
use stages::FailingAt;

use common::zoo;

/// Input `i` of a series: the test pattern rotated by `i`.
fn input(len: usize, i: usize) -> Vec<u8> {
    let mut data = common::pattern(len);
    data.rotate_left(i * 13 % len.max(1));
    data
}

/// What a plain interpreter computes for each input.
fn reference(
    model: &Arc<[u8]>,
    runtime: &multitpu::backend::Runtime,
    inputs: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut interpreter =
        Interpreter::new(runtime, Arc::clone(model), &InterpreterOptions::default()).unwrap();
    inputs
        .iter()
        .map(|data| {
            interpreter.set_input(0, data).unwrap();
            interpreter.invoke().unwrap();
            interpreter.output(0).unwrap().to_vec()
        })
        .collect()
}

#[test]
fn cpu_stage_matches_a_plain_interpreter() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::CNN_INT8) else {
        return;
    };
    let model: Arc<[u8]> = bytes.into();
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    assert_eq!(backend.name(), "tflite-cpu");
    let stage = backend.prepare(Arc::clone(&model), 0).unwrap();
    assert_eq!(stage.describe(), "tflite-cpu #0 (1 thread)");
    let pipeline = PipelineBuilder::new().stage(stage).build().unwrap();
    assert_eq!(pipeline.inputs().len(), 1);
    let name = pipeline.inputs()[0].name.clone();
    let size = pipeline.inputs()[0].byte_size;
    let inputs: Vec<Vec<u8>> = (0..8).map(|i| input(size, i)).collect();
    let expected = reference(&model, &runtime, &inputs);
    assert!(
        expected.windows(2).any(|w| w[0] != w[1]),
        "inputs should give different outputs"
    );
    for data in &inputs {
        pipeline.push(&[(&name, data)]).unwrap();
    }
    pipeline.close().unwrap();
    let outputs: Vec<Vec<u8>> = (&pipeline)
        .into_iter()
        .map(|o| o.unwrap().tensor(0).unwrap().to_vec())
        .collect();
    assert_eq!(outputs, expected);
    let stats = pipeline.stats();
    assert_eq!(stats.stages[0].invokes, 8);
    assert_eq!(stats.stages[0].instances, ["tflite-cpu #0 (1 thread)"]);
}

#[test]
fn replicated_cpu_stage_keeps_order() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::DEPTHWISE) else {
        return;
    };
    let model: Arc<[u8]> = bytes.into();
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    let replicas = backend
        .prepare_replicas(Arc::clone(&model), &[0, 1])
        .unwrap();
    assert_eq!(replicas[1].describe(), "tflite-cpu #1 (1 thread)");
    let pipeline = PipelineBuilder::new()
        .replicated_stage(replicas)
        .input_capacity(2)
        .build()
        .unwrap();
    let spec: TensorSpec = pipeline.inputs()[0].clone();
    let inputs: Vec<Vec<u8>> = (0..10).map(|i| input(spec.byte_size, i)).collect();
    let expected = reference(&model, &runtime, &inputs);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for data in &inputs {
                pipeline.push(&[(&spec.name, data)]).unwrap();
            }
            pipeline.close().unwrap();
        });
        for (i, output) in (&pipeline).into_iter().enumerate() {
            let output = output.unwrap();
            assert_eq!(output.seq(), i as u64);
            assert_eq!(output.tensor(0).unwrap(), &expected[i][..], "item {i}");
        }
    });
    assert_eq!(pipeline.stats().stages[0].invokes, 10);
}

/// A stage after the interpreter that reads its output by name and a pipeline input that
/// skips the interpreter: returns the index of the top class and the first input byte.
#[test]
fn cpu_stage_in_a_mixed_pipeline_with_a_skip_connection() {
    struct ArgMax {
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
    }
    impl Stage for ArgMax {
        fn inputs(&self) -> &[TensorSpec] {
            &self.inputs
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.outputs
        }
        fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> multitpu::Result<()> {
            let scores = inputs[0];
            let best = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap_or(0);
            outputs[0][0] = best as u8;
            outputs[0][1] = inputs[1][0];
            Ok(())
        }
        fn describe(&self) -> String {
            "argmax".into()
        }
    }
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::INCEPTION_UINT8) else {
        return;
    };
    let model: Arc<[u8]> = bytes.into();
    let stage = CpuBackend::new(runtime.clone(), 2, false)
        .prepare(Arc::clone(&model), 0)
        .unwrap();
    let (input_spec, score_spec) = (stage.inputs()[0].clone(), stage.outputs()[0].clone());
    let argmax = ArgMax {
        inputs: vec![score_spec, input_spec.clone()],
        outputs: vec![TensorSpec::bytes("class_and_first_byte", 2)],
    };
    let pipeline = PipelineBuilder::new()
        .stage(stage)
        .stage(Box::new(argmax))
        .build()
        .unwrap();
    let inputs: Vec<Vec<u8>> = (0..4).map(|i| input(input_spec.byte_size, i)).collect();
    let expected = reference(&model, &runtime, &inputs);
    for (data, scores) in inputs.iter().zip(&expected) {
        pipeline.push(&[(&input_spec.name, data)]).unwrap();
        let out = pipeline.pop().unwrap().unwrap();
        let best = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap() as u8;
        assert_eq!(out.get("class_and_first_byte").unwrap(), [best, data[0]]);
    }
}

#[test]
fn prepare_reports_the_runtime_error() {
    let (Some(runtime), Some(bytes)) = (common::tflite_runtime(), common::unregistered_op_model())
    else {
        return;
    };
    let bytes: Arc<[u8]> = bytes.into();
    // Strict: refused before TFLite sees it; trusted: TFLite's own error.
    let err = CpuBackend::new(runtime.clone(), 1, false)
        .prepare(Arc::clone(&bytes), 0)
        .err()
        .expect("the custom op is not registered");
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    let err = CpuBackend::new(runtime, 1, false)
        .trusting_models()
        .prepare(bytes, 0)
        .err()
        .expect("the custom op is not registered");
    assert!(matches!(err, Error::Runtime { .. }), "{err:?}");
}

#[test]
fn xnnpack_stage_runs() {
    let Some((runtime, bytes)) = common::runtime_and_zoo_model(zoo::INCEPTION_UINT8) else {
        return;
    };
    let model: Arc<[u8]> = bytes.into();
    let backend = CpuBackend::new(runtime.clone(), 2, true);
    assert!(backend.xnnpack());
    assert_eq!(backend.threads(), 2);
    let stage = backend.prepare(Arc::clone(&model), 3).unwrap();
    assert_eq!(stage.describe(), "tflite-cpu #3 (2 threads, XNNPack)");
    let spec = stage.inputs()[0].clone();
    let pipeline = PipelineBuilder::new().stage(stage).build().unwrap();
    let data = input(spec.byte_size, 0);
    pipeline.push(&[(&spec.name, &data)]).unwrap();
    let out = pipeline.pop().unwrap().unwrap();
    // Quantized kernels: XNNPack may round differently, so compare the top class only.
    let expected = &reference(&model, &runtime, &[data])[0];
    let top = |v: &[u8]| (0..v.len()).max_by_key(|&i| v[i]);
    assert_eq!(top(out.tensor(0).unwrap()), top(expected));
}

#[test]
fn a_failure_at_item_k_delivers_every_item_before_it() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (whole, segments) = common::paper_fc_segments(300, 3, &UniformByOps);
    let backend = CpuBackend::new(runtime.clone(), 1, false);
    let (n, k) = (12u64, 5u64);
    let mut builder = PipelineBuilder::new();
    for (i, segment) in segments.iter().enumerate() {
        let stage = backend.prepare(Arc::clone(segment), i).unwrap();
        // The middle interpreter fails on item k.
        builder = builder.stage(if i == 1 {
            FailingAt::boxed(stage, k)
        } else {
            stage
        });
    }
    let pipeline = builder.build().unwrap();
    let spec = pipeline.inputs()[0].clone();
    let inputs: Vec<Vec<u8>> = (0..n as usize).map(|i| input(spec.byte_size, i)).collect();
    let expected = reference(&whole, &runtime, &inputs);
    // Push everything before popping anything: the finished items wait in the output queue.
    let mut pushed = 0;
    for data in &inputs {
        match pipeline.push(&[(&spec.name, data)]) {
            Ok(_) => pushed += 1,
            Err(Error::StageFailed { .. }) => break,
            Err(other) => panic!("push: {other}"),
        }
    }
    let mut came_out = Vec::new();
    let error = loop {
        match pipeline.pop() {
            Ok(Some(output)) => {
                let seq = output.seq() as usize;
                assert_eq!(output.tensor(0).unwrap(), &expected[seq][..], "item {seq}");
                came_out.push(output.seq());
            }
            Ok(None) => panic!("the failure was not reported"),
            Err(error) => break error,
        }
    };
    let Error::StageFailed {
        stage, item, lost, ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!((*stage, *item), (1, Some(k)));
    assert_eq!(came_out, (0..k).collect::<Vec<_>>());
    assert_eq!(*lost, (k..pushed).collect::<Vec<_>>());
}

#[test]
fn cpu_segments_out_of_order_are_refused_when_built() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (_, segments) = common::paper_fc_segments(300, 3, &UniformByOps);
    let backend = CpuBackend::new(runtime, 1, false);
    let read_by = |i: usize| {
        backend
            .prepare(Arc::clone(&segments[i]), i)
            .unwrap()
            .inputs()[0]
            .name
            .clone()
    };
    for order in [[0, 2], [2, 0]] {
        let chosen = order.map(|i| Arc::clone(&segments[i]));
        let error = PipelineBuilder::from_segments(&chosen, &backend)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::NoProducer { stage: 1, tensor, .. } if *tensor == read_by(order[1])),
            "{order:?}: {error}"
        );
    }
}
